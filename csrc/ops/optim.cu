/* CUDA twins of optim.c (sgd_step, adam_step): the same per-element formulas (torch.optim's
 * single-tensor implementations, see optim.c's contract), one thread per element. The bias
 * corrections are computed on the host in double, as on the CPU. */
#include <math.h>

#include "../cuda/common.cuh"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* param, grad, buf: (n) */
template <typename T>
__global__ void sgd_kernel(T *param, const T *grad, T *buf, int64_t n, int nesterov, int buffer_is_new, T lr, T momentum,
                           T keep, T wd) {
    GRID_STRIDE(i, n) {
        T g = grad[i];
        if (wd != 0) g = g + wd * param[i];
        if (buf) {
            buf[i] = buffer_is_new ? g : momentum * buf[i] + keep * g;
            g = nesterov ? g + momentum * buf[i] : buf[i];
        }
        param[i] = param[i] - lr * g;
    }
}

static af_status sgd_step_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    af_tensor *buf = (c->n_in > 2 && c->attr.f[1] != 0) ? c->in[2] : NULL;
    int64_t n = c->in[0]->numel;
    if (n == 0) return AF_OK;
    int nesterov = (int)c->attr.i[0], is_new = (int)c->attr.i[1];
    const double *f = c->attr.f;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        sgd_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (float *)af_tensor_data(c->in[0]), (const float *)af_tensor_data(c->in[1]),
            buf ? (float *)af_tensor_data(buf) : NULL, n, nesterov, is_new, (float)f[0], (float)f[1],
            (float)(1.0 - f[2]), (float)f[3]);
    else
        sgd_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            (double *)af_tensor_data(c->in[0]), (const double *)af_tensor_data(c->in[1]),
            buf ? (double *)af_tensor_data(buf) : NULL, n, nesterov, is_new, f[0], f[1], 1.0 - f[2], f[3]);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

template <typename T> struct adam_consts {
    T w1, beta2, w2, eps, wd, shrink, step_size, bc2_sqrt;
    int decoupled;
};

/* param, grad, m, v, vmax: (n) */
template <typename T> __global__ void adam_kernel(T *param, const T *grad, T *m, T *v, T *vmax, int64_t n, adam_consts<T> k) {
    GRID_STRIDE(i, n) {
        T p = param[i], g = grad[i];
        if (k.decoupled) p = p * k.shrink;
        else if (k.wd != 0) g = g + k.wd * p;
        T diff = g - m[i];
        m[i] = k.w1 < T(0.5) ? m[i] + k.w1 * diff : g - diff * (1 - k.w1);
        v[i] = v[i] * k.beta2 + k.w2 * g * g;
        T second = v[i];
        if (vmax) {
            if (vmax[i] < second || isnan(second)) vmax[i] = second;
            second = vmax[i];
        }
        T denom = sqrt(second) / k.bc2_sqrt + k.eps;
        param[i] = p - k.step_size * (m[i] / denom);
    }
}

template <typename T> static void launch_adam(af_cuda_context *ctx, const af_op_call *c, int64_t n) {
    double lr = c->attr.f[0], beta1 = c->attr.f[1], beta2 = c->attr.f[2];
    double step = (double)c->attr.i[0];
    adam_consts<T> k;
    k.w1 = (T)(1.0 - beta1);
    k.beta2 = (T)beta2;
    k.w2 = (T)(1.0 - beta2);
    k.eps = (T)c->attr.f[3];
    k.wd = (T)c->attr.f[4];
    k.shrink = (T)(1.0 - lr * c->attr.f[4]);
    k.step_size = (T)(lr / (1.0 - pow(beta1, step)));
    k.bc2_sqrt = (T)sqrt(1.0 - pow(beta2, step));
    k.decoupled = (int)c->attr.i[2];
    T *vmax = c->attr.i[1] ? (T *)af_tensor_data(c->in[4]) : NULL;
    adam_kernel<T><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
        (T *)af_tensor_data(c->in[0]), (const T *)af_tensor_data(c->in[1]), (T *)af_tensor_data(c->in[2]),
        (T *)af_tensor_data(c->in[3]), vmax, n, k);
}

static af_status adam_step_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t n = c->in[0]->numel;
    if (n == 0) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        launch_adam<float>(ctx, c, n);
    else
        launch_adam<double>(ctx, c, n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

AF_OP_CUDA_KERNELS(sgd_step) = {.forward = sgd_step_forward_cuda, .backward = NULL};
AF_OP_CUDA_KERNELS(adam_step) = {.forward = adam_step_forward_cuda, .backward = NULL};
