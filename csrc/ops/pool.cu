/* CUDA twins of pool.c (max_pool2d, avg_pool2d, adaptive_avg_pool2d; contract and tie/NaN rules
 * there). Forward: one thread per output. Backward: one thread per input pixel, gathering the outputs
 * whose window holds it in increasing output order, the order the CPU kernel scatters in, so sums
 * match it and no atomics are needed. */
#include "../cuda/common.cuh"
#include "pool.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__device__ inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* outputs o in [*lo, *hi] whose window start o s - p lies within `span - 1` before i (a superset of
 * the windows holding i; callers check membership exactly) */
__device__ inline void candidates(int64_t i, int64_t s, int64_t p, int64_t span, int64_t n_out, int64_t *lo, int64_t *hi) {
    int64_t a = floor_div(i + p - span + 1 + s - 1, s), b = floor_div(i + p, s);
    *lo = a > 0 ? a : 0;
    *hi = b < n_out - 1 ? b : n_out - 1;
}

/* ---------------------------------------------------------------- max_pool2d */

template <typename T> __global__ void max_forward_kernel(pool_geom g, const T *x, T *y, int64_t *idx, int64_t n) {
    GRID_STRIDE(o, n) {
        int64_t ow = o % g.Wo, oh = o / g.Wo % g.Ho, p = o / (g.Wo * g.Ho);
        const T *xp = x + p * g.H * g.W;
        T best = -INFINITY;
        int64_t arg = -1;
        for (int64_t i = 0; i < g.kh; i++) {
            int64_t ih = oh * g.sh - g.ph + i * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t j = 0; j < g.kw; j++) {
                int64_t iw = ow * g.sw - g.pw + j * g.dw;
                if (iw < 0 || iw >= g.W) continue;
                T v = xp[ih * g.W + iw];
                if (arg < 0 || v > best || isnan(v)) {
                    best = v;
                    arg = ih * g.W + iw;
                }
            }
        }
        y[o] = best;
        idx[o] = arg;
    }
}

template <typename T> __global__ void max_backward_kernel(pool_geom g, const int64_t *idx, const T *dy, T *dx, int64_t n) {
    GRID_STRIDE(i, n) {
        int64_t iw = i % g.W, ih = i / g.W % g.H, p = i / (g.W * g.H), flat = ih * g.W + iw;
        int64_t h_lo, h_hi, w_lo, w_hi;
        candidates(ih, g.sh, g.ph, (g.kh - 1) * g.dh + 1, g.Ho, &h_lo, &h_hi);
        candidates(iw, g.sw, g.pw, (g.kw - 1) * g.dw + 1, g.Wo, &w_lo, &w_hi);
        T acc = dx[i];
        for (int64_t oh = h_lo; oh <= h_hi; oh++)
            for (int64_t ow = w_lo; ow <= w_hi; ow++) {
                int64_t o = (p * g.Ho + oh) * g.Wo + ow;
                if (idx[o] == flat) acc += dy[o];
            }
        dx[i] = acc;
    }
}

/* ---------------------------------------------------------------- avg_pool2d */

template <typename T>
__device__ inline T avg_window(const pool_geom &g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1) {
    int64_t a0 = oh * g.sh - g.ph, b0 = ow * g.sw - g.pw;
    int64_t a1 = a0 + g.kh < g.H + g.ph ? a0 + g.kh : g.H + g.ph;
    int64_t b1 = b0 + g.kw < g.W + g.pw ? b0 + g.kw : g.W + g.pw;
    int64_t padded = (a1 - a0) * (b1 - b0);
    *h0 = a0 > 0 ? a0 : 0, *w0 = b0 > 0 ? b0 : 0;
    *h1 = a1 < g.H ? a1 : g.H, *w1 = b1 < g.W ? b1 : g.W;
    if (g.divisor_override) return (T)g.divisor_override;
    if (g.count_include_pad) return (T)padded;
    return (T)((*h1 - *h0) * (*w1 - *w0));
}

template <typename T> __global__ void avg_forward_kernel(pool_geom g, const T *x, T *y, int64_t n) {
    GRID_STRIDE(o, n) {
        int64_t ow = o % g.Wo, oh = o / g.Wo % g.Ho, p = o / (g.Wo * g.Ho);
        const T *xp = x + p * g.H * g.W;
        int64_t h0, h1, w0, w1;
        T div = avg_window<T>(g, oh, ow, &h0, &h1, &w0, &w1), sum = 0;
        if (h0 >= h1 || w0 >= w1) {
            y[o] = 0;
            continue;
        }
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) sum += xp[ih * g.W + iw];
        y[o] = sum / div;
    }
}

template <typename T> __global__ void avg_backward_kernel(pool_geom g, const T *dy, T *dx, int64_t n) {
    GRID_STRIDE(i, n) {
        int64_t iw = i % g.W, ih = i / g.W % g.H, p = i / (g.W * g.H);
        int64_t h_lo, h_hi, w_lo, w_hi;
        candidates(ih, g.sh, g.ph, g.kh, g.Ho, &h_lo, &h_hi);
        candidates(iw, g.sw, g.pw, g.kw, g.Wo, &w_lo, &w_hi);
        T acc = dx[i];
        for (int64_t oh = h_lo; oh <= h_hi; oh++)
            for (int64_t ow = w_lo; ow <= w_hi; ow++) {
                int64_t h0, h1, w0, w1;
                T div = avg_window<T>(g, oh, ow, &h0, &h1, &w0, &w1);
                if (ih >= h0 && ih < h1 && iw >= w0 && iw < w1) acc += dy[(p * g.Ho + oh) * g.Wo + ow] / div;
            }
        dx[i] = acc;
    }
}

/* ---------------------------------------------------------------- adaptive_avg_pool2d */

template <typename T> __global__ void adaptive_forward_kernel(pool_geom g, const T *x, T *y, int64_t n) {
    GRID_STRIDE(o, n) {
        int64_t ow = o % g.Wo, oh = o / g.Wo % g.Ho, p = o / (g.Wo * g.Ho);
        const T *xp = x + p * g.H * g.W;
        int64_t h0 = oh * g.H / g.Ho, h1 = ((oh + 1) * g.H + g.Ho - 1) / g.Ho;
        int64_t w0 = ow * g.W / g.Wo, w1 = ((ow + 1) * g.W + g.Wo - 1) / g.Wo;
        T sum = 0;
        for (int64_t ih = h0; ih < h1; ih++)
            for (int64_t iw = w0; iw < w1; iw++) sum += xp[ih * g.W + iw];
        y[o] = sum / (T)((h1 - h0) * (w1 - w0));
    }
}

template <typename T> __global__ void adaptive_backward_kernel(pool_geom g, const T *dy, T *dx, int64_t n) {
    GRID_STRIDE(i, n) {
        int64_t iw = i % g.W, ih = i / g.W % g.H, p = i / (g.W * g.H);
        /* windows holding ih start at or before it and end after it: a range around ih Ho / H */
        int64_t h_lo = ih * g.Ho / g.H - 1, h_hi = ((ih + 1) * g.Ho - 1) / g.H + 1;
        int64_t w_lo = iw * g.Wo / g.W - 1, w_hi = ((iw + 1) * g.Wo - 1) / g.W + 1;
        if (h_lo < 0) h_lo = 0;
        if (w_lo < 0) w_lo = 0;
        if (h_hi > g.Ho - 1) h_hi = g.Ho - 1;
        if (w_hi > g.Wo - 1) w_hi = g.Wo - 1;
        T acc = dx[i];
        for (int64_t oh = h_lo; oh <= h_hi; oh++) {
            int64_t h0 = oh * g.H / g.Ho, h1 = ((oh + 1) * g.H + g.Ho - 1) / g.Ho;
            if (ih < h0 || ih >= h1) continue;
            for (int64_t ow = w_lo; ow <= w_hi; ow++) {
                int64_t w0 = ow * g.W / g.Wo, w1 = ((ow + 1) * g.W + g.Wo - 1) / g.Wo;
                if (iw < w0 || iw >= w1) continue;
                acc += dy[(p * g.Ho + oh) * g.Wo + ow] / (T)((h1 - h0) * (w1 - w0));
            }
        }
        dx[i] = acc;
    }
}

/* ---------------------------------------------------------------- launches */

#define LAUNCH(kernel, n, ...)                                                                          \
    do {                                                                                                \
        if ((n) == 0) return AF_OK;                                                                     \
        if (c->in[0]->dtype == AF_DTYPE_F32)                                                            \
            kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(__VA_ARGS__(float), n); \
        else                                                                                            \
            kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(__VA_ARGS__(double), n); \
        AF_CUDA_TRY_LAUNCH();                                                                           \
        return AF_OK;                                                                                   \
    } while (0)

#define DATA(t, T) (T *)af_tensor_data(t)

static af_status max_pool2d_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    max_pool2d_geom_fill(c, &g);
    int64_t *idx = (int64_t *)af_tensor_data(c->saved[0]);
#define ARGS(T) g, DATA(c->in[0], const T), DATA(c->out[0], T), idx
    LAUNCH(max_forward_kernel, c->out[0]->numel, ARGS);
#undef ARGS
}

static af_status max_pool2d_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    max_pool2d_geom_fill(c, &g);
    const int64_t *idx = (const int64_t *)af_tensor_data(c->saved[0]);
#define ARGS(T) g, idx, DATA(dout[0], const T), DATA(din[0], T)
    LAUNCH(max_backward_kernel, din[0] ? din[0]->numel : 0, ARGS);
#undef ARGS
}

static af_status avg_pool2d_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    avg_pool2d_geom_fill(c, &g);
#define ARGS(T) g, DATA(c->in[0], const T), DATA(c->out[0], T)
    LAUNCH(avg_forward_kernel, c->out[0]->numel, ARGS);
#undef ARGS
}

static af_status avg_pool2d_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    avg_pool2d_geom_fill(c, &g);
#define ARGS(T) g, DATA(dout[0], const T), DATA(din[0], T)
    LAUNCH(avg_backward_kernel, din[0] ? din[0]->numel : 0, ARGS);
#undef ARGS
}

static af_status adaptive_avg_pool2d_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    adaptive_avg_pool2d_geom_fill(c, &g);
#define ARGS(T) g, DATA(c->in[0], const T), DATA(c->out[0], T)
    LAUNCH(adaptive_forward_kernel, c->out[0]->numel, ARGS);
#undef ARGS
}

static af_status adaptive_avg_pool2d_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    pool_geom g = {};
    adaptive_avg_pool2d_geom_fill(c, &g);
#define ARGS(T) g, DATA(dout[0], const T), DATA(din[0], T)
    LAUNCH(adaptive_backward_kernel, din[0] ? din[0]->numel : 0, ARGS);
#undef ARGS
}

AF_OP_CUDA_KERNELS(max_pool2d) = {.forward = max_pool2d_forward_cuda, .backward = max_pool2d_backward_cuda};
AF_OP_CUDA_KERNELS(avg_pool2d) = {.forward = avg_pool2d_forward_cuda, .backward = avg_pool2d_backward_cuda};
AF_OP_CUDA_KERNELS(adaptive_avg_pool2d) = {.forward = adaptive_avg_pool2d_forward_cuda,
                                           .backward = adaptive_avg_pool2d_backward_cuda};
