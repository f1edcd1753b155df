/* softmax and log_softmax along one dim, as torch.softmax / torch.log_softmax.
 *
 *   in = (x,) float32/float64, any shape (0-d counts as one element along dim 0)
 *   ints = (dim,) with 0 <= dim < max(ndim, 1) (Python resolves negative dims)
 *   out = y, the shape of x
 *
 * Viewing x as (outer, D, inner) with D = shape[dim], each of the outer*inner lines is normalised
 * independently. Numerically stable form (subtract the line's max m before exponentiating):
 *   softmax:     y_j = exp(x_j - m) / sum_k exp(x_k - m)
 *   log_softmax: y_j = x_j - m - log(sum_k exp(x_k - m))
 * Backward from the saved output y (the Jacobian of softmax is diag(y) - y y^T):
 *   softmax:     dx_j += y_j (dy_j - sum_k dy_k y_k)
 *   log_softmax: dx_j += dy_j - exp(y_j) sum_k dy_k
 * One thread per line, sums in double in a fixed order: identical results for any thread count.
 * float32 softmax along a contiguous dim takes a vectorised path (softmax_line_f32). */
#ifndef AF_FLOAT_PASS
#include "softmax.h"
#include "vexp.h"

#define AF_TEMPLATE_FILE "softmax.c"
#include "instantiate_float.h"

static af_status softmax_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "%s takes 1 input, got %d", af_op_table[c->op]->name, c->n_in);
    AF_TRY(af_check_float(c, 0));
    const af_tensor *x = c->in[0];
    int64_t dim = c->attr.i[0], ndim = x->ndim ? x->ndim : 1;
    if (dim < 0 || dim >= ndim)
        return AF_FAIL(AF_ERR_INDEX, "%s: argument 'dim' must be in [0, %lld) for a %d-D input, got %lld",
                       af_op_table[c->op]->name, (long long)ndim, x->ndim, (long long)dim);
    return af_alloc_out(c, 0, x->ndim, x->shape, 0);
}

static af_status softmax_forward_cpu(af_op_call *c) {
    af_dim_split s = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, softmax_forward, c->op == AF_OP_LOG_SOFTMAX, s.outer, s.D, s.inner,
                      af_tensor_data(c->in[0]), af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status softmax_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_dim_split s = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, softmax_backward, c->op == AF_OP_LOG_SOFTMAX, s.outer, s.D, s.inner,
                      af_tensor_data(c->out[0]), af_tensor_data(dout[0]), af_tensor_data(din[0]),
                      af_din_accumulates(c, 0));
    return AF_OK;
}

static const char *const softmax_inputs[] = {"input", NULL};

const af_op_def af_op_def_softmax = {.name = "softmax", .input_names = softmax_inputs, .setup = softmax_setup,
                                     .forward_cpu = softmax_forward_cpu, .backward_cpu = softmax_backward_cpu,
                                     .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};
const af_op_def af_op_def_log_softmax = {.name = "log_softmax", .input_names = softmax_inputs,
                                         .setup = softmax_setup, .forward_cpu = softmax_forward_cpu,
                                         .backward_cpu = softmax_backward_cpu, .differentiable_inputs = 0x1u,
                                         .fresh_grad_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

#if AF_FLOAT_PASS == 1
/* A float32 softmax over a contiguous line (inner == 1), vectorised: e_j = af_expf(x_j - m) (vexp.h,
 * within 1 ulp) kept in y, their sum in double in 16 fixed lanes (the same order whatever the
 * vector width of the CPU dispatch clone: the same bits), then y_j = e_j / sum in double. */
static void softmax_line_f32(int64_t D, const float *x, float *y) {
    float m = x[0];
    for (int64_t j = 1; j < D; j++) m = x[j] > m ? x[j] : m;
    double lane[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= D; j += 16)
        for (int l = 0; l < 16; l++) {
            float e = af_expf(x[j + l] - m);
            y[j + l] = e;
            lane[l] += e;
        }
    for (int l = 0; j + l < D; l++) {
        float e = af_expf(x[j + l] - m);
        y[j + l] = e;
        lane[l] += e;
    }
    double sum = 0;
    for (int l = 0; l < 16; l++) sum += lane[l];
    for (j = 0; j < D; j++) y[j] = (float)((double)y[j] / sum);
}
#endif

/* x, y: (outer, D, inner); line (o, i) is x[o, :, i] */
AF_CPU_DISPATCH
static void K(softmax_forward)(int is_log, int64_t outer, int64_t D, int64_t inner, const scalar_t *x, scalar_t *y) {
#if AF_FLOAT_PASS == 1
    if (!is_log && inner == 1 && D > 0) {
        AF_PARALLEL_FOR(outer * D * 4)
        for (int64_t line = 0; line < outer; line++) softmax_line_f32(D, x + line * D, y + line * D);
        return;
    }
#endif
    AF_PARALLEL_FOR(outer * D * inner * 8)
    for (int64_t line = 0; line < outer * inner; line++) {
        const scalar_t *xl = x + (line / inner) * D * inner + line % inner;
        scalar_t *yl = y + (line / inner) * D * inner + line % inner;
        if (D == 0) continue;
        double m = xl[0], sum = 0;
        for (int64_t j = 1; j < D; j++) m = xl[j * inner] > m ? xl[j * inner] : m;
        for (int64_t j = 0; j < D; j++) sum += exp((double)xl[j * inner] - m);
        if (is_log) {
            double shift = m + log(sum);
            for (int64_t j = 0; j < D; j++) yl[j * inner] = (scalar_t)((double)xl[j * inner] - shift);
        } else {
            for (int64_t j = 0; j < D; j++) yl[j * inner] = (scalar_t)(exp((double)xl[j * inner] - m) / sum);
        }
    }
}

/* y, dy, dx: (outer, D, inner); dx += the gradient, or = (acc 0) */
AF_CPU_DISPATCH
static void K(softmax_backward)(int is_log, int64_t outer, int64_t D, int64_t inner, const scalar_t *y,
                                const scalar_t *dy, scalar_t *dx, int acc) {
    AF_PARALLEL_FOR(outer * D * inner * 6)
    for (int64_t line = 0; line < outer * inner; line++) {
        int64_t base = (line / inner) * D * inner + line % inner;
        const scalar_t *yl = y + base, *gl = dy + base;
        scalar_t *dl = dx + base;
        double dot = 0;
        if (is_log) {
            for (int64_t j = 0; j < D; j++) dot += gl[j * inner];
            for (int64_t j = 0; j < D; j++)
                AF_GRAD_STORE(dl[j * inner], acc, (scalar_t)(gl[j * inner] - exp((double)yl[j * inner]) * dot));
        } else {
            for (int64_t j = 0; j < D; j++) dot += (double)gl[j * inner] * yl[j * inner];
            for (int64_t j = 0; j < D; j++) AF_GRAD_STORE(dl[j * inner], acc, (scalar_t)(yl[j * inner] * (gl[j * inner] - dot)));
        }
    }
}

#endif
