/* CUDA twins of elementwise.c: the binary ops with broadcasting (add, sub, mul, div, maximum), the
 * unary maps and where; the contract (formulas, tie and NaN rules, attributes) is elementwise.c's.
 * One kernel template per family, the op chosen per element by a switch on the op id, as on the CPU.
 *
 * Backward of a broadcast input: one thread per gradient element, summing its broadcast fibre in
 * increasing output order, the CPU kernel's order, so no atomics and the same sum whatever the grid. */
#include "../cuda/common.cuh"
#include "elementwise.h"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- binary */

template <typename T> __device__ inline T binary_apply(int op, T a, T b) {
    switch (op) {
    case AF_OP_ADD: return a + b;
    case AF_OP_SUB: return a - b;
    case AF_OP_MUL: return a * b;
    case AF_OP_MAXIMUM: return (a > b || a != a) ? a : b;
    default: return a / b;
    }
}

template <typename T> __device__ inline T binary_grad(int op, int side, T a, T b, T g) {
    switch (op) {
    case AF_OP_ADD: return g;
    case AF_OP_SUB: return side ? -g : g;
    case AF_OP_MUL: return side ? g * a : g * b;
    case AF_OP_MAXIMUM: {
        T mine = side ? b : a, theirs = side ? a : b;
        return mine > theirs ? g : mine == theirs ? g / 2 : T(0);
    }
    default: return side ? -g * a / (b * b) : g / b;
    }
}

/* the element offsets of out index i in the broadcast shape s read through strides st */
__device__ inline int64_t offset_of(int64_t i, const int64_t *s, const int64_t *st) {
    int64_t off = 0;
    for (int d = AF_MAX_DIMS - 1; d >= 0; d--) {
        off += (i % s[d]) * st[d];
        i /= s[d];
    }
    return off;
}

/* out: (bc.shape); a, b through bc's strides */
template <typename T> __global__ void binary_forward_kernel(int op, broadcast bc, const T *a, const T *b, T *out, int64_t n) {
    GRID_STRIDE(i, n) {
        if (bc.same)
            out[i] = binary_apply<T>(op, a[i], b[i]);
        else
            out[i] = binary_apply<T>(op, a[offset_of(i, bc.shape, bc.stride_a)], b[offset_of(i, bc.shape, bc.stride_b)]);
    }
}

/* The reduction plan of one side: the side's own (padded) shape and the broadcast dims it sums over. */
struct fibre {
    int64_t own[AF_MAX_DIMS];     /* side's padded shape (1 on broadcast dims) */
    int64_t reduced[AF_MAX_DIMS]; /* the out shape on broadcast dims, 1 elsewhere */
    int64_t count;                /* product of reduced */
};

static fibre fibre_make(const int64_t *shape, const int64_t *stride) {
    fibre f;
    f.count = 1;
    for (int d = 0; d < AF_MAX_DIMS; d++) {
        int stretched = stride[d] == 0 && shape[d] != 1;
        f.own[d] = stretched ? 1 : shape[d];
        f.reduced[d] = stretched ? shape[d] : 1;
        f.count *= f.reduced[d];
    }
    return f;
}

/* out index of (own element e, fibre step k): row-major over the out shape, k's dims interleaved */
__device__ inline int64_t fibre_out_index(const fibre &f, const int64_t *shape, int64_t e, int64_t k) {
    int64_t coord[AF_MAX_DIMS];
    for (int d = AF_MAX_DIMS - 1; d >= 0; d--) {
        coord[d] = f.own[d] > 1 ? e % f.own[d] : k % f.reduced[d];
        if (f.own[d] > 1) e /= f.own[d];
        else k /= f.reduced[d];
    }
    int64_t idx = 0;
    for (int d = 0; d < AF_MAX_DIMS; d++) idx = idx * shape[d] + coord[d];
    return idx;
}

/* grad: (side's numel) += sum over its fibre of dout * d out / d side */
template <typename T>
__global__ void binary_backward_kernel(int op, int side, broadcast bc, fibre f, const T *a, const T *b, const T *dout,
                                       T *grad, int64_t n_side) {
    GRID_STRIDE(e, n_side) {
        if (bc.same) {
            grad[e] += binary_grad<T>(op, side, a[e], b[e], dout[e]);
            continue;
        }
        T acc = grad[e];
        for (int64_t k = 0; k < f.count; k++) {
            int64_t i = fibre_out_index(f, bc.shape, e, k);
            acc += binary_grad<T>(op, side, a[offset_of(i, bc.shape, bc.stride_a)], b[offset_of(i, bc.shape, bc.stride_b)],
                                  dout[i]);
        }
        grad[e] = acc;
    }
}

static af_status binary_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    broadcast bc;
    broadcast_make(c->in[0], c->in[1], &bc);
    int64_t n = c->out[0]->numel;
    if (n == 0) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        binary_forward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, bc, (const float *)af_tensor_data(c->in[0]), (const float *)af_tensor_data(c->in[1]),
            (float *)af_tensor_data(c->out[0]), n);
    else
        binary_forward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, bc, (const double *)af_tensor_data(c->in[0]), (const double *)af_tensor_data(c->in[1]),
            (double *)af_tensor_data(c->out[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status binary_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    broadcast bc;
    broadcast_make(c->in[0], c->in[1], &bc);
    if (c->out[0]->numel == 0) return AF_OK;
    for (int side = 0; side < 2; side++) {
        if (!din[side]) continue;
        fibre f = fibre_make(bc.shape, side ? bc.stride_b : bc.stride_a);
        int64_t n = din[side]->numel;
        if (c->in[0]->dtype == AF_DTYPE_F32)
            binary_backward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
                c->op, side, bc, f, (const float *)af_tensor_data(c->in[0]), (const float *)af_tensor_data(c->in[1]),
                (const float *)af_tensor_data(dout[0]), (float *)af_tensor_data(din[side]), n);
        else
            binary_backward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
                c->op, side, bc, f, (const double *)af_tensor_data(c->in[0]), (const double *)af_tensor_data(c->in[1]),
                (const double *)af_tensor_data(dout[0]), (double *)af_tensor_data(din[side]), n);
        AF_CUDA_TRY_LAUNCH();
    }
    return AF_OK;
}

/* ---------------------------------------------------------------- where */

/* out (plan shape) = cond ? x : y */
template <typename T>
__global__ void where_forward_kernel(where_plan p, const uint8_t *cond, const T *x, const T *y, T *out, int64_t n) {
    GRID_STRIDE(i, n) {
        out[i] = cond[offset_of(i, p.shape, p.stride[0])] ? x[offset_of(i, p.shape, p.stride[1])]
                                                          : y[offset_of(i, p.shape, p.stride[2])];
    }
}

/* grad (side's numel) += dout where that side was picked, summed over its fibre in out order */
template <typename T>
__global__ void where_backward_kernel(where_plan p, fibre f, int side, const uint8_t *cond, const T *dout, T *grad,
                                      int64_t n_side) {
    GRID_STRIDE(e, n_side) {
        T acc = grad[e];
        for (int64_t k = 0; k < f.count; k++) {
            int64_t i = fibre_out_index(f, p.shape, e, k);
            if ((cond[offset_of(i, p.shape, p.stride[0])] != 0) == (side == 1)) acc += dout[i];
        }
        grad[e] = acc;
    }
}

static af_status where_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    where_plan p;
    where_plan_make(c, &p);
    int64_t n = c->out[0]->numel;
    if (n == 0) return AF_OK;
    const uint8_t *cond = (const uint8_t *)af_tensor_data(c->in[0]);
    if (c->in[1]->dtype == AF_DTYPE_F32)
        where_forward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, cond, (const float *)af_tensor_data(c->in[1]), (const float *)af_tensor_data(c->in[2]),
            (float *)af_tensor_data(c->out[0]), n);
    else
        where_forward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            p, cond, (const double *)af_tensor_data(c->in[1]), (const double *)af_tensor_data(c->in[2]),
            (double *)af_tensor_data(c->out[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status where_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    where_plan p;
    where_plan_make(c, &p);
    if (c->out[0]->numel == 0) return AF_OK;
    const uint8_t *cond = (const uint8_t *)af_tensor_data(c->in[0]);
    for (int side = 1; side <= 2; side++) {
        if (!din[side]) continue;
        fibre f = fibre_make(p.shape, p.stride[side]);
        int64_t n = din[side]->numel;
        if (c->in[1]->dtype == AF_DTYPE_F32)
            where_backward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
                p, f, side, cond, (const float *)af_tensor_data(dout[0]), (float *)af_tensor_data(din[side]), n);
        else
            where_backward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
                p, f, side, cond, (const double *)af_tensor_data(dout[0]), (double *)af_tensor_data(din[side]), n);
        AF_CUDA_TRY_LAUNCH();
    }
    return AF_OK;
}

/* ---------------------------------------------------------------- unary */

template <typename T> __device__ inline T gelu_tanh_inner(T x) { return T(0.7978845608028654) * (x + T(0.044715) * x * x * x); }

template <typename T> __device__ inline T unary_apply(int op, const af_attrs &attr, T x) {
    switch (op) {
    case AF_OP_NEG: return -x;
    case AF_OP_EXP: return exp(x);
    case AF_OP_LOG: return log(x);
    case AF_OP_SQRT: return sqrt(x);
    case AF_OP_RELU: return x > 0 ? x : T(0);
    case AF_OP_SIGMOID: return 1 / (1 + exp(-x));
    case AF_OP_TANH: return tanh(x);
    case AF_OP_SILU: return x / (1 + exp(-x));
    case AF_OP_GELU:
        if (attr.i[0]) return T(0.5) * x * (1 + tanh(gelu_tanh_inner(x)));
        return T(0.5) * x * (1 + erf(x * T(0.7071067811865476)));
    case AF_OP_SCALE: return x * (T)attr.f[0];
    case AF_OP_ADD_SCALAR: return x + (T)attr.f[0];
    case AF_OP_ABS: return fabs(x);
    case AF_OP_CLAMP:
        if (attr.i[0] && x < (T)attr.f[0]) x = (T)attr.f[0];
        if (attr.i[1] && x > (T)attr.f[1]) x = (T)attr.f[1];
        return x;
    case AF_OP_SOFTPLUS: {
        T beta = (T)attr.f[0];
        return x * beta > (T)attr.f[1] ? x : log1p(exp(x * beta)) / beta;
    }
    case AF_OP_LOG_SIGMOID: return (x < 0 ? x : T(0)) - log1p(exp(-fabs(x)));
    case AF_OP_HARDSIGMOID: return x <= -3 ? T(0) : x >= 3 ? T(1) : x / 6 + T(0.5);
    case AF_OP_HARDSWISH: return x <= -3 ? T(0) : x >= 3 ? x : x * (x + 3) / 6;
    default: return pow(x, (T)attr.f[0]);
    }
}

template <typename T> __device__ inline T unary_derivative(int op, const af_attrs &attr, T x, T y) {
    switch (op) {
    case AF_OP_NEG: return T(-1);
    case AF_OP_EXP: return y;
    case AF_OP_LOG: return 1 / x;
    case AF_OP_SQRT: return T(0.5) / y;
    case AF_OP_RELU: return x > 0 ? T(1) : T(0);
    case AF_OP_SIGMOID: return y * (1 - y);
    case AF_OP_TANH: return 1 - y * y;
    case AF_OP_SILU: {
        T s = 1 / (1 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    case AF_OP_GELU:
        if (attr.i[0]) {
            T t = tanh(gelu_tanh_inner(x));
            T dinner = T(0.7978845608028654) * (1 + 3 * T(0.044715) * x * x);
            return T(0.5) * (1 + t) + T(0.5) * x * (1 - t * t) * dinner;
        } else {
            T cdf = T(0.5) * (1 + erf(x * T(0.7071067811865476)));
            T pdf = exp(T(-0.5) * x * x) * T(0.3989422804014327);
            return cdf + x * pdf;
        }
    case AF_OP_SCALE: return (T)attr.f[0];
    case AF_OP_ADD_SCALAR: return T(1);
    case AF_OP_ABS: return x > 0 ? T(1) : x < 0 ? T(-1) : T(0);
    case AF_OP_CLAMP: {
        bool in_lo = !attr.i[0] || x > (T)attr.f[0];
        bool in_hi = !attr.i[1] || x < (T)attr.f[1];
        return in_lo && in_hi ? T(1) : T(0);
    }
    case AF_OP_SOFTPLUS: {
        T bx = x * (T)attr.f[0];
        return bx > (T)attr.f[1] ? T(1) : 1 / (1 + exp(-bx));
    }
    case AF_OP_LOG_SIGMOID: return 1 / (1 + exp(x));
    case AF_OP_HARDSIGMOID: return x > -3 && x < 3 ? T(1) / 6 : T(0);
    case AF_OP_HARDSWISH: return x <= -3 ? T(0) : x < 3 ? x / 3 + T(0.5) : T(1);
    default: {
        T p = (T)attr.f[0];
        return p == 0 ? T(0) : p * pow(x, p - 1);
    }
    }
}

/* x, y: (n) */
template <typename T> __global__ void unary_forward_kernel(int op, af_attrs attr, const T *x, T *y, int64_t n) {
    GRID_STRIDE(i, n) y[i] = unary_apply<T>(op, attr, x[i]);
}

template <typename T>
__global__ void unary_backward_kernel(int op, af_attrs attr, const T *x, const T *y, const T *dy, T *dx, int64_t n) {
    GRID_STRIDE(i, n) dx[i] += dy[i] * unary_derivative<T>(op, attr, x[i], y[i]);
}

static af_status unary_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t n = c->in[0]->numel;
    if (n == 0) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        unary_forward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, c->attr, (const float *)af_tensor_data(c->in[0]), (float *)af_tensor_data(c->out[0]), n);
    else
        unary_forward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, c->attr, (const double *)af_tensor_data(c->in[0]), (double *)af_tensor_data(c->out[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status unary_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t n = c->in[0]->numel;
    if (n == 0 || !din[0]) return AF_OK;
    if (c->in[0]->dtype == AF_DTYPE_F32)
        unary_backward_kernel<float><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, c->attr, (const float *)af_tensor_data(c->in[0]), (const float *)af_tensor_data(c->out[0]),
            (const float *)af_tensor_data(dout[0]), (float *)af_tensor_data(din[0]), n);
    else
        unary_backward_kernel<double><<<af_cuda_blocks(n), AF_CUDA_THREADS, 0, ctx->stream>>>(
            c->op, c->attr, (const double *)af_tensor_data(c->in[0]), (const double *)af_tensor_data(c->out[0]),
            (const double *)af_tensor_data(dout[0]), (double *)af_tensor_data(din[0]), n);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

#define BINARY(op) AF_OP_CUDA_KERNELS(op) = {.forward = binary_forward_cuda, .backward = binary_backward_cuda};
#define UNARY(op) AF_OP_CUDA_KERNELS(op) = {.forward = unary_forward_cuda, .backward = unary_backward_cuda};
BINARY(add)
BINARY(sub)
BINARY(mul)
BINARY(div)
BINARY(maximum)
UNARY(neg)
UNARY(exp)
UNARY(log)
UNARY(sqrt)
UNARY(relu)
UNARY(gelu)
UNARY(silu)
UNARY(sigmoid)
UNARY(tanh)
UNARY(scale)
UNARY(add_scalar)
UNARY(pow_scalar)
UNARY(abs)
UNARY(clamp)
UNARY(softplus)
UNARY(log_sigmoid)
UNARY(hardswish)
UNARY(hardsigmoid)
AF_OP_CUDA_KERNELS(where) = {.forward = where_forward_cuda, .backward = where_backward_cuda};
