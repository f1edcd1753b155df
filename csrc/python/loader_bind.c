/* Bindings of csrc/data (samplers, the loader) and the batch mixers of csrc/image/mix.c.
 * Index lists come back as NumPy arrays; the loader hands out affectfer Tensors. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "../data/data.h"

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
    {NULL},
};
