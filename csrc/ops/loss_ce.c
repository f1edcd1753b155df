/* Cross-entropy on logits, with the semantics of torch.nn.functional.cross_entropy (the formulas,
 * derived below; the reference is PyTorch's documentation of nn.CrossEntropyLoss and its source,
 * aten/src/ATen/native/LossNLL.cpp, cross_entropy_loss_label_smoothing / _prob_target).
 *
 *   in    = (logits (N, C), target, weight (C)?)
 *           target is either class indices: int64 (N,), each in [0, C) or == ignore_index,
 *           or probabilities: (N, C) of the logits' float dtype.
 *   ints  = (reduction: 0 none / 1 mean / 2 sum, ignore_index)   floats = (label_smoothing e in [0, 1],)
 *   out   = loss: (N,) for none, () otherwise
 *   saved = logp (N, C) = log_softmax(logits), computed as z - max - log(sum(exp(z - max)))
 *
 * Notation: l = logp, p = exp(l), w_c = weight (1 when absent), S_w = sum_c w_c.
 * Class indices: per sample, 0 when y_i == ignore_index, otherwise
 *   loss_i = (1 - e) * (-w_{y_i} l_{i,y_i}) + (e / C) * (-sum_c w_c l_ic)
 *   mean = sum_i loss_i / W with W = sum over non-ignored samples of w_{y_i} (both terms over the
 *   same W, as torch); W == 0 (all ignored, or N == 0) gives NaN like torch; sum = sum_i loss_i.
 *   d loss_i / d z_ij = (1 - e) w_{y_i} (p_ij - [j == y_i]) + (e / C) (S_w p_ij - w_j); 0 when ignored.
 * Probabilities t (ignore_index unused): t' = (1 - e) t + e / C,
 *   loss_i = -sum_c w_c t'_ic l_ic;  mean = sum_i loss_i / N (NaN for N == 0); sum = sum_i loss_i.
 *   d loss_i / d z_ij = (sum_c w_c t'_ic) p_ij - w_j t'_ij;  d loss_i / d t_ij = -(1 - e) w_j l_ij.
 * Rows are independent (one thread each); the reduction over samples is serial, in sample order,
 * so results do not depend on the thread count. Sums accumulate in double for both dtypes. */
#ifndef AF_FLOAT_PASS
#include <math.h>
#include <stdlib.h>

#include "ops.h"

enum { CE_LOGITS, CE_TARGET, CE_WEIGHT };
enum { CE_NONE = AF_REDUCTION_NONE, CE_MEAN = AF_REDUCTION_MEAN, CE_SUM = AF_REDUCTION_SUM };

#define AF_TEMPLATE_FILE "loss_ce.c"
#include "instantiate_float.h"

static af_status cross_entropy_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    char buf[96];
    AF_TRY(af_check_attrs(c, 2, 1));
    if (c->n_in > 3) return AF_FAIL(AF_ERR_VALUE, "%s takes at most 3 inputs, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, CE_LOGITS));
    AF_TRY(af_check_present(c, CE_TARGET));
    const af_tensor *z = c->in[CE_LOGITS], *t = c->in[CE_TARGET];
    if (z->ndim != 2 || z->shape[1] < 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' must be logits of shape (N, C) with C >= 1, got %s", op,
                       af_shape_str(z->ndim, z->shape, buf, sizeof buf));
    int64_t N = z->shape[0], C = z->shape[1];
    if (t->dtype == AF_DTYPE_I64) {
        if (t->ndim != 1 || t->shape[0] != N)
            return AF_FAIL(AF_ERR_VALUE, "%s: argument 'target' (class indices) must have shape (N,) = (%lld,), got %s",
                           op, (long long)N, af_shape_str(t->ndim, t->shape, buf, sizeof buf));
    } else if (t->dtype == z->dtype) {
        if (!af_tensor_same_shape(t, z))
            return AF_FAIL(AF_ERR_VALUE, "%s: argument 'target' (probabilities) must have the logits' shape (%lld, %lld), "
                           "got %s", op, (long long)N, (long long)C, af_shape_str(t->ndim, t->shape, buf, sizeof buf));
    } else {
        return AF_FAIL(AF_ERR_TYPE, "%s: argument 'target' must be int64 class indices or %s probabilities, got %s",
                       op, af_dtype_name(z->dtype), af_dtype_name(t->dtype));
    }
    if (c->n_in > CE_WEIGHT && c->in[CE_WEIGHT]) {
        const af_tensor *w = c->in[CE_WEIGHT];
        AF_TRY(af_check_float(c, CE_WEIGHT));
        AF_TRY(af_check_same_dtype(c, CE_LOGITS, CE_WEIGHT));
        if (w->ndim != 1 || w->shape[0] != C)
            return AF_FAIL(AF_ERR_VALUE, "%s: argument 'weight' must have shape (C,) = (%lld,), got %s", op,
                           (long long)C, af_shape_str(w->ndim, w->shape, buf, sizeof buf));
    }
    int64_t reduction = c->attr.i[0];
    double e = c->attr.f[0];
    if (reduction < CE_NONE || reduction > CE_SUM)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'reduction' must be 0 (none), 1 (mean) or 2 (sum), got %lld", op,
                       (long long)reduction);
    if (!(e >= 0 && e <= 1))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'label_smoothing' must be in [0, 1], got %g", op, e);
    if (reduction == CE_NONE) AF_TRY(af_alloc_out(c, 0, 1, &N, CE_LOGITS));
    else AF_TRY(af_alloc_out(c, 0, 0, NULL, CE_LOGITS));
    return af_alloc_saved(c, 0, 2, z->shape, z->dtype);
}

static const void *cross_entropy_weight(const af_op_call *c) {
    return c->n_in > CE_WEIGHT && c->in[CE_WEIGHT] ? af_tensor_data(c->in[CE_WEIGHT]) : NULL;
}

static af_status cross_entropy_forward_cpu(af_op_call *c) {
    const af_tensor *z = c->in[CE_LOGITS], *t = c->in[CE_TARGET];
    int64_t N = z->shape[0], C = z->shape[1], ignore_index = c->attr.i[1];
    int index_target = t->dtype == AF_DTYPE_I64;
    if (index_target) { /* values are data, not shape: checked here rather than in setup */
        const int64_t *y = af_tensor_data(t);
        for (int64_t i = 0; i < N; i++)
            if (y[i] != ignore_index && (y[i] < 0 || y[i] >= C))
                return AF_FAIL(AF_ERR_VALUE, "%s: argument 'target' holds class %lld at position %lld, outside "
                               "[0, %lld) and not ignore_index (%lld)", af_op_table[c->op]->name, (long long)y[i],
                               (long long)i, (long long)C, (long long)ignore_index);
    }
    double *per_sample = malloc((size_t)(N > 0 ? N : 1) * 2 * sizeof *per_sample); /* loss_i, then weight_i */
    if (!per_sample) return AF_FAIL(AF_ERR_OOM, "%s: out of memory for %lld per-sample losses", af_op_table[c->op]->name, (long long)N);
    AF_DISPATCH_FLOAT(z->dtype, cross_entropy_forward, N, C, af_tensor_data(z), af_tensor_data(t), index_target,
                      cross_entropy_weight(c), ignore_index, c->attr.f[0], af_tensor_data(c->saved[0]), per_sample,
                      per_sample + N);
    int64_t reduction = c->attr.i[0];
    if (reduction == CE_NONE) {
        AF_DISPATCH_FLOAT(z->dtype, cross_entropy_store, N, per_sample, af_tensor_data(c->out[0]));
    } else {
        double total = 0, denominator = 0;
        for (int64_t i = 0; i < N; i++) {
            total += per_sample[i];
            denominator += per_sample[N + i];
        }
        double loss = reduction == CE_SUM ? total : total / denominator; /* 0 / 0 = NaN, as torch */
        AF_DISPATCH_FLOAT(z->dtype, cross_entropy_store, 1, &loss, af_tensor_data(c->out[0]));
    }
    free(per_sample);
    return AF_OK;
}

static af_status cross_entropy_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *z = c->in[CE_LOGITS], *t = c->in[CE_TARGET];
    int64_t N = z->shape[0], C = z->shape[1];
    int index_target = t->dtype == AF_DTYPE_I64;
    af_tensor *dt = index_target ? NULL : din[CE_TARGET];
    if (!din[CE_LOGITS] && !dt) return AF_OK;
    AF_DISPATCH_FLOAT(z->dtype, cross_entropy_backward, N, C, af_tensor_data(t), index_target, cross_entropy_weight(c),
                      c->attr.i[1], c->attr.f[0], (int)c->attr.i[0], af_tensor_data(c->saved[0]),
                      af_tensor_data(dout[0]), din[CE_LOGITS] ? af_tensor_data(din[CE_LOGITS]) : NULL,
                      dt ? af_tensor_data(dt) : NULL);
    return AF_OK;
}

static const char *const cross_entropy_inputs[] = {"input", "target", "weight", NULL};

const af_op_def af_op_def_cross_entropy = {.name = "cross_entropy", .input_names = cross_entropy_inputs,
                                           .setup = cross_entropy_setup,
                                           .forward_cpu = cross_entropy_forward_cpu,
                                           .backward_cpu = cross_entropy_backward_cpu,
                                           .differentiable_inputs = 0x3u};

#else /* ---- kernels, once per scalar_t ---- */

#include "log_softmax_row.inc"

static void K(cross_entropy_store)(int64_t n, const double *src, scalar_t *dst) {
    for (int64_t i = 0; i < n; i++) dst[i] = (scalar_t)src[i];
}

/* z, logp: (N, C); target: int64 (N) or scalar_t (N, C); w: (C) or NULL.
 * loss: (N) per-sample losses; norm: (N) each sample's share of the mean's denominator
 * (w_{y_i}, 0 when ignored, for indices; 1 for probabilities). */
AF_CPU_DISPATCH
static void K(cross_entropy_forward)(int64_t N, int64_t C, const scalar_t *z, const void *target, int index_target,
                                     const scalar_t *w, int64_t ignore_index, double e, scalar_t *logp, double *loss,
                                     double *norm) {
    const int64_t *y = target;
    const scalar_t *t = target;
    AF_PARALLEL_FOR(N * C * 8)
    for (int64_t i = 0; i < N; i++) {
        const scalar_t *zr = z + i * C;
        scalar_t *lr = logp + i * C;
        K(log_softmax_row)(zr, C, lr);
        if (index_target) {
            if (y[i] == ignore_index) {
                loss[i] = norm[i] = 0;
                continue;
            }
            double wy = w ? w[y[i]] : 1, smooth = 0;
            for (int64_t j = 0; j < C; j++) smooth -= (w ? w[j] : 1) * (double)lr[j];
            loss[i] = (1 - e) * (-wy * lr[y[i]]) + e / (double)C * smooth;
            norm[i] = wy;
        } else {
            const scalar_t *tr = t + i * C;
            double acc = 0;
            for (int64_t j = 0; j < C; j++)
                acc -= (w ? w[j] : 1) * ((1 - e) * tr[j] + e / (double)C) * (double)lr[j];
            loss[i] = acc;
            norm[i] = 1;
        }
    }
}

/* logp, dz, dt: (N, C); dout: (N) for reduction none, () otherwise; dz or dt may be NULL. */
AF_CPU_DISPATCH
static void K(cross_entropy_backward)(int64_t N, int64_t C, const void *target, int index_target, const scalar_t *w,
                                      int64_t ignore_index, double e, int reduction, const scalar_t *logp,
                                      const scalar_t *dout, scalar_t *dz, scalar_t *dt) {
    const int64_t *y = target;
    const scalar_t *t = target;
    double scale = 1; /* d L / d loss_i for mean and sum */
    if (reduction != CE_NONE) {
        double denominator = 0;
        if (reduction == CE_MEAN) {
            if (index_target) {
                for (int64_t i = 0; i < N; i++)
                    if (y[i] != ignore_index) denominator += w ? w[y[i]] : 1;
            } else {
                denominator = (double)N;
            }
        }
        scale = reduction == CE_MEAN ? (double)dout[0] / denominator : (double)dout[0];
    }
    double sum_w = 0;
    for (int64_t j = 0; j < C; j++) sum_w += w ? w[j] : 1;
    AF_PARALLEL_FOR(N * C * 8)
    for (int64_t i = 0; i < N; i++) {
        const scalar_t *lr = logp + i * C;
        double g = reduction == CE_NONE ? (double)dout[i] : scale;
        if (index_target) {
            if (y[i] == ignore_index) continue;
            double wy = w ? w[y[i]] : 1;
            scalar_t *dr = dz + i * C;
            for (int64_t j = 0; j < C; j++) {
                double p = exp((double)lr[j]);
                double d = (1 - e) * wy * (p - (j == y[i])) + e / (double)C * (sum_w * p - (w ? w[j] : 1));
                dr[j] += (scalar_t)(g * d);
            }
        } else {
            const scalar_t *tr = t + i * C;
            if (dz) {
                double wt = 0;
                for (int64_t j = 0; j < C; j++) wt += (w ? w[j] : 1) * ((1 - e) * tr[j] + e / (double)C);
                scalar_t *dr = dz + i * C;
                for (int64_t j = 0; j < C; j++) {
                    double tj = (1 - e) * tr[j] + e / (double)C;
                    dr[j] += (scalar_t)(g * (wt * exp((double)lr[j]) - (w ? w[j] : 1) * tj));
                }
            }
            if (dt) {
                scalar_t *dr = dt + i * C;
                for (int64_t j = 0; j < C; j++) dr[j] += (scalar_t)(g * -(1 - e) * (w ? w[j] : 1) * (double)lr[j]);
            }
        }
    }
}

#endif
