/* CUDA twins of softmax.c (softmax, log_softmax; formulas there): one thread per line of the
 * (outer, D, inner) view, sums in double in the CPU's order. */
#include "../cuda/common.cuh"
#include "softmax.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* x, y: (outer, D, inner) */
template <typename T> __global__ void softmax_forward_kernel(int is_log, int64_t D, int64_t inner, const T *x, T *y, int64_t lines) {
    GRID_STRIDE(line, lines) {
        int64_t base = (line / inner) * D * inner + line % inner;
        const T *xl = x + base;
        T *yl = y + base;
        double m = xl[0], sum = 0;
        for (int64_t j = 1; j < D; j++) m = xl[j * inner] > m ? (double)xl[j * inner] : m;
        for (int64_t j = 0; j < D; j++) sum += exp((double)xl[j * inner] - m);
        if (is_log) {
            double shift = m + log(sum);
            for (int64_t j = 0; j < D; j++) yl[j * inner] = (T)((double)xl[j * inner] - shift);
        } else {
            for (int64_t j = 0; j < D; j++) yl[j * inner] = (T)(exp((double)xl[j * inner] - m) / sum);
        }
    }
}

/* y, dy, dx: (outer, D, inner) */
template <typename T>
__global__ void softmax_backward_kernel(int is_log, int64_t D, int64_t inner, const T *y, const T *dy, T *dx, int64_t lines) {
    GRID_STRIDE(line, lines) {
        int64_t base = (line / inner) * D * inner + line % inner;
        const T *yl = y + base, *gl = dy + base;
        T *dl = dx + base;
        double dot = 0;
        if (is_log) {
            for (int64_t j = 0; j < D; j++) dot += gl[j * inner];
            for (int64_t j = 0; j < D; j++) dl[j * inner] += (T)(gl[j * inner] - exp((double)yl[j * inner]) * dot);
        } else {
            for (int64_t j = 0; j < D; j++) dot += (double)gl[j * inner] * yl[j * inner];
            for (int64_t j = 0; j < D; j++) dl[j * inner] += (T)(yl[j * inner] * (gl[j * inner] - dot));
        }
    }
}

static af_status softmax_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_dim_split s = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    int64_t lines = s.outer * s.inner;
    if (s.D == 0 || lines == 0) return AF_OK;
    int is_log = c->op == AF_OP_LOG_SOFTMAX;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        softmax_forward_kernel<float><<<af_cuda_blocks(lines), AF_CUDA_THREADS, 0, ctx->stream>>>(
            is_log, s.D, s.inner, (const float *)af_tensor_data(c->in[0]), (float *)af_tensor_data(c->out[0]), lines);
    else
        softmax_forward_kernel<double><<<af_cuda_blocks(lines), AF_CUDA_THREADS, 0, ctx->stream>>>(
            is_log, s.D, s.inner, (const double *)af_tensor_data(c->in[0]), (double *)af_tensor_data(c->out[0]), lines);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status softmax_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_dim_split s = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    int64_t lines = s.outer * s.inner;
    if (s.D == 0 || lines == 0 || !din[0]) return AF_OK;
    int is_log = c->op == AF_OP_LOG_SOFTMAX;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        softmax_backward_kernel<float><<<af_cuda_blocks(lines), AF_CUDA_THREADS, 0, ctx->stream>>>(
            is_log, s.D, s.inner, (const float *)af_tensor_data(c->out[0]), (const float *)af_tensor_data(dout[0]),
            (float *)af_tensor_data(din[0]), lines);
    else
        softmax_backward_kernel<double><<<af_cuda_blocks(lines), AF_CUDA_THREADS, 0, ctx->stream>>>(
            is_log, s.D, s.inner, (const double *)af_tensor_data(c->out[0]), (const double *)af_tensor_data(dout[0]),
            (double *)af_tensor_data(din[0]), lines);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

AF_OP_CUDA_KERNELS(softmax) = {.forward = softmax_forward_cuda, .backward = softmax_backward_cuda};
AF_OP_CUDA_KERNELS(log_softmax) = {.forward = softmax_forward_cuda, .backward = softmax_backward_cuda};
