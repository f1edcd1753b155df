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

/* convert.c: NumPy and DLPack */
int af_convert_init(void);
PyObject *af_py_from_numpy(PyObject *self, PyObject *args, PyObject *kwargs);
PyObject *af_py_to_numpy(AfTensorObject *self, PyObject *unused);
PyObject *af_py_dlpack(AfTensorObject *self, PyObject *args, PyObject *kwargs);
PyObject *af_py_dlpack_device(AfTensorObject *self, PyObject *unused);
PyObject *af_py_from_dlpack(PyObject *self, PyObject *capsule);
int af_dtype_from_numpy(int npy_type, af_dtype *out);
int af_dtype_to_numpy(af_dtype d);
int af_dtype_from_name(const char *name, af_dtype *out);

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

/* ops_bind.c */
extern PyMethodDef af_ops_methods[];
int af_ops_init(PyObject *module);

#endif
