/* affectfer._C: module init and the small module-level functions (creation, RNG, modes). */
#include "binding.h"
#include "../core/cpu.h"
#include "../ops/attention.h"

#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <string.h>


static int parse_dtype(const char *name, af_dtype *out) {
    if (af_dtype_from_name(name, out) < 0) {
        PyErr_Format(PyExc_TypeError, "unknown dtype '%s' (float32, float64, uint8, int32, int64, bool)", name);
        return -1;
    }
    return 0;
}

static int parse_device(PyObject *obj, af_device *out);

static PyObject *py_empty(PyObject *self, PyObject *args) {
    PyObject *shape_obj, *device_obj = NULL;
    const char *dtype_name = "float32";
    int zero = 0;
    if (!PyArg_ParseTuple(args, "O|spO:empty", &shape_obj, &dtype_name, &zero, &device_obj)) return NULL;
    int nd;
    int64_t shape[AF_MAX_DIMS];
    af_dtype dtype;
    af_device device = AF_CPU;
    if (af_py_parse_shape(shape_obj, "shape", &nd, shape) < 0 || parse_dtype(dtype_name, &dtype) < 0) return NULL;
    if (device_obj && parse_device(device_obj, &device) < 0) return NULL;
    af_tensor *t = NULL;
    af_status st = zero ? af_tensor_zeros(dtype, device, nd, shape, &t) : af_tensor_new(dtype, device, nd, shape, &t);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(t);
}

/* "cpu", "cuda" (= "cuda:0") or "cuda:N" */
static int parse_device(PyObject *obj, af_device *out) {
    const char *name = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (!name) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "device must be a str such as 'cpu' or 'cuda:0', got %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    char *end = NULL;
    if (strcmp(name, "cpu") == 0) {
        *out = AF_CPU;
        return 0;
    }
    if (strcmp(name, "cuda") == 0) {
        *out = (af_device){AF_DEVICE_CUDA, 0};
        return 0;
    }
    if (strncmp(name, "cuda:", 5) == 0 && name[5] >= '0' && name[5] <= '9') {
        long index = strtol(name + 5, &end, 10);
        if (*end == '\0' && index <= 1024) {
            *out = (af_device){AF_DEVICE_CUDA, (int)index};
            return 0;
        }
    }
    PyErr_Format(PyExc_ValueError, "device must be 'cpu', 'cuda' or 'cuda:N', got %R", obj);
    return -1;
}

/* copy_to(tensor, device): a copy on `device`, through the allocators (csrc/core/alloc.h). */
static PyObject *py_copy_to(PyObject *self, PyObject *args) {
    PyObject *tensor_obj, *device_obj;
    if (!PyArg_ParseTuple(args, "OO:copy_to", &tensor_obj, &device_obj)) return NULL;
    af_tensor *t = af_py_tensor_arg(tensor_obj, "tensor");
    af_device device;
    if (!t || parse_device(device_obj, &device) < 0) return NULL;
    af_tensor *out = NULL;
    af_status st;
    af_tensor_retain(t);
    Py_BEGIN_ALLOW_THREADS
    st = af_tensor_copy_to(t, device, &out);
    af_tensor_release(t);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(out);
}

/* random(shape, dtype, kind, a, b): a new tensor filled by the uniform_ (kind 0, [a, b)) or normal_
 * (kind 1, mean a, std b) op from a fresh Philox stream. (seed, stream) are taken while the GIL is
 * held, so a concurrent manual_seed cannot change them half-way. */
static PyObject *py_random(PyObject *self, PyObject *args) {
    PyObject *shape_obj;
    const char *dtype_name;
    int kind;
    double a, b;
    if (!PyArg_ParseTuple(args, "Osidd:random", &shape_obj, &dtype_name, &kind, &a, &b)) return NULL;
    int nd;
    int64_t shape[AF_MAX_DIMS];
    af_dtype dtype;
    if (af_py_parse_shape(shape_obj, "shape", &nd, shape) < 0 || parse_dtype(dtype_name, &dtype) < 0) return NULL;
    if (kind != 0 && kind != 1) return PyErr_Format(PyExc_ValueError, "random: kind must be 0 (uniform) or 1 (normal), got %d", kind);
    af_tensor *t = NULL;
    af_status st = af_tensor_new(dtype, AF_CPU, nd, shape, &t);
    if (st != AF_OK) return af_py_raise(st);
    uint64_t seed, stream;
    af_rng_next_stream(&seed, &stream);
    af_op_call c = {.op = kind == 0 ? AF_OP_UNIFORM_ : AF_OP_NORMAL_, .n_in = 1, .in = {t},
                    .attr = {.i = {(int64_t)seed, (int64_t)stream}, .n_i = 2, .f = {a, b}, .n_f = 2}};
    Py_BEGIN_ALLOW_THREADS
    st = af_call(&c);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) {
        af_tensor_release(t);
        return af_py_raise(st);
    }
    return af_py_wrap(t);
}

/* A seed or stream id in [-2**63, 2**64 - 1]; a negative one stands for value + 2**64 (two's
 * complement, as torch.manual_seed's implementation maps negative seeds). Outside: ValueError, never
 * a silent wrap (manual_seed(2**70) must not equal manual_seed(0)). */
static int parse_u64(PyObject *obj, const char *what, uint64_t *out) {
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", what, Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(obj);
    if (!PyErr_Occurred()) {
        *out = u;
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
    PyErr_Clear();
    long long s = PyLong_AsLongLong(obj);
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must lie in [-2**63, 2**64 - 1], got %R", what, obj);
        return -1;
    }
    *out = (uint64_t)s;
    return 0;
}

static PyObject *py_manual_seed(PyObject *self, PyObject *arg) {
    uint64_t seed;
    if (parse_u64(arg, "seed", &seed) < 0) return NULL;
    af_rng_manual_seed(seed);
    Py_RETURN_NONE;
}

/* (seed, next stream id) and reserve the stream: ops that draw randomness take a stream each. */
static PyObject *py_next_stream(PyObject *self, PyObject *unused) {
    uint64_t seed, stream;
    af_rng_next_stream(&seed, &stream);
    return Py_BuildValue("(KK)", (unsigned long long)seed, (unsigned long long)stream);
}

static PyObject *py_rng_state(PyObject *self, PyObject *unused) {
    uint64_t seed, stream;
    af_rng_get_state(&seed, &stream);
    return Py_BuildValue("(KK)", (unsigned long long)seed, (unsigned long long)stream);
}

static PyObject *py_set_rng_state(PyObject *self, PyObject *args) {
    PyObject *seed_obj, *stream_obj;
    uint64_t seed, stream;
    if (!PyArg_ParseTuple(args, "OO:set_rng_state", &seed_obj, &stream_obj)) return NULL;
    if (parse_u64(seed_obj, "seed", &seed) < 0 || parse_u64(stream_obj, "stream", &stream) < 0) return NULL;
    af_rng_set_state(seed, stream);
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

static PyObject *py_set_fresh_grad_poison(PyObject *self, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0) return NULL;
    return PyBool_FromLong(af_set_fresh_grad_poison(flag));
}

static const char *const attention_kernel_names[] = {"blocked", "avx2", "avx512"};

/* tests and benchmarks: cap_attention_kernel("avx2") makes a machine with AVX-512 run the AVX2 kernel */
static PyObject *py_cap_attention_kernel(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name && PyErr_Occurred()) return NULL;
    for (int i = 0; name && i < (int)(sizeof attention_kernel_names / sizeof *attention_kernel_names); i++)
        if (strcmp(name, attention_kernel_names[i]) == 0)
            return PyUnicode_FromString(attention_kernel_names[af_attention_cap_kernel(i)]);
    PyErr_SetString(PyExc_ValueError, "cap_attention_kernel: expected 'blocked', 'avx2' or 'avx512'");
    return NULL;
}

static PyObject *py_attention_kernel(PyObject *self, PyObject *unused) {
    return PyUnicode_FromString(attention_kernel_names[af_attention_kernel()]);
}

static PyObject *py_is_grad_enabled(PyObject *self, PyObject *unused) { return PyBool_FromLong(af_grad_enabled()); }

static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    PyObject *index = PyNumber_Index(arg); /* ints and NumPy integers; 2.5 is a TypeError */
    if (!index) return NULL;
    int overflow = 0;
    long n = PyLong_AsLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (overflow || n < 1 || n > AF_MAX_THREADS)
        return PyErr_Format(PyExc_ValueError, "num_threads must lie in [1, %d], got %R", AF_MAX_THREADS, arg);
    af_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *py_live_nodes(PyObject *self, PyObject *unused) { return PyLong_FromLong(af_live_nodes()); }

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) { return PyLong_FromLong(af_get_num_threads()); }

static PyObject *py_set_tensor_class(PyObject *self, PyObject *cls) {
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &AfTensor_BaseType))
        return PyErr_Format(PyExc_TypeError, "tensor class must subclass TensorBase");
    Py_INCREF(cls);
    af_tensor_class = (PyTypeObject *)cls;
    Py_RETURN_NONE;
}


static PyObject *py_build_info(PyObject *self, PyObject *unused) {
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:s}", "cpu_path", af_cpu_path(), "blas", af_blas_name(), "blas_config",
                         af_blas_config(), "blas_core", af_blas_corename(), "stb", af_stb_name());
}

static PyObject *py_host_memory_stats(PyObject *self, PyObject *unused) {
    af_host_memory_stats s;
    af_host_memory_stats_get(&s);
    return Py_BuildValue("{sKsKsKsKsKsKsK}", "allocated_bytes", (unsigned long long)s.allocated_bytes,
                         "peak_allocated_bytes", (unsigned long long)s.peak_allocated_bytes, "cached_bytes",
                         (unsigned long long)s.cached_bytes, "cache_limit_bytes", (unsigned long long)s.cache_limit_bytes,
                         "num_allocs", s.num_allocs, "num_cache_hits", s.num_cache_hits, "num_evictions", s.num_evictions);
}

static PyObject *py_host_empty_cache(PyObject *self, PyObject *unused) {
    size_t released;
    Py_BEGIN_ALLOW_THREADS
    released = af_host_empty_cache();
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(released);
}

static PyObject *py_host_reset_peak(PyObject *self, PyObject *unused) {
    af_host_reset_peak();
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"host_memory_stats", py_host_memory_stats, METH_NOARGS, "the host block cache's counters (csrc/core/alloc.h)"},
    {"host_empty_cache", py_host_empty_cache, METH_NOARGS, "free every cached host block; returns the bytes freed"},
    {"host_reset_peak", py_host_reset_peak, METH_NOARGS, "peak_allocated_bytes = allocated_bytes"},
    {"empty", py_empty, METH_VARARGS, "empty(shape, dtype='float32', zero=False, device='cpu')"},
    {"copy_to", py_copy_to, METH_VARARGS, "copy_to(tensor, device): a copy on 'cpu' or 'cuda:N' (no autograd links)"},
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
    {"set_fresh_grad_poison", py_set_fresh_grad_poison, METH_O,
     "tests: NaN-fill the gradient buffers a backward op must write outright; returns the previous"},
    {"cap_attention_kernel", py_cap_attention_kernel, METH_O,
     "tests: the widest CPU attention kernel to use, 'blocked', 'avx2' or 'avx512'; returns the previous cap"},
    {"attention_kernel", py_attention_kernel, METH_NOARGS,
     "the CPU attention kernel float32 short sequences get now: 'blocked', 'avx2' or 'avx512'"},
    {"is_grad_enabled", py_is_grad_enabled, METH_NOARGS, "grad mode of this thread"},
    {"set_num_threads", py_set_num_threads, METH_O, "threads for CPU kernels (OpenMP); the BLAS stays on one thread"},
    {"_live_nodes", py_live_nodes, METH_NOARGS, "autograd nodes alive in the process (for leak tests)"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "threads for CPU kernels"},
    {"_set_tensor_class", py_set_tensor_class, METH_O, "register affectfer.Tensor"},
    {"build_info", py_build_info, METH_NOARGS, "the CPU kernel path chosen at load time and the BLAS in use"},
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
    if (PyModule_AddFunctions(m, af_dist_methods) < 0) goto fail;
    if (PyModule_AddFunctions(m, af_arena_methods) < 0 || af_arena_init(m) < 0) goto fail;
    if (PyType_Ready(&AfTensor_BaseType) < 0) goto fail;
    Py_INCREF(&AfTensor_BaseType);
    if (PyModule_AddObject(m, "TensorBase", (PyObject *)&AfTensor_BaseType) < 0) goto fail;
    if (PyModule_AddIntConstant(m, "MAX_THREADS", AF_MAX_THREADS) < 0) goto fail;
    if (af_errors_init(m) < 0 || af_ops_init(m) < 0) goto fail;
    if (af_loader_init(m) < 0) goto fail;
    if (af_constants_init(m) < 0 || af_image_init(m) < 0) goto fail;
    if (af_pack_init(m) < 0) goto fail;
    if (af_cuda_bind_init(m) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
