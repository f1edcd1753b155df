/* Collectives across processes, for data-parallel training (affectfer.distributed).
 *
 * A backend is a table of non-blocking collectives over one group of `size` processes: each call
 * starts the collective and hands back a request; af_dist_wait completes it. Open MPI (mpi.c,
 * loaded at run time) serves CPU tensors; an NCCL backend for CUDA tensors fills the same table.
 * Every rank must start the same collectives in the same order with the same sizes: that order is
 * what makes the results bitwise reproducible, and the count of collectives started is what the
 * watchdog (affectfer/distributed/__init__.py) compares across ranks to tell a hung peer.
 *
 * Waits never block forever: af_dist_wait gives up after its timeout (the request is then leaked,
 * with its buffers: the library may still write into them), and once the watchdog has judged a
 * peer dead or hung it calls af_dist_set_fault, after which every wait fails with that verdict.
 *
 * The bucketed gradient reducer behind DistributedDataParallel (reducer.c) runs on a backend and
 * the tape's gradient hooks (csrc/autograd/tape.h). */
#ifndef AF_DIST_H
#define AF_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "../core/tensor.h"

/* The codes affectfer.distributed passes (its _OPS table); a mean is a sum scaled afterwards. */
typedef enum af_dist_op { AF_DIST_SUM = 0, AF_DIST_MAX = 1, AF_DIST_MIN = 2 } af_dist_op;

typedef struct af_dist_request af_dist_request;

typedef struct af_dist_backend {
    const char *name;
    int rank, size;
    /* In place over every rank: t becomes op(t of rank 0, ..., t of rank size-1). */
    af_status (*allreduce)(af_tensor *t, af_dist_op op, af_dist_request **req);
    /* In place: t becomes rank root's t. */
    af_status (*broadcast)(af_tensor *t, int root, af_dist_request **req);
    /* out (size * numel(in) elements, in's dtype) becomes [in of rank 0, in of rank 1, ...]. */
    af_status (*allgather)(const af_tensor *in, af_tensor *out, af_dist_request **req);
    af_status (*barrier)(af_dist_request **req);
    /* *done = 1 once req has completed (testing a completed request again is fine); never blocks.
     * Only af_dist_wait (on success) and request_free release a request. */
    af_status (*test)(af_dist_request *req, int *done);
    void (*request_free)(af_dist_request *req);
} af_dist_backend;

/* Completes req: polls it back to back for its first second (MPI moves data only while it is
 * called), then every millisecond. On success req is freed. When `timeout` seconds pass first,
 * returns AF_OK with *late = 1 and req is left alone (leaked by the caller). Fails with the
 * watchdog's verdict once af_dist_set_fault has been called, or with the backend's error. */
af_status af_dist_wait(const af_dist_backend *b, af_dist_request *req, double timeout, int *late);

/* The watchdog's verdict: from now on every wait fails with `message` ("" clears it). */
void af_dist_set_fault(const char *message);
/* Fails with the verdict when one was given (for loops that poll without af_dist_wait). */
af_status af_dist_check_fault(void);
/* For the heartbeats: collectives started in this process so far, and the seconds the current
 * wait has lasted (0 when none is waiting). */
void af_dist_progress(long *started, double *waiting);
/* Backends count each collective they start. */
void af_dist_count_started(void);
/* The one clock of this layer: monotonic seconds. */
double af_dist_now(void);

/* The initialised backend that carries tensors on `device` (MPI for the CPU), or NULL: no group
 * (a single process), or none for that device yet. */
const af_dist_backend *af_dist_backend_for(af_device device);
/* t becomes the sum over the ranks, blocking up to `timeout` seconds: af_sum_over_ranks (ops.h,
 * the op all_reduce) while a group is formed. */
af_status af_dist_sum_over_ranks(af_tensor *t, double timeout);

/* ---- Open MPI, loaded at run time (mpi.c) ---- */

/* 1 when an Open MPI library loads and has every symbol we use; else 0 and the reason in why. */
int af_mpi_available(char *why, size_t size);
/* Initialises MPI (unless somebody already did) and returns the backend over MPI_COMM_WORLD. */
af_status af_mpi_init(const af_dist_backend **out);
/* The same for `size` processes that no MPI launcher started (each an MPI singleton): they join
 * over sockets into one communicator where each has `rank`. fds[k] is a connected socket to rank
 * k (fds[rank] unused). Open MPI needs an ompi-server for this (OMPI_MCA_pmix_server_uri set first). */
af_status af_mpi_init_joined(int rank, int size, const int *fds, const af_dist_backend **out);
/* The backend when af_mpi_init has succeeded, else NULL. */
const af_dist_backend *af_mpi_backend(void);
/* MPI_Finalize when we initialised MPI; the backend is gone afterwards. */
void af_mpi_finalize(void);

/* ---- the bucketed gradient reducer (reducer.c) ---- */

typedef struct af_reducer af_reducer;

/* params in the order their gradients are expected (DistributedDataParallel passes them in reverse
 * registration order); buckets of consecutive parameters of one dtype, each closed before it would
 * exceed bucket_bytes (a bigger parameter gets a bucket of its own). `timeout`: seconds the end of
 * backward waits for the buckets before it fails. */
af_status af_reducer_new(const af_dist_backend *b, af_tensor *const *params, int64_t n, int64_t bucket_bytes,
                         double timeout, af_reducer **out);
void af_reducer_free(af_reducer *r);
/* Arms the reducer for the next backward (installs its gradient hooks): as each parameter's
 * gradient becomes final its bucket fills, full buckets are all-reduced in index order while
 * backward goes on, and when backward ends every .grad holds the mean over ranks. */
af_status af_reducer_prepare(af_reducer *r);
/* Removes its hooks if armed (the next backward stays local). */
void af_reducer_disarm(af_reducer *r);
int64_t af_reducer_bucket_count(const af_reducer *r);
/* Bucket b holds params[first..stop). */
void af_reducer_bucket_range(const af_reducer *r, int64_t b, int64_t *first, int64_t *stop);
/* Buckets of the last synchronised backward that started before backward ended. */
int64_t af_reducer_started_in_backward(const af_reducer *r);
/* Seconds the end of the last synchronised backward spent on communication (starting the
 * remaining buckets, waiting for all, writing the means back): what overlap did not hide. */
double af_reducer_last_finish_seconds(const af_reducer *r);

#endif
