/* Bindings of csrc/data (samplers, the loader) and the batch mixers of csrc/image/mix.c.
 * Index lists come back as NumPy arrays; the loader hands out affectfer Tensors. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "../data/data.h"
#include "../image/transforms.h"
#include "../image/mix.h"

#include <limits.h>
#include <math.h>

static PyArrayObject *as_vector(PyObject *obj, int type, const char *name) {
    return (PyArrayObject *)af_py_as_array(obj, type, 1, name);
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
    if (!(lambda >= 0.0 && lambda <= 1.0)) return af_py_float_error("mix: 'lam' must be in [0, 1], got %R", lambda, NAN);
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
    if (!(a > 0.0) || !(b > 0.0) || !isfinite(a) || !isfinite(b))
        return af_py_float_error("Beta parameters must be finite and > 0, got (%R, %R)", a, b);
    if (check_count(n, "n") < 0) return NULL;
    npy_intp dims[1] = {(npy_intp)n};
    PyObject *out = PyArray_EMPTY(1, dims, NPY_FLOAT64, 0);
    if (!out) return NULL;
    double *v = PyArray_DATA((PyArrayObject *)out);
    af_rng r = af_rng_make(seed, stream, 0);
    for (long long i = 0; i < n; i++) v[i] = af_rng_beta(&r, a, b);
    return out;
}

/* ---- the loader (csrc/data/loader.c) ----
 * A LoaderRun is one epoch of one Loader: it owns the C loader (worker threads) and keeps every
 * array the workers read alive. Iterating it gives (images, labels[, targets]) tensors in sampler
 * order; exhausting it, close(), or deleting it joins the threads and frees the buffers. */

/* The af_pipeline of a compiled transform, or NULL for None. */
static int get_pipeline(PyObject *obj, const char *what, const af_pipeline **out) {
    *out = NULL;
    if (obj == Py_None) return 0;
    *out = af_py_pipeline_arg(obj, what);
    return *out ? 0 : -1;
}

/* Batch buffers shared by a Loader's epochs (csrc/data/queue.c): a capsule the Loader keeps. */
#define BUFFERS_CAPSULE "affectfer.batch_buffers"

static void buffers_capsule_free(PyObject *capsule) {
    af_batch_pool_release(PyCapsule_GetPointer(capsule, BUFFERS_CAPSULE));
}

static PyObject *py_batch_buffers(PyObject *self, PyObject *unused) {
    af_batch_pool *p = af_batch_pool_new();
    if (!p) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(p, BUFFERS_CAPSULE, buffers_capsule_free);
    if (!capsule) af_batch_pool_release(p);
    return capsule;
}

typedef struct {
    PyObject_HEAD
    af_loader *loader;
    char **paths;
    int64_t n_paths;
    PyObject *keep[8]; /* images, labels, targets, order, is_copy, transform, augment, boxes */
    int64_t n_batches;
    PyObject *weakrefs; /* the Loader keeps a weak reference to close its current run */
} LoaderRunObject;

static void run_close(LoaderRunObject *self) {
    if (self->loader) {
        af_loader *l = self->loader;
        self->loader = NULL;
        Py_BEGIN_ALLOW_THREADS
        af_loader_free(l);
        Py_END_ALLOW_THREADS
    }
    if (self->paths) {
        for (int64_t i = 0; i < self->n_paths; i++) free(self->paths[i]);
        free(self->paths);
        self->paths = NULL;
    }
    for (int i = 0; i < 8; i++) Py_CLEAR(self->keep[i]);
}

static void run_dealloc(LoaderRunObject *self) {
    if (self->weakrefs) PyObject_ClearWeakRefs((PyObject *)self);
    run_close(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *run_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"paths", "images", "labels", "targets", "order", "is_copy", "transform", "augment_copies",
                             "batch_size", "drop_last", "workers", "prefetch", "seed", "epoch", "max_pixels", "boxes",
                             "position_stride", "position_offset", "buffers", NULL};
    PyObject *paths_obj, *images_obj, *labels_obj, *targets_obj, *order_obj, *copy_obj, *tf_obj, *aug_obj;
    PyObject *batch_obj, *workers_obj, *prefetch_obj, *epoch_obj, *max_obj = NULL, *boxes_obj = Py_None;
    PyObject *buffers_obj = Py_None;
    long long batch_size, workers, prefetch, epoch, max_pixels = AF_IMAGE_DEFAULT_MAX_PIXELS;
    long long position_stride = 1, position_offset = 0;
    int drop_last;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOOOOpOOKO|OOLLO:LoaderRun", kwlist, &paths_obj, &images_obj, &labels_obj,
                                     &targets_obj, &order_obj, &copy_obj, &tf_obj, &aug_obj, &batch_obj, &drop_last,
                                     &workers_obj, &prefetch_obj, &seed, &epoch_obj, &max_obj, &boxes_obj, &position_stride,
                                     &position_offset, &buffers_obj))
        return NULL;
    af_batch_pool *buffers = NULL;
    if (buffers_obj != Py_None && !(buffers = PyCapsule_GetPointer(buffers_obj, BUFFERS_CAPSULE))) {
        PyErr_Clear();
        return PyErr_Format(PyExc_TypeError, "loader: 'buffers' must be None or affectfer._C.batch_buffers(), got %.100s",
                            Py_TYPE(buffers_obj)->tp_name);
    }
    /* every count is range-checked here, naming the argument, before any narrowing */
    if (af_py_int_arg(batch_obj, "batch_size", 1, 1ll << 40, &batch_size) < 0 ||
        af_py_int_arg(workers_obj, "workers", 1, AF_LOADER_MAX_WORKERS, &workers) < 0 ||
        af_py_int_arg(prefetch_obj, "prefetch", 1, AF_LOADER_MAX_PREFETCH, &prefetch) < 0 ||
        af_py_int_arg(epoch_obj, "epoch", 0, (1ll << 23) - 1, &epoch) < 0 ||
        (max_obj && af_py_int_arg(max_obj, "max_pixels", 1, LLONG_MAX, &max_pixels) < 0))
        return NULL;
    LoaderRunObject *self = (LoaderRunObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    af_loader_source src = {0};
    af_loader_config cfg = {0};
    PyArrayObject *labels = (PyArrayObject *)af_py_as_array(labels_obj, NPY_INT64, 1, "labels");
    if (!(self->keep[1] = (PyObject *)labels)) goto fail;
    src.n = PyArray_DIM(labels, 0);
    src.labels = PyArray_DATA(labels);
    if (paths_obj != Py_None) {
        PyObject *seq = PySequence_Fast(paths_obj, "loader: 'paths' must be a sequence of str");
        if (!seq) goto fail;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n != src.n) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "loader: %zd paths for %lld labels", n, (long long)src.n);
            goto fail;
        }
        self->paths = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!self->paths) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto fail;
        }
        self->n_paths = n;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *bytes = NULL;
            if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &bytes)) {
                Py_DECREF(seq);
                goto fail;
            }
            self->paths[i] = strdup(PyBytes_AS_STRING(bytes));
            Py_DECREF(bytes);
            if (!self->paths[i]) {
                Py_DECREF(seq);
                PyErr_NoMemory();
                goto fail;
            }
        }
        Py_DECREF(seq);
        src.paths = (const char *const *)self->paths;
    } else if (af_py_pack_get(images_obj)) { /* a PackFile: samples are read from its mapping */
        Py_INCREF(images_obj);
        self->keep[0] = images_obj;
        src.pack = af_py_pack_get(images_obj);
        if (src.pack->count != src.n) {
            PyErr_Format(PyExc_ValueError, "loader: the pack holds %lld samples for %lld labels", (long long)src.pack->count,
                         (long long)src.n);
            goto fail;
        }
    } else {
        PyArrayObject *images = (PyArrayObject *)af_py_as_array(images_obj, NPY_UINT8, 4, "images");
        if (!(self->keep[0] = (PyObject *)images)) goto fail;
        if (PyArray_DIM(images, 0) != src.n || (PyArray_DIM(images, 3) != 1 && PyArray_DIM(images, 3) != 3) ||
            PyArray_DIM(images, 1) < 1 || PyArray_DIM(images, 2) < 1 || PyArray_DIM(images, 1) > AF_IMAGE_MAX_SIDE ||
            PyArray_DIM(images, 2) > AF_IMAGE_MAX_SIDE) {
            PyErr_Format(PyExc_ValueError, "loader: 'images' must be (N, H, W, 1 or 3) with N = %lld and 1 <= H, W <= %d, got "
                         "(%zd, %zd, %zd, %zd)", (long long)src.n, AF_IMAGE_MAX_SIDE, (Py_ssize_t)PyArray_DIM(images, 0),
                         (Py_ssize_t)PyArray_DIM(images, 1), (Py_ssize_t)PyArray_DIM(images, 2), (Py_ssize_t)PyArray_DIM(images, 3));
            goto fail;
        }
        src.images = PyArray_DATA(images);
        src.img_h = (int)PyArray_DIM(images, 1), src.img_w = (int)PyArray_DIM(images, 2), src.img_c = (int)PyArray_DIM(images, 3);
    }
    if (targets_obj != Py_None) {
        PyArrayObject *targets = (PyArrayObject *)af_py_as_array(targets_obj, NPY_FLOAT32, 2, "targets");
        if (!(self->keep[2] = (PyObject *)targets)) goto fail;
        if (PyArray_DIM(targets, 0) != src.n || PyArray_DIM(targets, 1) < 1) {
            PyErr_Format(PyExc_ValueError, "loader: 'targets' must be (%lld, T) with T >= 1", (long long)src.n);
            goto fail;
        }
        src.targets = PyArray_DATA(targets);
        src.num_targets = (int)PyArray_DIM(targets, 1);
    }
    if (boxes_obj != Py_None) {
        PyArrayObject *boxes = (PyArrayObject *)af_py_as_array(boxes_obj, NPY_INT64, 2, "boxes");
        if (!(self->keep[7] = (PyObject *)boxes)) goto fail;
        if (PyArray_DIM(boxes, 0) != src.n || PyArray_DIM(boxes, 1) != 4) {
            PyErr_Format(PyExc_ValueError, "loader: 'boxes' must be (%lld, 4) (left, top, right, bottom), got (%zd, %zd)",
                         (long long)src.n, (Py_ssize_t)PyArray_DIM(boxes, 0), (Py_ssize_t)PyArray_DIM(boxes, 1));
            goto fail;
        }
        src.boxes = PyArray_DATA(boxes);
    }
    PyArrayObject *order = (PyArrayObject *)af_py_as_array(order_obj, NPY_INT64, 1, "order");
    if (!(self->keep[3] = (PyObject *)order)) goto fail;
    const uint8_t *is_copy = NULL;
    if (copy_obj != Py_None) {
        PyArrayObject *copy = (PyArrayObject *)af_py_as_array(copy_obj, NPY_UINT8, 1, "is_copy");
        if (!(self->keep[4] = (PyObject *)copy)) goto fail;
        if (PyArray_DIM(copy, 0) != PyArray_DIM(order, 0)) {
            PyErr_Format(PyExc_ValueError, "loader: 'is_copy' has %zd flags for %zd positions", (Py_ssize_t)PyArray_DIM(copy, 0),
                         (Py_ssize_t)PyArray_DIM(order, 0));
            goto fail;
        }
        is_copy = PyArray_DATA(copy);
    }
    if (get_pipeline(tf_obj, "transform", (const af_pipeline **)&cfg.transform) < 0) goto fail;
    if (get_pipeline(aug_obj, "augment_copies", (const af_pipeline **)&cfg.augment_copies) < 0) goto fail;
    Py_INCREF(tf_obj);
    self->keep[5] = tf_obj;
    Py_INCREF(aug_obj);
    self->keep[6] = aug_obj;
    cfg.batch_size = batch_size, cfg.drop_last = drop_last, cfg.workers = (int)workers, cfg.prefetch = (int)prefetch;
    cfg.seed = seed, cfg.epoch = epoch, cfg.max_pixels = max_pixels;
    cfg.position_stride = position_stride, cfg.position_offset = position_offset;
    cfg.buffers = buffers; /* the queue holds the pool itself: the capsule need not outlive the start */
    af_status st;
    af_loader *l = NULL;
    int64_t n_order = PyArray_DIM(order, 0);
    const int64_t *order_data = PyArray_DATA(order);
    Py_BEGIN_ALLOW_THREADS
    st = af_loader_start(&cfg, &src, order_data, is_copy, n_order, &l);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) {
        af_py_raise(st);
        goto fail;
    }
    self->loader = l;
    self->n_batches = af_loader_num_batches(l);
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *run_next(LoaderRunObject *self) {
    if (!self->loader) return NULL; /* closed or exhausted: StopIteration */
    for (;;) {
        af_batch b;
        int got = 0;
        af_status st;
        af_loader *l = self->loader;
        Py_BEGIN_ALLOW_THREADS
        st = af_loader_next(l, 100, &b, &got);
        Py_END_ALLOW_THREADS
        if (st != AF_OK) {
            run_close(self); /* keep the message: closing only joins and frees */
            return af_py_raise(st);
        }
        if (!got) {
            if (PyErr_CheckSignals() < 0) {
                run_close(self);
                return NULL;
            }
            continue;
        }
        if (!b.images) {
            run_close(self);
            return NULL;
        }
        PyObject *images = af_py_wrap(b.images), *labels = images ? af_py_wrap(b.labels) : NULL;
        if (!images || !labels) {
            if (!images) af_tensor_release(b.labels);
            Py_XDECREF(images);
            af_tensor_release(b.targets);
            return NULL;
        }
        if (!b.targets) return Py_BuildValue("(NN)", images, labels);
        PyObject *targets = af_py_wrap(b.targets);
        if (!targets) {
            Py_DECREF(images);
            Py_DECREF(labels);
            return NULL;
        }
        return Py_BuildValue("(NNN)", images, labels, targets);
    }
}

static PyObject *run_close_py(LoaderRunObject *self, PyObject *unused) {
    run_close(self);
    Py_RETURN_NONE;
}

static Py_ssize_t run_len(LoaderRunObject *self) { return (Py_ssize_t)self->n_batches; }

static PyMethodDef run_methods[] = {
    {"close", (PyCFunction)run_close_py, METH_NOARGS, "stop the workers, join them and free the buffers"},
    {NULL},
};

static PySequenceMethods run_as_sequence = {.sq_length = (lenfunc)run_len};

static PyTypeObject LoaderRunType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "affectfer._C.LoaderRun",
    .tp_basicsize = sizeof(LoaderRunObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_weaklistoffset = offsetof(LoaderRunObject, weakrefs),
    .tp_doc = "one epoch of the threaded loader (see affectfer.data.Loader)",
    .tp_new = run_new,
    .tp_dealloc = (destructor)run_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)run_next,
    .tp_methods = run_methods,
    .tp_as_sequence = &run_as_sequence,
};

int af_loader_init(PyObject *module) {
    if (PyType_Ready(&LoaderRunType) < 0) return -1;
    if (PyModule_AddIntConstant(module, "loader_max_workers", AF_LOADER_MAX_WORKERS) < 0 ||
        PyModule_AddIntConstant(module, "loader_max_prefetch", AF_LOADER_MAX_PREFETCH) < 0)
        return -1;
    Py_INCREF(&LoaderRunType);
    if (PyModule_AddObject(module, "LoaderRun", (PyObject *)&LoaderRunType) < 0) {
        Py_DECREF(&LoaderRunType);
        return -1;
    }
    return 0;
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
    {"batch_buffers", py_batch_buffers, METH_NOARGS,
     "batch_buffers() -> recycled batch buffers for LoaderRun(buffers=...), shared by a Loader's epochs"},
    {NULL},
};
