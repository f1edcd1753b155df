/* CUDA twin of conv2d.c through cuDNN's convolution API: forward, backward-data and backward-filter
 * (the contract, shapes and attributes are conv2d.c's). Float32 runs with CUDNN_FMA_MATH, which
 * rules out TF32 tensor-core rounding (10-bit mantissa), so results stay within float32 rounding of
 * the CPU op; float64 runs as float64.
 *
 * Algorithms: cuDNN's heuristics rank them per shape (cudnnGet*Algorithm_v7); the first that fits the
 * context's workspace is kept in a per-shape cache, so the ranking runs once per layer shape. Under
 * affectfer.use_deterministic_algorithms(True) only algorithms cuDNN reports as CUDNN_DETERMINISTIC
 * are taken (backward-data and backward-filter have atomics-based ones whose sums vary run to run).
 *
 * Backward follows the += rule through cuDNN's beta = 1 (out = alpha * result + beta * out). */
#include <map>
#include <mutex>
#include <tuple>

#include "../cuda/common.cuh"
#include "conv2d.h"

namespace {

enum conv_pass { PASS_FORWARD, PASS_DATA, PASS_FILTER };

struct conv_desc {
    cudnnTensorDescriptor_t x = NULL, y = NULL, bias = NULL;
    cudnnFilterDescriptor_t w = NULL;
    cudnnConvolutionDescriptor_t conv = NULL;
    ~conv_desc() {
        if (x) cudnnDestroyTensorDescriptor(x);
        if (y) cudnnDestroyTensorDescriptor(y);
        if (bias) cudnnDestroyTensorDescriptor(bias);
        if (w) cudnnDestroyFilterDescriptor(w);
        if (conv) cudnnDestroyConvolutionDescriptor(conv);
    }
};

af_status int_dims(const conv_geom *g) {
    const int64_t dims[] = {g->N, g->Cin, g->H, g->W, g->Cout, g->Ho, g->Wo};
    for (int64_t d : dims)
        if (d > INT32_MAX) return AF_FAIL(AF_ERR_VALUE, "conv2d: a dimension of %lld exceeds cuDNN's int range", (long long)d);
    return AF_OK;
}

af_status describe(const conv_geom *g, af_dtype dtype, conv_desc *d) {
    AF_TRY(int_dims(g));
    cudnnDataType_t t = dtype == AF_DTYPE_F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
    AF_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
    AF_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->y));
    AF_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->bias));
    AF_CUDNN_TRY(cudnnCreateFilterDescriptor(&d->w));
    AF_CUDNN_TRY(cudnnCreateConvolutionDescriptor(&d->conv));
    AF_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, t, (int)g->N, (int)g->Cin, (int)g->H, (int)g->W));
    AF_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, t, (int)g->N, (int)g->Cout, (int)g->Ho, (int)g->Wo));
    AF_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, t, 1, (int)g->Cout, 1, 1));
    AF_CUDNN_TRY(cudnnSetFilter4dDescriptor(d->w, t, CUDNN_TENSOR_NCHW, (int)g->Cout, (int)g->Cin_g, (int)g->KH, (int)g->KW));
    AF_CUDNN_TRY(cudnnSetConvolution2dDescriptor(d->conv, (int)g->ph, (int)g->pw, (int)g->sh, (int)g->sw, (int)g->dh,
                                                 (int)g->dw, CUDNN_CROSS_CORRELATION, t));
    AF_CUDNN_TRY(cudnnSetConvolutionGroupCount(d->conv, (int)g->G));
    AF_CUDNN_TRY(cudnnSetConvolutionMathType(d->conv, CUDNN_FMA_MATH));
    return AF_OK;
}

/* (pass, dtype, deterministic, device, geometry) -> algorithm */
typedef std::tuple<int, int, int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                   int64_t, int64_t, int64_t, int64_t, int64_t>
    algo_key;
std::mutex algo_lock;
std::map<algo_key, int> algo_cache;

algo_key key_of(int pass, af_dtype dtype, int device, const conv_geom *g) {
    return algo_key(pass, (int)dtype, af_cuda_deterministic(), device, g->N, g->Cin, g->H, g->W, g->Cout, g->KH, g->KW,
                    g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->G);
}

/* The first of cuDNN's ranked candidates that succeeded, fits the workspace and (when asked) is
 * deterministic. Perf is cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t. */
template <typename Perf> af_status pick(const Perf *perf, int n, size_t workspace, const char *what, int *algo) {
    int deterministic = af_cuda_deterministic();
    for (int i = 0; i < n; i++)
        if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= workspace &&
            (!deterministic || perf[i].determinism == CUDNN_DETERMINISTIC)) {
            *algo = (int)perf[i].algo;
            return AF_OK;
        }
    return AF_FAIL(AF_ERR_CUDA, "conv2d: cuDNN offers no %s%s algorithm for this shape within a %zu-byte workspace", what,
                   deterministic ? " deterministic" : "", workspace);
}

af_status choose(af_cuda_context *ctx, int pass, af_dtype dtype, const conv_geom *g, const conv_desc *d, int *algo) {
    algo_key key = key_of(pass, dtype, ctx->device, g);
    {
        std::lock_guard<std::mutex> guard(algo_lock);
        auto it = algo_cache.find(key);
        if (it != algo_cache.end()) {
            *algo = it->second;
            return AF_OK;
        }
    }
    int n = 0;
    if (pass == PASS_FORWARD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        AF_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(ctx->cudnn, d->x, d->w, d->conv, d->y,
                                                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
        AF_TRY(pick(perf, n, ctx->workspace_bytes, "forward", algo));
    } else if (pass == PASS_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        AF_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx->cudnn, d->w, d->y, d->conv, d->x,
                                                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
        AF_TRY(pick(perf, n, ctx->workspace_bytes, "backward-data", algo));
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        AF_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx->cudnn, d->x, d->y, d->conv, d->w,
                                                                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
        AF_TRY(pick(perf, n, ctx->workspace_bytes, "backward-filter", algo));
    }
    std::lock_guard<std::mutex> guard(algo_lock);
    try {
        algo_cache[key] = *algo;
    } catch (...) { /* a full cache only costs the ranking again next time */
    }
    return AF_OK;
}

} // namespace

/* alpha/beta are float for float32 and double for float64 tensors (cuDNN's scaling-parameter rule) */
struct scaling {
    float f[2];
    double d[2];
    const void *alpha(af_dtype t) const { return t == AF_DTYPE_F64 ? (const void *)&d[0] : (const void *)&f[0]; }
    const void *beta(af_dtype t) const { return t == AF_DTYPE_F64 ? (const void *)&d[1] : (const void *)&f[1]; }
};

static af_status conv2d_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    conv_geom g;
    conv_geom_from_call(c, &g);
    if (c->out[0]->numel == 0) return AF_OK;
    af_dtype t = c->in[0]->dtype;
    conv_desc d;
    AF_TRY(describe(&g, t, &d));
    int algo;
    AF_TRY(choose(ctx, PASS_FORWARD, t, &g, &d, &algo));
    const scaling overwrite = {{1.f, 0.f}, {1.0, 0.0}}, add = {{1.f, 1.f}, {1.0, 1.0}};
    if (g.Cin_g * g.KH * g.KW == 0) {
        AF_CUDA_TRY(cudaMemsetAsync(af_tensor_data(c->out[0]), 0, af_tensor_nbytes(c->out[0]), ctx->stream));
    } else {
        AF_CUDNN_TRY(cudnnConvolutionForward(ctx->cudnn, overwrite.alpha(t), d.x, af_tensor_data(c->in[0]), d.w,
                                             af_tensor_data(c->in[1]), d.conv, (cudnnConvolutionFwdAlgo_t)algo,
                                             ctx->workspace, ctx->workspace_bytes, overwrite.beta(t), d.y,
                                             af_tensor_data(c->out[0])));
    }
    if (c->n_in > 2 && c->in[2])
        AF_CUDNN_TRY(cudnnAddTensor(ctx->cudnn, add.alpha(t), d.bias, af_tensor_data(c->in[2]), add.beta(t), d.y,
                                    af_tensor_data(c->out[0])));
    return AF_OK;
}

static af_status conv2d_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    conv_geom g;
    conv_geom_from_call(c, &g);
    if (c->out[0]->numel == 0) return AF_OK;
    af_dtype t = c->in[0]->dtype;
    conv_desc d;
    AF_TRY(describe(&g, t, &d));
    const scaling add = {{1.f, 1.f}, {1.0, 1.0}};
    int empty_filter = g.Cin_g * g.KH * g.KW == 0;
    if (din[0] && !empty_filter && c->in[0]->numel > 0) {
        int algo;
        AF_TRY(choose(ctx, PASS_DATA, t, &g, &d, &algo));
        AF_CUDNN_TRY(cudnnConvolutionBackwardData(ctx->cudnn, add.alpha(t), d.w, af_tensor_data(c->in[1]), d.y,
                                                  af_tensor_data(dout[0]), d.conv, (cudnnConvolutionBwdDataAlgo_t)algo,
                                                  ctx->workspace, ctx->workspace_bytes, add.beta(t), d.x,
                                                  af_tensor_data(din[0])));
    }
    if (din[1] && !empty_filter) {
        int algo;
        AF_TRY(choose(ctx, PASS_FILTER, t, &g, &d, &algo));
        AF_CUDNN_TRY(cudnnConvolutionBackwardFilter(ctx->cudnn, add.alpha(t), d.x, af_tensor_data(c->in[0]), d.y,
                                                    af_tensor_data(dout[0]), d.conv,
                                                    (cudnnConvolutionBwdFilterAlgo_t)algo, ctx->workspace,
                                                    ctx->workspace_bytes, add.beta(t), d.w, af_tensor_data(din[1])));
    }
    if (c->n_in > 2 && din[2])
        AF_CUDNN_TRY(cudnnConvolutionBackwardBias(ctx->cudnn, add.alpha(t), d.y, af_tensor_data(dout[0]), add.beta(t),
                                                  d.bias, af_tensor_data(din[2])));
    return AF_OK;
}

AF_OP_CUDA_KERNELS(conv2d) = {.forward = conv2d_forward_cuda, .backward = conv2d_backward_cuda};
