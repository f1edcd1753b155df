#include "alloc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Host block cache.
 *
 * glibc serves a large request with a fresh mmap and unmaps it on free (M_MMAP_THRESHOLD, 128 KiB
 * to 32 MiB adaptive), so every activation, gradient and im2col buffer of a training step was
 * new memory whose first touch page-faults each 4 KiB page: 12-15% of a ResNet-50 CPU step. Freed
 * large blocks are therefore kept here and handed to the next request of their size class, the
 * scheme of PyTorch's CUDA caching allocator (PyTorch docs, "CUDA semantics: memory management").
 * Setting mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD) at import would also keep pages mapped, but
 * it changes malloc for the user's whole process (NumPy, torch, everything) and cannot be undone
 * or capped per library, so the cache stays inside affectfer's own allocator.
 *
 * Every block carries a 64-byte header in front of the returned pointer (keeping the 64-byte
 * alignment) that records its size class, so af_free_host knows it without a side table; a cached
 * block's header also links it into its class's free list. */

#define HEADER 64
/* Size classes at and above AF_HOST_CACHE_MIN_BYTES: 8 per power of two (a block is at most 12.5%
 * larger than asked), so one tensor shape always lands in one class. Below the minimum glibc's
 * heap already recycles memory without new pages. */
#define CLASS_SHIFT 3
#define MIN_LOG2 16
#define NUM_CLASSES (((64 - MIN_LOG2) << CLASS_SHIFT) + 1)

typedef struct block {
    size_t size;        /* bytes usable after the header: the size class (a multiple of 64) */
    struct block *next; /* free-list link while cached */
} block;
_Static_assert(sizeof(block) <= HEADER, "the block header must fit in front of the 64-byte-aligned data");
_Static_assert(AF_HOST_CACHE_MIN_BYTES == ((size_t)1 << MIN_LOG2), "MIN_LOG2 is log2 of the cache minimum");

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static block *free_lists[NUM_CLASSES];
static size_t cached_bytes, cache_limit;
static unsigned long long num_cache_hits, num_evictions;
static _Atomic size_t allocated_bytes, peak_bytes;
static _Atomic unsigned long long num_allocs;
static int poison; /* AFFECTFER_HOST_CACHE_POISON=1: every block handed out is filled with 0xFF (NaN) */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* A fork()ed child inherits the lock in whatever state another thread held it: hold it across the
 * fork so that both sides start with it free. */
static void fork_prepare(void) { pthread_mutex_lock(&cache_lock); }
static void fork_release(void) { pthread_mutex_unlock(&cache_lock); }
static void empty_at_exit(void) { af_host_empty_cache(); }

static void cache_init(void) {
    /* Default cap: 1/8 of physical memory, at most 4 GiB (a ResNet-50 step at batch 32, 112x112,
     * frees about 1.5 GB of activations and gradients per step). */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t limit = pages > 0 && page > 0 ? (size_t)pages / 8 * (size_t)page : (size_t)1 << 30;
    if (limit > (size_t)4 << 30) limit = (size_t)4 << 30;
#if defined(AF_ASAN)
    /* Off by default under AddressSanitizer: a cached block is never freed, so a use after af_free_host
     * would go unreported. AFFECTFER_HOST_CACHE_MB still turns it on, for testing the cache itself. */
    limit = 0;
#endif
    const char *env = getenv("AFFECTFER_HOST_CACHE_MB");
    if (env && *env) {
        char *end;
        unsigned long long mb = strtoull(env, &end, 10);
        /* A malformed value keeps the default: a library cannot raise from here, and the variable
         * is a tuning knob, not a correctness one. */
        if (*end == '\0' && env[0] != '-' && mb < (SIZE_MAX >> 20)) limit = (size_t)mb << 20;
    }
    cache_limit = limit;
    const char *p = getenv("AFFECTFER_HOST_CACHE_POISON");
    poison = p && strcmp(p, "1") == 0;
    pthread_atfork(fork_prepare, fork_release, fork_release);
    /* Frees the cache at exit so that leak checkers (LeakSanitizer, valgrind) see nothing left. */
    atexit(empty_at_exit);
}

/* The size class of a request of n >= AF_HOST_CACHE_MIN_BYTES bytes and its free-list index. */
static size_t size_class(size_t n, int *index) {
    int k = 63 - __builtin_clzll((unsigned long long)n);
    int shift = k - CLASS_SHIFT;
    size_t m = (n + ((size_t)1 << shift) - 1) >> shift; /* 8..16 steps of 2^shift */
    *index = ((k - MIN_LOG2) << CLASS_SHIFT) + (int)(m - ((size_t)1 << CLASS_SHIFT));
    return m << shift;
}

static void count_alloc(size_t size) {
    atomic_fetch_add_explicit(&num_allocs, 1, memory_order_relaxed);
    size_t now = atomic_fetch_add_explicit(&allocated_bytes, size, memory_order_relaxed) + size;
    size_t peak = atomic_load_explicit(&peak_bytes, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(&peak_bytes, &peak, now, memory_order_relaxed,
                                                                memory_order_relaxed)) {
    }
}

static void *block_data(block *b, size_t nbytes) {
    if (poison) memset((char *)b + HEADER, 0xFF, nbytes);
    return (char *)b + HEADER;
}

void *af_alloc_host(size_t nbytes) {
    pthread_once(&init_once, cache_init);
    /* Requests this large cannot be served; the bound also keeps the rounding below from wrapping. */
    if (nbytes > (SIZE_MAX >> 2)) return NULL;
    size_t size = (nbytes + 63) & ~(size_t)63;
    if (size == 0) size = 64;
    int index = -1;
    if (size >= AF_HOST_CACHE_MIN_BYTES) {
        size = size_class(size, &index);
        pthread_mutex_lock(&cache_lock);
        block *b = free_lists[index];
        if (b) {
            free_lists[index] = b->next;
            cached_bytes -= b->size;
            num_cache_hits++;
        }
        pthread_mutex_unlock(&cache_lock);
        if (b) {
            count_alloc(size);
            return block_data(b, nbytes);
        }
    }
    void *raw = NULL;
    if (posix_memalign(&raw, 64, HEADER + size) != 0) return NULL;
    block *b = raw;
    b->size = size;
    b->next = NULL;
    count_alloc(size);
    return block_data(b, nbytes);
}

/* Unlinks cached blocks, largest classes first, until `need` more bytes fit under the cap; returns
 * them as a chain for the caller to free outside the lock. Caller holds cache_lock. */
static block *evict_for(size_t need) {
    block *chain = NULL;
    for (int i = NUM_CLASSES - 1; i >= 0 && cached_bytes + need > cache_limit; i--) {
        while (free_lists[i] && cached_bytes + need > cache_limit) {
            block *b = free_lists[i];
            free_lists[i] = b->next;
            cached_bytes -= b->size;
            num_evictions++;
            b->next = chain;
            chain = b;
        }
    }
    return chain;
}

static void free_chain(block *b) {
    while (b) {
        block *next = b->next;
        free(b);
        b = next;
    }
}

void af_free_host(void *p) {
    if (!p) return;
    block *b = (block *)((char *)p - HEADER);
    atomic_fetch_sub_explicit(&allocated_bytes, b->size, memory_order_relaxed);
    if (b->size >= AF_HOST_CACHE_MIN_BYTES && b->size <= cache_limit) {
        int index;
        size_class(b->size, &index);
        pthread_mutex_lock(&cache_lock);
        block *evicted = evict_for(b->size);
        b->next = free_lists[index];
        free_lists[index] = b;
        cached_bytes += b->size;
        pthread_mutex_unlock(&cache_lock);
        free_chain(evicted);
        return;
    }
    free(b);
}

size_t af_host_empty_cache(void) {
    block *chain = NULL;
    pthread_mutex_lock(&cache_lock);
    size_t released = cached_bytes;
    for (int i = 0; i < NUM_CLASSES; i++) {
        while (free_lists[i]) {
            block *b = free_lists[i];
            free_lists[i] = b->next;
            b->next = chain;
            chain = b;
        }
    }
    cached_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
    free_chain(chain);
    return released;
}

void af_host_memory_stats_get(af_host_memory_stats *out) {
    pthread_once(&init_once, cache_init);
    pthread_mutex_lock(&cache_lock);
    out->cached_bytes = cached_bytes;
    out->cache_limit_bytes = cache_limit;
    out->num_cache_hits = num_cache_hits;
    out->num_evictions = num_evictions;
    pthread_mutex_unlock(&cache_lock);
    out->allocated_bytes = atomic_load(&allocated_bytes);
    out->peak_allocated_bytes = atomic_load(&peak_bytes);
    out->num_allocs = atomic_load(&num_allocs);
}

void af_host_reset_peak(void) { atomic_store(&peak_bytes, atomic_load(&allocated_bytes)); }

static void *cpu_alloc(af_device device, size_t nbytes) {
    (void)device;
    return af_alloc_host(nbytes);
}

static void cpu_free(af_device device, void *p) {
    (void)device;
    af_free_host(p);
}

static af_status cpu_memset(af_device device, void *p, int value, size_t nbytes) {
    (void)device;
    if (nbytes) memset(p, value, nbytes);
    return AF_OK;
}

static af_status cpu_memcpy(af_device device, void *dst, const void *src, size_t nbytes) {
    (void)device;
    if (nbytes && dst != src) memmove(dst, src, nbytes);
    return AF_OK;
}

static af_status cpu_copy_to(af_device to, void *dst, af_device from, const void *src, size_t nbytes) {
    if (to.type != AF_DEVICE_CPU || from.type != AF_DEVICE_CPU)
        return AF_FAIL(AF_ERR_DEVICE, "the CPU allocator copies only between host buffers");
    return cpu_memcpy(to, dst, src, nbytes);
}

static const af_allocator cpu_allocator = {.name = "cpu", .alloc = cpu_alloc, .free = cpu_free,
                                           .memset = cpu_memset, .memcpy = cpu_memcpy, .copy_to = cpu_copy_to};

static const af_allocator *_Atomic registry[AF_DEVICE_TYPE_COUNT] = {[AF_DEVICE_CPU] = &cpu_allocator};

af_status af_allocator_register(af_device_type type, const af_allocator *allocator) {
    if ((unsigned)type >= AF_DEVICE_TYPE_COUNT)
        return AF_FAIL(AF_ERR_DEVICE, "invalid device type %d", (int)type);
    if (!allocator || !allocator->alloc || !allocator->free || !allocator->memset || !allocator->memcpy ||
        !allocator->copy_to)
        return AF_FAIL(AF_ERR_INTERNAL, "an allocator must provide every function of af_allocator");
    registry[type] = allocator;
    return AF_OK;
}

const af_allocator *af_allocator_get(af_device_type type) {
    return (unsigned)type < AF_DEVICE_TYPE_COUNT ? registry[type] : NULL;
}
