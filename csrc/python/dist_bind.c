/* Collectives and the gradient reducer (csrc/dist/), for affectfer.distributed.
 *
 * Every collective waits with the GIL released and returns False when `timeout` seconds passed
 * first; Python then names the silent rank from its heartbeats and raises. A timed-out request
 * keeps its tensor alive (it is leaked): MPI may still write into it. */
#include "binding.h"

#include "../dist/dist.h"

static const af_dist_backend *backend_or_raise(void) {
    const af_dist_backend *b = af_mpi_backend();
    if (!b) PyErr_SetString(PyExc_RuntimeError, "affectfer.distributed is not initialised: call affectfer.distributed.init()");
    return b;
}

static PyObject *py_mpi_available(PyObject *self, PyObject *unused) {
    char why[512];
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = af_mpi_available(why, sizeof why);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(Os)", ok ? Py_True : Py_False, why);
}

static PyObject *py_mpi_init(PyObject *self, PyObject *unused) {
    const af_dist_backend *b = NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_mpi_init(&b);
    Py_END_ALLOW_THREADS
    if (st != AF_OK) return af_py_raise(st);
    return Py_BuildValue("(ii)", b->rank, b->size);
}

static PyObject *py_mpi_init_joined(PyObject *self, PyObject *args) {
    int rank, size;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "iiO:mpi_init_joined", &rank, &size, &list)) return NULL;
    if (size < 2 || rank < 0 || rank >= size)
        return PyErr_Format(PyExc_ValueError, "mpi_init_joined: rank %d is outside a world of size %d (>= 2)", rank, size);
    PyObject *seq = PySequence_Fast(list, "fds must be a list of socket file descriptors");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), want = size;
    if (n != want) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "mpi_init_joined: fds must hold one entry per rank (%zd), got %zd", want, n);
    }
    int *fds = PyMem_Calloc((size_t)n, sizeof *fds);
    if (!fds) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, k));
        if (fd == -1 && PyErr_Occurred()) {
            PyMem_Free(fds);
            Py_DECREF(seq);
            return NULL;
        }
        fds[k] = (int)fd;
    }
    Py_DECREF(seq);
    const af_dist_backend *b = NULL;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_mpi_init_joined(rank, size, fds, &b);
    Py_END_ALLOW_THREADS
    PyMem_Free(fds);
    if (st != AF_OK) return af_py_raise(st);
    return Py_BuildValue("(ii)", b->rank, b->size);
}

static PyObject *py_mpi_finalize(PyObject *self, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS
    af_mpi_finalize();
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Starts nothing itself: waits for `req` (already started) and keeps `keep` alive on a timeout. */
static PyObject *wait_result(const af_dist_backend *b, af_status st, af_dist_request *req, double timeout,
                             af_tensor *keep1, af_tensor *keep2) {
    int late = 0;
    if (st == AF_OK) {
        Py_BEGIN_ALLOW_THREADS
        st = af_dist_wait(b, req, timeout, &late);
        Py_END_ALLOW_THREADS
    }
    if (st != AF_OK) return af_py_raise(st);
    if (late) {
        if (keep1) af_tensor_retain(keep1);
        if (keep2) af_tensor_retain(keep2);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyObject *py_all_reduce(PyObject *self, PyObject *args) {
    PyObject *obj;
    int op;
    double timeout;
    if (!PyArg_ParseTuple(args, "Oid:dist_all_reduce", &obj, &op, &timeout)) return NULL;
    af_tensor *t = af_py_tensor_arg(obj, "tensor");
    const af_dist_backend *b = backend_or_raise();
    if (!t || !b) return NULL;
    if (op < AF_DIST_SUM || op > AF_DIST_MIN) return PyErr_Format(PyExc_ValueError, "unknown reduction code %d", op);
    af_dist_request *req = NULL;
    af_status st = b->allreduce(t, (af_dist_op)op, &req);
    if (st == AF_OK) af_tensor_bump_version(t);
    return wait_result(b, st, req, timeout, t, NULL);
}

static PyObject *py_broadcast(PyObject *self, PyObject *args) {
    PyObject *obj;
    int root;
    double timeout;
    if (!PyArg_ParseTuple(args, "Oid:dist_broadcast", &obj, &root, &timeout)) return NULL;
    af_tensor *t = af_py_tensor_arg(obj, "tensor");
    const af_dist_backend *b = backend_or_raise();
    if (!t || !b) return NULL;
    af_dist_request *req = NULL;
    af_status st = b->broadcast(t, root, &req);
    if (st == AF_OK) af_tensor_bump_version(t);
    return wait_result(b, st, req, timeout, t, NULL);
}

static PyObject *py_all_gather(PyObject *self, PyObject *args) {
    PyObject *in_obj, *out_obj;
    double timeout;
    if (!PyArg_ParseTuple(args, "OOd:dist_all_gather", &in_obj, &out_obj, &timeout)) return NULL;
    af_tensor *in = af_py_tensor_arg(in_obj, "tensor"), *out = af_py_tensor_arg(out_obj, "out");
    const af_dist_backend *b = backend_or_raise();
    if (!in || !out || !b) return NULL;
    af_dist_request *req = NULL;
    af_status st = b->allgather(in, out, &req);
    if (st == AF_OK) af_tensor_bump_version(out);
    return wait_result(b, st, req, timeout, in, out);
}

static PyObject *py_barrier(PyObject *self, PyObject *args) {
    double timeout;
    if (!PyArg_ParseTuple(args, "d:dist_barrier", &timeout)) return NULL;
    const af_dist_backend *b = backend_or_raise();
    if (!b) return NULL;
    af_dist_request *req = NULL;
    af_status st = b->barrier(&req);
    return wait_result(b, st, req, timeout, NULL, NULL);
}

/* ---- the reducer, as a capsule ---- */

static const char REDUCER[] = "affectfer.reducer";

static void reducer_destroy(PyObject *capsule) { af_reducer_free(PyCapsule_GetPointer(capsule, REDUCER)); }

static PyObject *py_reducer_new(PyObject *self, PyObject *args) {
    PyObject *list;
    long long bucket_bytes;
    double timeout;
    if (!PyArg_ParseTuple(args, "OLd:reducer_new", &list, &bucket_bytes, &timeout)) return NULL;
    const af_dist_backend *b = backend_or_raise();
    if (!b) return NULL;
    PyObject *seq = PySequence_Fast(list, "params must be a list of tensors");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    af_tensor **params = PyMem_Malloc(sizeof *params * (size_t)(n ? n : 1));
    if (!params) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        params[k] = af_py_tensor_arg(PySequence_Fast_GET_ITEM(seq, k), "params[k]");
        if (!params[k]) {
            PyMem_Free(params);
            Py_DECREF(seq);
            return NULL;
        }
    }
    af_reducer *r = NULL;
    af_status st = af_reducer_new(b, params, n, bucket_bytes, timeout, &r);
    PyMem_Free(params);
    Py_DECREF(seq);
    if (st != AF_OK) return af_py_raise(st);
    PyObject *capsule = PyCapsule_New(r, REDUCER, reducer_destroy);
    if (!capsule) af_reducer_free(r);
    return capsule;
}

static PyObject *py_reducer_prepare(PyObject *self, PyObject *capsule) {
    af_reducer *r = PyCapsule_GetPointer(capsule, REDUCER);
    if (!r) return NULL;
    af_status st = af_reducer_prepare(r);
    if (st != AF_OK) return af_py_raise(st);
    Py_RETURN_NONE;
}

static PyObject *py_reducer_disarm(PyObject *self, PyObject *capsule) {
    af_reducer *r = PyCapsule_GetPointer(capsule, REDUCER);
    if (!r) return NULL;
    af_reducer_disarm(r);
    Py_RETURN_NONE;
}

static PyObject *py_set_fault(PyObject *self, PyObject *arg) {
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text) return NULL;
    af_dist_set_fault(text);
    Py_RETURN_NONE;
}

static PyObject *py_progress(PyObject *self, PyObject *unused) {
    long started;
    double waiting;
    af_dist_progress(&started, &waiting);
    return Py_BuildValue("(ld)", started, waiting);
}

static PyObject *py_reducer_info(PyObject *self, PyObject *capsule) {
    af_reducer *r = PyCapsule_GetPointer(capsule, REDUCER);
    if (!r) return NULL;
    int64_t n = af_reducer_bucket_count(r);
    PyObject *ranges = PyList_New((Py_ssize_t)n);
    if (!ranges) return NULL;
    for (int64_t b = 0; b < n; b++) {
        int64_t first, stop;
        af_reducer_bucket_range(r, b, &first, &stop);
        PyObject *pair = Py_BuildValue("(LL)", (long long)first, (long long)stop);
        if (!pair) {
            Py_DECREF(ranges);
            return NULL;
        }
        PyList_SET_ITEM(ranges, (Py_ssize_t)b, pair);
    }
    return Py_BuildValue("(NLd)", ranges, (long long)af_reducer_started_in_backward(r),
                         af_reducer_last_finish_seconds(r));
}

PyMethodDef af_dist_methods[] = {
    {"mpi_available", py_mpi_available, METH_NOARGS, "mpi_available() -> (bool, why not)"},
    {"mpi_init", py_mpi_init, METH_NOARGS, "mpi_init() -> (rank, size) over MPI_COMM_WORLD"},
    {"mpi_init_joined", py_mpi_init_joined, METH_VARARGS,
     "mpi_init_joined(rank, size, fds) -> (rank, size): singletons joined over sockets (fds[k] to rank k)"},
    {"mpi_finalize", py_mpi_finalize, METH_NOARGS, "mpi_finalize(): MPI_Finalize if we initialised MPI"},
    {"dist_all_reduce", py_all_reduce, METH_VARARGS, "dist_all_reduce(t, op_code, timeout) -> completed (in place)"},
    {"dist_broadcast", py_broadcast, METH_VARARGS, "dist_broadcast(t, root, timeout) -> completed (in place)"},
    {"dist_all_gather", py_all_gather, METH_VARARGS, "dist_all_gather(t, out, timeout) -> completed"},
    {"dist_barrier", py_barrier, METH_VARARGS, "dist_barrier(timeout) -> completed"},
    {"reducer_new", py_reducer_new, METH_VARARGS, "reducer_new(params, bucket_bytes): gradient buckets"},
    {"reducer_prepare", py_reducer_prepare, METH_O, "reducer_prepare(r): arm the gradient-ready hook"},
    {"reducer_disarm", py_reducer_disarm, METH_O, "reducer_disarm(r): remove its gradient hooks"},
    {"dist_set_fault", py_set_fault, METH_O, "dist_set_fault(message): every wait now fails with it ('' clears)"},
    {"dist_progress", py_progress, METH_NOARGS, "dist_progress() -> (collectives started, seconds in the current wait)"},
    {"reducer_info", py_reducer_info, METH_O, "reducer_info(r) -> ([(first, stop) per bucket], buckets started in backward, seconds of the last finish)"},
    {NULL},
};
