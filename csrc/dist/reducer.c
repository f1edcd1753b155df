/* The bucketed gradient reducer behind DistributedDataParallel.
 *
 * Averaging gradients one parameter at a time would pay a collective's latency per tensor; one
 * all-reduce of everything at the end of backward would hide none of it behind compute. As in
 * PyTorch's DDP (Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel
 * Training", VLDB 2020), parameters are grouped into flat buckets of about 25 MB in the order their
 * gradients appear (reverse registration order), and a bucket is all-reduced as soon as the
 * gradients of all its parameters are final, while backward computes the rest.
 *
 * The tape tells us when a gradient is final (csrc/autograd/tape.h: ready(leaf) right after the
 * last node that accumulates into it), and when backward is over (done). Buckets start strictly in
 * index order (a ready bucket waits for the ones before it), so every rank issues the same
 * collectives in the same order, and the sums, done by MPI over the same sizes, are bitwise
 * reproducible run to run. A progress thread keeps calling MPI_Test on the buckets in flight:
 * MPI moves data only while it is called, and backward does not call it.
 *
 * At done() the buckets that never filled (a parameter that no forward used, or whose ready never
 * came) start with what their parameters hold, and when all have completed every .grad becomes the
 * sum divided by the number of ranks. Each bucket also carries one "has a gradient" count per
 * parameter, reduced with the values, so a parameter that no rank used keeps .grad None on every
 * rank, and one that some rank used gets the mean on all: the ranks never disagree about which
 * parameters an optimizer step touches.
 *
 * Gradient accumulation (no_sync): a backward that the reducer was not armed for runs without
 * hooks and leaves the local sums in .grad; the next armed backward reduces those sums. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../autograd/tape.h"
#include "dist.h"

typedef struct bucket {
    int64_t first, stop; /* params[first..stop) */
    int64_t numel;       /* of the values; then one count per parameter */
    af_tensor *flat;
    int64_t pending;     /* parameters whose gradient is not final yet */
    af_dist_request *req; /* while in flight */
    int complete;        /* seen complete by the progress thread */
    int broken;          /* its test failed: left to the final wait to report */
} bucket;

struct af_reducer {
    const af_dist_backend *b;
    int64_t n;
    af_tensor **params;
    int64_t *bucket_of, *offset; /* per parameter: its bucket, its first element in the bucket */
    unsigned char *ready;        /* per parameter, this backward */
    int64_t n_buckets;
    bucket *buckets;
    size_t cap;      /* open-addressing table leaf pointer -> parameter index + 1 */
    int64_t *table;
    double timeout;

    pthread_mutex_t mu; /* everything below, and the buckets' in-flight state */
    pthread_cond_t wake;
    pthread_t progress;
    int progress_running, stop, finishing;
    int64_t next_start; /* first bucket not started yet */
    int64_t started_in_backward;
    double last_finish;
};

/* The reducer whose hooks are installed (one set per process, csrc/autograd/tape.h). */
static pthread_mutex_t hooked_lock = PTHREAD_MUTEX_INITIALIZER;
static af_reducer *hooked;

static int64_t lookup(const af_reducer *r, const af_tensor *leaf) {
    size_t h = ((uintptr_t)leaf >> 4) & (r->cap - 1);
    while (r->table[h]) {
        if (r->params[r->table[h] - 1] == leaf) return r->table[h] - 1;
        h = (h + 1) & (r->cap - 1);
    }
    return -1;
}

static void sleep_us(long us) {
    struct timespec pause = {0, us * 1000};
    nanosleep(&pause, NULL);
}

static void *progress_main(void *arg) {
    af_reducer *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        int busy = 0;
        for (int64_t k = 0; !r->finishing && k < r->next_start; k++) {
            bucket *bk = &r->buckets[k];
            if (!bk->req || bk->complete || bk->broken) continue;
            int done = 0;
            if (r->b->test(bk->req, &done) != AF_OK) bk->broken = 1;
            bk->complete = done;
            busy |= !done && !bk->broken;
        }
        if (!busy) {
            pthread_cond_wait(&r->wake, &r->mu);
        } else {
            pthread_mutex_unlock(&r->mu);
            sleep_us(50);
            pthread_mutex_lock(&r->mu);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Copies the parameters' gradients (zeros where there is none) and their "has a gradient" counts
 * into bucket k and starts its all-reduce (lock held). */
static af_status start_bucket(af_reducer *r, int64_t k) {
    bucket *bk = &r->buckets[k];
    size_t esize = af_dtype_size(bk->flat->dtype);
    char *flat = af_tensor_data(bk->flat);
    for (int64_t p = bk->first; p < bk->stop; p++) {
        const af_tensor *g = r->params[p]->grad;
        char *dst = flat + (size_t)r->offset[p] * esize;
        if (g) memcpy(dst, af_tensor_data(g), af_tensor_nbytes(g));
        else memset(dst, 0, (size_t)r->params[p]->numel * esize);
        char *count = flat + (size_t)(bk->numel + p - bk->first) * esize;
        if (bk->flat->dtype == AF_DTYPE_F32) *(float *)count = g ? 1.0f : 0.0f;
        else *(double *)count = g ? 1.0 : 0.0;
    }
    bk->complete = bk->broken = 0;
    AF_TRY(r->b->allreduce(bk->flat, AF_DIST_SUM, &bk->req));
    pthread_cond_signal(&r->wake);
    return AF_OK;
}

static af_status on_ready(af_tensor *leaf, void *ctx) {
    af_reducer *r = ctx;
    int64_t p = lookup(r, leaf);
    if (p < 0) return AF_OK; /* a leaf of the graph that is not one of ours (an input) */
    af_status st = AF_OK;
    pthread_mutex_lock(&r->mu);
    if (!r->ready[p] && !r->finishing) {
        r->ready[p] = 1;
        r->buckets[r->bucket_of[p]].pending--;
        while (st == AF_OK && r->next_start < r->n_buckets && r->buckets[r->next_start].pending == 0)
            if ((st = start_bucket(r, r->next_start)) == AF_OK) r->next_start++;
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

static void unhook(af_reducer *r) {
    pthread_mutex_lock(&hooked_lock);
    if (hooked == r) {
        af_set_grad_hooks(NULL);
        hooked = NULL;
    }
    pthread_mutex_unlock(&hooked_lock);
}

/* Waits for every started bucket (the lock not held); a bucket that misses the deadline is left in
 * flight and so are the others after it: the reducer cannot be used again. */
static af_status wait_all(af_reducer *r, double start) {
    for (int64_t k = 0; k < r->next_start; k++) {
        bucket *bk = &r->buckets[k];
        if (!bk->req) continue;
        int late = 0;
        double left = r->timeout - (af_dist_now() - start);
        AF_TRY(af_dist_wait(r->b, bk->req, left > 0 ? left : 0, &late));
        if (late)
            return AF_FAIL(AF_ERR_RUNTIME,
                           "DistributedDataParallel: the gradient all-reduce of bucket %lld of %lld did not complete "
                           "within %.0f s: a peer rank died or stopped training",
                           (long long)k, (long long)r->n_buckets, r->timeout);
        bk->req = NULL;
    }
    return AF_OK;
}

/* The mean over ranks into every .grad a rank has (scalar_t is float or double). */
#define AF_WRITE_MEAN(scalar_t)                                                                   \
    do {                                                                                          \
        const scalar_t *flat = af_tensor_data(bk->flat);                                          \
        if (flat[bk->numel + p - bk->first] == 0) break; /* no rank has a gradient for it */      \
        AF_TRY(af_ensure_leaf_grad(param));                                                       \
        scalar_t *g = af_tensor_data(param->grad);                                                \
        const scalar_t *sum = flat + r->offset[p];                                                \
        const scalar_t ranks = (scalar_t)r->b->size;                                              \
        for (int64_t i = 0; i < param->numel; i++) g[i] = sum[i] / ranks;                         \
        af_tensor_bump_version(param->grad);                                                      \
    } while (0)

static af_status on_done(void *ctx) {
    af_reducer *r = ctx;
    double start = af_dist_now();
    unhook(r); /* the next backward is local unless a forward arms the reducer again */
    af_status st = AF_OK;
    pthread_mutex_lock(&r->mu);
    r->finishing = 1;
    r->started_in_backward = r->next_start;
    while (st == AF_OK && r->next_start < r->n_buckets)
        if ((st = start_bucket(r, r->next_start)) == AF_OK) r->next_start++;
    pthread_mutex_unlock(&r->mu);
    if (st == AF_OK) st = wait_all(r, start);
    if (st != AF_OK) return st;
    for (int64_t k = 0; k < r->n_buckets; k++) {
        bucket *bk = &r->buckets[k];
        for (int64_t p = bk->first; p < bk->stop; p++) {
            af_tensor *param = r->params[p];
            if (bk->flat->dtype == AF_DTYPE_F32) AF_WRITE_MEAN(float);
            else AF_WRITE_MEAN(double);
        }
    }
    pthread_mutex_lock(&r->mu);
    r->next_start = 0;
    r->finishing = 0;
    r->last_finish = af_dist_now() - start;
    pthread_mutex_unlock(&r->mu);
    return AF_OK;
}

af_status af_reducer_prepare(af_reducer *r) {
    pthread_mutex_lock(&r->mu);
    int64_t in_flight = 0;
    for (int64_t k = 0; k < r->next_start; k++) in_flight += r->buckets[k].req != NULL;
    pthread_mutex_unlock(&r->mu);
    if (in_flight) {
        /* a backward failed after starting buckets (an interrupt, an error in an op): the other
         * ranks started the same ones, so they complete; drain them before reusing the buffers */
        pthread_mutex_lock(&r->mu);
        r->finishing = 1; /* the progress thread leaves the requests to us */
        pthread_mutex_unlock(&r->mu);
        AF_TRY(wait_all(r, af_dist_now()));
    }
    pthread_mutex_lock(&r->mu);
    r->next_start = 0;
    r->finishing = 0;
    memset(r->ready, 0, (size_t)r->n);
    for (int64_t k = 0; k < r->n_buckets; k++) r->buckets[k].pending = r->buckets[k].stop - r->buckets[k].first;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&hooked_lock);
    af_grad_hooks hooks = {.ready = on_ready, .done = on_done, .ctx = r};
    af_set_grad_hooks(&hooks);
    hooked = r;
    pthread_mutex_unlock(&hooked_lock);
    return AF_OK;
}

void af_reducer_disarm(af_reducer *r) { unhook(r); }

af_status af_reducer_new(const af_dist_backend *b, af_tensor *const *params, int64_t n, int64_t bucket_bytes,
                         double timeout, af_reducer **out) {
    if (bucket_bytes < 1) return AF_FAIL(AF_ERR_VALUE, "bucket size must be at least 1 byte, got %lld", (long long)bucket_bytes);
    for (int64_t p = 0; p < n; p++) {
        if (params[p]->device.type != AF_DEVICE_CPU)
            return AF_FAIL(AF_ERR_DEVICE, "DistributedDataParallel over %s needs CPU parameters; parameter %lld is "
                           "on cuda:%d", b->name, (long long)p, params[p]->device.index);
        if (params[p]->dtype != AF_DTYPE_F32 && params[p]->dtype != AF_DTYPE_F64)
            return AF_FAIL(AF_ERR_TYPE, "DistributedDataParallel reduces float32 and float64 gradients; parameter %lld "
                           "is %s", (long long)p, af_dtype_name(params[p]->dtype));
        for (int64_t q = 0; q < p; q++)
            if (params[q] == params[p])
                return AF_FAIL(AF_ERR_VALUE, "parameter %lld is passed twice (also as parameter %lld)", (long long)p,
                               (long long)q);
    }
    af_status st = AF_OK;
    af_reducer *r = calloc(1, sizeof *r);
    if (!r) return AF_FAIL(AF_ERR_OOM, "out of memory for the gradient reducer");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->b = b;
    r->n = n;
    r->timeout = timeout;
    r->cap = 16;
    while (r->cap < 2 * (size_t)n + 2) r->cap *= 2;
    r->params = calloc((size_t)(n ? n : 1), sizeof *r->params);
    r->bucket_of = calloc((size_t)(n ? n : 1), sizeof *r->bucket_of);
    r->offset = calloc((size_t)(n ? n : 1), sizeof *r->offset);
    r->ready = calloc((size_t)(n ? n : 1), 1);
    r->buckets = calloc((size_t)(n ? n : 1), sizeof *r->buckets);
    r->table = calloc(r->cap, sizeof *r->table);
    if (!r->params || !r->bucket_of || !r->offset || !r->ready || !r->buckets || !r->table)
        AF_CHECK_FAIL(AF_ERR_OOM, "out of memory for the gradient reducer");
    for (int64_t p = 0; p < n; p++) {
        af_tensor_retain(params[p]);
        r->params[p] = params[p];
        size_t h = ((uintptr_t)params[p] >> 4) & (r->cap - 1);
        while (r->table[h]) h = (h + 1) & (r->cap - 1);
        r->table[h] = p + 1;
    }
    /* Consecutive parameters of one dtype; a parameter that would take the bucket past
     * bucket_bytes opens the next one. */
    int64_t bytes = 0;
    for (int64_t p = 0; p < n; p++) {
        int64_t nbytes = (int64_t)af_tensor_nbytes(params[p]);
        bucket *cur = r->n_buckets ? &r->buckets[r->n_buckets - 1] : NULL;
        if (!cur || params[p]->dtype != params[cur->first]->dtype || (cur->stop > cur->first && bytes + nbytes > bucket_bytes)) {
            cur = &r->buckets[r->n_buckets++];
            cur->first = cur->stop = p;
            bytes = 0;
        }
        r->bucket_of[p] = r->n_buckets - 1;
        r->offset[p] = cur->numel;
        cur->numel += params[p]->numel;
        cur->stop = p + 1;
        bytes += nbytes;
    }
    for (int64_t k = 0; k < r->n_buckets; k++) {
        bucket *bk = &r->buckets[k];
        int64_t shape[1] = {bk->numel + bk->stop - bk->first};
        AF_CHECK(af_tensor_zeros(params[bk->first]->dtype, AF_CPU, 1, shape, &bk->flat));
    }
    if (pthread_create(&r->progress, NULL, progress_main, r) != 0)
        AF_CHECK_FAIL(AF_ERR_RUNTIME, "cannot start the reducer's progress thread");
    r->progress_running = 1;
    *out = r;
    return AF_OK;
fail:
    af_reducer_free(r);
    return st;
}

void af_reducer_free(af_reducer *r) {
    if (!r) return;
    unhook(r);
    if (r->progress_running) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_signal(&r->wake);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->progress, NULL);
    }
    for (int64_t k = 0; r->buckets && k < r->n_buckets; k++) {
        /* a bucket still in flight (a peer died) may yet be written by MPI: leak its buffer */
        if (!r->buckets[k].req) af_tensor_release(r->buckets[k].flat);
    }
    for (int64_t p = 0; r->params && p < r->n; p++) af_tensor_release(r->params[p]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->wake);
    free(r->params);
    free(r->bucket_of);
    free(r->offset);
    free(r->ready);
    free(r->buckets);
    free(r->table);
    free(r);
}

int64_t af_reducer_bucket_count(const af_reducer *r) { return r->n_buckets; }

void af_reducer_bucket_range(const af_reducer *r, int64_t b, int64_t *first, int64_t *stop) {
    *first = r->buckets[b].first;
    *stop = r->buckets[b].stop;
}

int64_t af_reducer_started_in_backward(const af_reducer *r) { return r->started_in_backward; }

double af_reducer_last_finish_seconds(const af_reducer *r) { return r->last_finish; }
