/* CUDA twins of reduce.c's sum and mean (contract there), over the same merged-group plan
 * (reduce.h). One thread per output sums its elements in double in a fixed order (deterministic;
 * the CPU's 8-lane order differs only below float32 rounding); backward gives every input element
 * its output's gradient, each output's elements written by that output's thread only. */
#include "../cuda/common.cuh"
#include "reduce.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ inline int64_t d_group_offset(int64_t idx, int n, const int64_t *size, const int64_t *stride) {
    int64_t off = 0;
    for (int g = n - 1; g >= 0; g--) {
        off += (idx % size[g]) * stride[g];
        idx /= size[g];
    }
    return off;
}

__device__ inline int64_t d_out_base(const reduce_plan &p, int64_t o) {
    if (p.inner_reduced) return d_group_offset(o, p.n_kept, p.kept_size, p.kept_stride);
    return d_group_offset(o / p.inner, p.n_kept, p.kept_size, p.kept_stride) + o % p.inner;
}

/* x -> y (n_out) */
template <typename T> __global__ void reduce_forward_kernel(reduce_plan p, const T *x, T *y, int64_t n_out) {
    GRID_STRIDE(o, n_out) {
        int64_t base = d_out_base(p, o), run = p.inner_reduced ? p.inner : 1;
        double s = 0;
        for (int64_t r = 0; r < p.n_red_rows; r++) {
            const T *row = x + base + d_group_offset(r, p.n_red, p.red_size, p.red_stride);
            for (int64_t j = 0; j < run; j++) s += row[j];
        }
        y[o] = (T)(p.mean ? s / (double)p.R : s);
    }
}

/* dx[each element of output o] += dy[o] * scale */
template <typename T> __global__ void reduce_backward_kernel(reduce_plan p, T scale, const T *dy, T *dx, int64_t n_out) {
    GRID_STRIDE(o, n_out) {
        int64_t base = d_out_base(p, o), run = p.inner_reduced ? p.inner : 1;
        T g = dy[o] * scale;
        for (int64_t r = 0; r < p.n_red_rows; r++) {
            T *row = dx + base + d_group_offset(r, p.n_red, p.red_size, p.red_stride);
            for (int64_t j = 0; j < run; j++) row[j] += g;
        }
    }
}

static af_status reduce_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    reduce_plan p;
    reduce_plan_make(c, &p);
    int64_t n = c->out[0]->numel;
    if (n == 0) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        reduce_forward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, (const float *)af_tensor_data(c->in[0]), (float *)af_tensor_data(c->out[0]), n);
    else
        reduce_forward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, (const double *)af_tensor_data(c->in[0]), (double *)af_tensor_data(c->out[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status reduce_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (c->in[0]->numel == 0 || !din[0]) return AF_OK;
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    reduce_plan p;
    reduce_plan_make(c, &p);
    int64_t n = c->out[0]->numel;
    double scale = p.mean ? 1.0 / (double)p.R : 1.0;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        reduce_backward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, (float)scale, (const float *)af_tensor_data(dout[0]), (float *)af_tensor_data(din[0]), n);
    else
        reduce_backward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, scale, (const double *)af_tensor_data(dout[0]), (double *)af_tensor_data(din[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

AF_OP_CUDA_KERNELS(sum) = {.forward = reduce_forward_cuda, .backward = reduce_backward_cuda};
AF_OP_CUDA_KERNELS(mean) = {.forward = reduce_forward_cuda, .backward = reduce_backward_cuda};
