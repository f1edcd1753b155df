/* affectfer._C.TensorBase: the Python face of af_tensor. affectfer.Tensor subclasses it in Python
 * to add operators; the C side hands out instances of that registered class. */
#include "binding.h"

#include <string.h>

PyTypeObject *af_tensor_class = &AfTensor_BaseType;

PyObject *af_py_wrap(af_tensor *t) {
    if (!t) return NULL;
    AfTensorObject *o = (AfTensorObject *)af_tensor_class->tp_alloc(af_tensor_class, 0);
    if (!o) {
        af_tensor_release(t);
        return NULL;
    }
    o->t = t;
    return (PyObject *)o;
}

int af_py_is_tensor(PyObject *o) { return PyObject_TypeCheck(o, &AfTensor_BaseType); }

af_tensor *af_py_tensor_arg(PyObject *o, const char *what) {
    if (!af_py_is_tensor(o) || !((AfTensorObject *)o)->t) {
        PyErr_Format(PyExc_TypeError, "%s must be an affectfer.Tensor, got %.100s (convert with affectfer.tensor())",
                     what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    return ((AfTensorObject *)o)->t;
}

static void tensor_dealloc(AfTensorObject *self) {
    af_tensor_release(self->t);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *tensor_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyErr_SetString(PyExc_TypeError, "create tensors with affectfer.tensor(data), affectfer.zeros(shape) or affectfer.from_numpy(array)");
    return NULL;
}

/* ---- buffer protocol: zero-copy np.asarray(t) on the CPU ---- */

static const char *buffer_format(af_dtype d) {
    switch (d) {
    case AF_DTYPE_F32: return "f";
    case AF_DTYPE_F64: return "d";
    case AF_DTYPE_F16: return "e";
    case AF_DTYPE_U8: return "B";
    case AF_DTYPE_I32: return "i";
    case AF_DTYPE_I64: return "q";
    case AF_DTYPE_BOOL: return "?";
    default: return NULL;
    }
}

static int tensor_getbuffer(AfTensorObject *self, Py_buffer *view, int flags) {
    af_tensor *t = self->t;
    if (t->device.type != AF_DEVICE_CPU) {
        PyErr_SetString(PyExc_BufferError, "a CUDA tensor has no CPU buffer: call .cpu() first");
        return -1;
    }
    const char *fmt = buffer_format(t->dtype);
    if (!fmt) {
        PyErr_Format(PyExc_BufferError, "%s has no buffer-protocol format: convert with .to('float32')", af_dtype_name(t->dtype));
        return -1;
    }
    if ((flags & PyBUF_WRITABLE) && t->readonly) {
        PyErr_SetString(PyExc_BufferError, "tensor wraps read-only memory");
        return -1;
    }
    Py_ssize_t *dims = PyMem_Malloc(sizeof(Py_ssize_t) * 2 * (t->ndim ? t->ndim : 1));
    if (!dims) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t item = (Py_ssize_t)af_dtype_size(t->dtype), stride = item;
    for (int d = t->ndim - 1; d >= 0; d--) {
        dims[d] = (Py_ssize_t)t->shape[d];
        dims[t->ndim + d] = stride;
        stride *= (Py_ssize_t)t->shape[d];
    }
    /* view->obj is a private alias rather than self, so the bytes stay pinned even if self is
     * re-pointed (Tensor.data = ..., packing into an arena) while the view lives */
    af_tensor *alias = NULL;
    af_status st = af_tensor_alias(t, &alias);
    AfTensorObject *owner = st == AF_OK ? (AfTensorObject *)af_py_wrap(alias) : NULL;
    if (!owner) {
        PyMem_Free(dims);
        if (st != AF_OK) af_py_raise(st);
        return -1;
    }
    view->buf = af_tensor_data(t);
    view->obj = (PyObject *)owner;
    view->len = (Py_ssize_t)af_tensor_nbytes(t);
    view->readonly = t->readonly;
    view->itemsize = item;
    view->format = (flags & PyBUF_FORMAT) ? (char *)fmt : NULL;
    view->ndim = t->ndim;
    view->shape = (flags & PyBUF_ND) ? dims : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? dims + t->ndim : NULL;
    view->suboffsets = NULL;
    view->internal = dims;
    owner->exports++;
    return 0;
}

static void tensor_releasebuffer(AfTensorObject *self, Py_buffer *view) {
    PyMem_Free(view->internal);
    self->exports--;
}

static PyBufferProcs tensor_as_buffer = {(getbufferproc)tensor_getbuffer, (releasebufferproc)tensor_releasebuffer};

/* ---- attributes ---- */

static PyObject *tensor_get_shape(AfTensorObject *self, void *unused) {
    PyObject *tuple = PyTuple_New(self->t->ndim);
    for (int d = 0; tuple && d < self->t->ndim; d++)
        PyTuple_SET_ITEM(tuple, d, PyLong_FromLongLong(self->t->shape[d]));
    return tuple;
}

static PyObject *tensor_get_dtype(AfTensorObject *self, void *unused) {
    return PyUnicode_FromString(af_dtype_name(self->t->dtype));
}

static PyObject *tensor_get_device(AfTensorObject *self, void *unused) {
    if (self->t->device.type == AF_DEVICE_CPU) return PyUnicode_FromString("cpu");
    return PyUnicode_FromFormat("cuda:%d", self->t->device.index);
}

static PyObject *tensor_get_ndim(AfTensorObject *self, void *unused) { return PyLong_FromLong(self->t->ndim); }

static PyObject *tensor_get_requires_grad(AfTensorObject *self, void *unused) {
    return PyBool_FromLong(self->t->requires_grad);
}

static int tensor_set_requires_grad(AfTensorObject *self, PyObject *value, void *unused) {
    int flag = value ? PyObject_IsTrue(value) : 0;
    if (flag < 0) return -1;
    if (self->t->grad_fn) {
        PyErr_SetString(PyExc_RuntimeError,
                        "requires_grad can only be changed on leaf tensors; use .detach() to get a leaf");
        return -1;
    }
    if (flag && self->t->dtype != AF_DTYPE_F32 && self->t->dtype != AF_DTYPE_F64) {
        PyErr_Format(PyExc_TypeError, "only float32/float64 tensors can require gradients, this one is %s",
                     af_dtype_name(self->t->dtype));
        return -1;
    }
    self->t->requires_grad = flag;
    return 0;
}

static PyObject *tensor_get_grad(AfTensorObject *self, void *unused) {
    if (!self->t->grad) Py_RETURN_NONE;
    af_tensor_retain(self->t->grad);
    return af_py_wrap(self->t->grad);
}

static int tensor_set_grad(AfTensorObject *self, PyObject *value, void *unused) {
    af_tensor *g = NULL;
    if (value && value != Py_None) {
        g = af_py_tensor_arg(value, "grad");
        if (!g) return -1;
        if (!af_tensor_same_shape(g, self->t) || g->dtype != self->t->dtype) {
            PyErr_SetString(PyExc_ValueError, "assigned grad must have the tensor's shape and dtype");
            return -1;
        }
        af_tensor_retain(g);
    }
    af_tensor_release(self->t->grad);
    self->t->grad = g;
    return 0;
}

static PyObject *tensor_get_is_leaf(AfTensorObject *self, void *unused) { return PyBool_FromLong(!self->t->grad_fn); }

static PyObject *tensor_get_grad_fn(AfTensorObject *self, void *unused) {
    if (!self->t->grad_fn) Py_RETURN_NONE;
    return PyUnicode_FromString(af_op_table[self->t->grad_fn->call.op]->name);
}

static PyObject *tensor_get_data_ptr(AfTensorObject *self, void *unused) {
    return PyLong_FromVoidPtr(af_tensor_data(self->t));
}

static PyObject *tensor_get_readonly(AfTensorObject *self, void *unused) { return PyBool_FromLong(self->t->readonly); }

static PyGetSetDef tensor_getset[] = {
    {"shape", (getter)tensor_get_shape, NULL, "dimensions, as a tuple", NULL},
    {"dtype", (getter)tensor_get_dtype, NULL, "element type name ('float32', 'uint8', ...)", NULL},
    {"device", (getter)tensor_get_device, NULL, "'cpu' or 'cuda:N'", NULL},
    {"ndim", (getter)tensor_get_ndim, NULL, "number of dimensions", NULL},
    {"requires_grad", (getter)tensor_get_requires_grad, (setter)tensor_set_requires_grad,
     "whether backward() computes a gradient for this tensor", NULL},
    {"grad", (getter)tensor_get_grad, (setter)tensor_set_grad, "accumulated gradient of a leaf, or None", NULL},
    {"is_leaf", (getter)tensor_get_is_leaf, NULL, "True unless produced by a recorded op", NULL},
    {"grad_fn", (getter)tensor_get_grad_fn, NULL, "name of the op that produced this tensor, or None", NULL},
    {"_data_ptr", (getter)tensor_get_data_ptr, NULL, "address of the first element", NULL},
    {"_readonly", (getter)tensor_get_readonly, NULL, "wraps read-only memory", NULL},
    {NULL},
};

/* ---- methods ---- */

static PyObject *tensor_backward(AfTensorObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"gradient", "retain_graph", NULL};
    PyObject *grad_obj = Py_None;
    int retain = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|Op:backward", kwlist, &grad_obj, &retain)) return NULL;
    af_tensor *grad = NULL;
    if (grad_obj != Py_None && !(grad = af_py_tensor_arg(grad_obj, "gradient"))) return NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_backward(self->t, grad, retain);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *tensor_detach(AfTensorObject *self, PyObject *unused) {
    af_tensor *alias = NULL;
    af_status st = af_tensor_alias(self->t, &alias);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(alias);
}

static PyObject *tensor_view_shape(AfTensorObject *self, PyObject *shape_obj) {
    PyObject *seq = PySequence_Fast(shape_obj, "shape must be a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t nd = PySequence_Fast_GET_SIZE(seq);
    int64_t shape[AF_MAX_DIMS];
    if (nd > AF_MAX_DIMS) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "tensors have at most %d dims, got %zd", AF_MAX_DIMS, nd);
    }
    for (Py_ssize_t d = 0; d < nd; d++) {
        shape[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, d));
        if (shape[d] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    af_tensor *v = NULL;
    af_status st = af_tensor_view(self->t, (int)nd, shape, &v);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(v);
}

static PyObject *tensor_shares_memory(AfTensorObject *self, PyObject *other) {
    af_tensor *o = af_py_tensor_arg(other, "other");
    if (!o) return NULL;
    return PyBool_FromLong(o->storage == self->t->storage);
}

static PyMethodDef tensor_methods[] = {
    {"backward", (PyCFunction)(void (*)(void))tensor_backward, METH_VARARGS | METH_KEYWORDS,
     "backward(gradient=None, retain_graph=False): accumulate d self / d leaf into every leaf's .grad"},
    {"detach", (PyCFunction)tensor_detach, METH_NOARGS, "a tensor sharing this one's data, cut from the graph"},
    {"numpy", (PyCFunction)af_py_to_numpy, METH_NOARGS, "a NumPy array sharing this tensor's memory (CPU only)"},
    {"__dlpack__", (PyCFunction)(void (*)(void))af_py_dlpack, METH_VARARGS | METH_KEYWORDS, "DLPack capsule"},
    {"__dlpack_device__", (PyCFunction)af_py_dlpack_device, METH_NOARGS, "(device type, index)"},
    {"_view", (PyCFunction)tensor_view_shape, METH_O, "a header over the same data, not recorded by autograd"},
    {"_shares_memory", (PyCFunction)tensor_shares_memory, METH_O, "True when both use the same storage"},
    {NULL},
};

PyTypeObject AfTensor_BaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "affectfer._C.TensorBase",
    .tp_basicsize = sizeof(AfTensorObject),
    .tp_dealloc = (destructor)tensor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "C tensor handle; use affectfer.Tensor",
    .tp_new = tensor_new,
    .tp_as_buffer = &tensor_as_buffer,
    .tp_getset = tensor_getset,
    .tp_methods = tensor_methods,
};
