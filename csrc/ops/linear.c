/* Fully connected layer, as torch.nn.functional.linear.
 *
 * in = (x (..., in_features), weight (out_features, in_features), bias (out_features) optional),
 * one float dtype; x has 1 to 5 dims. out: y (..., out_features) = x W^T + b. No attributes.
 * The leading dims of x are flattened into M rows, so the product is one GEMM
 *   y (M, out) = x (M, in) @ W^T
 * through AF_GEMM (csrc/ops/gemm.c), whose bits do not depend on the thread count.
 * Backward (Y = X W^T + 1 b^T):
 *   dx (M, in)  += dy @ W
 *   dW (out, in) += dy^T @ x
 *   dbias (out) += sum over the M rows of dy (column sums; one thread owns a block of columns and
 *                  adds the rows in order, in double, so the result does not depend on threads). */
#ifndef AF_FLOAT_PASS
#include <limits.h>

#include "ops.h"

#define LINEAR_COLS 256 /* bias-gradient columns per work item */

#define AF_TEMPLATE_FILE "linear.c"
#include "instantiate_float.h"

static af_status linear_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    if (c->n_in < 2 || c->n_in > 3)
        return AF_FAIL(AF_ERR_VALUE, "linear takes (input, weight, bias=None), got %d tensors", c->n_in);
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    AF_TRY(af_check_ndim(c, 1, 2));
    const af_tensor *x = c->in[0], *w = c->in[1], *bias = c->n_in > 2 ? c->in[2] : NULL;
    char sx[96], sw[96];
    af_shape_str(x->ndim, x->shape, sx, sizeof sx);
    af_shape_str(w->ndim, w->shape, sw, sizeof sw);
    if (x->ndim < 1) return AF_FAIL(AF_ERR_VALUE, "linear: argument 'input' must be at least 1-D, got a 0-d tensor");
    int64_t in = x->shape[x->ndim - 1], out = w->shape[0];
    if (w->shape[1] != in)
        return AF_FAIL(AF_ERR_VALUE, "linear: 'input' of shape %s has %lld features but 'weight' of shape %s expects %lld",
                       sx, (long long)in, sw, (long long)w->shape[1]);
    if (bias) {
        AF_TRY(af_check_float(c, 2));
        AF_TRY(af_check_same_dtype(c, 0, 2));
        if (bias->ndim != 1 || bias->shape[0] != out) {
            char sb[96];
            return AF_FAIL(AF_ERR_VALUE, "linear: argument 'bias' must have shape (%lld,), got %s", (long long)out,
                           af_shape_str(bias->ndim, bias->shape, sb, sizeof sb));
        }
    }
    int64_t shape[AF_MAX_DIMS];
    for (int k = 0; k < x->ndim - 1; k++) shape[k] = x->shape[k];
    shape[x->ndim - 1] = out;
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

/* CBLAS takes int sizes; the limit belongs to this CPU path, not to setup. */
static af_status linear_check_cblas(const af_op_call *c, int64_t M, int64_t in, int64_t out) {
    if (M <= INT_MAX && in <= INT_MAX && out <= INT_MAX) return AF_OK;
    char sx[96], sw[96];
    return AF_FAIL(AF_ERR_VALUE, "linear: 'input' %s with 'weight' %s exceeds the BLAS limit of 2^31 per dim",
                   af_shape_str(c->in[0]->ndim, c->in[0]->shape, sx, sizeof sx),
                   af_shape_str(c->in[1]->ndim, c->in[1]->shape, sw, sizeof sw));
}

static af_status linear_forward_cpu(af_op_call *c) {
    const af_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    int64_t out = c->in[1]->shape[0], in = c->in[1]->shape[1];
    int64_t M = af_shape_numel(c->out[0]->ndim - 1, c->out[0]->shape);
    AF_TRY(linear_check_cblas(c, M, in, out));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, linear_forward, M, in, out, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      bias ? af_tensor_data(bias) : NULL, af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status linear_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    int64_t out = c->in[1]->shape[0], in = c->in[1]->shape[1];
    int64_t M = af_shape_numel(c->out[0]->ndim - 1, c->out[0]->shape);
    AF_TRY(linear_check_cblas(c, M, in, out));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, linear_backward, M, in, out, af_tensor_data(c->in[0]),
                      af_tensor_data(c->in[1]), af_tensor_data(dout[0]), din[0] ? af_tensor_data(din[0]) : NULL,
                      din[1] ? af_tensor_data(din[1]) : NULL, c->n_in > 2 && din[2] ? af_tensor_data(din[2]) : NULL,
                      c->din_fresh);
    return AF_OK;
}

static const char *const linear_inputs[] = {"input", "weight", "bias", NULL};
const af_op_def af_op_def_linear = {.name = "linear", .input_names = linear_inputs, .setup = linear_setup,
                                    .forward_cpu = linear_forward_cpu, .backward_cpu = linear_backward_cpu,
                                    .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

/* x: (M, in), w: (out, in), bias: (out) or NULL, y: (M, out) */
static void K(linear_forward)(int64_t M, int64_t in, int64_t out, const scalar_t *x, const scalar_t *w,
                              const scalar_t *bias, scalar_t *y) {
    AF_GEMM(0, 1, M, out, in, 1, x, in, w, in, 0, y, out);
    if (!bias) return;
    AF_PARALLEL_FOR(M * out)
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < out; j++) y[m * out + j] += bias[j];
}

/* dy: (M, out); dx: (M, in), dw: (out, in), dbias: (out), each NULL when not wanted; bit i of fresh:
 * gradient i is written, not added to */
static void K(linear_backward)(int64_t M, int64_t in, int64_t out, const scalar_t *x, const scalar_t *w,
                               const scalar_t *dy, scalar_t *dx, scalar_t *dw, scalar_t *dbias, uint32_t fresh) {
    if (dx) AF_GEMM(0, 0, M, in, out, 1, dy, out, w, in, fresh & 1u ? 0 : 1, dx, in);
    if (dw) AF_GEMM(1, 0, out, in, M, 1, dy, out, x, in, fresh & 2u ? 0 : 1, dw, in);
    if (!dbias) return;
    int64_t n_blocks = (out + LINEAR_COLS - 1) / LINEAR_COLS;
    AF_PARALLEL_FOR(M * out)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        int64_t j0 = blk * LINEAR_COLS, len = out - j0 < LINEAR_COLS ? out - j0 : LINEAR_COLS;
        double acc[LINEAR_COLS];
        for (int64_t j = 0; j < len; j++) acc[j] = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < len; j++) acc[j] += (double)dy[m * out + j0 + j];
        for (int64_t j = 0; j < len; j++) AF_GRAD_STORE(dbias[j0 + j], !(fresh & 4u), (scalar_t)acc[j]);
    }
}

#endif
