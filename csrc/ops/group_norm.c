/* Group normalisation (Wu and He 2018, arXiv 1803.08494) with the semantics of
 * torch.nn.functional.group_norm.
 *
 *   in    = (x (N, C, *), weight (C)?, bias (C)?), one float dtype; C divisible by G
 *   ints  = (G,) num_groups        floats = (eps,)
 *   out   = y, the shape of x
 *   saved = mean (N, G), rstd (N, G), float64
 *
 * Each (n, g) block holds M = C/G * S elements (S = prod of the spatial dims); with the BIASED
 * variance of the block,
 *   y = (x - mean) * rstd * weight[c] + bias[c],   rstd = 1 / sqrt(var + eps).
 * Backward, xhat = (x - mean) * rstd, g = dy * weight[c] (weight absent = 1), per block:
 *   dx += rstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)
 *   dweight[c] += sum over n and S of dy * xhat,  dbias[c] += sum over n and S of dy
 * dx is parallel over blocks; dweight/dbias over channels, each summed over n in order by one
 * thread: identical results for any thread count. Sums accumulate in double. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "group_norm.h"

#define AF_TEMPLATE_FILE "group_norm.c"
#include "instantiate_float.h"

static af_status group_norm_setup(af_op_call *c) {
    char buf[96];
    AF_TRY(af_check_attrs(c, 1, 1));
    if (c->n_in > 3) return AF_FAIL(AF_ERR_VALUE, "group_norm takes at most 3 inputs, got %d", c->n_in);
    AF_TRY(af_check_float(c, GN_X));
    const af_tensor *x = c->in[GN_X];
    if (x->ndim < 2)
        return AF_FAIL(AF_ERR_VALUE, "group_norm: argument 'input' must be (N, C, *), got shape %s",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t G = c->attr.i[0], C = x->shape[1];
    double eps = c->attr.f[0];
    if (G < 1 || C % G != 0)
        return AF_FAIL(AF_ERR_VALUE, "group_norm: argument 'num_groups' must be >= 1 and divide the %lld channels, "
                       "got %lld", (long long)C, (long long)G);
    if (!(eps >= 0) || !isfinite(eps))
        return AF_FAIL(AF_ERR_VALUE, "group_norm: argument 'eps' must be finite and >= 0, got %g", eps);
    for (int i = GN_WEIGHT; i <= GN_BIAS; i++) {
        if (i >= c->n_in || !c->in[i]) continue;
        AF_TRY(af_check_float(c, i));
        AF_TRY(af_check_same_dtype(c, GN_X, i));
        const af_tensor *p = c->in[i];
        if (p->ndim != 1 || p->shape[0] != C)
            return AF_FAIL(AF_ERR_VALUE, "group_norm: argument '%s' must have shape (%lld,), got %s",
                           af_op_input_name(c, i), (long long)C, af_shape_str(p->ndim, p->shape, buf, sizeof buf));
    }
    int64_t stat_shape[2] = {x->shape[0], G};
    AF_TRY(af_alloc_out(c, 0, x->ndim, x->shape, GN_X));
    AF_TRY(af_alloc_saved(c, 0, 2, stat_shape, AF_DTYPE_F64));
    return af_alloc_saved(c, 1, 2, stat_shape, AF_DTYPE_F64);
}

static void *group_norm_data(const af_op_call *c, int i) {
    return i < c->n_in && c->in[i] ? af_tensor_data(c->in[i]) : NULL;
}

static af_status group_norm_forward_cpu(af_op_call *c) {
    gn_dims d = group_norm_dims(c);
    AF_DISPATCH_FLOAT(c->in[GN_X]->dtype, group_norm_forward, &d, c->attr.f[0], af_tensor_data(c->in[GN_X]),
                      group_norm_data(c, GN_WEIGHT), group_norm_data(c, GN_BIAS), af_tensor_data(c->out[0]),
                      af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]));
    return AF_OK;
}

static af_status group_norm_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    gn_dims d = group_norm_dims(c);
    AF_DISPATCH_FLOAT(c->in[GN_X]->dtype, group_norm_backward, &d, af_tensor_data(c->in[GN_X]),
                      group_norm_data(c, GN_WEIGHT), af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]),
                      af_tensor_data(dout[0]), din[GN_X] ? af_tensor_data(din[GN_X]) : NULL,
                      din[GN_WEIGHT] ? af_tensor_data(din[GN_WEIGHT]) : NULL,
                      din[GN_BIAS] ? af_tensor_data(din[GN_BIAS]) : NULL, c->din_fresh);
    return AF_OK;
}

static const char *const group_norm_inputs[] = {"input", "weight", "bias", NULL};

const af_op_def af_op_def_group_norm = {.name = "group_norm", .input_names = group_norm_inputs,
                                        .setup = group_norm_setup, .forward_cpu = group_norm_forward_cpu,
                                        .backward_cpu = group_norm_backward_cpu, .differentiable_inputs = 0x7u,
                                        .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

#include "lane_sums.inc"

/* x, y: (N, G, Cg, S); w, b: (G * Cg) or NULL; mean, rstd: (N, G) */
AF_CPU_DISPATCH
static void K(group_norm_forward)(const gn_dims *d, double eps, const scalar_t *x, const scalar_t *w,
                                  const scalar_t *b, scalar_t *y, double *mean, double *rstd) {
    int64_t M = d->Cg * d->S;
    AF_PARALLEL_FOR(d->N * d->G * M * 4)
    for (int64_t blk = 0; blk < d->N * d->G; blk++) {
        const scalar_t *xb = x + blk * M;
        scalar_t *yb = y + blk * M;
        double mu = M > 0 ? K(lanes_sum)(xb, M) / (double)M : 0, sq = K(lanes_sum_sq_dev)(xb, M, mu);
        double rs = 1 / sqrt((M > 0 ? sq / (double)M : 0) + eps);
        mean[blk] = mu;
        rstd[blk] = rs;
        int64_t c0 = blk % d->G * d->Cg;
        for (int64_t cg = 0; cg < d->Cg; cg++) {
            double scale = w ? rs * w[c0 + cg] : rs, shift = b ? b[c0 + cg] : 0;
            for (int64_t s = 0; s < d->S; s++) {
                int64_t j = cg * d->S + s;
                yb[j] = (scalar_t)(((double)xb[j] - mu) * scale + shift);
            }
        }
    }
}

/* x, dy, dx: (N, G, Cg, S); w, dw, dbias: (G * Cg); mean, rstd: (N, G); w and gradients may be NULL;
 * fresh: bits GN_X, GN_WEIGHT, GN_BIAS of the gradients to write instead of add to */
AF_CPU_DISPATCH
static void K(group_norm_backward)(const gn_dims *d, const scalar_t *x, const scalar_t *w, const double *mean,
                                   const double *rstd, const scalar_t *dy, scalar_t *dx, scalar_t *dw,
                                   scalar_t *dbias, uint32_t fresh) {
    int64_t M = d->Cg * d->S, C = d->G * d->Cg;
    const int acc_x = !(fresh >> GN_X & 1u), acc_w = !(fresh >> GN_WEIGHT & 1u), acc_b = !(fresh >> GN_BIAS & 1u);
    if (dx) {
        AF_PARALLEL_FOR(d->N * d->G * M * 8)
        for (int64_t blk = 0; blk < d->N * d->G; blk++) {
            const scalar_t *xb = x + blk * M, *gb = dy + blk * M;
            scalar_t *db = dx + blk * M;
            int64_t c0 = blk % d->G * d->Cg;
            double mu = mean[blk], rs = rstd[blk], sum_g = 0, sum_g_xhat = 0;
            for (int64_t cg = 0; cg < d->Cg; cg++)
                K(lanes_grad_sums)(gb + cg * d->S, xb + cg * d->S, NULL, w ? w[c0 + cg] : 1, d->S, mu, rs, &sum_g,
                                   &sum_g_xhat);
            double mean_g = sum_g / (double)M, mean_g_xhat = sum_g_xhat / (double)M;
            for (int64_t cg = 0; cg < d->Cg; cg++) {
                double wc = w ? w[c0 + cg] : 1;
                for (int64_t s = 0; s < d->S; s++) {
                    int64_t j = cg * d->S + s;
                    double xhat = ((double)xb[j] - mu) * rs;
                    AF_GRAD_STORE(db[j], acc_x, (scalar_t)(rs * (gb[j] * wc - mean_g - xhat * mean_g_xhat)));
                }
            }
        }
    }
    if (!dw && !dbias) return;
    AF_PARALLEL_FOR(d->N * C * d->S * 4)
    for (int64_t c = 0; c < C; c++) {
        double sum_w = 0, sum_b = 0;
        for (int64_t n = 0; n < d->N; n++) {
            int64_t blk = n * d->G + c / d->Cg;
            const scalar_t *xr = x + (n * C + c) * d->S, *gr = dy + (n * C + c) * d->S;
            /* with wc = 1: sum_g = sum dy (dbias), sum_g_xhat = sum dy xhat (dw) */
            K(lanes_grad_sums)(gr, xr, NULL, 1, d->S, mean[blk], rstd[blk], &sum_b, &sum_w);
        }
        if (dw) AF_GRAD_STORE(dw[c], acc_w, (scalar_t)sum_w);
        if (dbias) AF_GRAD_STORE(dbias[c], acc_b, (scalar_t)sum_b);
    }
}

#endif
