/* The caching CUDA allocator, registered for AF_DEVICE_CUDA in the allocator registry (core/alloc.h).
 *
 * cudaMalloc and cudaFree cost tens of microseconds and cudaFree synchronises the device, while a
 * training step frees and reallocates the same activation sizes every iteration. So freed blocks go
 * to a per-device cache keyed by their size class and the next allocation of that class reuses one
 * (the approach of PyTorch's CUDACachingAllocator, described in its "CUDA semantics" notes). Reuse is
 * stream-ordered and needs no event: every op on a device runs on that device's one stream
 * (common.cuh), so a kernel that gets a reused block is queued after every kernel that used it.
 *
 * Size classes: multiples of 512 bytes up to 1 MiB, of 2 MiB above (waste under 0.2% / 2 MiB).
 * On cudaErrorMemoryAllocation the cache is returned to the driver and cudaMalloc retried once;
 * failing again, alloc returns NULL and af_tensor_new reports AF_ERR_OOM (affectfer.OutOfMemoryError)
 * with the process still usable. AFFECTFER_CUDA_CACHING=0 frees every block at once (cudaFree), so
 * compute-sanitizer sees each use after free. */
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../core/alloc.h"
#include "common.cuh"

namespace {

struct device_cache {
    std::unordered_map<void *, size_t> live;            /* pointer -> size class */
    std::unordered_map<size_t, std::vector<void *>> free; /* size class -> cached blocks */
    af_cuda_memory_stats stats;
};

std::mutex cache_lock;
device_cache caches[AF_CUDA_MAX_DEVICES];

size_t size_class(size_t nbytes) {
    const size_t small = 512, large = (size_t)2 << 20;
    if (nbytes == 0) nbytes = 1; /* a 0-element tensor still gets a distinct, freeable pointer */
    return nbytes <= ((size_t)1 << 20) ? (nbytes + small - 1) / small * small : (nbytes + large - 1) / large * large;
}

int caching_flag = -1;

/* Caller holds cache_lock. cudaFree synchronises the device, so no queued kernel still uses a block. */
void release_cached(int device) {
    device_cache &c = caches[device];
    if (c.free.empty()) return;
    cudaSetDevice(device);
    for (auto &bin : c.free)
        for (void *p : bin.second) {
            cudaFree(p);
            c.stats.reserved_bytes -= bin.first;
        }
    c.free.clear();
}

void *cuda_alloc(af_device device, size_t nbytes) {
    int d = device.index;
    if (d < 0 || d >= AF_CUDA_MAX_DEVICES || cudaSetDevice(d) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    size_t cls = size_class(nbytes);
    std::lock_guard<std::mutex> guard(cache_lock);
    device_cache &c = caches[d];
    c.stats.num_allocs++;
    void *p = NULL;
    auto bin = c.free.find(cls);
    if (bin != c.free.end() && !bin->second.empty()) {
        p = bin->second.back();
        bin->second.pop_back();
        c.stats.num_cache_hits++;
    } else {
        cudaError_t e = cudaMalloc(&p, cls);
        if (e == cudaErrorMemoryAllocation) {
            cudaGetLastError();
            release_cached(d);
            e = cudaMalloc(&p, cls);
        }
        if (e != cudaSuccess) {
            cudaGetLastError();
            if (e == cudaErrorMemoryAllocation) c.stats.num_ooms++;
            return NULL;
        }
        c.stats.num_device_allocs++;
        c.stats.reserved_bytes += cls;
    }
    try {
        c.live[p] = cls;
    } catch (...) { /* std::bad_alloc of the bookkeeping: give the block back, report out of memory */
        cudaFree(p);
        c.stats.reserved_bytes -= cls;
        return NULL;
    }
    c.stats.allocated_bytes += cls;
    if (c.stats.allocated_bytes > c.stats.peak_allocated_bytes) c.stats.peak_allocated_bytes = c.stats.allocated_bytes;
    return p;
}

void cuda_free(af_device device, void *p) {
    if (!p) return;
    int d = device.index;
    std::lock_guard<std::mutex> guard(cache_lock);
    device_cache &c = caches[d];
    auto it = c.live.find(p);
    if (it == c.live.end()) return; /* not ours: never happens for storage this allocator made */
    size_t cls = it->second;
    c.live.erase(it);
    c.stats.allocated_bytes -= cls;
    if (af_cuda_caching_enabled()) {
        try {
            c.free[cls].push_back(p);
            return;
        } catch (...) {
        }
    }
    cudaSetDevice(d);
    cudaFree(p);
    c.stats.reserved_bytes -= cls;
}

af_status cuda_memset(af_device device, void *p, int value, size_t nbytes) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_context_get(device.index, &ctx));
    AF_CUDA_TRY(cudaMemsetAsync(p, value, nbytes, ctx->stream));
    return AF_OK;
}

af_status cuda_memcpy(af_device device, void *dst, const void *src, size_t nbytes) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_context_get(device.index, &ctx));
    AF_CUDA_TRY(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return AF_OK;
}

/* Host <-> device and device <-> device. The host side may be freed as soon as we return, so each
 * transfer synchronises the stream it ran on. */
af_status cuda_copy_to(af_device to, void *dst, af_device from, const void *src, size_t nbytes) {
    af_cuda_context *ctx;
    if (nbytes == 0) return AF_OK;
    if (to.type == AF_DEVICE_CUDA && from.type == AF_DEVICE_CUDA) {
        AF_TRY(af_cuda_context_get(from.index, &ctx));
        AF_CUDA_TRY(cudaStreamSynchronize(ctx->stream)); /* src's producers are queued on from's stream */
        AF_TRY(af_cuda_context_get(to.index, &ctx));
        AF_CUDA_TRY(cudaMemcpyPeerAsync(dst, to.index, src, from.index, nbytes, ctx->stream));
    } else if (to.type == AF_DEVICE_CUDA && from.type == AF_DEVICE_CPU) {
        AF_TRY(af_cuda_context_get(to.index, &ctx));
        AF_CUDA_TRY(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, ctx->stream));
    } else if (to.type == AF_DEVICE_CPU && from.type == AF_DEVICE_CUDA) {
        AF_TRY(af_cuda_context_get(from.index, &ctx));
        AF_CUDA_TRY(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, ctx->stream));
    } else {
        return AF_FAIL(AF_ERR_DEVICE, "the CUDA allocator copies only between the CPU and CUDA devices");
    }
    AF_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    return AF_OK;
}

af_status cuda_check_device(af_device device) { return af_cuda_check_device(device.index); }

const af_allocator cuda_allocator = {"cuda", cuda_alloc, cuda_free, cuda_memset, cuda_memcpy, cuda_copy_to,
                                     cuda_check_device};

} // namespace

extern "C" int af_cuda_caching_enabled(void) {
    if (caching_flag < 0) {
        const char *env = getenv("AFFECTFER_CUDA_CACHING");
        caching_flag = !(env && strcmp(env, "0") == 0);
    }
    return caching_flag;
}

extern "C" af_status af_cuda_init(void) {
    af_cuda_caching_enabled(); /* read the switch once, before any thread allocates */
    return af_allocator_register(AF_DEVICE_CUDA, &cuda_allocator);
}

extern "C" af_status af_cuda_get_memory_stats(int device, af_cuda_memory_stats *out) {
    AF_TRY(af_cuda_check_device(device));
    std::lock_guard<std::mutex> guard(cache_lock);
    *out = caches[device].stats;
    return AF_OK;
}

extern "C" af_status af_cuda_empty_cache(int device) {
    int n = af_cuda_device_count();
    if (device >= 0) AF_TRY(af_cuda_check_device(device));
    std::lock_guard<std::mutex> guard(cache_lock);
    for (int d = 0; d < n; d++)
        if (device < 0 || d == device) release_cached(d);
    return AF_OK;
}
