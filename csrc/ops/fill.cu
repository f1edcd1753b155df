/* CUDA twins of fill.c (fill_, copy_, uniform_, normal_, add_, nonfinite_index): the in-place writes
 * the tape, tensor creation and the optimizers go through, so they come first. Semantics are fill.c's
 * contract; uniform_/normal_ draw element i from counter block i of Philox stream (seed, stream), the
 * same numbers as the CPU kernel (core/rng.h is shared), so initialisation and dropout masks match. */
#include <stdint.h>

#include "../cuda/common.cuh"

/* ---------------------------------------------------------------- fill_ */

/* p: (n) */
template <typename T> __global__ void fill_kernel(T *p, T v, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = v;
}

template <typename T> static af_status launch_fill(af_cuda_context *ctx, void *p, T v, int64_t n) {
    if (n == 0) return AF_OK;
    fill_kernel<T><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>((T *)p, v, n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status fill_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_tensor *t = c->in[0];
    double v = c->attr.f[0];
    void *p = af_tensor_data(t);
    switch (t->dtype) {
    case AF_DTYPE_F32: return launch_fill<float>(ctx, p, (float)v, t->numel);
    case AF_DTYPE_F64: return launch_fill<double>(ctx, p, v, t->numel);
    case AF_DTYPE_I32: return launch_fill<int32_t>(ctx, p, (int32_t)v, t->numel);
    case AF_DTYPE_I64: return launch_fill<int64_t>(ctx, p, (int64_t)v, t->numel);
    default: /* u8, bool: setup admitted whole numbers in [0, 255] */
        AF_CUDA_TRY(cudaMemsetAsync(p, (int)v, (size_t)t->numel, ctx->stream));
        return AF_OK;
    }
}

/* ---------------------------------------------------------------- copy_ */

/* dst, src: (n), float32 <-> float64 */
template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = (D)src[i];
}

static af_status copy_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_tensor *dst = c->in[0], *src = c->in[1];
    int64_t n = dst->numel;
    if (n == 0) return AF_OK;
    if (dst->dtype == src->dtype) {
        if (af_tensor_data(dst) != af_tensor_data(src))
            AF_CUDA_TRY(cudaMemcpyAsync(af_tensor_data(dst), af_tensor_data(src), af_tensor_nbytes(dst),
                                        cudaMemcpyDeviceToDevice, ctx->stream));
        return AF_OK;
    }
    if (dst->dtype == AF_DTYPE_F32)
        convert_kernel<float, double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (float *)af_tensor_data(dst), (const double *)af_tensor_data(src), n);
    else
        convert_kernel<double, float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (double *)af_tensor_data(dst), (const float *)af_tensor_data(src), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

/* ---------------------------------------------------------------- uniform_, normal_ */

/* p: (n). As fill.c: computed in double from 53-bit uniforms and rounded once. */
template <typename T>
__global__ void random_kernel(T *p, int64_t n, uint64_t seed, uint64_t stream, int normal, double a, double b) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        af_rng r = af_rng_make(seed, stream, (uint64_t)i);
        double v;
        if (!normal) {
            v = a + (b - a) * af_rng_uniform(&r);
        } else { /* Box-Muller, u1 then u2 from this element's counter block */
            double u1 = 1.0 - af_rng_uniform(&r), u2 = af_rng_uniform(&r);
            v = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        }
        p[i] = (T)v;
    }
}

static af_status random_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_tensor *t = c->in[0];
    int64_t n = t->numel;
    if (n == 0) return AF_OK;
    uint64_t seed = (uint64_t)c->attr.i[0], stream = (uint64_t)c->attr.i[1];
    int normal = c->op == AF_OP_NORMAL_;
    if (t->dtype == AF_DTYPE_F32)
        random_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (float *)af_tensor_data(t), n, seed, stream, normal, c->attr.f[0], c->attr.f[1]);
    else
        random_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (double *)af_tensor_data(t), n, seed, stream, normal, c->attr.f[0], c->attr.f[1]);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

/* ---------------------------------------------------------------- add_ */

/* dst, src: (n) */
template <typename T> __global__ void add_kernel(T *dst, const T *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] += src[i];
}

static af_status add_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t n = c->in[0]->numel;
    if (n == 0) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        add_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (float *)af_tensor_data(c->in[0]), (const float *)af_tensor_data(c->in[1]), n);
    else
        add_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (double *)af_tensor_data(c->in[0]), (const double *)af_tensor_data(c->in[1]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

/* ---------------------------------------------------------------- nonfinite_index */

/* p: (n) -> *first = min i with p[i] not finite (INT64_MAX if none). atomicMin of an index is
 * order-independent, so the result is deterministic. */
template <typename T> __global__ void nonfinite_kernel(const T *p, int64_t n, unsigned long long *first) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        if (!isfinite(p[i])) atomicMin(first, (unsigned long long)i);
}

__global__ void finish_nonfinite(const unsigned long long *first, int64_t *out) {
    *out = *first == (unsigned long long)INT64_MAX ? -1 : (int64_t)*first;
}

static af_status nonfinite_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    const af_tensor *t = c->in[0];
    int64_t *out = (int64_t *)af_tensor_data(c->out[0]);
    if (t->numel == 0 || (t->dtype != AF_DTYPE_F32 && t->dtype != AF_DTYPE_F64))
        return launch_fill<int64_t>(ctx, out, -1, 1);
    /* the output's own 8 bytes hold the running minimum, then become the answer */
    unsigned long long *first = (unsigned long long *)out;
    AF_TRY(launch_fill<int64_t>(ctx, out, INT64_MAX, 1));
    if (t->dtype == AF_DTYPE_F32)
        nonfinite_kernel<float><<<af_cuda_blocks(t->numel), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (const float *)af_tensor_data(t), t->numel, first);
    else
        nonfinite_kernel<double><<<af_cuda_blocks(t->numel), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (const double *)af_tensor_data(t), t->numel, first);
    AF_CUDA_TRY_LAUNCH();
    finish_nonfinite<<<1, 1, 0, ctx->stream>>>(first, out);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

AF_OP_CUDA_KERNELS(fill_) = {.forward = fill_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(copy_) = {.forward = copy_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(uniform_) = {.forward = random_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(normal_) = {.forward = random_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(add_) = {.forward = add_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(nonfinite_index) = {.forward = nonfinite_forward_cuda, .backward = NULL};
