/* Bindings of csrc/data/pack.c: PackFile (a read-only mapped pack whose columns and images come out
 * as NumPy views kept alive by the PackFile) and PackWriter (chunks of samples in, one atomic file
 * out). affectfer/data/pack.py wraps both. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "../data/data.h"
#include "../image/image.h"

typedef struct {
    PyObject_HEAD
    af_pack *pack;
    PyObject *classes, *target_names; /* tuples of str, decoded at open so bad UTF-8 fails there */
} PackFileObject;

static void packfile_dealloc(PackFileObject *self) {
    af_pack_close(self->pack); /* no view can outlive this: every view holds a reference */
    Py_XDECREF(self->classes);
    Py_XDECREF(self->target_names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *names_tuple(const af_pack *p, int first, int n, const char *what) {
    PyObject *t = PyTuple_New(n);
    if (!t) return NULL;
    for (int k = 0; k < n; k++) {
        const char *s;
        uint32_t len;
        af_pack_name(p, first + k, &s, &len);
        PyObject *u = PyUnicode_DecodeUTF8(s, len, "strict");
        if (!u) {
            Py_DECREF(t);
            PyErr_Clear();
            return PyErr_Format(PyExc_ValueError, "'%s': %s name %d is not valid UTF-8", p->name, what, k);
        }
        PyTuple_SET_ITEM(t, k, u);
    }
    return t;
}

static PyObject *packfile_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", "verify_crc", NULL};
    PyObject *path_bytes = NULL;
    int verify = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|p:PackFile", kwlist, PyUnicode_FSConverter, &path_bytes, &verify))
        return NULL;
    af_pack *p = NULL;
    af_status st;
    const char *path = PyBytes_AS_STRING(path_bytes);
    Py_BEGIN_ALLOW_THREADS
    st = af_pack_open(path, verify, &p);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (st != AF_OK) return af_py_raise(st);
    PackFileObject *self = (PackFileObject *)type->tp_alloc(type, 0);
    if (!self) {
        af_pack_close(p);
        return NULL;
    }
    self->pack = p;
    self->classes = names_tuple(p, 0, p->num_classes, "class");
    self->target_names = self->classes ? names_tuple(p, p->num_classes, p->num_targets, "target") : NULL;
    if (!self->target_names) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* A read-only NumPy view of `data` that keeps `self` (and so the mapping) alive. */
static PyObject *view(PackFileObject *self, const void *data, int nd, npy_intp *dims, int type) {
    PyObject *arr = PyArray_New(&PyArray_Type, nd, dims, type, NULL, (void *)data, 0, NPY_ARRAY_C_CONTIGUOUS, NULL);
    if (!arr) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, (PyObject *)self) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *packfile_labels(PackFileObject *self, PyObject *unused) {
    npy_intp dims[1] = {(npy_intp)self->pack->count};
    return view(self, self->pack->labels, 1, dims, NPY_INT64);
}

static PyObject *packfile_shapes(PackFileObject *self, PyObject *unused) {
    npy_intp dims[2] = {(npy_intp)self->pack->count, 3};
    return view(self, self->pack->shapes, 2, dims, NPY_UINT32);
}

static PyObject *packfile_offsets(PackFileObject *self, PyObject *unused) {
    npy_intp dims[1] = {(npy_intp)self->pack->count};
    return view(self, self->pack->offsets, 1, dims, NPY_UINT64);
}

static PyObject *packfile_crcs(PackFileObject *self, PyObject *unused) {
    npy_intp dims[1] = {(npy_intp)self->pack->count};
    return view(self, self->pack->crcs, 1, dims, NPY_UINT32);
}

static PyObject *packfile_targets(PackFileObject *self, PyObject *unused) {
    if (self->pack->num_targets == 0) Py_RETURN_NONE;
    npy_intp dims[2] = {(npy_intp)self->pack->count, self->pack->num_targets};
    return view(self, self->pack->targets, 2, dims, NPY_FLOAT32);
}

static PyObject *packfile_image(PackFileObject *self, PyObject *arg) {
    long long i = PyLong_AsLongLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= self->pack->count)
        return PyErr_Format(PyExc_IndexError, "index %lld out of range for a pack of %lld samples", i, (long long)self->pack->count);
    af_image img = {0};
    af_pack_image(self->pack, i, &img);
    npy_intp dims[3] = {img.height, img.width, img.channels};
    return view(self, img.data, 3, dims, NPY_UINT8);
}

static PyObject *packfile_verify(PackFileObject *self, PyObject *unused) {
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_pack_verify(self->pack);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
}

static Py_ssize_t packfile_len(PackFileObject *self) { return (Py_ssize_t)self->pack->count; }

static PyObject *packfile_get(PackFileObject *self, void *which) {
    const af_pack *p = self->pack;
    switch ((int)(intptr_t)which) {
    case 0: return PyUnicode_DecodeFSDefault(p->name);
    case 1: return PyLong_FromUnsignedLong(p->max_side);
    case 2: return PyLong_FromUnsignedLongLong(p->size);
    case 3: Py_INCREF(self->classes); return self->classes;
    default: Py_INCREF(self->target_names); return self->target_names;
    }
}

static PyGetSetDef packfile_getset[] = {
    {"path", (getter)packfile_get, NULL, "the file", (void *)0},
    {"max_side", (getter)packfile_get, NULL, "shorter-side cap applied when packing (0: none)", (void *)1},
    {"nbytes", (getter)packfile_get, NULL, "file size", (void *)2},
    {"classes", (getter)packfile_get, NULL, "class names (tuple of str)", (void *)3},
    {"target_names", (getter)packfile_get, NULL, "target column names (tuple of str)", (void *)4},
    {NULL},
};

static PyMethodDef packfile_methods[] = {
    {"labels", (PyCFunction)packfile_labels, METH_NOARGS, "int64 (N,) view"},
    {"shapes", (PyCFunction)packfile_shapes, METH_NOARGS, "uint32 (N, 3) view: H, W, C"},
    {"offsets", (PyCFunction)packfile_offsets, METH_NOARGS, "uint64 (N,) view: byte offset of each sample"},
    {"crcs", (PyCFunction)packfile_crcs, METH_NOARGS, "uint32 (N,) view: CRC-32 of each sample's pixels"},
    {"targets", (PyCFunction)packfile_targets, METH_NOARGS, "float32 (N, T) view, or None"},
    {"image", (PyCFunction)packfile_image, METH_O, "image(i) -> read-only uint8 (H, W, C) view"},
    {"verify", (PyCFunction)packfile_verify, METH_NOARGS, "check every pixel CRC (ValueError naming the sample)"},
    {NULL},
};

static PySequenceMethods packfile_as_sequence = {.sq_length = (lenfunc)packfile_len};

PyTypeObject AfPackFile_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "affectfer._C.PackFile",
    .tp_basicsize = sizeof(PackFileObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PackFile(path, verify_crc=False): a validated, read-only memory-mapped pack (see affectfer.data.PackedDataset)",
    .tp_new = packfile_new,
    .tp_dealloc = (destructor)packfile_dealloc,
    .tp_methods = packfile_methods,
    .tp_getset = packfile_getset,
    .tp_as_sequence = &packfile_as_sequence,
};

const af_pack *af_py_pack_get(PyObject *obj) {
    return PyObject_TypeCheck(obj, &AfPackFile_Type) ? ((PackFileObject *)obj)->pack : NULL;
}

/* ---- PackWriter ---- */
typedef struct {
    PyObject_HEAD
    af_pack_writer *w;
    int64_t count;
    int num_targets;
} PackWriterObject;

static void packwriter_dealloc(PackWriterObject *self) {
    af_pack_writer_free(self->w); /* removes the temporary file unless finished */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* PackWriter(path, count, classes, target_names, max_side) */
static PyObject *packwriter_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", "count", "classes", "target_names", "max_side", NULL};
    PyObject *path_bytes = NULL, *classes, *tnames;
    long long count;
    int max_side;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&LOOi:PackWriter", kwlist, PyUnicode_FSConverter, &path_bytes, &count,
                                     &classes, &tnames, &max_side))
        return NULL;
    PyObject *seqs[2] = {PySequence_Fast(classes, "'classes' must be a sequence of str"), NULL};
    seqs[1] = seqs[0] ? PySequence_Fast(tnames, "'target_names' must be a sequence of str") : NULL;
    PackWriterObject *self = NULL;
    const char **names = NULL;
    uint32_t *lens = NULL;
    if (!seqs[1]) goto done;
    Py_ssize_t K = PySequence_Fast_GET_SIZE(seqs[0]), T = PySequence_Fast_GET_SIZE(seqs[1]);
    if (K > AF_PACK_MAX_NAMES || T > AF_PACK_MAX_NAMES) {
        PyErr_Format(PyExc_ValueError, "pack: %zd classes and %zd targets (at most %d each)", K, T, AF_PACK_MAX_NAMES);
        goto done;
    }
    names = calloc((size_t)(K + T + 1), sizeof(*names));
    lens = calloc((size_t)(K + T + 1), sizeof(*lens));
    if (!names || !lens) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < K + T; k++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seqs[k < K ? 0 : 1], k < K ? k : k - K);
        Py_ssize_t len;
        if (!PyUnicode_Check(o)) {
            PyErr_Format(PyExc_TypeError, "pack: %s names must be str, got %s", k < K ? "class" : "target", Py_TYPE(o)->tp_name);
            goto done;
        }
        names[k] = PyUnicode_AsUTF8AndSize(o, &len); /* lives as long as the sequence */
        if (!names[k]) goto done;
        lens[k] = (uint32_t)(len > UINT32_MAX ? UINT32_MAX : len);
    }
    af_pack_writer *w = NULL;
    af_status st = af_pack_writer_open(PyBytes_AS_STRING(path_bytes), count, (int)K, (int)T, names, lens, max_side, &w);
    if (st != AF_OK) {
        af_py_raise(st);
        goto done;
    }
    self = (PackWriterObject *)type->tp_alloc(type, 0);
    if (!self) {
        af_pack_writer_free(w);
        goto done;
    }
    self->w = w, self->count = count, self->num_targets = (int)T;
done:
    free(names);
    free(lens);
    Py_XDECREF(seqs[0]);
    Py_XDECREF(seqs[1]);
    Py_DECREF(path_bytes);
    return (PyObject *)self;
}

/* add(paths, images, labels, targets, workers, max_pixels): the next chunk of samples. Either `paths`
 * (a sequence of file names) or `images` (a sequence of uint8 (H, W, C) arrays); labels int64 (n,);
 * targets float32 (n, T) or None. The GIL is released while the chunk is decoded and written. */
static PyObject *packwriter_add(PackWriterObject *self, PyObject *args) {
    PyObject *paths_obj, *images_obj, *labels_obj, *targets_obj;
    int workers;
    long long max_pixels;
    if (!PyArg_ParseTuple(args, "OOOOiL:add", &paths_obj, &images_obj, &labels_obj, &targets_obj, &workers, &max_pixels)) return NULL;
    if (!self->w) return PyErr_Format(PyExc_RuntimeError, "pack: the writer is closed");
    PyObject *src = NULL, *result = NULL, **bytes = NULL, **arrays = NULL;
    PyArrayObject *labels = NULL, *targets = NULL;
    af_pack_item *items = NULL;
    Py_ssize_t n = 0;
    labels = (PyArrayObject *)PyArray_FROMANY(labels_obj, NPY_INT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!labels) goto done;
    n = PyArray_DIM(labels, 0);
    if (n > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "pack: a chunk holds at most 2^31 - 1 samples");
        goto done;
    }
    if (self->num_targets) {
        if (targets_obj == Py_None) {
            PyErr_Format(PyExc_ValueError, "pack: this pack stores %d targets per sample but 'targets' is None", self->num_targets);
            goto done;
        }
        targets = (PyArrayObject *)PyArray_FROMANY(targets_obj, NPY_FLOAT32, 2, 2, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
        if (!targets) goto done;
        if (PyArray_DIM(targets, 0) != n || PyArray_DIM(targets, 1) != self->num_targets) {
            PyErr_Format(PyExc_ValueError, "pack: 'targets' must be (%zd, %d)", n, self->num_targets);
            goto done;
        }
    }
    int by_path = paths_obj != Py_None;
    src = PySequence_Fast(by_path ? paths_obj : images_obj, "pack: 'paths' / 'images' must be a sequence");
    if (!src) goto done;
    if (PySequence_Fast_GET_SIZE(src) != n) {
        PyErr_Format(PyExc_ValueError, "pack: %zd images for %zd labels", PySequence_Fast_GET_SIZE(src), n);
        goto done;
    }
    items = calloc((size_t)(n ? n : 1), sizeof(*items));
    bytes = calloc((size_t)(n ? n : 1), sizeof(*bytes));
    arrays = calloc((size_t)(n ? n : 1), sizeof(*arrays));
    if (!items || !bytes || !arrays) {
        PyErr_NoMemory();
        goto done;
    }
    const int64_t *lab = PyArray_DATA(labels);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *o = PySequence_Fast_GET_ITEM(src, k);
        items[k].label = lab[k];
        items[k].targets = targets ? (const float *)PyArray_DATA(targets) + k * self->num_targets : NULL;
        if (by_path) {
            if (!PyUnicode_FSConverter(o, &bytes[k])) goto done;
            items[k].path = PyBytes_AS_STRING(bytes[k]);
            continue;
        }
        PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, NPY_UINT8, 2, 3, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (!a) goto done;
        arrays[k] = (PyObject *)a;
        items[k].pixels = PyArray_DATA(a);
        items[k].height = (int)(PyArray_DIM(a, 0) > INT32_MAX ? -1 : PyArray_DIM(a, 0));
        items[k].width = (int)(PyArray_DIM(a, 1) > INT32_MAX ? -1 : PyArray_DIM(a, 1));
        items[k].channels = PyArray_NDIM(a) == 3 ? (int)(PyArray_DIM(a, 2) > 3 ? -1 : PyArray_DIM(a, 2)) : 1;
    }
    af_status st;
    af_pack_writer *w = self->w;
    Py_BEGIN_ALLOW_THREADS
    st = af_pack_writer_add(w, items, (int)n, workers, max_pixels);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) af_py_raise(st);
    else {
        Py_INCREF(Py_None);
        result = Py_None;
    }
done:
    for (Py_ssize_t k = 0; k < n && bytes; k++) Py_XDECREF(bytes[k]);
    for (Py_ssize_t k = 0; k < n && arrays; k++) Py_XDECREF(arrays[k]);
    free(bytes);
    free(arrays);
    free(items);
    Py_XDECREF(src);
    Py_XDECREF(labels);
    Py_XDECREF(targets);
    return result;
}

static PyObject *packwriter_finish(PackWriterObject *self, PyObject *unused) {
    if (!self->w) return PyErr_Format(PyExc_RuntimeError, "pack: the writer is closed");
    af_status st;
    af_pack_writer *w = self->w;
    Py_BEGIN_ALLOW_THREADS
    st = af_pack_writer_finish(w);
    Py_END_ALLOW_THREADS
    af_pack_writer_free(self->w);
    self->w = NULL;
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *packwriter_abort(PackWriterObject *self, PyObject *unused) {
    af_pack_writer_free(self->w);
    self->w = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef packwriter_methods[] = {
    {"add", (PyCFunction)packwriter_add, METH_VARARGS, "add(paths, images, labels, targets, workers, max_pixels)"},
    {"finish", (PyCFunction)packwriter_finish, METH_NOARGS, "write the table and header, fsync, rename onto the path"},
    {"abort", (PyCFunction)packwriter_abort, METH_NOARGS, "close and remove the temporary file"},
    {NULL},
};

static PyTypeObject PackWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "affectfer._C.PackWriter",
    .tp_basicsize = sizeof(PackWriterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PackWriter(path, count, classes, target_names, max_side): writes a pack atomically (see affectfer.data.pack)",
    .tp_new = packwriter_new,
    .tp_dealloc = (destructor)packwriter_dealloc,
    .tp_methods = packwriter_methods,
};

int af_pack_init(PyObject *module) {
    PyTypeObject *types[2] = {&AfPackFile_Type, &PackWriterType};
    const char *names[2] = {"PackFile", "PackWriter"};
    for (int k = 0; k < 2; k++) {
        if (PyType_Ready(types[k]) < 0) return -1;
        Py_INCREF(types[k]);
        if (PyModule_AddObject(module, names[k], (PyObject *)types[k]) < 0) {
            Py_DECREF(types[k]);
            return -1;
        }
    }
    return PyModule_AddIntConstant(module, "PACK_VERSION", AF_PACK_VERSION);
}
