/* affectfer._C: module init and the small module-level functions (creation, RNG, modes). */
#include "binding.h"

#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <string.h>

static uint64_t global_seed = 0x5eed;
static uint64_t global_stream = 0;

static int parse_shape(PyObject *obj, int *ndim, int64_t *shape) {
    PyObject *seq = PySequence_Fast(obj, "shape must be a sequence of ints");
    if (!seq) return -1;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    if (nd > AF_MAX_DIMS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "tensors have at most %d dims, got %zd", AF_MAX_DIMS, nd);
        return -1;
    }
    for (Py_ssize_t d = 0; d < nd; d++) {
        shape[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, d));
        if (shape[d] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (shape[d] < 0) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "shape has a negative dimension: %lld", (long long)shape[d]);
            return -1;
        }
    }
    *ndim = (int)nd;
    Py_DECREF(seq);
    return 0;
}

static int parse_dtype(const char *name, af_dtype *out) {
    if (af_dtype_from_name(name, out) < 0) {
        PyErr_Format(PyExc_TypeError, "unknown dtype '%s' (float32, float64, uint8, int32, int64, bool)", name);
        return -1;
    }
    return 0;
}

static PyObject *py_empty(PyObject *self, PyObject *args) {
    PyObject *shape_obj;
    const char *dtype_name = "float32";
    int zero = 0;
    if (!PyArg_ParseTuple(args, "O|sp:empty", &shape_obj, &dtype_name, &zero)) return NULL;
    int nd;
    int64_t shape[AF_MAX_DIMS];
    af_dtype dtype;
    if (parse_shape(shape_obj, &nd, shape) < 0 || parse_dtype(dtype_name, &dtype) < 0) return NULL;
    af_tensor *t = NULL;
    af_status st = zero ? af_tensor_zeros(dtype, AF_CPU, nd, shape, &t) : af_tensor_new(dtype, AF_CPU, nd, shape, &t);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(t);
}

/* random(shape, dtype, kind, a, b): kind 0 = uniform [a, b), 1 = normal(mean a, std b); one fresh
 * Philox stream per call, element i from counter i, so the values do not depend on threads. */
static PyObject *py_random(PyObject *self, PyObject *args) {
    PyObject *shape_obj;
    const char *dtype_name;
    int kind;
    double a, b;
    if (!PyArg_ParseTuple(args, "Osidd:random", &shape_obj, &dtype_name, &kind, &a, &b)) return NULL;
    int nd;
    int64_t shape[AF_MAX_DIMS];
    af_dtype dtype;
    if (parse_shape(shape_obj, &nd, shape) < 0 || parse_dtype(dtype_name, &dtype) < 0) return NULL;
    if (dtype != AF_DTYPE_F32 && dtype != AF_DTYPE_F64) return PyErr_Format(PyExc_TypeError, "random tensors are float32 or float64");
    af_tensor *t = NULL;
    af_status st = af_tensor_new(dtype, AF_CPU, nd, shape, &t);
    if (st != AF_OK) return af_py_raise(st);
    uint64_t stream = global_stream++;
    int64_t n = t->numel;
    Py_BEGIN_ALLOW_THREADS
    AF_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) {
        af_rng r = af_rng_make(global_seed, stream, (uint64_t)i);
        double v;
        if (kind == 0) {
            v = a + (b - a) * af_rng_uniform(&r);
        } else { /* Box-Muller on two uniforms from this element's own counter block */
            double u1 = 1.0 - af_rng_uniform(&r), u2 = af_rng_uniform(&r);
            v = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        }
        if (dtype == AF_DTYPE_F32) ((float *)af_tensor_data(t))[i] = (float)v;
        else ((double *)af_tensor_data(t))[i] = v;
    }
    Py_END_ALLOW_THREADS
    return af_py_wrap(t);
}

static PyObject *py_manual_seed(PyObject *self, PyObject *arg) {
    unsigned long long seed = PyLong_AsUnsignedLongLongMask(arg);
    if (PyErr_Occurred()) return NULL;
    global_seed = seed;
    global_stream = 0;
    Py_RETURN_NONE;
}

/* (seed, next stream id) and reserve the stream: ops that draw randomness take a stream each. */
static PyObject *py_next_stream(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KK)", (unsigned long long)global_seed, (unsigned long long)global_stream++);
}

static PyObject *py_rng_state(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(KK)", (unsigned long long)global_seed, (unsigned long long)global_stream);
}

static PyObject *py_set_rng_state(PyObject *self, PyObject *args) {
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "KK:set_rng_state", &seed, &stream)) return NULL;
    global_seed = seed;
    global_stream = stream;
    Py_RETURN_NONE;
}

/* philox(seed, stream, counter) -> the 4 words of one block, for tests against the paper's vectors */
static PyObject *py_philox(PyObject *self, PyObject *args) {
    unsigned int c0, c1, c2, c3, k0, k1;
    if (!PyArg_ParseTuple(args, "(IIII)(II):philox", &c0, &c1, &c2, &c3, &k0, &k1)) return NULL;
    uint32_t ctr[4] = {c0, c1, c2, c3}, key[2] = {k0, k1}, out[4];
    af_philox4x32_10(ctr, key, out);
    return Py_BuildValue("(IIII)", out[0], out[1], out[2], out[3]);
}

static PyObject *py_set_grad_enabled(PyObject *self, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) return NULL;
    return PyBool_FromLong(af_set_grad_enabled(flag));
}

static PyObject *py_set_anomaly_mode(PyObject *self, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) return NULL;
    return PyBool_FromLong(af_set_anomaly_mode(flag));
}

static PyObject *py_is_grad_enabled(PyObject *self, PyObject *unused) { return PyBool_FromLong(af_grad_enabled()); }

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1) return PyErr_Format(PyExc_ValueError, "num_threads must be >= 1, got %ld", n);
    af_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) { return PyLong_FromLong(af_get_num_threads()); }

static PyObject *py_set_tensor_class(PyObject *self, PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &AfTensor_BaseType))
        return PyErr_Format(PyExc_TypeError, "tensor class must subclass TensorBase");
    Py_INCREF(cls);
    af_tensor_class = (PyTypeObject *)cls;
    Py_RETURN_NONE;
}

static PyObject *py_cuda_available(PyObject *self, PyObject *unused) { Py_RETURN_FALSE; }

static PyMethodDef module_methods[] = {
    {"empty", py_empty, METH_VARARGS, "empty(shape, dtype='float32', zero=False)"},
    {"random", py_random, METH_VARARGS, "random(shape, dtype, kind, a, b): kind 0 uniform[a,b), 1 normal(a, b)"},
    {"from_numpy", (PyCFunction)(void (*)(void))af_py_from_numpy, METH_VARARGS | METH_KEYWORDS,
     "from_numpy(array, copy=True, dtype=None)"},
    {"from_dlpack", af_py_from_dlpack, METH_O, "from_dlpack(obj): import a DLPack tensor without copying"},
    {"manual_seed", py_manual_seed, METH_O, "seed every random draw"},
    {"next_stream", py_next_stream, METH_NOARGS, "reserve a Philox stream: (seed, stream)"},
    {"rng_state", py_rng_state, METH_NOARGS, "(seed, next stream)"},
    {"set_rng_state", py_set_rng_state, METH_VARARGS, "restore rng_state()"},
    {"philox", py_philox, METH_VARARGS, "one Philox4x32-10 block: philox(counter4, key2)"},
    {"set_grad_enabled", py_set_grad_enabled, METH_O, "set grad mode for this thread; returns the previous"},
    {"set_anomaly_mode", py_set_anomaly_mode, METH_O, "NaN/Inf checks on every op output; returns the previous"},
    {"is_grad_enabled", py_is_grad_enabled, METH_NOARGS, "grad mode of this thread"},
    {"set_num_threads", py_set_num_threads, METH_O, "threads for CPU kernels and the BLAS"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "threads for CPU kernels"},
    {"_set_tensor_class", py_set_tensor_class, METH_O, "register affectfer.Tensor"},
    {"cuda_available", py_cuda_available, METH_NOARGS, "True when built with CUDA and a GPU is visible"},
    {NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "affectfer._C", "affectfer's C core", -1, NULL};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    af_set_num_threads(af_get_num_threads()); /* pins OpenBLAS to one thread, see csrc/core/parallel.c */
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyModule_AddFunctions(m, module_methods) < 0 || PyModule_AddFunctions(m, af_ops_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, af_fer_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, af_data_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, af_image_methods) < 0) goto fail;
    if (PyType_Ready(&AfTensor_BaseType) < 0) goto fail;
    Py_INCREF(&AfTensor_BaseType);
    if (PyModule_AddObject(m, "TensorBase", (PyObject *)&AfTensor_BaseType) < 0) goto fail;
    if (af_errors_init(m) < 0 || af_ops_init(m) < 0) goto fail;
    if (af_loader_init(m) < 0) goto fail;
    if (af_pack_init(m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
