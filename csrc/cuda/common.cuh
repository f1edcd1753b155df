/* Shared by every .cu: the per-device context and launch helpers. */
#ifndef AF_CUDA_COMMON_CUH
#define AF_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "../ops/ops.h"
#include "cuda.h"
#include "cuda_check.h"

/* One per device, created on first use and kept for the life of the process (as cuDNN's and cuBLAS's
 * handles are meant to be: creating them costs milliseconds). */
typedef struct af_cuda_context {
    int device;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasLtHandle_t cublaslt;
    void *workspace; /* cuBLASLt / cuDNN scratch, AF_CUDA_WORKSPACE_BYTES */
    size_t workspace_bytes;
} af_cuda_context;

/* 32 MiB: what NVIDIA's cuBLAS documentation recommends for Hopper's cuBLASLt kernels. */
#define AF_CUDA_WORKSPACE_BYTES ((size_t)32 << 20)

/* The context of `device`, created (and made current) on first call; makes `device` current. */
extern "C" af_status af_cuda_context_get(int device, af_cuda_context **out);

/* Threads per block for the element-wise kernels and the grid that covers n elements (grid-stride
 * loops handle the rest: the grid is capped so one launch never exceeds the hardware limit). */
#define AF_CUDA_THREADS 256
static inline unsigned af_cuda_blocks(int64_t n) {
    int64_t b = (n + AF_CUDA_THREADS - 1) / AF_CUDA_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}

/* The context of the device an op call runs on (its first input's). */
static inline af_status af_cuda_call_context(const af_op_call *c, af_cuda_context **out) {
    int device = 0;
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i]) {
            device = c->in[i]->device.index;
            break;
        }
    return af_cuda_context_get(device, out);
}

#endif
