/* The loader's bounded, ordered batch queue: `capacity` batch slots reused round-robin (batch b lives
 * in slot b % capacity), one mutex, two condition variables (workers wait for a free slot, the
 * consumer for the next batch in order). See the summary in data.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "data.h"

/* ---- recycled image buffers ----
 * A batch of 64 RGB 224x224 images is 38 MB of float32. Fresh memory of that size comes from mmap,
 * and the kernel faults in and zeroes every 4 KB page on first write: measured at 100-300 us per
 * image on a loaded 2-core machine, as much as the whole augmentation. So image buffers are
 * recycled: a batch tensor wraps a pool buffer, and when its last reference drops (on any thread,
 * whenever the consumer lets the batch go) the buffer returns to the pool for a later batch. A pool
 * is shared by its holders (the queue of each epoch, and the Python Loader, so buffers carry over
 * from one epoch to the next) and by every buffer out; the free buffers go when the last holder
 * lets go, the pool itself when the last buffer comes back. Fresh buffers of 2 MB and more ask for
 * transparent huge pages (fewer, cheaper faults where the kernel allows them). */
struct af_batch_pool {
    pthread_mutex_t mu;
    int refs;    /* holders + buffers out */
    int holders; /* queues and owners: while > 0, returned buffers are kept for reuse */
    size_t nbytes; /* of the buffers kept; a buffer of another size is freed on return */
    int nfree, max_free;
    void **free_list; /* AF_BATCH_POOL_MAX blocks */
};

#define AF_BATCH_POOL_MAX (AF_LOADER_MAX_PREFETCH + 2)
#define POOL_HEADER 64 /* a block starts with its pool and size; the images follow, 64-byte aligned */
#define POOL_HUGE ((size_t)2 << 20)

typedef struct {
    af_batch_pool *pool;
    size_t nbytes;
} pool_header;

af_batch_pool *af_batch_pool_new(void) {
    af_batch_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->free_list = calloc(AF_BATCH_POOL_MAX, sizeof(void *));
    if (!p->free_list) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->refs = p->holders = 1;
    return p;
}

static void pool_destroy(af_batch_pool *p) {
    pthread_mutex_destroy(&p->mu);
    free(p->free_list);
    free(p);
}

static void pool_hold(af_batch_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->refs++;
    p->holders++;
    pthread_mutex_unlock(&p->mu);
}

void af_batch_pool_release(af_batch_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (--p->holders == 0) {
        for (int i = 0; i < p->nfree; i++) free(p->free_list[i]);
        p->nfree = 0;
    }
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (last) pool_destroy(p);
}

/* Keep up to max_free buffers of nbytes from now on (a new size drops the buffers kept). */
static void pool_prepare(af_batch_pool *p, size_t nbytes, int max_free) {
    pthread_mutex_lock(&p->mu);
    if (nbytes != p->nbytes) {
        for (int i = 0; i < p->nfree; i++) free(p->free_list[i]);
        p->nfree = 0;
        p->nbytes = nbytes;
    }
    if (max_free > AF_BATCH_POOL_MAX) max_free = AF_BATCH_POOL_MAX;
    if (max_free > p->max_free) p->max_free = max_free;
    pthread_mutex_unlock(&p->mu);
}

/* The tensor's release callback: the block goes back to the pool, or is freed. */
static void pool_return(void *block) {
    pool_header *h = block;
    af_batch_pool *p = h->pool;
    pthread_mutex_lock(&p->mu);
    if (p->holders > 0 && h->nbytes == p->nbytes && p->nfree < p->max_free) {
        p->free_list[p->nfree++] = block;
        block = NULL;
    }
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    free(block);
    if (last) pool_destroy(p);
}

/* A (rows, C, H, W) float32 tensor over a pool buffer of the prepared size (rows <= the batch size). */
static af_status pool_tensor(af_batch_pool *p, const int64_t shape[4], af_tensor **out) {
    void *block = NULL;
    pthread_mutex_lock(&p->mu);
    size_t nbytes = p->nbytes;
    if (p->nfree > 0) block = p->free_list[--p->nfree];
    p->refs++;
    pthread_mutex_unlock(&p->mu);
    if (!block) {
        size_t total = POOL_HEADER + nbytes;
        if (posix_memalign(&block, total >= POOL_HUGE ? POOL_HUGE : 64, total) != 0) block = NULL;
#ifdef MADV_HUGEPAGE
        if (block && total >= POOL_HUGE) madvise(block, total, MADV_HUGEPAGE); /* advice only: failure is harmless */
#endif
    }
    if (!block) {
        pthread_mutex_lock(&p->mu);
        p->refs--; /* the queue still holds the pool: never the last reference */
        pthread_mutex_unlock(&p->mu);
        return AF_FAIL(AF_ERR_OOM, "loader: cannot allocate a batch of %zu bytes", nbytes);
    }
    pool_header *h = block;
    h->pool = p;
    h->nbytes = nbytes;
    af_status st = af_tensor_wrap(AF_DTYPE_F32, AF_CPU, 4, shape, (char *)block + POOL_HEADER, pool_return, block, out);
    if (st != AF_OK) pool_return(block);
    return st;
}

struct af_batch_queue {
    pthread_mutex_t mu;
    pthread_cond_t can_work; /* a slot was freed, or stop */
    pthread_cond_t can_take; /* a batch became ready, or stop/failure */
    af_batch *slots;
    int capacity;
    int64_t n_samples, batch_size, n_batches;
    int C, H, W, T;
    int64_t next_sample; /* next position to hand to a worker */
    int64_t taken;       /* batches handed to the consumer */
    int stop;
    af_status error;
    int64_t error_batch; /* the batch holding the failing sample */
    char message[1024];
    af_batch_pool *pool; /* image buffers, see above */
};

af_status af_queue_new(int capacity, int64_t n_samples, int64_t batch_size, int drop_last, int C, int H, int W, int T,
                       af_batch_pool *pool, af_batch_queue **out) {
    if (capacity < 1) return AF_FAIL(AF_ERR_VALUE, "loader: 'prefetch' must be >= 1, got %d", capacity);
    if (batch_size < 1) return AF_FAIL(AF_ERR_VALUE, "loader: 'batch_size' must be >= 1, got %lld", (long long)batch_size);
    af_batch_queue *q = calloc(1, sizeof(*q));
    if (!q) return AF_FAIL(AF_ERR_OOM, "loader: out of memory");
    q->slots = calloc((size_t)capacity, sizeof(af_batch));
    if (!q->slots) {
        free(q);
        return AF_FAIL(AF_ERR_OOM, "loader: out of memory");
    }
    if (pool) pool_hold(pool);
    else if (!(pool = af_batch_pool_new())) {
        free(q->slots);
        free(q);
        return AF_FAIL(AF_ERR_OOM, "loader: out of memory");
    }
    q->pool = pool;
    /* buffers in use at most: the capacity in the queue, one the consumer holds, one it has just let
     * go of; more are freed on return */
    int64_t rows = batch_size < n_samples ? batch_size : n_samples; /* a batch never holds more */
    pool_prepare(pool, sizeof(float) * (size_t)(rows > 0 ? rows : 0) * C * H * W, capacity + 2);
    for (int i = 0; i < capacity; i++) q->slots[i].index = -1;
    q->capacity = capacity;
    q->batch_size = batch_size;
    q->n_batches = drop_last ? n_samples / batch_size : (n_samples + batch_size - 1) / batch_size;
    q->n_samples = drop_last ? q->n_batches * batch_size : n_samples; /* drop_last skips the tail */
    q->C = C, q->H = H, q->W = W, q->T = T;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->can_work, NULL);
    pthread_cond_init(&q->can_take, NULL);
    *out = q;
    return AF_OK;
}

int64_t af_queue_num_batches(const af_batch_queue *q) { return q->n_batches; }

static void release_batch(af_batch *b) {
    af_tensor_release(b->images);
    af_tensor_release(b->labels);
    af_tensor_release(b->targets);
    b->images = b->labels = b->targets = NULL;
    b->index = -1;
}

/* Allocates the buffers of batch `index` in slot b (called with the lock held: allocation is cheap
 * next to decoding, and it keeps the slot protocol simple). */
static af_status open_batch(af_batch_queue *q, af_batch *b, int64_t index) {
    int64_t first = index * q->batch_size;
    int64_t rows = q->n_samples - first < q->batch_size ? q->n_samples - first : q->batch_size;
    int64_t ishape[4] = {rows, q->C, q->H, q->W}, tshape[2] = {rows, q->T};
    af_status st = pool_tensor(q->pool, ishape, &b->images);
    if (st == AF_OK) st = af_tensor_new(AF_DTYPE_I64, AF_CPU, 1, ishape, &b->labels);
    if (st == AF_OK && q->T > 0) st = af_tensor_new(AF_DTYPE_F32, AF_CPU, 2, tshape, &b->targets);
    if (st != AF_OK) {
        release_batch(b);
        return st;
    }
    b->index = index;
    b->remaining = rows;
    return AF_OK;
}

int af_queue_claim(af_batch_queue *q, int64_t *s, af_batch **batch, int64_t *row, af_status *st) {
    *st = AF_OK;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->stop || q->next_sample >= q->n_samples) break;
        int64_t b = q->next_sample / q->batch_size;
        if (b >= q->taken + q->capacity) { /* the queue is full: wait for the consumer */
            pthread_cond_wait(&q->can_work, &q->mu);
            continue;
        }
        af_batch *slot = &q->slots[b % q->capacity];
        if (slot->index != b) {
            af_status ost = open_batch(q, slot, b);
            if (ost != AF_OK) {
                *st = ost;
                *s = q->next_sample; /* the position that could not get a buffer */
                break;
            }
        }
        *s = q->next_sample++;
        *batch = slot;
        *row = *s - b * q->batch_size;
        pthread_mutex_unlock(&q->mu);
        return 1;
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void af_queue_row_done(af_batch_queue *q, af_batch *batch) {
    pthread_mutex_lock(&q->mu);
    if (--batch->remaining == 0) pthread_cond_broadcast(&q->can_take);
    pthread_mutex_unlock(&q->mu);
}

void af_queue_fail(af_batch_queue *q, af_status st, int64_t s) {
    pthread_mutex_lock(&q->mu);
    int64_t b = s / q->batch_size;
    if (q->error == AF_OK || b < q->error_batch) { /* report the earliest failure, as a serial loop would */
        q->error = st;
        q->error_batch = b;
        snprintf(q->message, sizeof(q->message), "%s", af_error_message());
    }
    q->stop = 1;
    pthread_cond_broadcast(&q->can_work);
    pthread_cond_broadcast(&q->can_take);
    pthread_mutex_unlock(&q->mu);
}

af_status af_queue_take(af_batch_queue *q, int timeout_ms, af_batch *out, int *got) {
    memset(out, 0, sizeof(*out));
    *got = 0;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    af_status st = AF_OK;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        /* every position before a failing one was claimed, so the batches before error_batch still
         * complete: deliver them first, then report the error */
        if (q->error != AF_OK && q->taken >= q->error_batch) {
            st = AF_FAIL(q->error, "%s", q->message);
            break;
        }
        if (q->taken >= q->n_batches) { /* end of the epoch */
            *got = 1;
            break;
        }
        if (q->stop && q->error == AF_OK) {
            st = AF_FAIL(AF_ERR_RUNTIME, "loader: this iteration was stopped");
            break;
        }
        af_batch *slot = &q->slots[q->taken % q->capacity];
        if (slot->index == q->taken && slot->remaining == 0) {
            *out = *slot;
            slot->images = slot->labels = slot->targets = NULL; /* ownership moves to the caller */
            slot->index = -1;
            q->taken++;
            *got = 1;
            pthread_cond_broadcast(&q->can_work);
            break;
        }
        if (pthread_cond_timedwait(&q->can_take, &q->mu, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&q->mu);
    return st;
}

void af_queue_stop(af_batch_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->can_work);
    pthread_cond_broadcast(&q->can_take);
    pthread_mutex_unlock(&q->mu);
}

void af_queue_free(af_batch_queue *q) {
    if (!q) return;
    for (int i = 0; i < q->capacity; i++) release_batch(&q->slots[i]);
    free(q->slots);
    af_batch_pool_release(q->pool);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->can_work);
    pthread_cond_destroy(&q->can_take);
    free(q);
}
