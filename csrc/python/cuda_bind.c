/* affectfer._C's CUDA functions (affectfer/cuda.py wraps them). In a build without CUDA they exist too
 * and say so: cuda_built() is False, device_count 0, the rest raise "affectfer was built without CUDA". */
#include "binding.h"

#ifdef AF_HAVE_CUDA
#include "../cuda/cuda.h"
#endif

static PyObject *built_without(void) {
    PyErr_SetString(PyExc_RuntimeError, "affectfer was built without CUDA (rebuild with the CUDA toolkit found, "
                                        "or AFFECTFER_CUDA=1 to insist)");
    return NULL;
}

static PyObject *py_cuda_built(PyObject *self, PyObject *unused) {
#ifdef AF_HAVE_CUDA
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *py_cuda_device_count(PyObject *self, PyObject *unused) {
#ifdef AF_HAVE_CUDA
    return PyLong_FromLong(af_cuda_device_count());
#else
    return PyLong_FromLong(0);
#endif
}

static PyObject *py_cuda_available(PyObject *self, PyObject *unused) {
#ifdef AF_HAVE_CUDA
    return PyBool_FromLong(af_cuda_device_count() > 0);
#else
    Py_RETURN_FALSE;
#endif
}

#ifdef AF_HAVE_CUDA
static int device_arg(PyObject *obj, long long *device) {
    return af_py_int_arg(obj, "device", 0, AF_CUDA_MAX_DEVICES - 1, device);
}
#endif

static PyObject *py_cuda_synchronize(PyObject *self, PyObject *arg) {
#ifdef AF_HAVE_CUDA
    long long device;
    if (device_arg(arg, &device) < 0) return NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_cuda_synchronize((int)device);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
#else
    return built_without();
#endif
}

static PyObject *py_cuda_memory_stats(PyObject *self, PyObject *arg) {
#ifdef AF_HAVE_CUDA
    long long device;
    if (device_arg(arg, &device) < 0) return NULL;
    af_cuda_memory_stats s;
    af_status st = af_cuda_get_memory_stats((int)device, &s);
    if (st != AF_OK) return af_py_raise(st);
    return Py_BuildValue("{sKsKsKsKsKsKsKsO}", "allocated_bytes", (unsigned long long)s.allocated_bytes,
                         "reserved_bytes", (unsigned long long)s.reserved_bytes, "peak_allocated_bytes",
                         (unsigned long long)s.peak_allocated_bytes, "num_allocs", (unsigned long long)s.num_allocs,
                         "num_cache_hits", (unsigned long long)s.num_cache_hits, "num_device_allocs",
                         (unsigned long long)s.num_device_allocs, "num_ooms", (unsigned long long)s.num_ooms,
                         "caching", af_cuda_caching_enabled() ? Py_True : Py_False);
#else
    return built_without();
#endif
}

static PyObject *py_cuda_empty_cache(PyObject *self, PyObject *arg) {
#ifdef AF_HAVE_CUDA
    long long device;
    if (af_py_int_arg(arg, "device", -1, AF_CUDA_MAX_DEVICES - 1, &device) < 0) return NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_cuda_empty_cache((int)device);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
#else
    return built_without();
#endif
}

static PyObject *py_cuda_ops(PyObject *self, PyObject *unused) {
#ifdef AF_HAVE_CUDA
    PyObject *names = PyList_New(0);
    if (!names) return NULL;
    for (int op = 0; op < AF_OP_COUNT; op++) {
        if (!af_op_cuda_table[op]) continue;
        PyObject *name = PyUnicode_FromString(af_op_table[op]->name);
        if (!name || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(name);
    }
    return names;
#else
    return built_without();
#endif
}

/* Recorded in every build (a CPU build is deterministic already), so the Python switch always works. */
static int deterministic_flag;

static PyObject *py_set_deterministic(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    deterministic_flag = on;
#ifdef AF_HAVE_CUDA
    af_cuda_set_deterministic(on);
#endif
    Py_RETURN_NONE;
}

static PyObject *py_deterministic(PyObject *self, PyObject *unused) { return PyBool_FromLong(deterministic_flag); }

PyMethodDef af_cuda_methods[] = {
    {"set_deterministic", py_set_deterministic, METH_O, "only deterministic algorithms on CUDA (cuDNN convolutions)"},
    {"deterministic", py_deterministic, METH_NOARGS, "whether set_deterministic(True) is in force"},
    {"cuda_built", py_cuda_built, METH_NOARGS, "True when this _C was compiled with CUDA"},
    {"cuda_available", py_cuda_available, METH_NOARGS, "True when built with CUDA and a GPU is visible"},
    {"cuda_device_count", py_cuda_device_count, METH_NOARGS, "visible GPUs (0 without CUDA or a device)"},
    {"cuda_synchronize", py_cuda_synchronize, METH_O, "cuda_synchronize(device): wait for its stream"},
    {"cuda_memory_stats", py_cuda_memory_stats, METH_O, "cuda_memory_stats(device): the caching allocator's counters"},
    {"cuda_empty_cache", py_cuda_empty_cache, METH_O, "cuda_empty_cache(device): free cached blocks; -1: all devices"},
    {"cuda_ops", py_cuda_ops, METH_NOARGS, "names of the ops that have a CUDA kernel in this build"},
    {NULL},
};

int af_cuda_bind_init(PyObject *module) {
#ifdef AF_HAVE_CUDA
    if (af_cuda_init() != AF_OK) {
        af_py_raise(AF_ERR_INTERNAL);
        return -1;
    }
#endif
    return PyModule_AddFunctions(module, af_cuda_methods);
}
