/* Flat arenas and header re-pointing (csrc/core/arena.h), for affectfer.nn.utils and Tensor.data.
 * Members travel as lists of tensors; the GIL stays held because each call is a few memcpys. */
#include "binding.h"

#include <stdlib.h>

#include "../core/arena.h"

/* Borrowed headers of a list of tensors; *members is malloc'd (free it), NULL with an exception. */
static int tensor_list(PyObject *obj, const char *what, af_tensor ***members, Py_ssize_t *n) {
    PyObject *seq = PySequence_Fast(obj, "members must be a list of tensors");
    if (!seq) return -1;
    *n = PySequence_Fast_GET_SIZE(seq);
    *members = malloc(sizeof **members * (size_t)(*n ? *n : 1));
    if (!*members) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < *n; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!af_py_is_tensor(item)) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be an affectfer.Tensor, got %.100s", what, k,
                         Py_TYPE(item)->tp_name);
            free(*members);
            Py_DECREF(seq);
            return -1;
        }
        (*members)[k] = ((AfTensorObject *)item)->t;
    }
    Py_DECREF(seq); /* the caller's list keeps the tensors alive for the call */
    return 0;
}

static PyObject *py_arena_pack(PyObject *self, PyObject *list) {
    af_tensor **members;
    Py_ssize_t n;
    if (tensor_list(list, "members", &members, &n) < 0) return NULL;
    af_tensor *arena = NULL;
    af_status st = af_arena_pack(members, n, &arena);
    free(members);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(arena);
}

static PyObject *py_arena_attach_grads(PyObject *self, PyObject *args) {
    PyObject *list, *arena_obj;
    if (!PyArg_ParseTuple(args, "OO:arena_attach_grads", &list, &arena_obj)) return NULL;
    af_tensor *arena = af_py_tensor_arg(arena_obj, "arena"), **members;
    Py_ssize_t n;
    if (!arena || tensor_list(list, "members", &members, &n) < 0) return NULL;
    af_tensor *grads = NULL;
    af_status st = af_arena_attach_grads(members, n, arena, &grads);
    free(members);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(grads);
}

static PyObject *py_arena_status(PyObject *self, PyObject *args) {
    PyObject *list, *arena_obj, *grads_obj;
    if (!PyArg_ParseTuple(args, "OOO:arena_status", &list, &arena_obj, &grads_obj)) return NULL;
    af_tensor *arena = af_py_tensor_arg(arena_obj, "arena"), *grads = NULL, **members;
    if (!arena) return NULL;
    if (grads_obj != Py_None && !(grads = af_py_tensor_arg(grads_obj, "grad_arena"))) return NULL;
    Py_ssize_t n;
    if (tensor_list(list, "members", &members, &n) < 0) return NULL;
    int status = af_arena_status(members, n, arena, grads);
    free(members);
    return PyLong_FromLong(status);
}

static PyObject *py_view_at(PyObject *self, PyObject *args) {
    PyObject *base_obj, *shape_obj;
    long long start;
    if (!PyArg_ParseTuple(args, "OLO:view_at", &base_obj, &start, &shape_obj)) return NULL;
    af_tensor *base = af_py_tensor_arg(base_obj, "base");
    if (!base) return NULL;
    int nd;
    int64_t shape[AF_MAX_DIMS];
    if (af_py_parse_shape(shape_obj, "shape", &nd, shape) < 0) return NULL;
    af_tensor *v = NULL;
    af_status st = af_tensor_view_at(base, start, nd, shape, &v);
    if (st != AF_OK) return af_py_raise(st);
    return af_py_wrap(v);
}

static PyObject *py_set_data(PyObject *self, PyObject *args) {
    PyObject *t_obj, *src_obj;
    if (!PyArg_ParseTuple(args, "OO:set_data", &t_obj, &src_obj)) return NULL;
    af_tensor *t = af_py_tensor_arg(t_obj, "tensor"), *src = af_py_tensor_arg(src_obj, "data");
    if (!t || !src) return NULL;
    af_status st = af_tensor_set_data(t, src);
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
}

PyMethodDef af_arena_methods[] = {
    {"arena_pack", py_arena_pack, METH_O,
     "arena_pack(members): one flat 1-D tensor holding the members back to back; each member now views it"},
    {"arena_attach_grads", py_arena_attach_grads, METH_VARARGS,
     "arena_attach_grads(members, arena): a zeroed gradient arena; each member's gradient lives in it"},
    {"arena_status", py_arena_status, METH_VARARGS,
     "arena_status(members, arena, grad_arena or None): 0 intact, else flags 1 a .grad is None, 2 a .grad is not its slot, 4 moved"},
    {"view_at", py_view_at, METH_VARARGS, "view_at(base, start, shape): a header over base's elements from start"},
    {"set_data", py_set_data, METH_VARARGS, "set_data(t, src): t now holds src's bytes, dtype and shape"},
    {NULL},
};

int af_arena_init(PyObject *module) {
    if (PyModule_AddIntConstant(module, "ARENA_INTACT", AF_ARENA_INTACT) < 0) return -1;
    if (PyModule_AddIntConstant(module, "ARENA_NO_GRAD", AF_ARENA_NO_GRAD) < 0) return -1;
    if (PyModule_AddIntConstant(module, "ARENA_FOREIGN_GRAD", AF_ARENA_FOREIGN_GRAD) < 0) return -1;
    return PyModule_AddIntConstant(module, "ARENA_MOVED", AF_ARENA_MOVED);
}
