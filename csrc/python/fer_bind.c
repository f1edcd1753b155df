/* Bindings of csrc/fer: metrics and decision rules over NumPy arrays (or anything array-like). */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "../fer/fer.h"

static PyArrayObject *as_array(PyObject *obj, int type, int ndim, const char *name) {
    return (PyArrayObject *)af_py_as_array(obj, type, ndim, name);
}

static PyObject *py_confusion_matrix(PyObject *self, PyObject *args) {
    PyObject *t_obj, *p_obj;
    int C;
    long long ignore;
    if (!PyArg_ParseTuple(args, "OOiL:confusion_matrix", &t_obj, &p_obj, &C, &ignore)) return NULL;
    PyArrayObject *t = as_array(t_obj, NPY_INT64, 1, "y_true"), *p = t ? as_array(p_obj, NPY_INT64, 1, "y_pred") : NULL;
    PyObject *cm = NULL;
    if (!p) goto done;
    if (PyArray_DIM(t, 0) != PyArray_DIM(p, 0)) {
        PyErr_Format(PyExc_ValueError, "y_true has %zd labels but y_pred has %zd", (Py_ssize_t)PyArray_DIM(t, 0), (Py_ssize_t)PyArray_DIM(p, 0));
        goto done;
    }
    if (C < 1) {
        PyErr_Format(PyExc_ValueError, "num_classes must be >= 1, got %d", C);
        goto done;
    }
    npy_intp dims[2] = {C, C};
    cm = PyArray_ZEROS(2, dims, NPY_INT64, 0);
    if (!cm) goto done;
    af_status st = af_confusion_matrix(PyArray_DATA(t), PyArray_DATA(p), PyArray_DIM(t, 0), C, ignore, PyArray_DATA((PyArrayObject *)cm));
    if (st != AF_OK) {
            Py_CLEAR(cm);
            af_py_raise(st);
        }
done:
    Py_XDECREF(t);
    Py_XDECREF(p);
    return cm;
}

static PyObject *py_scores_from_confusion(PyObject *self, PyObject *cm_obj) {
    PyArrayObject *cm = as_array(cm_obj, NPY_INT64, 2, "confusion");
    if (!cm) return NULL;
    if (PyArray_DIM(cm, 0) != PyArray_DIM(cm, 1)) {
        Py_DECREF(cm);
        return PyErr_Format(PyExc_ValueError, "confusion matrix must be square");
    }
    npy_intp C = PyArray_DIM(cm, 0);
    PyObject *f1 = PyArray_ZEROS(1, &C, NPY_FLOAT64, 0), *pr = PyArray_ZEROS(1, &C, NPY_FLOAT64, 0),
             *rc = PyArray_ZEROS(1, &C, NPY_FLOAT64, 0);
    if (f1 && pr && rc)
        af_scores_from_confusion(PyArray_DATA(cm), (int)C, PyArray_DATA((PyArrayObject *)f1), PyArray_DATA((PyArrayObject *)pr),
                                 PyArray_DATA((PyArrayObject *)rc));
    Py_DECREF(cm);
    if (!f1 || !pr || !rc) {
        Py_XDECREF(f1);
        Py_XDECREF(pr);
        Py_XDECREF(rc);
        return NULL;
    }
    return Py_BuildValue("(NNN)", f1, pr, rc);
}

static PyObject *py_ccc(PyObject *self, PyObject *args) {
    PyObject *x_obj, *y_obj;
    if (!PyArg_ParseTuple(args, "OO:ccc", &x_obj, &y_obj)) return NULL;
    PyArrayObject *x = as_array(x_obj, NPY_FLOAT64, 1, "x"), *y = x ? as_array(y_obj, NPY_FLOAT64, 1, "y") : NULL;
    PyObject *result = NULL;
    if (y) {
        if (PyArray_DIM(x, 0) != PyArray_DIM(y, 0)) {
            PyErr_Format(PyExc_ValueError, "x has %zd values but y has %zd", (Py_ssize_t)PyArray_DIM(x, 0), (Py_ssize_t)PyArray_DIM(y, 0));
        } else {
            double v;
            af_status st = af_ccc(PyArray_DATA(x), PyArray_DATA(y), PyArray_DIM(x, 0), &v);
            result = st == AF_OK ? PyFloat_FromDouble(v) : af_py_raise(st);
        }
    }
    Py_XDECREF(x);
    Py_XDECREF(y);
    return result;
}

static PyObject *py_multilabel_counts(PyObject *self, PyObject *args) {
    PyObject *t_obj, *s_obj;
    double threshold;
    long long ignore;
    if (!PyArg_ParseTuple(args, "OOdL:multilabel_counts", &t_obj, &s_obj, &threshold, &ignore)) return NULL;
    PyArrayObject *t = as_array(t_obj, NPY_INT64, 2, "y_true"), *s = t ? as_array(s_obj, NPY_FLOAT64, 2, "y_score") : NULL;
    PyObject *counts = NULL;
    if (!s) goto done;
    if (PyArray_DIM(t, 0) != PyArray_DIM(s, 0) || PyArray_DIM(t, 1) != PyArray_DIM(s, 1)) {
        PyErr_Format(PyExc_ValueError, "y_true has shape (%zd, %zd) but y_score has (%zd, %zd)", (Py_ssize_t)PyArray_DIM(t, 0),
                     (Py_ssize_t)PyArray_DIM(t, 1), (Py_ssize_t)PyArray_DIM(s, 0), (Py_ssize_t)PyArray_DIM(s, 1));
        goto done;
    }
    npy_intp dims[2] = {PyArray_DIM(t, 1), 4};
    counts = PyArray_ZEROS(2, dims, NPY_INT64, 0);
    if (!counts) goto done;
    af_status st = af_multilabel_counts(PyArray_DATA(t), PyArray_DATA(s), PyArray_DIM(t, 0), (int)dims[0], threshold, ignore,
                                        PyArray_DATA((PyArrayObject *)counts));
    if (st != AF_OK) {
        Py_CLEAR(counts);
        af_py_raise(st);
    }
done:
    Py_XDECREF(t);
    Py_XDECREF(s);
    return counts;
}

static PyObject *py_hand_override(PyObject *self, PyObject *args) {
    PyObject *e_obj, *h_obj;
    long long happiness, fear;
    if (!PyArg_ParseTuple(args, "OOLL:hand_override", &e_obj, &h_obj, &happiness, &fear)) return NULL;
    PyArrayObject *e = as_array(e_obj, NPY_INT64, 1, "expression"), *h = e ? as_array(h_obj, NPY_UINT8, 1, "hand") : NULL;
    PyObject *out = NULL;
    if (h) {
        if (PyArray_DIM(e, 0) != PyArray_DIM(h, 0)) {
            PyErr_Format(PyExc_ValueError, "expression has %zd predictions but hand has %zd", (Py_ssize_t)PyArray_DIM(e, 0), (Py_ssize_t)PyArray_DIM(h, 0));
        } else {
            npy_intp n = PyArray_DIM(e, 0);
            out = PyArray_ZEROS(1, &n, NPY_INT64, 0);
            af_status st = out ? af_hand_override(PyArray_DATA(e), PyArray_DATA(h), n, happiness, fear, PyArray_DATA((PyArrayObject *)out)) : AF_OK;
            if (st != AF_OK) {
            Py_CLEAR(out);
            af_py_raise(st);
        }
        }
    }
    Py_XDECREF(e);
    Py_XDECREF(h);
    return out;
}

static PyObject *py_soft_vote(PyObject *self, PyObject *args) {
    PyObject *p_obj, *w_obj = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:soft_vote", &p_obj, &w_obj)) return NULL;
    PyArrayObject *p = as_array(p_obj, NPY_FLOAT32, 3, "probabilities"), *w = NULL;
    PyObject *out = NULL;
    if (!p) return NULL;
    if (w_obj != Py_None) {
        w = as_array(w_obj, NPY_FLOAT64, 1, "weights");
        if (!w) goto done;
        if (PyArray_DIM(w, 0) != PyArray_DIM(p, 0)) {
            PyErr_Format(PyExc_ValueError, "%zd weights for %zd models", (Py_ssize_t)PyArray_DIM(w, 0), (Py_ssize_t)PyArray_DIM(p, 0));
            goto done;
        }
    }
    npy_intp dims[2] = {PyArray_DIM(p, 1), PyArray_DIM(p, 2)};
    out = PyArray_ZEROS(2, dims, NPY_FLOAT32, 0);
    if (out) {
        af_status st = af_soft_vote(PyArray_DATA(p), w ? PyArray_DATA(w) : NULL, PyArray_DIM(p, 0), dims[0], dims[1],
                                    PyArray_DATA((PyArrayObject *)out));
        if (st != AF_OK) {
            Py_CLEAR(out);
            af_py_raise(st);
        }
    }
done:
    Py_XDECREF(p);
    Py_XDECREF(w);
    return out;
}

PyMethodDef af_fer_methods[] = {
    {"confusion_matrix", py_confusion_matrix, METH_VARARGS, "confusion_matrix(y_true, y_pred, num_classes, ignore_label)"},
    {"scores_from_confusion", py_scores_from_confusion, METH_O, "(f1, precision, recall) per class"},
    {"multilabel_counts", py_multilabel_counts, METH_VARARGS,
     "multilabel_counts(y_true (N,L), y_score (N,L), threshold, ignore_label) -> (L, 4) TP, FP, FN, TN"},
    {"ccc", py_ccc, METH_VARARGS, "concordance correlation coefficient (population moments)"},
    {"hand_override", py_hand_override, METH_VARARGS, "hand_override(expression, hand, happiness, fear)"},
    {"soft_vote", py_soft_vote, METH_VARARGS, "soft_vote(probabilities (M,N,C), weights=None) -> (N,C)"},
    {NULL},
};
