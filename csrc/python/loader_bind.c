/* Bindings of csrc/data (samplers, the loader) and the batch mixers of csrc/image/mix.c.
 * Index lists come back as NumPy arrays; the loader hands out affectfer Tensors. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "../data/data.h"
#include "../image/mix.h"

#include <math.h>

/* A C-contiguous 1-D array of `type` from any array-like; errors name the argument. */
static PyArrayObject *as_vector(PyObject *obj, int type, const char *name) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, type, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "'%s' must be array-like numbers", name);
        return NULL;
    }
    if (PyArray_NDIM(a) != 1) {
        PyErr_Format(PyExc_ValueError, "'%s' must be 1-D, got %d-D", name, PyArray_NDIM(a));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static PyObject *new_i64(int64_t n) {
    npy_intp dims[1] = {(npy_intp)n};
    return PyArray_EMPTY(1, dims, NPY_INT64, 0);
}

static int check_count(long long n, const char *name) {
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "'%s' must be >= 0, got %lld", name, n);
        return -1;
    }
    return 0;
}

static PyObject *py_sampler_sequential(PyObject *self, PyObject *args) {
    long long n;
    if (!PyArg_ParseTuple(args, "L:sampler_sequential", &n) || check_count(n, "n") < 0) return NULL;
    PyObject *out = new_i64(n);
    if (!out) return NULL;
    af_status st = af_sampler_sequential(n, PyArray_DATA((PyArrayObject *)out));
    if (st != AF_OK) {
        Py_DECREF(out);
        return af_py_raise(st);
    }
    return out;
}

static PyObject *py_sampler_shuffled(PyObject *self, PyObject *args) {
    long long n;
    unsigned long long seed, epoch;
    if (!PyArg_ParseTuple(args, "LKK:sampler_shuffled", &n, &seed, &epoch) || check_count(n, "n") < 0) return NULL;
    PyObject *out = new_i64(n);
    if (!out) return NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_sampler_shuffled(n, seed, epoch, PyArray_DATA((PyArrayObject *)out));
    Py_END_ALLOW_THREADS
    if (st != AF_OK) {
        Py_DECREF(out);
        return af_py_raise(st);
    }
    return out;
}

static PyObject *py_sampler_weighted(PyObject *self, PyObject *args) {
    PyObject *w_obj;
    long long num_samples;
    unsigned long long seed, epoch;
    if (!PyArg_ParseTuple(args, "OLKK:sampler_weighted", &w_obj, &num_samples, &seed, &epoch)) return NULL;
    if (check_count(num_samples, "num_samples") < 0) return NULL;
    PyArrayObject *w = as_vector(w_obj, NPY_FLOAT64, "weights");
    if (!w) return NULL;
    PyObject *out = new_i64(num_samples);
    af_status st = AF_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        st = af_sampler_weighted(PyArray_DATA(w), PyArray_DIM(w, 0), num_samples, seed, epoch,
                                 PyArray_DATA((PyArrayObject *)out));
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(w);
    if (st != AF_OK) {
        Py_XDECREF(out);
        return af_py_raise(st);
    }
    return out;
}

static PyObject *py_class_inverse_weights(PyObject *self, PyObject *args) {
    PyObject *l_obj;
    int C;
    if (!PyArg_ParseTuple(args, "Oi:class_inverse_weights", &l_obj, &C)) return NULL;
    PyArrayObject *labels = as_vector(l_obj, NPY_INT64, "labels");
    if (!labels) return NULL;
    npy_intp dims[1] = {PyArray_DIM(labels, 0)};
    PyObject *out = PyArray_EMPTY(1, dims, NPY_FLOAT64, 0);
    af_status st = out ? af_class_inverse_weights(PyArray_DATA(labels), dims[0], C, PyArray_DATA((PyArrayObject *)out)) : AF_OK;
    Py_DECREF(labels);
    if (st != AF_OK) {
        Py_XDECREF(out);
        return af_py_raise(st);
    }
    return out;
}

/* sampler_oversample(labels, num_classes, seed, epoch, shuffle) -> (indices int64, is_copy bool) */
static PyObject *py_sampler_oversample(PyObject *self, PyObject *args) {
    PyObject *l_obj;
    int C, shuffle;
    unsigned long long seed, epoch;
    if (!PyArg_ParseTuple(args, "OiKKp:sampler_oversample", &l_obj, &C, &seed, &epoch, &shuffle)) return NULL;
    PyArrayObject *labels = as_vector(l_obj, NPY_INT64, "labels");
    if (!labels) return NULL;
    PyObject *idx = NULL, *copy = NULL;
    int64_t size = 0;
    af_status st = af_sampler_oversample_size(PyArray_DATA(labels), PyArray_DIM(labels, 0), C, &size);
    if (st == AF_OK) {
        npy_intp dims[1] = {(npy_intp)size};
        idx = PyArray_EMPTY(1, dims, NPY_INT64, 0);
        copy = PyArray_EMPTY(1, dims, NPY_BOOL, 0);
        if (idx && copy) {
            Py_BEGIN_ALLOW_THREADS
            st = af_sampler_oversample(PyArray_DATA(labels), PyArray_DIM(labels, 0), C, seed, epoch, shuffle,
                                       PyArray_DATA((PyArrayObject *)idx), PyArray_DATA((PyArrayObject *)copy));
            Py_END_ALLOW_THREADS
        }
    }
    Py_DECREF(labels);
    if (st != AF_OK || !idx || !copy) {
        Py_XDECREF(idx);
        Py_XDECREF(copy);
        return st != AF_OK ? af_py_raise(st) : NULL;
    }
    return Py_BuildValue("(NN)", idx, copy);
}

static PyObject *py_sampler_bagging(PyObject *self, PyObject *args) {
    long long n, m;
    unsigned long long seed, model;
    if (!PyArg_ParseTuple(args, "LLKK:sampler_bagging", &n, &m, &seed, &model) || check_count(n, "n") < 0) return NULL;
    if (m < 1 || m > n) return PyErr_Format(PyExc_ValueError, "bagging subset size must be in [1, %lld], got %lld", n, m);
    PyObject *out = new_i64(m);
    if (!out) return NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_sampler_bagging(n, m, seed, model, PyArray_DATA((PyArrayObject *)out));
    Py_END_ALLOW_THREADS
    if (st != AF_OK) {
        Py_DECREF(out);
        return af_py_raise(st);
    }
    return out;
}

/* ---- batch mixers (csrc/image/mix.c) ---- */

/* mix_params(seed, stream, alpha, N) -> (lambda, perm int64 array) */
static PyObject *py_mix_params(PyObject *self, PyObject *args) {
    unsigned long long seed, stream;
    double alpha;
    long long N;
    if (!PyArg_ParseTuple(args, "KKdL:mix_params", &seed, &stream, &alpha, &N)) return NULL;
    if (N < 1) return PyErr_Format(PyExc_ValueError, "mix: the batch must hold at least 1 sample, got %lld", N);
    PyObject *perm = new_i64(N);
    if (!perm) return NULL;
    double lambda = 1.0;
    af_status st = af_mix_params(seed, stream, alpha, N, &lambda, PyArray_DATA((PyArrayObject *)perm));
    if (st != AF_OK) {
        Py_DECREF(perm);
        return af_py_raise(st);
    }
    return Py_BuildValue("(dN)", lambda, perm);
}

/* mix_batch(x, perm, lambda, want_permuted) -> (mixed, permuted or None); x float32 (N, ...) */
static PyObject *py_mix_batch(PyObject *self, PyObject *args) {
    PyObject *x_obj, *p_obj;
    double lambda;
    int want_perm;
    if (!PyArg_ParseTuple(args, "OOdp:mix_batch", &x_obj, &p_obj, &lambda, &want_perm)) return NULL;
    af_tensor *x = af_py_tensor_arg(x_obj, "images");
    if (!x) return NULL;
    if (x->dtype != AF_DTYPE_F32 || x->device.type != AF_DEVICE_CPU || x->ndim < 1 || x->shape[0] < 1)
        return PyErr_Format(PyExc_TypeError, "mix: 'images' must be a float32 CPU tensor (N, ...) with N >= 1");
    if (!(lambda >= 0.0 && lambda <= 1.0)) return PyErr_Format(PyExc_ValueError, "mix: 'lam' must be in [0, 1], got %g", lambda);
    PyArrayObject *perm = as_vector(p_obj, NPY_INT64, "perm");
    if (!perm) return NULL;
    int64_t N = x->shape[0], D = x->numel / N;
    af_tensor *out = NULL, *xp = NULL;
    af_status st = AF_OK;
    if (PyArray_DIM(perm, 0) != N) {
        Py_DECREF(perm);
        return PyErr_Format(PyExc_ValueError, "mix: 'perm' has %zd entries for a batch of %lld", (Py_ssize_t)PyArray_DIM(perm, 0), (long long)N);
    }
    st = af_tensor_new(AF_DTYPE_F32, AF_CPU, x->ndim, x->shape, &out);
    if (st == AF_OK && want_perm) st = af_tensor_new(AF_DTYPE_F32, AF_CPU, x->ndim, x->shape, &xp);
    if (st == AF_OK) {
        Py_BEGIN_ALLOW_THREADS
        st = af_mix_batch(af_tensor_data(x), PyArray_DATA(perm), N, D, (float)lambda, af_tensor_data(out),
                          xp ? af_tensor_data(xp) : NULL);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(perm);
    if (st != AF_OK) {
        af_tensor_release(out);
        af_tensor_release(xp);
        return af_py_raise(st);
    }
    PyObject *mixed = af_py_wrap(out);
    if (!mixed) {
        af_tensor_release(xp);
        return NULL;
    }
    if (!xp) return Py_BuildValue("(NO)", mixed, Py_None);
    PyObject *permuted = af_py_wrap(xp);
    if (!permuted) {
        Py_DECREF(mixed);
        return NULL;
    }
    return Py_BuildValue("(NN)", mixed, permuted);
}

/* beta_samples(seed, stream, a, b, n) -> n draws of Beta(a, b) from one stream (tests, notebooks) */
static PyObject *py_beta_samples(PyObject *self, PyObject *args) {
    unsigned long long seed, stream;
    double a, b;
    long long n;
    if (!PyArg_ParseTuple(args, "KKddL:beta_samples", &seed, &stream, &a, &b, &n)) return NULL;
    if (!(a > 0.0) || !(b > 0.0) || !isfinite(a) || !isfinite(b)) return PyErr_Format(PyExc_ValueError, "Beta parameters must be > 0, got (%g, %g)", a, b);
    if (check_count(n, "n") < 0) return NULL;
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *out = PyArray_EMPTY(1, dims, NPY_FLOAT64, 0);
    if (!out) return NULL;
    double *v = PyArray_DATA((PyArrayObject *)out);
    af_rng r = af_rng_make(seed, stream, 0);
    for (long long i = 0; i < n; i++) v[i] = af_rng_beta(&r, a, b);
    return out;
}

PyMethodDef af_data_methods[] = {
    {"sampler_sequential", py_sampler_sequential, METH_VARARGS, "sampler_sequential(n) -> int64 [0..n)"},
    {"sampler_shuffled", py_sampler_shuffled, METH_VARARGS, "sampler_shuffled(n, seed, epoch) -> a permutation"},
    {"sampler_weighted", py_sampler_weighted, METH_VARARGS,
     "sampler_weighted(weights, num_samples, seed, epoch) -> draws with replacement"},
    {"class_inverse_weights", py_class_inverse_weights, METH_VARARGS,
     "class_inverse_weights(labels, num_classes) -> per-sample 1/n_class"},
    {"sampler_oversample", py_sampler_oversample, METH_VARARGS,
     "sampler_oversample(labels, num_classes, seed, epoch, shuffle) -> (indices, is_copy)"},
    {"sampler_bagging", py_sampler_bagging, METH_VARARGS, "sampler_bagging(n, m, seed, model) -> sorted m-subset"},
    {"mix_params", py_mix_params, METH_VARARGS, "mix_params(seed, stream, alpha, N) -> (lambda ~ Beta(alpha, alpha), perm)"},
    {"mix_batch", py_mix_batch, METH_VARARGS, "mix_batch(x, perm, lam, want_permuted) -> (mixed, permuted or None)"},
    {"beta_samples", py_beta_samples, METH_VARARGS, "beta_samples(seed, stream, a, b, n) -> float64 draws"},
    {NULL},
};
