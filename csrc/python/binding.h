/* Shared declarations of the affectfer._C module.
 *
 * Every binding follows the same steps: parse and check the Python arguments (naming the one that
 * is wrong), take references, release the GIL, call the core, re-acquire, and convert an af_status
 * into the matching Python exception (errors.c holds the one table). */
#ifndef AF_BINDING_H
#define AF_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "../autograd/tape.h"

typedef struct {
    PyObject_HEAD
    af_tensor *t;
    Py_ssize_t exports; /* live buffer-protocol views */
} AfTensorObject;

extern PyTypeObject AfTensor_BaseType;
/* The class handed out for new tensors: affectfer.Tensor once the package registers it. */
extern PyTypeObject *af_tensor_class;

/* Wraps t (stealing the reference) in a new Python tensor; NULL with an exception on failure. */
PyObject *af_py_wrap(af_tensor *t);
int af_py_is_tensor(PyObject *o);
/* Borrowed af_tensor of a Python tensor, or NULL with TypeError naming `what`. */
af_tensor *af_py_tensor_arg(PyObject *o, const char *what);

/* errors.c */
extern PyObject *af_OutOfMemoryError, *af_CudaError;
int af_errors_init(PyObject *module);
PyObject *af_py_raise(af_status st); /* sets the exception for st, returns NULL */
int af_py_check_interrupt(void);

/* convert.c: NumPy and DLPack, and the argument coercions every binding shares */
/* A C-contiguous, aligned NumPy array of npy_type from any array-like (new reference), with `ndim`
 * dims (-1: any); NULL with TypeError/ValueError naming `name`. */
PyObject *af_py_as_array(PyObject *obj, int npy_type, int ndim, const char *name);
/* At most `max` numbers of a number or 1-D array-like into out; their count, or -1 with an exception. */
Py_ssize_t af_py_doubles(PyObject *obj, const char *name, double *out, Py_ssize_t max);
/* Sets ValueError(format % (float(a), float(b))) with format using %R for each; returns NULL
 * (PyErr_Format has no %g: floats are shown by their repr). */
PyObject *af_py_float_error(const char *format, double a, double b);
/* An int argument in [lo, hi]: TypeError/ValueError naming `name` and the value (huge ints too). */
int af_py_int_arg(PyObject *obj, const char *name, long long lo, long long hi, long long *out);
/* A tensor shape: a sequence of at most AF_MAX_DIMS non-negative ints; errors name `name`. */
int af_py_parse_shape(PyObject *obj, const char *name, int *ndim, int64_t *shape);
int af_convert_init(void);
PyObject *af_py_from_numpy(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *af_py_to_numpy(AfTensorObject *self, PyObject *unused);
PyObject *af_py_dlpack(AfTensorObject *self, PyObject *args, PyObject *kwargs);
PyObject *af_py_dlpack_device(AfTensorObject *self, PyObject *unused);
PyObject *af_py_from_dlpack(PyObject *self, PyObject *capsule);
int af_dtype_from_numpy(int npy_type, af_dtype *out);
int af_dtype_to_numpy(af_dtype d);
int af_dtype_from_name(const char *name, af_dtype *out);
/* Adds module.<attr> = {names[k]: codes[k]}: the C enums Python needs, so it never re-types them. */
int af_py_add_codes(PyObject *module, const char *attr, int n, const char *const names[], const int codes[]);
/* dtypes, limits (max_dims, op_inputs, op_outputs, op_int_attrs, op_float_attrs), reductions */
int af_constants_init(PyObject *module);

/* fer_bind.c */
extern PyMethodDef af_fer_methods[];

/* loader_bind.c: samplers, loader, batch mixers */
extern PyMethodDef af_data_methods[];
int af_loader_init(PyObject *module);

/* pack_bind.c: PackFile, PackWriter; af_py_pack_get gives a PackFile's pack (NULL for other objects) */
int af_pack_init(PyObject *module);
struct af_pack;
const struct af_pack *af_py_pack_get(PyObject *obj);

/* image_bind.c: decoding, transform pipelines, functional image ops */
extern PyMethodDef af_image_methods[];
/* The af_pipeline of a compiled transform (a PyCapsule named by image_bind.c, never any other
 * capsule); NULL with TypeError naming `what`. */
struct af_pipeline;
const struct af_pipeline *af_py_pipeline_arg(PyObject *obj, const char *what);
/* image_default_max_pixels, pad_modes, sobel_magnitudes, interpolations, image_stages ({name: (kind, parameter names)}) */
int af_image_init(PyObject *module);

/* dist_bind.c: collectives and the gradient reducer (csrc/dist/) */
extern PyMethodDef af_dist_methods[];

/* arena_bind.c: flat arenas, offset views, re-pointing headers */
extern PyMethodDef af_arena_methods[];
int af_arena_init(PyObject *module);

/* ops_bind.c */
extern PyMethodDef af_ops_methods[];
int af_ops_init(PyObject *module);

/* cuda_bind.c: affectfer.cuda's functions; registers the CUDA allocator in a CUDA build */
int af_cuda_bind_init(PyObject *module);

#endif
