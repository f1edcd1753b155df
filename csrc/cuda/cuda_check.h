/* Check macros for CUDA runtime, cuBLAS(Lt) and cuDNN calls (C++ / .cu only).
 *
 * Each returns an af_status with the library's own error string and the failing call, never exits
 * or aborts: a kernel launch failure in a notebook becomes affectfer.CudaError and the kernel lives
 * on. Out-of-memory from any of the three libraries becomes AF_ERR_OOM (affectfer.OutOfMemoryError).
 * The *_CHECK forms jump to the function's `fail:` label with `st` set, as AF_CHECK does. */
#ifndef AF_CUDA_CHECK_H
#define AF_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "../core/status.h"

static inline af_status af_cuda_status(cudaError_t e, const char *file, int line, const char *call) {
    if (e == cudaSuccess) return AF_OK;
    cudaGetLastError(); /* clears a sticky-free error so the next call starts clean */
    return af_error_set(e == cudaErrorMemoryAllocation ? AF_ERR_OOM : AF_ERR_CUDA, file, line, "%s failed: %s (%s)",
                        call, cudaGetErrorString(e), cudaGetErrorName(e));
}

static inline af_status af_cublas_status(cublasStatus_t e, const char *file, int line, const char *call) {
    if (e == CUBLAS_STATUS_SUCCESS) return AF_OK;
    return af_error_set(e == CUBLAS_STATUS_ALLOC_FAILED ? AF_ERR_OOM : AF_ERR_CUDA, file, line, "%s failed: %s (%s)",
                        call, cublasGetStatusString(e), cublasGetStatusName(e));
}

static inline af_status af_cudnn_status(cudnnStatus_t e, const char *file, int line, const char *call) {
    if (e == CUDNN_STATUS_SUCCESS) return AF_OK;
    return af_error_set(e == CUDNN_STATUS_ALLOC_FAILED ? AF_ERR_OOM : AF_ERR_CUDA, file, line, "%s failed: %s", call,
                        cudnnGetErrorString(e));
}

#define AF_CUDA_TRY(call) AF_TRY(af_cuda_status((call), __FILE__, __LINE__, #call))
#define AF_CUBLAS_TRY(call) AF_TRY(af_cublas_status((call), __FILE__, __LINE__, #call))
#define AF_CUDNN_TRY(call) AF_TRY(af_cudnn_status((call), __FILE__, __LINE__, #call))
#define AF_CUDA_CHECK(call) AF_CHECK(af_cuda_status((call), __FILE__, __LINE__, #call))
#define AF_CUBLAS_CHECK(call) AF_CHECK(af_cublas_status((call), __FILE__, __LINE__, #call))
#define AF_CUDNN_CHECK(call) AF_CHECK(af_cudnn_status((call), __FILE__, __LINE__, #call))
/* After a <<<...>>> launch: a bad configuration shows up here, not at the next call. */
#define AF_CUDA_TRY_LAUNCH() AF_CUDA_TRY(cudaPeekAtLastError())

#endif
