/* CUDA twin of loss_ce.c (cross_entropy; contract and gradient formulas there). One thread per sample
 * row (log-softmax in double as log_softmax_row.inc does), then the reductions over samples run
 * serially in sample order on one thread, as on the CPU, so mean and sum match it in double. Target
 * indices are data: an out-of-range one is found on the device and reported as on the CPU. */
#include "../cuda/common.cuh"

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

enum { CE_LOGITS, CE_TARGET, CE_WEIGHT };

/* bad[0] = smallest i with y[i] neither ignore_index nor in [0, C) (INT64_MAX if none) */
__global__ void ce_check_kernel(const int64_t *y, int64_t N, int64_t C, int64_t ignore_index, unsigned long long *bad) {
    GRID_STRIDE(i, N)
    if (y[i] != ignore_index && (y[i] < 0 || y[i] >= C)) atomicMin(bad, (unsigned long long)i);
}

template <typename T>
__global__ void ce_forward_kernel(int64_t N, int64_t C, const T *z, const void *target, int index_target, const T *w,
                                  int64_t ignore_index, double e, T *logp, double *loss, double *norm) {
    const int64_t *y = (const int64_t *)target;
    const T *t = (const T *)target;
    GRID_STRIDE(i, N) {
        const T *zr = z + i * C;
        T *lr = logp + i * C;
        double max = zr[0], sum = 0;
        for (int64_t j = 1; j < C; j++) max = zr[j] > max ? (double)zr[j] : max;
        for (int64_t j = 0; j < C; j++) sum += exp((double)zr[j] - max);
        double lse = max + log(sum);
        for (int64_t j = 0; j < C; j++) lr[j] = (T)((double)zr[j] - lse);
        if (index_target) {
            if (y[i] == ignore_index) {
                loss[i] = norm[i] = 0;
                continue;
            }
            double wy = w ? (double)w[y[i]] : 1, smooth = 0;
            for (int64_t j = 0; j < C; j++) smooth -= (w ? (double)w[j] : 1) * (double)lr[j];
            loss[i] = (1 - e) * (-wy * (double)lr[y[i]]) + e / (double)C * smooth;
            norm[i] = wy;
        } else {
            const T *tr = t + i * C;
            double acc = 0;
            for (int64_t j = 0; j < C; j++) acc -= (w ? (double)w[j] : 1) * ((1 - e) * tr[j] + e / (double)C) * (double)lr[j];
            loss[i] = acc;
            norm[i] = 1;
        }
    }
}

/* out (N) = loss for none; out () = sum or sum / sum(norm), in sample order */
template <typename T> __global__ void ce_reduce_kernel(int64_t N, int reduction, const double *loss, const double *norm, T *out) {
    if (reduction == AF_REDUCTION_NONE) {
        GRID_STRIDE(i, N) out[i] = (T)loss[i];
        return;
    }
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double total = 0, denominator = 0;
    for (int64_t i = 0; i < N; i++) {
        total += loss[i];
        denominator += norm[i];
    }
    out[0] = (T)(reduction == AF_REDUCTION_SUM ? total : total / denominator);
}

/* scale[0] = d L / d loss_i for mean and sum (the CPU's `scale`), scale[1] = sum of the weights */
template <typename T>
__global__ void ce_scale_kernel(int64_t N, int64_t C, const int64_t *y, int index_target, const T *w, int64_t ignore_index,
                                int reduction, const T *dout, double *scale) {
    double s = 1, sum_w = 0;
    if (reduction != AF_REDUCTION_NONE) {
        double denominator = 0;
        if (reduction == AF_REDUCTION_MEAN) {
            if (index_target) {
                for (int64_t i = 0; i < N; i++)
                    if (y[i] != ignore_index) denominator += w ? (double)w[y[i]] : 1;
            } else {
                denominator = (double)N;
            }
        }
        s = reduction == AF_REDUCTION_MEAN ? (double)dout[0] / denominator : (double)dout[0];
    }
    for (int64_t j = 0; j < C; j++) sum_w += w ? (double)w[j] : 1;
    scale[0] = s;
    scale[1] = sum_w;
}

template <typename T>
__global__ void ce_backward_kernel(int64_t N, int64_t C, const void *target, int index_target, const T *w,
                                   int64_t ignore_index, double e, int reduction, const T *logp, const T *dout,
                                   const double *scale, T *dz, T *dt) {
    const int64_t *y = (const int64_t *)target;
    const T *t = (const T *)target;
    double sum_w = scale[1];
    GRID_STRIDE(i, N) {
        const T *lr = logp + i * C;
        double g = reduction == AF_REDUCTION_NONE ? (double)dout[i] : scale[0];
        if (index_target) {
            if (y[i] == ignore_index) continue;
            double wy = w ? (double)w[y[i]] : 1;
            T *dr = dz + i * C;
            for (int64_t j = 0; j < C; j++) {
                double p = exp((double)lr[j]);
                double d = (1 - e) * wy * (p - (j == y[i])) + e / (double)C * (sum_w * p - (w ? (double)w[j] : 1));
                dr[j] += (T)(g * d);
            }
        } else {
            const T *tr = t + i * C;
            if (dz) {
                double wt = 0;
                for (int64_t j = 0; j < C; j++) wt += (w ? (double)w[j] : 1) * ((1 - e) * tr[j] + e / (double)C);
                T *dr = dz + i * C;
                for (int64_t j = 0; j < C; j++) {
                    double tj = (1 - e) * tr[j] + e / (double)C;
                    dr[j] += (T)(g * (wt * exp((double)lr[j]) - (w ? (double)w[j] : 1) * tj));
                }
            }
            if (dt) {
                T *dr = dt + i * C;
                for (int64_t j = 0; j < C; j++) dr[j] += (T)(g * -(1 - e) * (w ? (double)w[j] : 1) * (double)lr[j]);
            }
        }
    }
}

static const void *ce_weight(const af_op_call *c) {
    return c->n_in > CE_WEIGHT && c->in[CE_WEIGHT] ? af_tensor_data(c->in[CE_WEIGHT]) : NULL;
}

static af_status scratch_f64(const af_tensor *like, int64_t n, af_tensor **out) {
    return af_tensor_new(AF_DTYPE_F64, like->device, 1, &n, out);
}

static af_status check_targets(af_cuda_context *ctx, const af_op_call *c, int64_t N, int64_t C) {
    af_tensor *flag;
    int64_t one = 1;
    AF_TRY(af_tensor_new(AF_DTYPE_I64, c->in[0]->device, 1, &one, &flag));
    unsigned long long none = (unsigned long long)INT64_MAX, bad = none;
    af_status st = af_cuda_status(cudaMemcpyAsync(af_tensor_data(flag), &none, 8, cudaMemcpyHostToDevice, ctx->stream),
                                  __FILE__, __LINE__, "cudaMemcpyAsync");
    const int64_t *y = (const int64_t *)af_tensor_data(c->in[CE_TARGET]);
    if (st == AF_OK && N > 0) {
        ce_check_kernel<<<af_cuda_blocks(N), AF_CUDA_THREADS, 0, ctx->stream>>>(y, N, C, c->attr.i[1],
                                                                                 (unsigned long long *)af_tensor_data(flag));
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "ce_check_kernel");
    }
    if (st == AF_OK) st = af_tensor_read(flag, &bad);
    if (st == AF_OK && bad != none) {
        int64_t value;
        st = af_cuda_status(cudaMemcpy(&value, y + bad, 8, cudaMemcpyDeviceToHost), __FILE__, __LINE__, "cudaMemcpy");
        if (st == AF_OK)
            st = AF_FAIL(AF_ERR_VALUE, "%s: argument 'target' holds class %lld at position %lld, outside [0, %lld) and "
                         "not ignore_index (%lld)", af_op_table[c->op]->name, (long long)value, (long long)bad,
                         (long long)C, (long long)c->attr.i[1]);
    }
    af_tensor_release(flag);
    return st;
}

template <typename T> static af_status ce_forward(af_cuda_context *ctx, af_op_call *c) {
    const af_tensor *z = c->in[CE_LOGITS], *t = c->in[CE_TARGET];
    int64_t N = z->shape[0], C = z->shape[1];
    int index_target = t->dtype == AF_DTYPE_I64;
    if (index_target) AF_TRY(check_targets(ctx, c, N, C));
    af_tensor *per_sample;
    AF_TRY(scratch_f64(z, 2 * (N > 0 ? N : 1), &per_sample));
    double *loss = (double *)af_tensor_data(per_sample), *norm = loss + N;
    af_status st = AF_OK;
    if (N > 0) {
        ce_forward_kernel<T><<<af_cuda_blocks(N), AF_CUDA_THREADS, 0, ctx->stream>>>(
            N, C, (const T *)af_tensor_data(z), af_tensor_data(t), index_target, (const T *)ce_weight(c), c->attr.i[1],
            c->attr.f[0], (T *)af_tensor_data(c->saved[0]), loss, norm);
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "ce_forward_kernel");
    }
    int reduction = (int)c->attr.i[0];
    if (st == AF_OK && (N > 0 || reduction != AF_REDUCTION_NONE)) {
        ce_reduce_kernel<T><<<reduction == AF_REDUCTION_NONE ? af_cuda_blocks(N) : 1,
                              reduction == AF_REDUCTION_NONE ? AF_CUDA_THREADS : 1, 0, ctx->stream>>>(
            N, reduction, loss, norm, (T *)af_tensor_data(c->out[0]));
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "ce_reduce_kernel");
    }
    af_tensor_release(per_sample);
    return st;
}

template <typename T>
static af_status ce_backward(af_cuda_context *ctx, const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *z = c->in[CE_LOGITS], *t = c->in[CE_TARGET];
    int64_t N = z->shape[0], C = z->shape[1];
    int index_target = t->dtype == AF_DTYPE_I64;
    af_tensor *dt = index_target ? NULL : din[CE_TARGET];
    if ((!din[CE_LOGITS] && !dt) || N == 0) return AF_OK;
    af_tensor *scale;
    AF_TRY(scratch_f64(z, 2, &scale));
    int reduction = (int)c->attr.i[0];
    ce_scale_kernel<T><<<1, 1, 0, ctx->stream>>>(N, C, (const int64_t *)af_tensor_data(t), index_target,
                                                 (const T *)ce_weight(c), c->attr.i[1], reduction,
                                                 (const T *)af_tensor_data(dout[0]), (double *)af_tensor_data(scale));
    af_status st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "ce_scale_kernel");
    if (st == AF_OK) {
        ce_backward_kernel<T><<<af_cuda_blocks(N), AF_CUDA_THREADS, 0, ctx->stream>>>(
            N, C, af_tensor_data(t), index_target, (const T *)ce_weight(c), c->attr.i[1], c->attr.f[0], reduction,
            (const T *)af_tensor_data(c->saved[0]), (const T *)af_tensor_data(dout[0]),
            (const double *)af_tensor_data(scale), din[CE_LOGITS] ? (T *)af_tensor_data(din[CE_LOGITS]) : NULL,
            dt ? (T *)af_tensor_data(dt) : NULL);
        st = af_cuda_status(cudaPeekAtLastError(), __FILE__, __LINE__, "ce_backward_kernel");
    }
    af_tensor_release(scale);
    return st;
}

static af_status cross_entropy_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    return c->in[CE_LOGITS]->dtype == AF_DTYPE_F32 ? ce_forward<float>(ctx, c) : ce_forward<double>(ctx, c);
}

static af_status cross_entropy_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    return c->in[CE_LOGITS]->dtype == AF_DTYPE_F32 ? ce_backward<float>(ctx, c, dout, din)
                                                   : ce_backward<double>(ctx, c, dout, din);
}

AF_OP_CUDA_KERNELS(cross_entropy) = {.forward = cross_entropy_forward_cuda, .backward = cross_entropy_backward_cuda};
