/* Per-device contexts (stream, cuDNN and cuBLASLt handles, workspace), created lazily, and the device
 * queries the Python module needs. */
#include <atomic>
#include <mutex>

#include "common.cuh"

static std::mutex context_lock;
static std::atomic<int> deterministic(0);

extern "C" void af_cuda_set_deterministic(int on) { deterministic = on != 0; }
extern "C" int af_cuda_deterministic(void) { return deterministic; }
static af_cuda_context *contexts[AF_CUDA_MAX_DEVICES];

extern "C" int af_cuda_device_count(void) {
    int n = 0;
    /* no driver, no device, a driver older than the runtime: all mean "no usable GPU", not an error */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n < AF_CUDA_MAX_DEVICES ? n : AF_CUDA_MAX_DEVICES;
}

extern "C" af_status af_cuda_check_device(int device) {
    int n = af_cuda_device_count();
    if (n == 0) return AF_FAIL(AF_ERR_DEVICE, "no CUDA device visible (affectfer.cuda.is_available() is False): check nvidia-smi "
                                             "and CUDA_VISIBLE_DEVICES, or use device='cpu'");
    if (device < 0 || device >= n)
        return AF_FAIL(AF_ERR_DEVICE, "CUDA device %d does not exist (%d visible)", device, n);
    return AF_OK;
}

static void context_destroy(af_cuda_context *ctx) {
    if (ctx->workspace) cudaFree(ctx->workspace);
    if (ctx->cublaslt) cublasLtDestroy(ctx->cublaslt);
    if (ctx->cudnn) cudnnDestroy(ctx->cudnn);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    delete ctx;
}

static af_status context_create(int device, af_cuda_context **out) {
    af_status st = AF_OK;
    af_cuda_context *ctx = new (std::nothrow) af_cuda_context();
    if (!ctx) return AF_FAIL(AF_ERR_OOM, "out of host memory creating the CUDA context");
    ctx->device = device;
    ctx->workspace_bytes = AF_CUDA_WORKSPACE_BYTES;
    AF_CUDA_CHECK(cudaSetDevice(device));
    /* non-blocking: our work never waits for work other libraries (PyTorch) put on the legacy stream */
    AF_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    AF_CUDNN_CHECK(cudnnCreate(&ctx->cudnn));
    AF_CUDNN_CHECK(cudnnSetStream(ctx->cudnn, ctx->stream));
    AF_CUBLAS_CHECK(cublasLtCreate(&ctx->cublaslt));
    AF_CUDA_CHECK(cudaMalloc(&ctx->workspace, ctx->workspace_bytes));
    *out = ctx;
    return AF_OK;
fail:
    context_destroy(ctx);
    return st;
}

extern "C" af_status af_cuda_context_get(int device, af_cuda_context **out) {
    AF_TRY(af_cuda_check_device(device));
    std::lock_guard<std::mutex> guard(context_lock);
    if (!contexts[device]) AF_TRY(context_create(device, &contexts[device]));
    AF_CUDA_TRY(cudaSetDevice(device));
    *out = contexts[device];
    return AF_OK;
}

extern "C" af_status af_cuda_synchronize(int device) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_context_get(device, &ctx));
    AF_CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    return AF_OK;
}
