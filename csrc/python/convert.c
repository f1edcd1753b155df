/* Crossing into and out of affectfer: NumPy arrays (copy or shared memory) and DLPack capsules. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdlib.h>
#include <string.h>

int af_dtype_from_numpy(int npy_type, af_dtype *out) {
    switch (npy_type) {
    case NPY_FLOAT32: *out = AF_DTYPE_F32; return 0;
    case NPY_FLOAT64: *out = AF_DTYPE_F64; return 0;
    case NPY_FLOAT16: *out = AF_DTYPE_F16; return 0;
    case NPY_UINT8: *out = AF_DTYPE_U8; return 0;
    case NPY_INT32: *out = AF_DTYPE_I32; return 0;
    case NPY_INT64: *out = AF_DTYPE_I64; return 0;
    case NPY_BOOL: *out = AF_DTYPE_BOOL; return 0;
    default: return -1;
    }
}

int af_dtype_to_numpy(af_dtype d) {
    switch (d) {
    case AF_DTYPE_F32: return NPY_FLOAT32;
    case AF_DTYPE_F64: return NPY_FLOAT64;
    case AF_DTYPE_F16: return NPY_FLOAT16;
    case AF_DTYPE_U8: return NPY_UINT8;
    case AF_DTYPE_I32: return NPY_INT32;
    case AF_DTYPE_I64: return NPY_INT64;
    case AF_DTYPE_BOOL: return NPY_BOOL;
    default: return -1;
    }
}

int af_dtype_from_name(const char *name, af_dtype *out) {
    for (int d = 0; d < AF_DTYPE_COUNT; d++)
        if (strcmp(name, af_dtype_name((af_dtype)d)) == 0) {
            *out = (af_dtype)d;
            return 0;
        }
    return -1;
}

/* ---- argument coercion shared by every binding ---- */

PyObject *af_py_as_array(PyObject *obj, int npy_type, int ndim, const char *name) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, npy_type, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "'%s' must be array-like numbers, got %.100s", name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "'%s' must be %d-D, got %d-D", name, ndim, PyArray_NDIM(a));
        Py_DECREF(a);
        return NULL;
    }
    return (PyObject *)a;
}

Py_ssize_t af_py_doubles(PyObject *obj, const char *name, double *out, Py_ssize_t max) {
    PyArrayObject *a = (PyArrayObject *)af_py_as_array(obj, NPY_FLOAT64, -1, name);
    if (!a) return -1;
    if (PyArray_NDIM(a) > 1) {
        PyErr_Format(PyExc_ValueError, "'%s' must be a number or a 1-D sequence, got %d-D", name, PyArray_NDIM(a));
        Py_DECREF(a);
        return -1;
    }
    Py_ssize_t n = PyArray_SIZE(a);
    if (n > max) {
        Py_DECREF(a);
        PyErr_Format(PyExc_ValueError, "'%s' holds at most %zd numbers, got %zd", name, max, n);
        return -1;
    }
    memcpy(out, PyArray_DATA(a), sizeof(double) * (size_t)n);
    Py_DECREF(a);
    return n;
}

int af_py_parse_shape(PyObject *obj, const char *name, int *ndim, int64_t *shape) {
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq) {
        PyErr_Format(PyExc_TypeError, "'%s' must be a sequence of ints, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    if (nd > AF_MAX_DIMS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "'%s': tensors have at most %d dims, got %zd", name, AF_MAX_DIMS, nd);
        return -1;
    }
    for (Py_ssize_t d = 0; d < nd; d++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, d);
        int overflow = 0;
        long long v = PyLong_Check(item) || PyIndex_Check(item) ? PyLong_AsLongLongAndOverflow(item, &overflow) : -1;
        if (!PyLong_Check(item) && !PyIndex_Check(item)) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_TypeError, "'%s' must be a sequence of ints, entry %zd is %.100s", name, d, Py_TYPE(item)->tp_name);
            return -1;
        }
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (overflow || v < 0) {
            PyErr_Format(PyExc_ValueError, "'%s' has a %s dimension at %zd: %R", name, v < 0 ? "negative" : "too large", d, item);
            Py_DECREF(seq);
            return -1;
        }
        shape[d] = v;
    }
    *ndim = (int)nd;
    Py_DECREF(seq);
    return 0;
}

PyObject *af_py_float_error(const char *format, double a, double b) {
    PyObject *va = PyFloat_FromDouble(a), *vb = PyFloat_FromDouble(b);
    if (va && vb) PyErr_Format(PyExc_ValueError, format, va, vb);
    Py_XDECREF(va);
    Py_XDECREF(vb);
    return NULL;
}

int af_py_int_arg(PyObject *obj, const char *name, long long lo, long long hi, long long *out) {
    if (!PyLong_Check(obj) && !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "'%s' must be an int, got %.100s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *num = PyNumber_Index(obj);
    if (!num) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(num, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "'%s' must be in [%lld, %lld], got %R", name, lo, hi, num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    *out = v;
    return 0;
}

/* The owner of shared NumPy memory is the array; dropping it may happen on a worker thread. */
static void release_pyobject(void *owner) {
    PyGILState_STATE gil = PyGILState_Ensure();
    Py_DECREF((PyObject *)owner);
    PyGILState_Release(gil);
}

/* from_numpy(array, copy): copy=True accepts anything array-like (any strides, read-only);
 * copy=False shares the array's memory and so needs it C-contiguous, aligned and writable. */
PyObject *af_py_from_numpy(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"array", "copy", "dtype", NULL};
    PyObject *obj;
    int copy = 1;
    const char *dtype_name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|pz:from_numpy", kwlist, &obj, &copy, &dtype_name)) return NULL;

    PyArray_Descr *want = NULL;
    if (dtype_name) {
        af_dtype d;
        if (af_dtype_from_name(dtype_name, &d) < 0 || af_dtype_to_numpy(d) < 0)
            return PyErr_Format(PyExc_TypeError, "unsupported dtype '%s'", dtype_name);
        want = PyArray_DescrFromType(af_dtype_to_numpy(d));
    }
    PyArrayObject *arr;
    if (copy) {
        arr = (PyArrayObject *)PyArray_FromAny(obj, want, 0, 0, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_ENSURECOPY | NPY_ARRAY_FORCECAST, NULL);
        if (!arr) return NULL;
    } else {
        Py_XDECREF(want);
        if (!PyArray_Check(obj))
            return PyErr_Format(PyExc_TypeError, "from_numpy expects a numpy.ndarray, got %.100s", Py_TYPE(obj)->tp_name);
        arr = (PyArrayObject *)obj;
        if (!PyArray_IS_C_CONTIGUOUS(arr))
            return PyErr_Format(PyExc_ValueError,
                                "from_numpy shares memory and needs a C-contiguous array; this one has strides "
                                "that are not row-major: pass np.ascontiguousarray(a), or use affectfer.tensor(a) to copy");
        if (!PyArray_ISALIGNED(arr))
            return PyErr_Format(PyExc_ValueError,
                                "from_numpy shares memory and needs an aligned array; this one's data address is not "
                                "a multiple of its %d-byte items (a view at an odd byte offset): pass a.copy(), or use "
                                "affectfer.tensor(a) to copy", (int)PyArray_ITEMSIZE(arr));
        if (!PyArray_ISWRITEABLE(arr))
            return PyErr_Format(PyExc_ValueError,
                                "from_numpy shares memory and this array is read-only; use affectfer.tensor(a) to copy it");
        Py_INCREF(arr);
    }
    if (PyArray_ISBYTESWAPPED(arr)) {
        Py_DECREF(arr);
        return PyErr_Format(PyExc_TypeError, "array is not in native byte order; use a.astype(a.dtype.newbyteorder('='))");
    }
    af_dtype dtype;
    if (af_dtype_from_numpy(PyArray_TYPE(arr), &dtype) < 0) {
        PyObject *repr = PyObject_Str((PyObject *)PyArray_DESCR(arr));
        PyErr_Format(PyExc_TypeError, "unsupported NumPy dtype %S: use float32, float64, uint8, int32, int64 or bool", repr);
        Py_XDECREF(repr);
        Py_DECREF(arr);
        return NULL;
    }
    int nd = PyArray_NDIM(arr);
    if (nd > AF_MAX_DIMS) {
        Py_DECREF(arr);
        return PyErr_Format(PyExc_ValueError, "tensors have at most %d dims, the array has %d", AF_MAX_DIMS, nd);
    }
    int64_t shape[AF_MAX_DIMS];
    for (int d = 0; d < nd; d++) shape[d] = PyArray_DIM(arr, d);
    af_tensor *t = NULL;
    af_status st = af_tensor_wrap(dtype, AF_CPU, nd, shape, PyArray_DATA(arr), release_pyobject, arr, &t);
    if (st != AF_OK) {
        Py_DECREF(arr);
        return af_py_raise(st);
    }
    return af_py_wrap(t);
}

PyObject *af_py_to_numpy(AfTensorObject *self, PyObject *unused) {
    af_tensor *t = self->t;
    if (t->device.type != AF_DEVICE_CPU)
        return PyErr_Format(PyExc_TypeError, "can't convert a %s tensor to NumPy: call .cpu() first", "CUDA");
    int npy = af_dtype_to_numpy(t->dtype);
    if (npy < 0) return PyErr_Format(PyExc_TypeError, "%s has no NumPy dtype", af_dtype_name(t->dtype));
    npy_intp dims[AF_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = (npy_intp)t->shape[d];
    /* The array's base is a private alias, not self: it pins these bytes even if self is later
     * re-pointed (Tensor.data = ..., packing into an arena), so the array never dangles. */
    af_tensor *alias = NULL;
    af_status st = af_tensor_alias(t, &alias);
    if (st != AF_OK) return af_py_raise(st);
    PyObject *base = af_py_wrap(alias);
    if (!base) return NULL;
    PyObject *arr = PyArray_New(&PyArray_Type, t->ndim, dims, npy, NULL, af_tensor_data(t), 0,
                                t->readonly ? NPY_ARRAY_CARRAY_RO : NPY_ARRAY_CARRAY, NULL);
    if (!arr) {
        Py_DECREF(base);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) { /* steals base */
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

/* ---- DLPack (the v0.x ABI every framework speaks: DLManagedTensor in a "dltensor" capsule) ---- */

typedef struct { int32_t device_type; int32_t device_id; } DLDevice;
typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } DLDataType;
typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides;
    uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

enum { kDLCPU = 1, kDLCUDA = 2 };
enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6 };

typedef struct {
    DLManagedTensor managed;
    af_tensor *t;
    int64_t shape[AF_MAX_DIMS];
} af_dlpack_export;

static void dlpack_export_delete(DLManagedTensor *m) {
    af_dlpack_export *e = (af_dlpack_export *)m->manager_ctx;
    af_tensor_release(e->t);
    free(e);
}

static void dlpack_capsule_destructor(PyObject *capsule) {
    if (PyCapsule_IsValid(capsule, "used_dltensor")) return; /* consumer took ownership */
    DLManagedTensor *m = PyCapsule_GetPointer(capsule, "dltensor");
    if (m && m->deleter) m->deleter(m);
    else PyErr_Clear();
}

static int dtype_to_dl(af_dtype d, DLDataType *out) {
    DLDataType table[AF_DTYPE_COUNT] = {{kDLFloat, 32, 1}, {kDLFloat, 64, 1}, {kDLFloat, 16, 1}, {kDLBfloat, 16, 1},
                                        {kDLUInt, 8, 1},   {kDLInt, 32, 1},   {kDLInt, 64, 1},   {kDLBool, 8, 1}};
    if ((unsigned)d >= AF_DTYPE_COUNT) return -1;
    *out = table[d];
    return 0;
}

PyObject *af_py_dlpack(AfTensorObject *self, PyObject *args, PyObject *kwargs) {
    /* stream, max_version, dl_device, copy: accepted for protocol compatibility; CPU export needs none */
    af_dlpack_export *e = calloc(1, sizeof *e);
    if (!e) return PyErr_NoMemory();
    af_tensor *t = NULL; /* a private alias: the export outlives any re-pointing of self */
    af_status st = af_tensor_alias(self->t, &t);
    if (st != AF_OK) {
        free(e);
        return af_py_raise(st);
    }
    e->t = t;
    for (int d = 0; d < t->ndim; d++) e->shape[d] = t->shape[d];
    DLTensor *dl = &e->managed.dl_tensor;
    dl->data = af_tensor_data(t);
    dl->device.device_type = t->device.type == AF_DEVICE_CUDA ? kDLCUDA : kDLCPU;
    dl->device.device_id = t->device.index;
    dl->ndim = t->ndim;
    dtype_to_dl(t->dtype, &dl->dtype);
    dl->shape = e->shape;
    dl->strides = NULL; /* compact row-major */
    dl->byte_offset = 0;
    e->managed.manager_ctx = e;
    e->managed.deleter = dlpack_export_delete;
    PyObject *capsule = PyCapsule_New(&e->managed, "dltensor", dlpack_capsule_destructor);
    if (!capsule) dlpack_export_delete(&e->managed);
    return capsule;
}

PyObject *af_py_dlpack_device(AfTensorObject *self, PyObject *unused) {
    int type = self->t->device.type == AF_DEVICE_CUDA ? kDLCUDA : kDLCPU;
    return Py_BuildValue("(ii)", type, self->t->device.index);
}

static void release_dlpack(void *owner) {
    DLManagedTensor *m = owner;
    if (m->deleter) m->deleter(m);
}

/* from_dlpack(obj): obj has __dlpack__ (a tensor of any framework) or is a "dltensor" capsule. */
PyObject *af_py_from_dlpack(PyObject *self, PyObject *obj) {
    PyObject *capsule;
    if (PyCapsule_CheckExact(obj)) {
        capsule = obj;
        Py_INCREF(capsule);
    } else if (PyObject_HasAttrString(obj, "__dlpack__")) {
        capsule = PyObject_CallMethod(obj, "__dlpack__", NULL);
        if (!capsule) return NULL;
    } else {
        return PyErr_Format(PyExc_TypeError, "from_dlpack expects an object with __dlpack__ or a DLPack capsule, got %.100s",
                            Py_TYPE(obj)->tp_name);
    }
    DLManagedTensor *m = PyCapsule_GetPointer(capsule, "dltensor");
    if (!m) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "not a fresh 'dltensor' capsule (already consumed?)");
    }
    DLTensor *dl = &m->dl_tensor;
    af_dtype dtype = AF_DTYPE_COUNT;
    for (int d = 0; d < AF_DTYPE_COUNT; d++) {
        DLDataType want;
        dtype_to_dl((af_dtype)d, &want);
        if (want.code == dl->dtype.code && want.bits == dl->dtype.bits && dl->dtype.lanes == 1) dtype = (af_dtype)d;
    }
    const char *problem = NULL;
    if (dtype == AF_DTYPE_COUNT) problem = "its dtype has no affectfer equivalent";
    else if (dl->device.device_type != kDLCPU) problem = "only CPU DLPack tensors are supported in this build";
    else if (dl->ndim > AF_MAX_DIMS) problem = "it has more than 5 dims";
    int64_t expect = 1;
    for (int d = dl->ndim - 1; !problem && dl->strides && d >= 0; d--) {
        if (dl->shape[d] != 1 && dl->strides[d] != expect) problem = "it is not C-contiguous (call .contiguous() on it first)";
        expect *= dl->shape[d];
    }
    if (problem) {
        Py_DECREF(capsule);
        return PyErr_Format(PyExc_ValueError, "from_dlpack: cannot import this tensor: %s", problem);
    }
    af_tensor *t = NULL;
    af_status st = af_tensor_wrap(dtype, AF_CPU, dl->ndim, dl->shape, (char *)dl->data + dl->byte_offset,
                                  release_dlpack, m, &t);
    if (st != AF_OK) {
        Py_DECREF(capsule);
        return af_py_raise(st);
    }
    PyCapsule_SetName(capsule, "used_dltensor");
    Py_DECREF(capsule);
    return af_py_wrap(t);
}

/* ---- facts Python needs from C (one source of truth) ---- */

int af_py_add_codes(PyObject *module, const char *attr, int n, const char *const names[], const int codes[]) {
    PyObject *d = PyDict_New();
    if (!d) return -1;
    for (int k = 0; k < n; k++) {
        PyObject *v = PyLong_FromLong(codes[k]);
        if (!v || PyDict_SetItemString(d, names[k], v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return -1;
        }
        Py_DECREF(v);
    }
    if (PyModule_AddObject(module, attr, d) < 0) {
        Py_DECREF(d);
        return -1;
    }
    return 0;
}

int af_constants_init(PyObject *module) {
    const char *dtype_names[AF_DTYPE_COUNT];
    int dtype_ids[AF_DTYPE_COUNT];
    for (int d = 0; d < AF_DTYPE_COUNT; d++) {
        dtype_names[d] = af_dtype_name((af_dtype)d);
        dtype_ids[d] = d;
    }
    static const char *const limit_names[] = {"max_dims", "op_inputs", "op_outputs", "op_int_attrs", "op_float_attrs"};
    static const int limits[] = {AF_MAX_DIMS, AF_MAX_IN, AF_MAX_OUT, AF_MAX_ATTR_I, AF_MAX_ATTR_F};
    static const char *const reduction_names[] = {"none", "mean", "sum"};
    static const int reductions[] = {AF_REDUCTION_NONE, AF_REDUCTION_MEAN, AF_REDUCTION_SUM};
    if (af_py_add_codes(module, "dtypes", AF_DTYPE_COUNT, dtype_names, dtype_ids) < 0) return -1;
    if (af_py_add_codes(module, "limits", 5, limit_names, limits) < 0) return -1;
    return af_py_add_codes(module, "reductions", 3, reduction_names, reductions);
}
