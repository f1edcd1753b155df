/* What every backend shares: waits with a deadline, the watchdog's verdict, the progress counters
 * the heartbeats carry, and the clock. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "../ops/ops.h"
#include "dist.h"

static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static char fault[1024];
static atomic_int has_fault;
static atomic_long collectives_started;
static _Atomic double wait_began; /* af_dist_now() when the current wait began; 0: none */

double af_dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void af_dist_set_fault(const char *message) {
    pthread_mutex_lock(&fault_lock);
    snprintf(fault, sizeof fault, "%s", message ? message : "");
    atomic_store(&has_fault, fault[0] != 0);
    pthread_mutex_unlock(&fault_lock);
}

af_status af_dist_check_fault(void) {
    if (!atomic_load(&has_fault)) return AF_OK;
    pthread_mutex_lock(&fault_lock);
    af_status st = fault[0] ? AF_FAIL(AF_ERR_RUNTIME, "%s", fault) : AF_OK;
    pthread_mutex_unlock(&fault_lock);
    return st;
}

void af_dist_count_started(void) { atomic_fetch_add(&collectives_started, 1); }

void af_dist_progress(long *started, double *waiting) {
    *started = atomic_load(&collectives_started);
    double began = atomic_load(&wait_began);
    *waiting = began > 0 ? af_dist_now() - began : 0.0;
}

af_status af_dist_wait(const af_dist_backend *b, af_dist_request *req, double timeout, int *late) {
    *late = 0;
    double start = af_dist_now();
    double outer = atomic_exchange(&wait_began, start); /* a wait inside another keeps the outer start */
    if (outer > 0) atomic_store(&wait_began, outer);
    af_status st;
    for (;;) {
        if ((st = af_dist_check_fault()) != AF_OK) break;
        int done = 0;
        if ((st = b->test(req, &done)) != AF_OK) {
            /* a peer that died often shows first as a broken connection inside MPI; the watchdog's
             * verdict names the rank, so it is worth the wait while the deadline allows */
            while (af_dist_now() - start < timeout && af_dist_check_fault() == AF_OK) {
                struct timespec pause = {0, 10 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
            af_status verdict = af_dist_check_fault();
            if (verdict != AF_OK) st = verdict;
            break;
        }
        if (done) {
            b->request_free(req);
            break;
        }
        double elapsed = af_dist_now() - start;
        if (elapsed > timeout) {
            *late = 1;
            break;
        }
        /* MPI moves data only while it is called: poll back to back at first (short collectives
         * finish within microseconds), then every millisecond to leave the cores to others */
        if (elapsed < 1.0) {
            sched_yield();
        } else {
            struct timespec pause = {0, 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    if (outer <= 0) atomic_store(&wait_began, 0.0);
    return st;
}

const af_dist_backend *af_dist_backend_for(af_device device) {
    return device.type == AF_DEVICE_CPU ? af_mpi_backend() : NULL;
}

af_status af_dist_sum_over_ranks(af_tensor *t, double timeout) {
    const af_dist_backend *b = af_dist_backend_for(t->device);
    if (!b) return AF_FAIL(AF_ERR_DEVICE, "all_reduce: no process-group backend for %s tensors", t->device.type ==
                           AF_DEVICE_CPU ? "CPU" : "CUDA");
    af_dist_request *req = NULL;
    int late = 0;
    AF_TRY(b->allreduce(t, AF_DIST_SUM, &req));
    AF_TRY(af_dist_wait(b, req, timeout, &late));
    if (late)
        return AF_FAIL(AF_ERR_RUNTIME, "all_reduce: the other ranks did not join within %.0f s (its buffer is leaked: "
                       "the collective may still write into it)", timeout);
    return AF_OK;
}
