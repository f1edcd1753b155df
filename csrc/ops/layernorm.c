/* Layer normalisation (Ba, Kiros, Hinton 2016, arXiv 1607.06450) with the semantics of
 * torch.nn.functional.layer_norm.
 *
 *   in    = (x (..., *normalized), weight (*normalized)?, bias (*normalized)?), one float dtype
 *   ints  = (k,): the number of trailing dims normalised, 1 <= k <= ndim   floats = (eps,)
 *   out   = y, the shape of x
 *   saved = mean (R), rstd (R), R = number of rows = prod of the leading ndim - k dims
 *
 * Viewing x as (R, M), M = prod(normalized): per row, with the BIASED variance,
 *   y = (x - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var + eps).
 * Backward, xhat = (x - mean) * rstd, g = dy * weight (weight absent = 1):
 *   dx += rstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)      (per row)
 *   dw += sum over rows of dy * xhat,  dbias += sum over rows of dy  (per column)
 * dx is parallel over rows; dw/dbias over blocks of columns, each column summed over rows in order
 * by one thread: identical results for any thread count. Sums accumulate in double. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "layernorm.h"

#define LN_COLUMN_BLOCK 64

#define AF_TEMPLATE_FILE "layernorm.c"
#include "instantiate_float.h"

static af_status layer_norm_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    char buf[96], want[96];
    AF_TRY(af_check_attrs(c, 1, 1));
    if (c->n_in > 3) return AF_FAIL(AF_ERR_VALUE, "%s takes at most 3 inputs, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, LN_X));
    const af_tensor *x = c->in[LN_X];
    int64_t k = c->attr.i[0];
    double eps = c->attr.f[0];
    if (k < 1 || k > x->ndim)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'normalized_shape' must cover 1 to %d trailing dims of the input "
                       "(shape %s), got %lld dims", op, x->ndim, af_shape_str(x->ndim, x->shape, buf, sizeof buf),
                       (long long)k);
    if (!(eps >= 0) || !isfinite(eps))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'eps' must be finite and >= 0, got %g", op, eps);
    const int64_t *normalized = x->shape + x->ndim - k;
    for (int i = LN_WEIGHT; i <= LN_BIAS; i++) {
        if (i >= c->n_in || !c->in[i]) continue;
        AF_TRY(af_check_float(c, i));
        AF_TRY(af_check_same_dtype(c, LN_X, i));
        const af_tensor *p = c->in[i];
        int same = p->ndim == k;
        for (int d = 0; same && d < k; d++) same = p->shape[d] == normalized[d];
        if (!same)
            return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must have the normalized shape %s, got %s", op,
                           af_op_input_name(c, i), af_shape_str((int)k, normalized, want, sizeof want),
                           af_shape_str(p->ndim, p->shape, buf, sizeof buf));
    }
    int64_t R, M;
    layer_norm_dims(x, (int)k, &R, &M);
    AF_TRY(af_alloc_out(c, 0, x->ndim, x->shape, LN_X));
    AF_TRY(af_alloc_saved(c, 0, 1, &R, x->dtype));
    return af_alloc_saved(c, 1, 1, &R, x->dtype);
}

static void *layer_norm_data(const af_op_call *c, int i) {
    return i < c->n_in && c->in[i] ? af_tensor_data(c->in[i]) : NULL;
}

static af_status layer_norm_forward_cpu(af_op_call *c) {
    int64_t R, M;
    layer_norm_dims(c->in[LN_X], (int)c->attr.i[0], &R, &M);
    AF_DISPATCH_FLOAT(c->in[LN_X]->dtype, layer_norm_forward, R, M, c->attr.f[0], af_tensor_data(c->in[LN_X]),
                      layer_norm_data(c, LN_WEIGHT), layer_norm_data(c, LN_BIAS), af_tensor_data(c->out[0]),
                      af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]));
    return AF_OK;
}

static af_status layer_norm_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    int64_t R, M;
    layer_norm_dims(c->in[LN_X], (int)c->attr.i[0], &R, &M);
    AF_DISPATCH_FLOAT(c->in[LN_X]->dtype, layer_norm_backward, R, M, af_tensor_data(c->in[LN_X]),
                      layer_norm_data(c, LN_WEIGHT), af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]),
                      af_tensor_data(dout[0]), din[LN_X] ? af_tensor_data(din[LN_X]) : NULL,
                      din[LN_WEIGHT] ? af_tensor_data(din[LN_WEIGHT]) : NULL,
                      din[LN_BIAS] ? af_tensor_data(din[LN_BIAS]) : NULL, c->din_fresh);
    return AF_OK;
}

static const char *const layer_norm_inputs[] = {"input", "weight", "bias", NULL};

const af_op_def af_op_def_layer_norm = {.name = "layer_norm", .input_names = layer_norm_inputs,
                                        .setup = layer_norm_setup, .forward_cpu = layer_norm_forward_cpu,
                                        .backward_cpu = layer_norm_backward_cpu,
                                        .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

#include "lane_sums.inc"

/* x, y: (R, M); w, b: (M) or NULL; mean, rstd: (R) */
AF_CPU_DISPATCH
static void K(layer_norm_forward)(int64_t R, int64_t M, double eps, const scalar_t *x, const scalar_t *w,
                                  const scalar_t *b, scalar_t *y, scalar_t *mean, scalar_t *rstd) {
    AF_PARALLEL_FOR(R * M * 4)
    for (int64_t r = 0; r < R; r++) {
        const scalar_t *xr = x + r * M;
        scalar_t *yr = y + r * M;
        double mu = M > 0 ? K(lanes_sum)(xr, M) / (double)M : 0, sq = K(lanes_sum_sq_dev)(xr, M, mu);
        double rs = 1 / sqrt((M > 0 ? sq / (double)M : 0) + eps);
        mean[r] = (scalar_t)mu;
        rstd[r] = (scalar_t)rs;
        if (w && b)
            for (int64_t j = 0; j < M; j++) yr[j] = (scalar_t)(((double)xr[j] - mu) * rs * w[j] + b[j]);
        else
            for (int64_t j = 0; j < M; j++) {
                double v = ((double)xr[j] - mu) * rs;
                if (w) v *= w[j];
                if (b) v += b[j];
                yr[j] = (scalar_t)v;
            }
    }
}

/* x, dy, dx: (R, M); w, dw, dbias: (M); mean, rstd: (R); w and the gradients may be NULL; fresh: bits
 * LN_X, LN_WEIGHT, LN_BIAS of the gradients to write instead of add to */
AF_CPU_DISPATCH
static void K(layer_norm_backward)(int64_t R, int64_t M, const scalar_t *x, const scalar_t *w, const scalar_t *mean,
                                   const scalar_t *rstd, const scalar_t *dy, scalar_t *dx, scalar_t *dw,
                                   scalar_t *dbias, uint32_t fresh) {
    const int acc_x = !(fresh >> LN_X & 1u), acc_w = !(fresh >> LN_WEIGHT & 1u), acc_b = !(fresh >> LN_BIAS & 1u);
    if (dx) {
        AF_PARALLEL_FOR(R * M * 8)
        for (int64_t r = 0; r < R; r++) {
            const scalar_t *xr = x + r * M, *gr = dy + r * M;
            scalar_t *dr = dx + r * M;
            double mu = mean[r], rs = rstd[r], sum_g = 0, sum_g_xhat = 0;
            K(lanes_grad_sums)(gr, xr, w, 1, M, mu, rs, &sum_g, &sum_g_xhat);
            double mean_g = sum_g / (double)M, mean_g_xhat = sum_g_xhat / (double)M;
            if (w)
                for (int64_t j = 0; j < M; j++)
                    AF_GRAD_STORE(dr[j], acc_x,
                                  (scalar_t)(rs * ((double)gr[j] * w[j] - mean_g - ((double)xr[j] - mu) * rs * mean_g_xhat)));
            else
                for (int64_t j = 0; j < M; j++)
                    AF_GRAD_STORE(dr[j], acc_x, (scalar_t)(rs * ((double)gr[j] - mean_g - ((double)xr[j] - mu) * rs * mean_g_xhat)));
        }
    }
    if (!dw && !dbias) return;
    int64_t blocks = (M + LN_COLUMN_BLOCK - 1) / LN_COLUMN_BLOCK;
    AF_PARALLEL_FOR(R * M * 4)
    for (int64_t blk = 0; blk < blocks; blk++) {
        int64_t j0 = blk * LN_COLUMN_BLOCK, n = M - j0 < LN_COLUMN_BLOCK ? M - j0 : LN_COLUMN_BLOCK;
        double sum_w[LN_COLUMN_BLOCK] = {0}, sum_b[LN_COLUMN_BLOCK] = {0};
        for (int64_t r = 0; r < R; r++) {
            const scalar_t *xr = x + r * M + j0, *gr = dy + r * M + j0;
            double mu = mean[r], rs = rstd[r];
            for (int64_t j = 0; j < n; j++) {
                sum_w[j] += gr[j] * ((xr[j] - mu) * rs);
                sum_b[j] += gr[j];
            }
        }
        for (int64_t j = 0; j < n; j++) {
            if (dw) AF_GRAD_STORE(dw[j0 + j], acc_w, (scalar_t)sum_w[j]);
            if (dbias) AF_GRAD_STORE(dbias[j0 + j], acc_b, (scalar_t)sum_b[j]);
        }
    }
}

#endif
