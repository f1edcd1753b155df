/* The CUDA backend's C interface (plain C: the Python binding includes it; csrc/cuda/ implements it).
 *
 * Every op on device N runs on that device's one stream (af_cuda_context), so the caching allocator
 * may hand a freed block to the next allocation without synchronising: the later kernel is queued
 * after every kernel that used the block. Transfers to and from the host synchronise that stream. */
#ifndef AF_CUDA_H
#define AF_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AF_CUDA_MAX_DEVICES 16

/* Registers the caching allocator for AF_DEVICE_CUDA (no CUDA call: safe without a GPU). */
af_status af_cuda_init(void);
/* Visible GPUs; 0 (not an error) when there is no driver or no device. */
int af_cuda_device_count(void);
/* AF_ERR_DEVICE "no CUDA device visible" / "CUDA device N does not exist (M visible)" */
af_status af_cuda_check_device(int device);
af_status af_cuda_synchronize(int device);

typedef struct af_cuda_memory_stats {
    uint64_t allocated_bytes;      /* held by live tensors */
    uint64_t reserved_bytes;       /* allocated + cached, i.e. obtained from cudaMalloc */
    uint64_t peak_allocated_bytes;
    uint64_t num_allocs;           /* calls to alloc */
    uint64_t num_cache_hits;       /* of those, served from the cache */
    uint64_t num_device_allocs;    /* cudaMalloc calls */
    uint64_t num_ooms;             /* allocations that failed after freeing the cache */
} af_cuda_memory_stats;

af_status af_cuda_get_memory_stats(int device, af_cuda_memory_stats *out);
/* Returns every cached (unused) block of device to the driver; -1: all devices. */
af_status af_cuda_empty_cache(int device);
/* affectfer.use_deterministic_algorithms: when set, kernels with a choice (cuDNN's convolution
 * algorithms) take only those whose results do not vary from run to run (no floating-point atomics). */
void af_cuda_set_deterministic(int on);
int af_cuda_deterministic(void);
/* 0 when AFFECTFER_CUDA_CACHING=0 (every free goes straight to cudaFree, for compute-sanitizer). */
int af_cuda_caching_enabled(void);

#ifdef __cplusplus
}
#endif

#endif
