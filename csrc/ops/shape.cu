/* CUDA twins of shape.c. reshape: setup made the output a view of the input, so forward computes
 * nothing and backward accumulates the gradient element for element (the same flat order). */
#include "../cuda/common.cuh"

/* din, dout: (n) */
template <typename T> __global__ void flat_accumulate_kernel(const T *dout, T *din, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        din[i] += dout[i];
}

static af_status reshape_forward_cuda(af_op_call *c) {
    (void)c;
    return AF_OK;
}

static af_status reshape_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_dtype d = c->in[0]->dtype;
    int64_t n = c->in[0]->numel;
    if (!din[0] || n == 0 || (d != AF_DTYPE_F32 && d != AF_DTYPE_F64)) return AF_OK;
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    if (d == AF_DTYPE_F32)
        flat_accumulate_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (const float *)af_tensor_data(dout[0]), (float *)af_tensor_data(din[0]), n);
    else
        flat_accumulate_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (const double *)af_tensor_data(dout[0]), (double *)af_tensor_data(din[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

AF_OP_CUDA_KERNELS(reshape) = {.forward = reshape_forward_cuda, .backward = reshape_backward_cuda};
