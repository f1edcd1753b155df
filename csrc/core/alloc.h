/* Per-device memory: one allocator (a table of functions) per device type, looked up in a registry.
 *
 * Everything above the kernels (tensor lifetime, clones, zero-filling, transfers) goes through this
 * table, never through malloc/memcpy/memset on a data pointer, so a device is added by registering
 * its allocator: csrc/core/alloc.c registers the CPU one (64-byte aligned host memory, large freed
 * blocks cached for reuse); a CUDA build
 * registers its caching allocator at start-up. A device type without an allocator is a device this
 * build cannot use, and af_tensor_new refuses it. */
#ifndef AF_ALLOC_H
#define AF_ALLOC_H

#include <stddef.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct af_allocator {
    const char *name; /* "cpu", "cuda": for messages */
    /* nbytes may be 0; NULL means out of memory. */
    void *(*alloc)(af_device device, size_t nbytes);
    void (*free)(af_device device, void *p);
    /* Every byte of p[0, nbytes) set to `value`. */
    af_status (*memset)(af_device device, void *p, int value, size_t nbytes);
    /* dst and src both on `device`; the ranges may overlap. */
    af_status (*memcpy)(af_device device, void *dst, const void *src, size_t nbytes);
    /* Between devices: one of `to`/`from` has this allocator's device type, the other is the CPU or
     * another device of this type. Transfers between the CPU and device X are X's allocator's job. */
    af_status (*copy_to)(af_device to, void *dst, af_device from, const void *src, size_t nbytes);
    /* Optional (NULL: every index is usable): AF_ERR_DEVICE with the reason `device` cannot be used
     * ("no CUDA device visible"), checked before allocating so that failure is not reported as OOM. */
    af_status (*check_device)(af_device device);
} af_allocator;

/* Replaces the allocator of `type` (the CPU's is built in). Call before any tensor of that type exists. */
af_status af_allocator_register(af_device_type type, const af_allocator *allocator);
/* NULL when this build has no allocator for the type. */
const af_allocator *af_allocator_get(af_device_type type);

/* The CPU allocator's memory, for scratch buffers inside CPU kernels and the image code:
 * 64-byte aligned (cache lines and AVX-512 loads). Contents are undefined (a reused block keeps
 * its last user's bytes). Only pointers from af_alloc_host may be passed to af_free_host.
 *
 * Blocks of AF_HOST_CACHE_MIN_BYTES and more are cached: af_free_host keeps them in a free list per
 * size class and the next allocation of that class reuses one, up to a cap on cached bytes
 * (environment AFFECTFER_HOST_CACHE_MB, read once at the first allocation; 0 disables the cache). */
#define AF_HOST_CACHE_MIN_BYTES ((size_t)64 << 10)
/* AF_ASAN: this build runs under AddressSanitizer, where memory caches stay off (a reused block
 * would hide a use after free). GCC defines __SANITIZE_ADDRESS__; clang (the fuzz build) only
 * answers __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define AF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AF_ASAN 1
#endif
#endif
void *af_alloc_host(size_t nbytes);
void af_free_host(void *p);

typedef struct af_host_memory_stats {
    size_t allocated_bytes;      /* held by live af_alloc_host blocks (size classes, headers excluded) */
    size_t peak_allocated_bytes; /* highest allocated_bytes since start or af_host_reset_peak */
    size_t cached_bytes;         /* freed blocks kept for reuse */
    size_t cache_limit_bytes;    /* the cap on cached_bytes; 0: caching disabled */
    unsigned long long num_allocs;      /* af_alloc_host calls that succeeded */
    unsigned long long num_cache_hits;  /* of those, served from the cache */
    unsigned long long num_evictions;   /* cached blocks freed to make room under the cap */
} af_host_memory_stats;

void af_host_memory_stats_get(af_host_memory_stats *out);
/* Frees every cached block (live blocks are untouched); returns the bytes released. */
size_t af_host_empty_cache(void);
void af_host_reset_peak(void);

#ifdef __cplusplus
}
#endif

#endif
