#include "alloc.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Host memory with a cache of freed large blocks.
 *
 * A training step allocates and frees the same activation, gradient and im2col buffers every
 * iteration, tens of megabytes each. glibc serves blocks that large with mmap (or grows and trims
 * the heap), so every step used to fault in fresh zeroed pages from the kernel and unmap them again:
 * about 10% of a one-thread ResNet-18 step went to page faults and munmap. Freed blocks of at least
 * CACHE_MIN_BYTES are therefore kept in a small table and handed out again to a request of the same
 * size (a best fit within 1/8 above it), the way PyTorch's CUDA caching allocator reuses device
 * memory. The cache holds at most a quarter of physical memory (AFFECTFER_CPU_CACHE_MB overrides:
 * 0 turns it off); beyond that the oldest blocks go back to the system. Under AddressSanitizer there
 * is no cache, so a use after free is still reported.
 *
 * Every block carries a 64-byte header in front of the pointer handed out (which stays 64-byte
 * aligned) with its usable size, so af_free_host knows the size without a lookup. */
#define HEADER_BYTES 64
#define CACHE_MIN_BYTES ((size_t)1 << 16)
#define CACHE_SLOTS 512

typedef struct {
    void *base;      /* what posix_memalign returned */
    size_t capacity; /* usable bytes after the header */
} cached_block;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_block cache[CACHE_SLOTS]; /* oldest first */
static int cache_count;
static size_t cache_bytes;
static size_t cache_limit = SIZE_MAX; /* SIZE_MAX: not read from the environment yet */

#if defined(__SANITIZE_ADDRESS__)
#define CACHE_ENABLED 0
#else
#define CACHE_ENABLED 1
#endif

/* Called with cache_lock held. */
static size_t cache_limit_bytes(void) {
    if (cache_limit == SIZE_MAX) {
        const char *env = getenv("AFFECTFER_CPU_CACHE_MB");
        char *end = NULL;
        long long mb = env && *env ? strtoll(env, &end, 10) : -1;
        if (env && *env && end && *end == '\0' && mb >= 0) {
            cache_limit = (size_t)mb << 20;
        } else {
            long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
            cache_limit = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 4 : (size_t)1 << 30;
        }
    }
    return CACHE_ENABLED ? cache_limit : 0;
}

static void cache_remove(int i) {
    cache_bytes -= cache[i].capacity;
    memmove(cache + i, cache + i + 1, sizeof *cache * (size_t)(cache_count - i - 1));
    cache_count--;
}

void *af_alloc_host(size_t nbytes) {
    /* posix_memalign needs a non-zero size multiple of the alignment for portable behaviour; large
     * blocks are rounded to whole pages so that nearby sizes share cached blocks. */
    size_t round = nbytes >= CACHE_MIN_BYTES ? 4096 : 64;
    if (nbytes > SIZE_MAX - HEADER_BYTES - round) return NULL;
    size_t capacity = nbytes ? (nbytes + round - 1) & ~(round - 1) : 64;
    if (capacity >= CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cache_lock);
        int best = -1;
        for (int i = cache_count - 1; i >= 0; i--) /* newest first: its pages are likelier in cache */
            if (cache[i].capacity >= capacity && cache[i].capacity - capacity <= capacity / 8 &&
                (best < 0 || cache[i].capacity < cache[best].capacity))
                best = i;
        void *base = best >= 0 ? cache[best].base : NULL;
        if (best >= 0) cache_remove(best);
        pthread_mutex_unlock(&cache_lock);
        if (base) return (char *)base + HEADER_BYTES;
    }
    void *base = NULL;
    if (posix_memalign(&base, 64, HEADER_BYTES + capacity) != 0) return NULL;
    *(size_t *)base = capacity;
    return (char *)base + HEADER_BYTES;
}

void af_free_host(void *p) {
    if (!p) return;
    void *base = (char *)p - HEADER_BYTES;
    size_t capacity = *(size_t *)base;
    if (capacity >= CACHE_MIN_BYTES) {
        pthread_mutex_lock(&cache_lock);
        size_t limit = cache_limit_bytes();
        if (capacity <= limit) {
            /* Make room: the oldest blocks go back to the system first. */
            void *evicted[CACHE_SLOTS];
            int n_evicted = 0;
            while (cache_count > 0 && (cache_count == CACHE_SLOTS || cache_bytes + capacity > limit)) {
                evicted[n_evicted++] = cache[0].base;
                cache_remove(0);
            }
            cache[cache_count++] = (cached_block){.base = base, .capacity = capacity};
            cache_bytes += capacity;
            base = NULL;
            pthread_mutex_unlock(&cache_lock);
            for (int i = 0; i < n_evicted; i++) free(evicted[i]);
        } else {
            pthread_mutex_unlock(&cache_lock);
        }
    }
    free(base);
}

void af_host_cache_release(void) {
    pthread_mutex_lock(&cache_lock);
    while (cache_count > 0) {
        free(cache[cache_count - 1].base);
        cache_remove(cache_count - 1);
    }
    pthread_mutex_unlock(&cache_lock);
}

size_t af_host_cache_bytes(void) {
    pthread_mutex_lock(&cache_lock);
    size_t n = cache_bytes;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

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
