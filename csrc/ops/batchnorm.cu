/* CUDA twin of batchnorm.c (contract, formulas and running-stat update there). One block per channel
 * reduces its N*S values in double (a fixed tree over a fixed block size: deterministic, though not
 * the CPU's sequential order), then an element-wise kernel normalises or forms dx. */
#include "../cuda/common.cuh"
#include "batchnorm.h"

#define BN_THREADS 256

/* The sum of every thread's v over the block (all threads get it); fixed order for a fixed blockDim. */
__device__ double block_sum(double v, double *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int step = BN_THREADS / 2; step > 0; step /= 2) {
        if ((int)threadIdx.x < step) shared[threadIdx.x] += shared[threadIdx.x + step];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}

/* x: (N, C, S) -> per channel (blockIdx.x): save_mean, save_invstd, alpha, beta (y = x alpha + beta),
 * and the running stats in training */
template <typename T>
__global__ void bn_stats_kernel(int64_t N, int64_t C, int64_t S, int training, double momentum, double eps, const T *x,
                                const T *w, const T *b, T *running_mean, T *running_var, T *save_mean, T *save_invstd,
                                double *alpha_beta) {
    __shared__ double shared[BN_THREADS];
    int64_t ch = blockIdx.x, M = N * S;
    double mean, invstd;
    if (training) {
        double sum = 0;
        for (int64_t k = threadIdx.x; k < M; k += BN_THREADS) sum += x[(k / S * C + ch) * S + k % S];
        mean = M > 0 ? block_sum(sum, shared) / (double)M : 0;
        double sq = 0;
        for (int64_t k = threadIdx.x; k < M; k += BN_THREADS) {
            double d = x[(k / S * C + ch) * S + k % S] - mean;
            sq += d * d;
        }
        sq = block_sum(sq, shared);
        double var = M > 0 ? sq / (double)M : 0;
        invstd = 1 / sqrt(var + eps);
        if (threadIdx.x == 0 && running_mean && M > 1) {
            running_mean[ch] = (T)((1 - momentum) * running_mean[ch] + momentum * mean);
            running_var[ch] = (T)((1 - momentum) * running_var[ch] + momentum * sq / (double)(M - 1));
        }
    } else {
        mean = running_mean[ch];
        invstd = 1 / sqrt((double)running_var[ch] + eps);
    }
    if (threadIdx.x == 0) {
        save_mean[ch] = (T)mean;
        save_invstd[ch] = (T)invstd;
        double alpha = invstd * (w ? (double)w[ch] : 1.0);
        alpha_beta[2 * ch] = alpha;
        alpha_beta[2 * ch + 1] = (b ? (double)b[ch] : 0.0) - mean * alpha;
    }
}

/* y = x * alpha_c + beta_c, both rounded to T first as on the CPU */
template <typename T> __global__ void bn_apply_kernel(int64_t C, int64_t S, const T *x, const double *alpha_beta, T *y, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = i / S % C;
        y[i] = x[i] * (T)alpha_beta[2 * ch] + (T)alpha_beta[2 * ch + 1];
    }
}

/* per channel: sums[2c] = sum dy, sums[2c+1] = sum dy xhat; dw, dbias accumulated */
template <typename T>
__global__ void bn_backward_sums_kernel(int64_t N, int64_t C, int64_t S, const T *x, const T *mean, const T *invstd,
                                        const T *dy, T *dw, T *dbias, double *sums) {
    __shared__ double shared[BN_THREADS];
    int64_t ch = blockIdx.x, M = N * S;
    double mu = mean[ch], is = invstd[ch], s_dy = 0, s_dyx = 0;
    for (int64_t k = threadIdx.x; k < M; k += BN_THREADS) {
        int64_t i = (k / S * C + ch) * S + k % S;
        s_dy += dy[i];
        s_dyx += dy[i] * ((x[i] - mu) * is);
    }
    s_dy = block_sum(s_dy, shared);
    s_dyx = block_sum(s_dyx, shared);
    if (threadIdx.x == 0) {
        if (dbias) dbias[ch] += (T)s_dy;
        if (dw) dw[ch] += (T)s_dyx;
        sums[2 * ch] = s_dy;
        sums[2 * ch + 1] = s_dyx;
    }
}

template <typename T>
__global__ void bn_backward_dx_kernel(int64_t N, int64_t C, int64_t S, int training, const T *x, const T *w,
                                      const T *mean, const T *invstd, const T *dy, const double *sums, T *dx, int64_t n) {
    double M = (double)(N * S);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t ch = i / S % C;
        double mu = mean[ch], is = invstd[ch];
        double scale = is * (w ? (double)w[ch] : 1.0);
        if (training) {
            double xhat = (x[i] - mu) * is;
            dx[i] += (T)(scale * (dy[i] - sums[2 * ch] / M - xhat * (sums[2 * ch + 1] / M)));
        } else {
            dx[i] += (T)(scale * dy[i]);
        }
    }
}

static const af_tensor *bn_in(const af_op_call *c, int i) { return i < c->n_in ? c->in[i] : NULL; }

template <typename T> static T *ptr(const af_tensor *t) { return t ? (T *)af_tensor_data(t) : NULL; }

/* Scratch of 2 C doubles from the CUDA allocator (stream-ordered: freed right after the launches). */
static af_status scratch(const af_op_call *c, int64_t C, af_tensor **out) {
    int64_t n = 2 * C;
    return af_tensor_new(AF_DTYPE_F64, c->in[BN_X]->device, 1, &n, out);
}

template <typename T> static af_status bn_forward(af_cuda_context *ctx, af_op_call *c) {
    const af_tensor *x = c->in[BN_X];
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    if (x->numel == 0 || C == 0) return AF_OK;
    af_tensor *ab;
    AF_TRY(scratch(c, C, &ab));
    bn_stats_kernel<T><<<(unsigned)C, BN_THREADS, 0, ctx->stream>>>(
        N, C, S, (int)c->attr.i[0], c->attr.f[0], c->attr.f[1], ptr<const T>(x), ptr<const T>(bn_in(c, BN_WEIGHT)),
        ptr<const T>(bn_in(c, BN_BIAS)), ptr<T>(bn_in(c, BN_RUNNING_MEAN)), ptr<T>(bn_in(c, BN_RUNNING_VAR)),
        ptr<T>(c->saved[0]), ptr<T>(c->saved[1]), ptr<double>(ab));
    af_status st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "bn_stats_kernel");
    if (st == AF_OK) {
        bn_apply_kernel<T><<<af_cuda_blocks(x->numel), AF_CUDA_THREADS, 0, ctx->stream>>>(
            C, S, ptr<const T>(x), ptr<const double>(ab), ptr<T>(c->out[0]), x->numel);
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "bn_apply_kernel");
    }
    af_tensor_release(ab);
    return st;
}

template <typename T> static af_status bn_backward(af_cuda_context *ctx, const af_op_call *c, af_tensor *const *dout,
                                                   af_tensor *const *din) {
    const af_tensor *x = c->in[BN_X];
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    if (x->numel == 0 || C == 0) return AF_OK;
    af_tensor *sums;
    AF_TRY(scratch(c, C, &sums));
    bn_backward_sums_kernel<T><<<(unsigned)C, BN_THREADS, 0, ctx->stream>>>(
        N, C, S, ptr<const T>(x), ptr<const T>(c->saved[0]), ptr<const T>(c->saved[1]), ptr<const T>(dout[0]),
        ptr<T>(din[BN_WEIGHT]), ptr<T>(din[BN_BIAS]), ptr<double>(sums));
    af_status st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "bn_backward_sums_kernel");
    if (st == AF_OK && din[BN_X]) {
        bn_backward_dx_kernel<T><<<af_cuda_blocks(x->numel), AF_CUDA_THREADS, 0, ctx->stream>>>(
            N, C, S, (int)c->attr.i[0], ptr<const T>(x), ptr<const T>(bn_in(c, BN_WEIGHT)), ptr<const T>(c->saved[0]),
            ptr<const T>(c->saved[1]), ptr<const T>(dout[0]), ptr<const double>(sums), ptr<T>(din[BN_X]), x->numel);
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "bn_backward_dx_kernel");
    }
    af_tensor_release(sums);
    return st;
}

static af_status batch_norm_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    return c->in[BN_X]->dtype == AF_DTYPE_F32 ? bn_forward<float>(ctx, c) : bn_forward<double>(ctx, c);
}

static af_status batch_norm_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    return c->in[BN_X]->dtype == AF_DTYPE_F32 ? bn_backward<float>(ctx, c, dout, din)
                                              : bn_backward<double>(ctx, c, dout, din);
}

AF_OP_CUDA_KERNELS(batch_norm) = {.forward = batch_norm_forward_cuda, .backward = batch_norm_backward_cuda};
