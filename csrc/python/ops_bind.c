/* One generic entry for every op in op_list.h: _C.call(op_id, inputs, ints, floats).
 * affectfer/nn/functional.py gives each op its named, documented Python signature. */
#include "binding.h"

static PyObject *py_call(PyObject *self, PyObject *args) {
    int op;
    PyObject *inputs, *ints = NULL, *floats = NULL;
    if (!PyArg_ParseTuple(args, "iO|OO:call", &op, &inputs, &ints, &floats)) return NULL;
    if (op < 0 || op >= AF_OP_COUNT) return PyErr_Format(PyExc_ValueError, "unknown op id %d", op);
    const af_op_def *def = af_op_table[op];

    af_op_call c = {0};
    c.op = op;
    PyObject *seq = PySequence_Fast(inputs, "inputs must be a list of tensors");
    if (!seq) return NULL;
    Py_ssize_t n_in = PySequence_Fast_GET_SIZE(seq);
    if (n_in > AF_MAX_IN) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "%s: at most %d tensor inputs per call, got %zd", def->name, AF_MAX_IN, n_in);
    }
    for (Py_ssize_t i = 0; i < n_in; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (item == Py_None) continue;
        if (!af_py_is_tensor(item)) {
            Py_DECREF(seq);
            return PyErr_Format(PyExc_TypeError, "%s: argument '%s' must be an affectfer.Tensor, got %.100s",
                                def->name, af_op_input_name(&c, (int)i), Py_TYPE(item)->tp_name);
        }
        c.in[i] = ((AfTensorObject *)item)->t;
    }
    c.n_in = (int)n_in;

    PyObject *lists[2] = {ints, floats};
    for (int kind = 0; kind < 2; kind++) {
        if (!lists[kind] || lists[kind] == Py_None) continue;
        PyObject *vals = PySequence_Fast(lists[kind], "attributes must be a sequence");
        if (!vals) {
            Py_DECREF(seq);
            return NULL;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(vals);
        if (n > (kind ? AF_MAX_ATTR_F : AF_MAX_ATTR_I)) {
            Py_DECREF(vals);
            Py_DECREF(seq);
            return PyErr_Format(PyExc_ValueError, "%s: too many attributes", def->name);
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *v = PySequence_Fast_GET_ITEM(vals, k);
            if (kind == 0) c.attr.i[k] = PyLong_AsLongLong(v);
            else c.attr.f[k] = PyFloat_AsDouble(v);
            if (PyErr_Occurred()) {
                Py_DECREF(vals);
                Py_DECREF(seq);
                return NULL;
            }
        }
        if (kind == 0) c.attr.n_i = (int)n;
        else c.attr.n_f = (int)n;
        Py_DECREF(vals);
    }

    /* The input list keeps every input tensor alive while the GIL is released. */
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_call(&c);
    Py_END_ALLOW_THREADS
    Py_DECREF(seq);
    if (st != AF_OK) return af_py_raise(st);

    if (c.n_out == 1) return af_py_wrap(c.out[0]);
    PyObject *result = PyTuple_New(c.n_out);
    for (int k = 0; k < c.n_out; k++) {
        PyObject *w = result ? af_py_wrap(c.out[k]) : (af_tensor_release(c.out[k]), NULL);
        if (result) {
            if (!w) {
                for (int j = k + 1; j < c.n_out; j++) af_tensor_release(c.out[j]);
                Py_DECREF(result);
                return NULL;
            }
            PyTuple_SET_ITEM(result, k, w);
        }
    }
    return result;
}

PyMethodDef af_ops_methods[] = {
    {"call", py_call, METH_VARARGS, "call(op_id, inputs, ints=(), floats=()) -> Tensor or tuple of Tensors"},
    {NULL},
};

int af_ops_init(PyObject *module) {
    if (af_op_table_check() != AF_OK) {
        af_py_raise(AF_ERR_INTERNAL);
        return -1;
    }
    PyObject *ops = PyDict_New(), *names = PyList_New(AF_OP_COUNT);
    if (!ops || !names) return -1;
    for (int op = 0; op < AF_OP_COUNT; op++) {
        PyObject *id = PyLong_FromLong(op);
        if (!id || PyDict_SetItemString(ops, af_op_table[op]->name, id) < 0) return -1;
        Py_DECREF(id);
        PyList_SET_ITEM(names, op, PyUnicode_FromString(af_op_table[op]->name));
    }
    if (PyModule_AddObject(module, "ops", ops) < 0) return -1;
    if (PyModule_AddObject(module, "op_names", names) < 0) return -1;
    PyObject *diff = PyDict_New();
    for (int op = 0; diff && op < AF_OP_COUNT; op++) {
        PyObject *mask = PyLong_FromUnsignedLong(af_op_table[op]->differentiable_inputs);
        PyDict_SetItemString(diff, af_op_table[op]->name, mask);
        Py_DECREF(mask);
    }
    return PyModule_AddObject(module, "op_differentiable_inputs", diff);
}
