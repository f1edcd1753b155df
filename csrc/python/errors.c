/* The one table from af_status to Python exception classes. */
#include "binding.h"

#include <string.h>

PyObject *af_OutOfMemoryError, *af_CudaError;

int af_errors_init(PyObject *module) {
    af_OutOfMemoryError = PyErr_NewExceptionWithDoc(
        "affectfer.OutOfMemoryError", "A host or device allocation failed.", PyExc_MemoryError, NULL);
    af_CudaError = PyErr_NewExceptionWithDoc("affectfer.CudaError", "A CUDA, cuDNN or cuBLAS call failed.",
                                             PyExc_RuntimeError, NULL);
    if (!af_OutOfMemoryError || !af_CudaError) return -1;
    Py_INCREF(af_OutOfMemoryError);
    Py_INCREF(af_CudaError);
    if (PyModule_AddObject(module, "OutOfMemoryError", af_OutOfMemoryError) < 0) return -1;
    if (PyModule_AddObject(module, "CudaError", af_CudaError) < 0) return -1;
    af_set_interrupt_checker(af_py_check_interrupt);
    return 0;
}

PyObject *af_py_raise(af_status st) {
    PyObject *cls;
    switch (st) {
    case AF_ERR_VALUE: case AF_ERR_DEVICE: cls = PyExc_ValueError; break;
    case AF_ERR_TYPE: cls = PyExc_TypeError; break;
    case AF_ERR_INDEX: cls = PyExc_IndexError; break;
    case AF_ERR_OOM: cls = af_OutOfMemoryError; break;
    case AF_ERR_IO: cls = PyExc_OSError; break;
    case AF_ERR_FLOAT: cls = PyExc_FloatingPointError; break;
    case AF_ERR_CUDA: cls = af_CudaError; break;
    case AF_ERR_INTERRUPT: cls = PyExc_KeyboardInterrupt; break;
    default: cls = PyExc_RuntimeError; break;
    }
    if (st == AF_ERR_INTERNAL)
        PyErr_Format(cls, "%s (internal error at %s; please report it)", af_error_message(), af_error_location());
    else {
        /* messages may quote bytes from a file (a decoder's reason, a non-UTF-8 path): never let
         * decoding them replace the real error */
        const char *msg = af_error_message();
        PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "backslashreplace");
        if (text) {
            PyErr_SetObject(cls, text);
            Py_DECREF(text);
        }
    }
    return NULL;
}

/* Called by long C loops, possibly without the GIL: 1 when Ctrl-C is pending. The Python-level
 * KeyboardInterrupt is raised again by af_py_raise(AF_ERR_INTERRUPT). */
int af_py_check_interrupt(void) {
    PyGILState_STATE gil = PyGILState_Ensure();
    int interrupted = PyErr_CheckSignals() != 0;
    if (interrupted) PyErr_Clear();
    PyGILState_Release(gil);
    return interrupted;
}
