/* The MPI backend: Open MPI loaded at run time.
 *
 * A build needs no MPI headers and a process needs no MPI library until it trains on several
 * ranks: libmpi is opened with dlopen (AFFECTFER_MPI_LIBRARY, else libmpi.so.40, Open MPI's
 * soname since 3.0, else libmpi.so) and the dozen functions we call are looked up by name. The
 * MPI standard fixes the C functions but not the ABI of its handles: Open MPI's MPI_COMM_WORLD,
 * MPI_FLOAT, MPI_SUM... are addresses of exported objects (ompi_mpi_comm_world, ...), MPICH's are
 * integer constants compiled into the caller. We follow Open MPI's ABI (mpi.h of Open MPI 3.x-5.x:
 * every handle a pointer to an opaque struct, MPI_IN_PLACE is (void *)1, MPI_STATUS_IGNORE is
 * NULL) and refuse a library without its symbols, saying so.
 *
 * Every MPI call goes through one mutex: the reducer's progress thread tests requests while the
 * training thread starts others, and MPI_THREAD_SERIALIZED is the level every Open MPI build gives
 * (MPI_THREAD_MULTIPLE costs locking inside every call where it is available at all).
 * Errors return (MPI_ERRORS_RETURN on our communicator) rather than abort the process. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/ops.h"
#include "dist.h"

/* Open MPI's handle types: pointers to structs we never look into. */
typedef struct ompi_communicator_t *MPI_Comm;
typedef struct ompi_datatype_t *MPI_Datatype;
typedef struct ompi_op_t *MPI_Op;
typedef struct ompi_request_t *MPI_Request;
typedef struct ompi_errhandler_t *MPI_Errhandler;
typedef struct ompi_status_public_t MPI_Status;

#define AF_MPI_SUCCESS 0
#define AF_MPI_THREAD_SERIALIZED 2
#define AF_MPI_IN_PLACE ((void *)1)
#define AF_MPI_STATUS_IGNORE ((MPI_Status *)0)
#define AF_MPI_MAX_ERROR_STRING 256

/* The functions, and the predefined objects whose addresses are the handles. */
#define AF_MPI_FUNCTIONS(X)                                                                               \
    X(int, MPI_Initialized, (int *flag))                                                                  \
    X(int, MPI_Finalized, (int *flag))                                                                    \
    X(int, MPI_Init_thread, (int *argc, char ***argv, int required, int *provided))                       \
    X(int, MPI_Finalize, (void))                                                                          \
    X(int, MPI_Comm_dup, (MPI_Comm comm, MPI_Comm *out))                                                  \
    X(int, MPI_Comm_free, (MPI_Comm *comm))                                                               \
    X(int, MPI_Comm_rank, (MPI_Comm comm, int *rank))                                                     \
    X(int, MPI_Comm_size, (MPI_Comm comm, int *size))                                                     \
    X(int, MPI_Comm_set_errhandler, (MPI_Comm comm, MPI_Errhandler handler))                              \
    X(int, MPI_Error_string, (int code, char *text, int *length))                                         \
    X(int, MPI_Iallreduce, (const void *send, void *recv, int count, MPI_Datatype type, MPI_Op op,        \
                            MPI_Comm comm, MPI_Request *req))                                             \
    X(int, MPI_Ibcast, (void *buf, int count, MPI_Datatype type, int root, MPI_Comm comm, MPI_Request *req)) \
    X(int, MPI_Iallgather, (const void *send, int send_count, MPI_Datatype send_type, void *recv,         \
                            int recv_count, MPI_Datatype recv_type, MPI_Comm comm, MPI_Request *req))     \
    X(int, MPI_Ibarrier, (MPI_Comm comm, MPI_Request * req))                                              \
    X(int, MPI_Test, (MPI_Request * req, int *flag, MPI_Status *status))                                  \
    X(int, MPI_Comm_join, (int fd, MPI_Comm *inter))                                                      \
    X(int, MPI_Intercomm_merge, (MPI_Comm inter, int high, MPI_Comm *intra))                              \
    X(int, MPI_Intercomm_create, (MPI_Comm local, int local_leader, MPI_Comm peer, int remote_leader,     \
                                  int tag, MPI_Comm *inter))

#define AF_MPI_OBJECTS(X)                                                                                 \
    X(ompi_mpi_comm_world) X(ompi_mpi_errors_return) X(ompi_mpi_float) X(ompi_mpi_double) X(ompi_mpi_int)  \
    X(ompi_mpi_long_long_int) X(ompi_mpi_unsigned_char) X(ompi_mpi_byte) X(ompi_mpi_op_sum)               \
    X(ompi_mpi_op_max) X(ompi_mpi_op_min) X(ompi_mpi_comm_self) X(ompi_mpi_comm_null)

static struct {
#define AF_FIELD_FN(ret, name, args) ret(*name) args;
#define AF_FIELD_OBJ(name) void *name;
    AF_MPI_FUNCTIONS(AF_FIELD_FN)
    AF_MPI_OBJECTS(AF_FIELD_OBJ)
} mpi;

static pthread_mutex_t mpi_lock = PTHREAD_MUTEX_INITIALIZER; /* every MPI call, and the state below */
static int loaded = -1;                                      /* -1 not tried, 0 failed, 1 loaded */
static char load_error[512];
static int we_initialised;
static MPI_Comm comm; /* our duplicate of MPI_COMM_WORLD: user MPI traffic never matches ours */
static af_dist_backend backend;
static int backend_ready;

static void try_load(void) {
    const char *env = getenv("AFFECTFER_MPI_LIBRARY");
    const char *names[] = {env && *env ? env : "libmpi.so.40", env && *env ? NULL : "libmpi.so", NULL};
    void *lib = NULL;
    char tried[384] = "";
    for (int k = 0; names[k] && !lib; k++) {
        /* RTLD_GLOBAL: Open MPI's components (mca_*.so) are plugins that resolve libmpi's symbols */
        lib = dlopen(names[k], RTLD_NOW | RTLD_GLOBAL);
        if (!lib) {
            const char *e = dlerror();
            snprintf(tried + strlen(tried), sizeof tried - strlen(tried), "%s%s", *tried ? "; " : "",
                     e ? e : names[k]);
        }
    }
    if (!lib) {
        /* the names tried are cut at 300 characters so the whole message fits */
        snprintf(load_error, sizeof load_error,
                 "no MPI library could be loaded (%.300s). Install Open MPI (Debian: libopenmpi3, "
                 "or the cluster's `module load openmpi`) or set AFFECTFER_MPI_LIBRARY to its libmpi.so",
                 tried);
        loaded = 0;
        return;
    }
    const char *name = env && *env ? env : "libmpi";
    const char *missing = NULL;
#define AF_LOAD_FN(ret, fn, args) \
    if (!missing && !(*(void **)&mpi.fn = dlsym(lib, #fn))) missing = #fn;
#define AF_LOAD_OBJ(obj) \
    if (!missing && !(mpi.obj = dlsym(lib, #obj))) missing = #obj;
    AF_MPI_OBJECTS(AF_LOAD_OBJ)
    AF_MPI_FUNCTIONS(AF_LOAD_FN)
    if (missing) {
        snprintf(load_error, sizeof load_error,
                 "%s is not Open MPI (it has no symbol %s): affectfer loads Open MPI's ABI, where "
                 "MPI handles are exported objects; MPICH-style libraries keep them as compile-time "
                 "constants. Point AFFECTFER_MPI_LIBRARY at Open MPI's libmpi.so",
                 name, missing);
        dlclose(lib);
        loaded = 0;
        return;
    }
    loaded = 1;
}

int af_mpi_available(char *why, size_t size) {
    pthread_mutex_lock(&mpi_lock);
    if (loaded < 0) try_load();
    int ok = loaded == 1;
    if (why && size) snprintf(why, size, "%s", ok ? "" : load_error);
    pthread_mutex_unlock(&mpi_lock);
    return ok;
}

/* The failure of MPI call `what` (lock held). */
static af_status mpi_fail(const char *what, int code) {
    char text[AF_MPI_MAX_ERROR_STRING + 1] = "";
    int length = 0;
    if (mpi.MPI_Error_string(code, text, &length) != AF_MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
    return AF_FAIL(AF_ERR_RUNTIME, "%s failed: %s", what, text);
}

/* MPI_Init_thread unless somebody already initialised MPI (lock held). */
static af_status init_library(void) {
    int initialised = 0, finalised = 0, provided = 0, rc;
    mpi.MPI_Initialized(&initialised);
    mpi.MPI_Finalized(&finalised);
    if (finalised) return AF_FAIL(AF_ERR_RUNTIME, "MPI was already finalised in this process: it cannot be initialised again");
    if (initialised) return AF_OK;
    if ((rc = mpi.MPI_Init_thread(NULL, NULL, AF_MPI_THREAD_SERIALIZED, &provided)) != AF_MPI_SUCCESS)
        return AF_FAIL(AF_ERR_RUNTIME, "MPI_Init_thread failed (code %d)", rc);
    we_initialised = 1;
    if (provided < AF_MPI_THREAD_SERIALIZED)
        return AF_FAIL(AF_ERR_RUNTIME, "this MPI gives thread level %d; affectfer needs MPI_THREAD_SERIALIZED (%d)",
                       provided, AF_MPI_THREAD_SERIALIZED);
    return AF_OK;
}

/* comm becomes the backend's communicator (lock held). */
static void adopt(MPI_Comm c) {
    comm = c;
    mpi.MPI_Comm_set_errhandler(comm, (MPI_Errhandler)mpi.ompi_mpi_errors_return);
    mpi.MPI_Comm_rank(comm, &backend.rank);
    mpi.MPI_Comm_size(comm, &backend.size);
    backend_ready = 1;
    af_sum_over_ranks = af_dist_sum_over_ranks;
}

af_status af_mpi_init(const af_dist_backend **out) {
    char why[512];
    if (!af_mpi_available(why, sizeof why)) return AF_FAIL(AF_ERR_RUNTIME, "%s", why);
    af_status st = AF_OK;
    int rc;
    MPI_Comm world;
    pthread_mutex_lock(&mpi_lock);
    if (backend_ready) goto done;
    if ((st = init_library()) != AF_OK) goto done;
    if ((rc = mpi.MPI_Comm_dup((MPI_Comm)mpi.ompi_mpi_comm_world, &world)) != AF_MPI_SUCCESS) {
        st = mpi_fail("MPI_Comm_dup", rc);
        goto done;
    }
    adopt(world);
done:
    pthread_mutex_unlock(&mpi_lock);
    if (st == AF_OK) *out = &backend;
    return st;
}

/* Processes that no MPI launcher started are singletons, each its own MPI_COMM_WORLD. MPI_Comm_join
 * (MPI-2, section 10.5.4) connects two of them over a socket they already share; Open MPI needs an
 * ompi-server for it (the caller's job: affectfer.distributed starts one). Open MPI can only talk
 * between processes of different jobs that were connected directly (the join exchanges their
 * addresses), so every pair joins first, in one global order (pairs (i, j), i < j, by i then j:
 * the first unfinished pair always has both ends free, so this cannot deadlock). Then the group
 * grows one rank per step: ranks 0..k-1 make an intercommunicator with rank k through the
 * (0, k) pair (MPI_Intercomm_create, rank 0 the leader), merged with k ordered last, so the ranks
 * of the final communicator are the launcher's. */
af_status af_mpi_init_joined(int rank, int size, const int *fds, af_dist_backend const **out) {
    char why[512];
    if (!af_mpi_available(why, sizeof why)) return AF_FAIL(AF_ERR_RUNTIME, "%s", why);
    af_status st = AF_OK;
    int rc = AF_MPI_SUCCESS;
    const char *what = "";
    MPI_Comm self = (MPI_Comm)mpi.ompi_mpi_comm_self, null = (MPI_Comm)mpi.ompi_mpi_comm_null;
    MPI_Comm group = null, with0 = null, inter, pair, grown;
    MPI_Comm *to_peer = calloc((size_t)size, sizeof *to_peer); /* rank 0: its (0, k) intercommunicators */
    if (!to_peer) return AF_FAIL(AF_ERR_OOM, "out of memory joining %d processes", size);
    pthread_mutex_lock(&mpi_lock);
    if (backend_ready) goto done;
    if ((st = init_library()) != AF_OK) goto done;
#define AF_MPI_STEP(call)                  \
    if ((rc = (call)) != AF_MPI_SUCCESS) { \
        what = #call;                      \
        goto mpi_failed;                   \
    }
    for (int i = 0; i < size; i++) {
        for (int j = i + 1; j < size; j++) {
            if (rank != i && rank != j) continue;
            AF_MPI_STEP(mpi.MPI_Comm_join(fds[rank == i ? j : i], &inter));
            if (i == 0 && rank == 0) to_peer[j] = inter;
            else if (i == 0) with0 = inter;
            else mpi.MPI_Comm_free(&inter);
        }
    }
    if (rank == 0) AF_MPI_STEP(mpi.MPI_Comm_dup(self, &group));
    for (int k = 1; k < size; k++) {
        if (rank == 0 || rank == k) {
            AF_MPI_STEP(mpi.MPI_Intercomm_merge(rank == 0 ? to_peer[k] : with0, rank == k, &pair));
            AF_MPI_STEP(mpi.MPI_Intercomm_create(rank == k ? self : group, 0, pair, rank == k ? 0 : 1, k, &inter));
            mpi.MPI_Comm_free(&pair);
        } else if (rank < k) {
            AF_MPI_STEP(mpi.MPI_Intercomm_create(group, 0, null, 0, k, &inter));
        } else {
            continue;
        }
        AF_MPI_STEP(mpi.MPI_Intercomm_merge(inter, rank == k, &grown));
        mpi.MPI_Comm_free(&inter);
        if (group != null) mpi.MPI_Comm_free(&group);
        group = grown;
    }
    adopt(group);
    if (backend.rank != rank || backend.size != size)
        st = AF_FAIL(AF_ERR_INTERNAL, "joined communicator says rank %d of %d, expected %d of %d", backend.rank,
                     backend.size, rank, size);
    goto done;
mpi_failed:
    st = mpi_fail(what, rc);
done:
    for (int k = 1; k < size; k++)
        if (to_peer[k]) mpi.MPI_Comm_free(&to_peer[k]);
    if (with0 != null) mpi.MPI_Comm_free(&with0);
    pthread_mutex_unlock(&mpi_lock);
    free(to_peer);
    if (st == AF_OK) *out = &backend;
    return st;
}

const af_dist_backend *af_mpi_backend(void) {
    pthread_mutex_lock(&mpi_lock);
    const af_dist_backend *b = backend_ready ? &backend : NULL;
    pthread_mutex_unlock(&mpi_lock);
    return b;
}

void af_mpi_finalize(void) {
    pthread_mutex_lock(&mpi_lock);
    if (backend_ready) {
        af_sum_over_ranks = NULL;
        mpi.MPI_Comm_free(&comm);
        backend_ready = 0;
        if (we_initialised) mpi.MPI_Finalize();
        we_initialised = 0;
    }
    pthread_mutex_unlock(&mpi_lock);
}

/* ---- requests and collectives ---- */

struct af_dist_request {
    MPI_Request handle; /* MPI_REQUEST_NULL (Open MPI: &ompi_request_null) once MPI_Test completed it */
    int done;
};

static af_status new_request(af_dist_request **req) {
    *req = calloc(1, sizeof **req);
    return *req ? AF_OK : AF_FAIL(AF_ERR_OOM, "out of memory for an MPI request");
}

static af_status check_host(const af_tensor *t, const char *what) {
    if (t->device.type != AF_DEVICE_CPU)
        return AF_FAIL(AF_ERR_DEVICE, "%s: the MPI backend takes CPU tensors, got a tensor on cuda:%d", what,
                       t->device.index);
    return AF_OK;
}

static af_status reduce_type(af_dtype dtype, MPI_Datatype *type) {
    switch (dtype) {
    case AF_DTYPE_F32: *type = (MPI_Datatype)mpi.ompi_mpi_float; return AF_OK;
    case AF_DTYPE_F64: *type = (MPI_Datatype)mpi.ompi_mpi_double; return AF_OK;
    case AF_DTYPE_I32: *type = (MPI_Datatype)mpi.ompi_mpi_int; return AF_OK;
    case AF_DTYPE_I64: *type = (MPI_Datatype)mpi.ompi_mpi_long_long_int; return AF_OK;
    case AF_DTYPE_U8:
    case AF_DTYPE_BOOL: *type = (MPI_Datatype)mpi.ompi_mpi_unsigned_char; return AF_OK;
    default:
        return AF_FAIL(AF_ERR_TYPE, "all_reduce: tensor of dtype %s is not supported by the MPI backend "
                       "(float32, float64, int32, int64, uint8, bool)", af_dtype_name(dtype));
    }
}

static af_status count_of(size_t n, const char *what, int *count) {
    if (n > INT_MAX)
        return AF_FAIL(AF_ERR_VALUE, "%s: %zu elements exceed MPI's int count (%d)", what, n, INT_MAX);
    *count = (int)n;
    return AF_OK;
}

/* Runs a started call's status (lock held): on success counts it, on failure frees req. */
static af_status started(int rc, const char *what, af_dist_request **req) {
    if (rc != AF_MPI_SUCCESS) {
        af_status st = mpi_fail(what, rc);
        free(*req);
        *req = NULL;
        return st;
    }
    af_dist_count_started();
    return AF_OK;
}

static af_status mpi_allreduce(af_tensor *t, af_dist_op op, af_dist_request **req) {
    MPI_Datatype type = NULL;
    int count = 0;
    AF_TRY(check_host(t, "all_reduce"));
    AF_TRY(reduce_type(t->dtype, &type));
    AF_TRY(count_of((size_t)t->numel, "all_reduce", &count));
    void *ops[] = {mpi.ompi_mpi_op_sum, mpi.ompi_mpi_op_max, mpi.ompi_mpi_op_min};
    AF_TRY(new_request(req));
    pthread_mutex_lock(&mpi_lock);
    af_status st = started(mpi.MPI_Iallreduce(AF_MPI_IN_PLACE, af_tensor_data(t), count, type, (MPI_Op)ops[op], comm,
                                              &(*req)->handle),
                           "MPI_Iallreduce", req);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static af_status mpi_broadcast(af_tensor *t, int root, af_dist_request **req) {
    int count = 0;
    AF_TRY(check_host(t, "broadcast"));
    AF_TRY(count_of(af_tensor_nbytes(t), "broadcast", &count));
    if (root < 0 || root >= backend.size)
        return AF_FAIL(AF_ERR_VALUE, "broadcast: src must be a rank in [0, %d), got %d", backend.size, root);
    AF_TRY(new_request(req));
    pthread_mutex_lock(&mpi_lock);
    af_status st = started(mpi.MPI_Ibcast(af_tensor_data(t), count, (MPI_Datatype)mpi.ompi_mpi_byte, root, comm,
                                          &(*req)->handle),
                           "MPI_Ibcast", req);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static af_status mpi_allgather(const af_tensor *in, af_tensor *out, af_dist_request **req) {
    int count = 0;
    AF_TRY(check_host(in, "all_gather"));
    AF_TRY(check_host(out, "all_gather"));
    if (in->dtype != out->dtype || out->numel != in->numel * backend.size)
        return AF_FAIL(AF_ERR_VALUE, "all_gather: out must be %s with %lld elements (%d ranks x %lld), got %s with %lld",
                       af_dtype_name(in->dtype), (long long)(in->numel * backend.size), backend.size,
                       (long long)in->numel, af_dtype_name(out->dtype), (long long)out->numel);
    AF_TRY(count_of(af_tensor_nbytes(out), "all_gather", &count));
    count = (int)af_tensor_nbytes(in);
    AF_TRY(new_request(req));
    pthread_mutex_lock(&mpi_lock);
    MPI_Datatype byte = (MPI_Datatype)mpi.ompi_mpi_byte;
    af_status st = started(mpi.MPI_Iallgather(af_tensor_data(in), count, byte, af_tensor_data(out), count, byte, comm,
                                              &(*req)->handle),
                           "MPI_Iallgather", req);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static af_status mpi_barrier(af_dist_request **req) {
    AF_TRY(new_request(req));
    pthread_mutex_lock(&mpi_lock);
    af_status st = started(mpi.MPI_Ibarrier(comm, &(*req)->handle), "MPI_Ibarrier", req);
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static af_status mpi_test(af_dist_request *req, int *done) {
    af_status st = AF_OK;
    pthread_mutex_lock(&mpi_lock);
    if (!req->done) {
        int flag = 0, rc = mpi.MPI_Test(&req->handle, &flag, AF_MPI_STATUS_IGNORE);
        if (rc != AF_MPI_SUCCESS) st = mpi_fail("MPI_Test", rc);
        else req->done = flag;
    }
    *done = req->done;
    pthread_mutex_unlock(&mpi_lock);
    return st;
}

static void mpi_request_free(af_dist_request *req) { free(req); }

static af_dist_backend backend = {
    .name = "mpi",
    .allreduce = mpi_allreduce,
    .broadcast = mpi_broadcast,
    .allgather = mpi_allgather,
    .barrier = mpi_barrier,
    .test = mpi_test,
    .request_free = mpi_request_free,
};
