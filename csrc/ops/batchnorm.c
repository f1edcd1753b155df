/* Batch normalisation (Ioffe & Szegedy, ICML 2015, arXiv 1502.03167) with the semantics of
 * torch.nn.functional.batch_norm.
 *
 *   in    = (x (N, C, *), weight (C)?, bias (C)?, running_mean (C)?, running_var (C)?), one float dtype;
 *           x has 2 to 5 dims: (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W). S = prod(*) below.
 *   ints  = (training,)   floats = (momentum, eps)
 *   out   = y, the shape of x
 *   saved = mean (C), invstd (C): the statistics y was normalised with.
 *
 * Training: per channel c, over the M = N*S values, mean_c and the BIASED variance var_c normalise:
 *   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.
 * When running stats are given they are updated IN PLACE, as torch does:
 *   running_mean = (1 - momentum) * running_mean + momentum * mean_c
 *   running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)   (unbiased)
 * Without running stats this is torch's track_running_stats=False. M == 1 is refused (a variance
 * of one value is meaningless), as torch does; an empty x gives an empty y and leaves the running
 * stats alone (torch's numel() == 0 path).
 * Eval: running_mean / running_var normalise and are required.
 *
 * Backward (weight/bias absent = 1/0), with xhat = (x - mean) * invstd and sums over the channel's M values:
 *   dbias_c += sum(dy)      dw_c += sum(dy * xhat)
 *   training: dx += w_c * invstd_c * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
 *             (the batch statistics depend on x: the derivation is in the paper, section 3)
 *   eval:     dx += w_c * invstd_c * dy                  (running stats are constants)
 * Each channel is reduced by one thread in a fixed order: bitwise identical for any thread count.
 * Sums accumulate in double for both dtypes. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "batchnorm.h"

#define AF_TEMPLATE_FILE "batchnorm.c"
#include "instantiate_float.h"


static af_status batch_norm_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    AF_TRY(af_check_attrs(c, 1, 2));
    if (c->n_in > 5) return AF_FAIL(AF_ERR_VALUE, "%s takes at most 5 inputs, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, BN_X));
    const af_tensor *x = c->in[BN_X];
    if (x->ndim < 2) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' must be (N, C) or (N, C, ...) with 2 to 5 dims, got shape %s",
                       op, af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    for (int i = BN_WEIGHT; i <= BN_RUNNING_VAR; i++) {
        if (i >= c->n_in || !c->in[i]) continue;
        AF_TRY(af_check_float(c, i));
        AF_TRY(af_check_same_dtype(c, BN_X, i));
        if (c->in[i]->ndim != 1 || c->in[i]->shape[0] != C) {
            char buf[96];
            return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must have shape (C,) = (%lld,) for input channels, got %s",
                           op, af_op_input_name(c, i), (long long)C,
                           af_shape_str(c->in[i]->ndim, c->in[i]->shape, buf, sizeof buf));
        }
    }
    const af_tensor *rm = c->n_in > BN_RUNNING_MEAN ? c->in[BN_RUNNING_MEAN] : NULL;
    const af_tensor *rv = c->n_in > BN_RUNNING_VAR ? c->in[BN_RUNNING_VAR] : NULL;
    if (!rm != !rv)
        return AF_FAIL(AF_ERR_VALUE, "%s: arguments 'running_mean' and 'running_var' must be given together", op);
    int64_t training = c->attr.i[0];
    double momentum = c->attr.f[0], eps = c->attr.f[1];
    if (training != 0 && training != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'training' must be 0 or 1, got %lld", op, (long long)training);
    if (!isfinite(momentum))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'momentum' must be finite, got %g", op, momentum);
    if (!(eps >= 0) || !isfinite(eps))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'eps' must be finite and >= 0, got %g", op, eps);
    if (!training && !rm)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'running_mean' (and 'running_var') is required in eval mode "
                       "(training=0)", op);
    if (training && rm && (rm->readonly || rv->readonly))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' is read-only but training updates it in place", op,
                       rm->readonly ? "running_mean" : "running_var");
    if (training && x->numel > 0 && N * S == 1) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' has 1 value per channel (shape %s); training needs more "
                       "than 1 to compute a variance", op, af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    AF_TRY(af_alloc_out(c, 0, x->ndim, x->shape, BN_X));
    AF_TRY(af_alloc_saved(c, 0, 1, &C, x->dtype));
    return af_alloc_saved(c, 1, 1, &C, x->dtype);
}

static const af_tensor *batch_norm_in(const af_op_call *c, int i) { return i < c->n_in ? c->in[i] : NULL; }
static void *batch_norm_data(const af_tensor *t) { return t ? af_tensor_data(t) : NULL; }

static af_status batch_norm_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[BN_X];
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    AF_DISPATCH_FLOAT(x->dtype, batch_norm_forward, N, C, S, (int)c->attr.i[0], c->attr.f[0], c->attr.f[1],
                      af_tensor_data(x), batch_norm_data(batch_norm_in(c, BN_WEIGHT)),
                      batch_norm_data(batch_norm_in(c, BN_BIAS)), batch_norm_data(batch_norm_in(c, BN_RUNNING_MEAN)),
                      batch_norm_data(batch_norm_in(c, BN_RUNNING_VAR)), af_tensor_data(c->out[0]),
                      af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]));
    return AF_OK;
}

static af_status batch_norm_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *x = c->in[BN_X];
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    AF_DISPATCH_FLOAT(x->dtype, batch_norm_backward, N, C, S, (int)c->attr.i[0], af_tensor_data(x),
                      batch_norm_data(batch_norm_in(c, BN_WEIGHT)), af_tensor_data(c->saved[0]),
                      af_tensor_data(c->saved[1]), af_tensor_data(dout[0]), batch_norm_data(din[BN_X]),
                      batch_norm_data(din[BN_WEIGHT]), batch_norm_data(din[BN_BIAS]));
    return AF_OK;
}

static const char *const batch_norm_inputs[] = {"input", "weight", "bias", "running_mean", "running_var", NULL};

const af_op_def af_op_def_batch_norm = {.name = "batch_norm", .input_names = batch_norm_inputs,
                                        .setup = batch_norm_setup, .forward_cpu = batch_norm_forward_cpu,
                                        .backward_cpu = batch_norm_backward_cpu,
                                        .differentiable_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

/* x, y: (N, C, S); w, b, running_mean, running_var, save_mean, save_invstd: (C); w, b and the
 * running stats may be NULL. */
AF_CPU_DISPATCH
static void K(batch_norm_forward)(int64_t N, int64_t C, int64_t S, int training, double momentum, double eps,
                                  const scalar_t *x, const scalar_t *w, const scalar_t *b, scalar_t *running_mean,
                                  scalar_t *running_var, scalar_t *y, scalar_t *save_mean, scalar_t *save_invstd) {
    int64_t M = N * S;
    AF_PARALLEL_FOR(M * C * 4)
    for (int64_t ch = 0; ch < C; ch++) {
        double mean, invstd;
        if (training) {
            double sum = 0, sq = 0;
            for (int64_t n = 0; n < N; n++) {
                const scalar_t *xr = x + (n * C + ch) * S;
                for (int64_t s = 0; s < S; s++) sum += xr[s];
            }
            mean = M > 0 ? sum / (double)M : 0;
            /* two passes: sum of squared deviations does not cancel catastrophically */
            for (int64_t n = 0; n < N; n++) {
                const scalar_t *xr = x + (n * C + ch) * S;
                for (int64_t s = 0; s < S; s++) {
                    double d = xr[s] - mean;
                    sq += d * d;
                }
            }
            double var = M > 0 ? sq / (double)M : 0;
            invstd = 1 / sqrt(var + eps);
            if (running_mean && M > 1) {
                running_mean[ch] = (scalar_t)((1 - momentum) * running_mean[ch] + momentum * mean);
                running_var[ch] = (scalar_t)((1 - momentum) * running_var[ch] + momentum * sq / (double)(M - 1));
            }
        } else {
            mean = running_mean[ch];
            invstd = 1 / sqrt((double)running_var[ch] + eps);
        }
        save_mean[ch] = (scalar_t)mean;
        save_invstd[ch] = (scalar_t)invstd;
        /* y = x * alpha + beta with alpha = invstd * w, beta = b - mean * alpha (torch's CPU form) */
        double alpha = invstd * (w ? w[ch] : 1);
        double beta = (b ? b[ch] : 0) - mean * alpha;
        scalar_t a = (scalar_t)alpha, be = (scalar_t)beta;
        for (int64_t n = 0; n < N; n++) {
            const scalar_t *xr = x + (n * C + ch) * S;
            scalar_t *yr = y + (n * C + ch) * S;
            for (int64_t s = 0; s < S; s++) yr[s] = xr[s] * a + be;
        }
    }
}

/* x, dy, dx: (N, C, S); w, mean, invstd, dw, dbias: (C); w and the gradients may be NULL. */
AF_CPU_DISPATCH
static void K(batch_norm_backward)(int64_t N, int64_t C, int64_t S, int training, const scalar_t *x, const scalar_t *w,
                                   const scalar_t *mean, const scalar_t *invstd, const scalar_t *dy, scalar_t *dx,
                                   scalar_t *dw, scalar_t *dbias) {
    int64_t M = N * S;
    AF_PARALLEL_FOR(M * C * 6)
    for (int64_t ch = 0; ch < C; ch++) {
        double mu = mean[ch], is = invstd[ch];
        double sum_dy = 0, sum_dy_xhat = 0;
        for (int64_t n = 0; n < N; n++) {
            const scalar_t *xr = x + (n * C + ch) * S, *gr = dy + (n * C + ch) * S;
            for (int64_t s = 0; s < S; s++) {
                sum_dy += gr[s];
                sum_dy_xhat += gr[s] * ((xr[s] - mu) * is);
            }
        }
        if (dbias) dbias[ch] += (scalar_t)sum_dy;
        if (dw) dw[ch] += (scalar_t)sum_dy_xhat;
        if (!dx) continue;
        double scale = is * (w ? w[ch] : 1);
        if (training) {
            double mean_dy = sum_dy / (double)M, mean_dy_xhat = sum_dy_xhat / (double)M;
            for (int64_t n = 0; n < N; n++) {
                const scalar_t *xr = x + (n * C + ch) * S, *gr = dy + (n * C + ch) * S;
                scalar_t *dr = dx + (n * C + ch) * S;
                for (int64_t s = 0; s < S; s++) {
                    double xhat = (xr[s] - mu) * is;
                    dr[s] += (scalar_t)(scale * (gr[s] - mean_dy - xhat * mean_dy_xhat));
                }
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                const scalar_t *gr = dy + (n * C + ch) * S;
                scalar_t *dr = dx + (n * C + ch) * S;
                for (int64_t s = 0; s < S; s++) dr[s] += (scalar_t)(scale * gr[s]);
            }
        }
    }
}

#endif
