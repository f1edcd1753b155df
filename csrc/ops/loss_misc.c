/* The losses of the seed methods beside cross-entropy: binary cross-entropy with logits (AU
 * detection), softmax focal loss (DAN, ABAW3), 1 - CCC (valence/arousal), and DAN's affinity and
 * partition losses. Each reduces in a fixed serial order (double accumulators), so results do not
 * depend on the thread count.
 *
 * bce_with_logits: torch.nn.functional.binary_cross_entropy_with_logits.
 *   in    = (input x (..., K), target t (same shape and dtype), weight w?, pos_weight p? (K,))
 *           w is x's shape or (K,) (one weight per last-dim column).
 *   ints  = (reduction: 0 none / 1 mean / 2 sum)
 *   out   = per element (x's shape) for none, () otherwise; mean divides by the element count.
 *   loss  = w [(1 - t) x - (1 + (p - 1) t) logsigmoid(x)]
 *   d/dx  = w [(1 + (p - 1) t) sigmoid(x) - p t],   d/dt = w [-x - (p - 1) logsigmoid(x)]
 *
 * focal_loss: softmax focal loss (Lin et al., ICCV 2017, arXiv 1708.02002, multi-class form).
 *   in    = (logits (N, C), target int64 (N,), alpha (C,)?)
 *   ints  = (reduction, detach_modulator, ignore_index)   floats = (gamma >= 0)
 *   out   = (N,) for none, () otherwise; mean divides by the number of samples whose target is not
 *           ignore_index (not by the alpha sum); ignored samples contribute 0 and get no gradient.
 *   saved = logp (N, C)
 *   FL_i  = -a_y (1 - pt)^gamma log pt, pt = p_{i,y}
 *   d/dz_ij = a_y k ([j == y] - p_ij), k = gamma pt (1 - pt)^(gamma - 1) log pt - (1 - pt)^gamma;
 *   the first term of k is 0 when gamma == 0 or pt == 1 (its limit). detach_modulator = 1 treats
 *   (1 - pt)^gamma as a constant (k = -(1 - pt)^gamma), as the public FER focal-loss code computes pt
 *   from a detached tensor: the same value, another gradient.
 *
 * ccc_loss: 1 - Lin's concordance correlation coefficient (Lin, Biometrics 1989).
 *   in    = (input x (N,), target y (N,), mask (N,) bool/uint8?)   only pairs with mask != 0 count
 *   ints  = (unbiased)   floats = (eps)          out = ()
 *   With n valid pairs, q = n (population moments, the ABAW metric) or n - 1 (unbiased):
 *   rho = 2 s_xy / D, D = v_x + v_y + (m_x - m_y)^2 + eps, loss = 1 - rho.
 *   d rho / d x_i = [2 (y_i - m_y) / q - rho (2 (x_i - m_x) / q + 2 (m_x - m_y) / n)] / D, and
 *   symmetrically for y. No valid pair: loss 0 and no gradient (a batch without annotated frames).
 *
 * affinity_loss: DAN's affinity loss (Wen et al., "Distract Your Attention", Biomimetics 2023), as
 *   its released code computes it (networks/dan.py AffinityLoss).
 *   in    = (features x (B, D), target int64 (B,), centers (K, D), K >= 2)        out = ()
 *   S = sum_d var_k(centers[k, d]) (unbiased, across classes), dist_i = |x_i|^2 + |c_y|^2 - 2 x_i.c_y;
 *   loss = (1/B) sum_i sum_k clamp(dist_i [k == y_i] / S, 1e-12, 1e12): a masked entry adds 1e-12.
 *   d/dx_i = 2 (x_i - c_y) / (B S); d/dc_k = -(2 / (B S)) sum_{i: y_i = k} (x_i - c_k)
 *            - (A / S^2) 2 (c_k - mean_k c) / (K - 1), A = (1/B) sum_i dist_i (entries inside the clamp).
 *
 * partition_loss: DAN's partition loss over attention heads (released code, PartitionLoss).
 *   in    = (heads H (B, k, d): the log-softmax over heads of the head outputs)     out = ()
 *   ints  = (paper_form)   floats = (eps; the code's sys.float_info.epsilon)
 *   v_bj = unbiased variance of H[b, :, j] over the k heads.
 *   code form (default): loss = log(1 + k / (mean_bj v_bj + eps));
 *   paper form: loss = mean_bj log(1 + k / (v_bj + eps)).   k == 1: loss 0, no gradient.
 *   d/dv = -k / ((v + eps)(v + eps + k)),  d v_bj / d H[b, h, j] = 2 (H[b, h, j] - mean_h H[b, :, j]) / (k - 1). */
#ifndef AF_FLOAT_PASS
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "ops.h"

enum { LOSS_NONE = 0, LOSS_MEAN = 1, LOSS_SUM = 2 };
#define AFFINITY_CLAMP_MIN 1e-12
#define AFFINITY_CLAMP_MAX 1e12

#define AF_TEMPLATE_FILE "loss_misc.c"
#include "instantiate_float.h"

static const char *op_name(const af_op_call *c) { return af_op_table[c->op]->name; }

static af_status check_reduction(const af_op_call *c) {
    int64_t r = c->attr.i[0];
    if (r < LOSS_NONE || r > LOSS_SUM)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'reduction' must be 0 (none), 1 (mean) or 2 (sum), got %lld",
                       op_name(c), (long long)r);
    return AF_OK;
}

static af_status check_max_inputs(const af_op_call *c, int n) {
    if (c->n_in > n) return AF_FAIL(AF_ERR_VALUE, "%s takes at most %d inputs, got %d", op_name(c), n, c->n_in);
    return AF_OK;
}

static af_status check_same_shape(const af_op_call *c, int i, int j) {
    if (!af_tensor_same_shape(c->in[i], c->in[j])) {
        char a[96], b[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: '%s' has shape %s but '%s' has shape %s", op_name(c), af_op_input_name(c, i),
                       af_shape_str(c->in[i]->ndim, c->in[i]->shape, a, sizeof a), af_op_input_name(c, j),
                       af_shape_str(c->in[j]->ndim, c->in[j]->shape, b, sizeof b));
    }
    return AF_OK;
}

static af_status check_vector(const af_op_call *c, int i, int64_t n, const char *what) {
    const af_tensor *t = c->in[i];
    if (t->ndim != 1 || t->shape[0] != n) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must have shape (%lld,) (%s), got %s", op_name(c),
                       af_op_input_name(c, i), (long long)n, what, af_shape_str(t->ndim, t->shape, buf, sizeof buf));
    }
    return AF_OK;
}

static const af_tensor *optional_input(const af_op_call *c, int i) { return c->n_in > i ? c->in[i] : NULL; }
static const void *optional_data(const af_op_call *c, int i) {
    const af_tensor *t = optional_input(c, i);
    return t ? af_tensor_data(t) : NULL;
}

/* out[0]: the input's shape for reduction none, a scalar otherwise. */
static af_status alloc_loss_out(af_op_call *c, int like) {
    if (c->attr.i[0] == LOSS_NONE) return af_alloc_out(c, 0, c->in[like]->ndim, c->in[like]->shape, like);
    return af_alloc_out(c, 0, 0, NULL, like);
}

/* Class indices in [0, classes), or equal to `ignore` (INT64_MIN: none is ignored). */
static af_status check_class_targets(const af_op_call *c, int i, int64_t classes, int64_t ignore) {
    const af_tensor *t = c->in[i];
    const int64_t *y = af_tensor_data(t);
    for (int64_t k = 0; k < t->numel; k++)
        if (y[k] != ignore && (y[k] < 0 || y[k] >= classes))
            return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' holds class %lld at position %lld, outside [0, %lld)",
                           op_name(c), af_op_input_name(c, i), (long long)y[k], (long long)k, (long long)classes);
    return AF_OK;
}

/* ---- bce_with_logits ---- */
enum { BCE_X, BCE_T, BCE_W, BCE_PW };
static const char *const bce_with_logits_inputs[] = {"input", "target", "weight", "pos_weight", NULL};

static af_status bce_with_logits_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 0));
    AF_TRY(check_max_inputs(c, 4));
    AF_TRY(check_reduction(c));
    AF_TRY(af_check_float(c, BCE_X));
    AF_TRY(af_check_float(c, BCE_T));
    AF_TRY(af_check_same_dtype(c, BCE_X, BCE_T));
    AF_TRY(check_same_shape(c, BCE_X, BCE_T));
    const af_tensor *x = c->in[BCE_X];
    int64_t cols = x->ndim ? x->shape[x->ndim - 1] : 1;
    if (optional_input(c, BCE_W)) {
        AF_TRY(af_check_float(c, BCE_W));
        AF_TRY(af_check_same_dtype(c, BCE_X, BCE_W));
        if (!af_tensor_same_shape(c->in[BCE_W], x))
            AF_TRY(check_vector(c, BCE_W, cols, "the input's shape, or one weight per last-dim column"));
    }
    if (optional_input(c, BCE_PW)) {
        AF_TRY(af_check_float(c, BCE_PW));
        AF_TRY(af_check_same_dtype(c, BCE_X, BCE_PW));
        AF_TRY(check_vector(c, BCE_PW, cols, "one per last-dim column"));
    }
    return alloc_loss_out(c, BCE_X);
}

static af_status bce_with_logits_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[BCE_X], *w = optional_input(c, BCE_W);
    int64_t cols = x->ndim ? x->shape[x->ndim - 1] : 1;
    AF_DISPATCH_FLOAT(x->dtype, bce_with_logits_forward, x->numel, cols, af_tensor_data(x), af_tensor_data(c->in[BCE_T]),
                      w ? af_tensor_data(w) : NULL, w && w->numel != x->numel, optional_data(c, BCE_PW),
                      (int)c->attr.i[0], af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status bce_with_logits_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *x = c->in[BCE_X], *w = optional_input(c, BCE_W);
    int64_t cols = x->ndim ? x->shape[x->ndim - 1] : 1;
    AF_DISPATCH_FLOAT(x->dtype, bce_with_logits_backward, x->numel, cols, af_tensor_data(x), af_tensor_data(c->in[BCE_T]),
                      w ? af_tensor_data(w) : NULL, w && w->numel != x->numel, optional_data(c, BCE_PW),
                      (int)c->attr.i[0], af_tensor_data(dout[0]), din[BCE_X] ? af_tensor_data(din[BCE_X]) : NULL,
                      din[BCE_T] ? af_tensor_data(din[BCE_T]) : NULL);
    return AF_OK;
}

const af_op_def af_op_def_bce_with_logits = {
    .name = "bce_with_logits",
    .input_names = bce_with_logits_inputs,
    .setup = bce_with_logits_setup,
    .forward_cpu = bce_with_logits_forward_cpu,
    .backward_cpu = bce_with_logits_backward_cpu,
    .differentiable_inputs = 1u << BCE_X | 1u << BCE_T,
};

/* ---- focal_loss ---- */
enum { FOCAL_Z, FOCAL_Y, FOCAL_ALPHA };
static const char *const focal_loss_inputs[] = {"input", "target", "alpha", NULL};

static af_status focal_loss_setup(af_op_call *c) {
    char buf[96];
    AF_TRY(af_check_attrs(c, 3, 1));
    AF_TRY(check_max_inputs(c, 3));
    AF_TRY(check_reduction(c));
    AF_TRY(af_check_float(c, FOCAL_Z));
    AF_TRY(af_check_dtype(c, FOCAL_Y, AF_DTYPE_I64));
    const af_tensor *z = c->in[FOCAL_Z];
    if (z->ndim != 2 || z->shape[1] < 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' must be logits of shape (N, C) with C >= 1, got %s",
                       op_name(c), af_shape_str(z->ndim, z->shape, buf, sizeof buf));
    AF_TRY(check_vector(c, FOCAL_Y, z->shape[0], "one class index per row of the logits"));
    if (optional_input(c, FOCAL_ALPHA)) {
        AF_TRY(af_check_float(c, FOCAL_ALPHA));
        AF_TRY(af_check_same_dtype(c, FOCAL_Z, FOCAL_ALPHA));
        AF_TRY(check_vector(c, FOCAL_ALPHA, z->shape[1], "one weight per class"));
    }
    double gamma = c->attr.f[0];
    if (!(gamma >= 0 && isfinite(gamma)))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'gamma' must be finite and >= 0, got %g", op_name(c), gamma);
    if (c->attr.i[1] != 0 && c->attr.i[1] != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'detach_modulator' must be 0 or 1, got %lld", op_name(c),
                       (long long)c->attr.i[1]);
    if (c->attr.i[0] == LOSS_NONE) AF_TRY(af_alloc_out(c, 0, 1, z->shape, FOCAL_Z));
    else AF_TRY(af_alloc_out(c, 0, 0, NULL, FOCAL_Z));
    return af_alloc_saved(c, 0, 2, z->shape, z->dtype);
}

static af_status focal_loss_forward_cpu(af_op_call *c) {
    const af_tensor *z = c->in[FOCAL_Z];
    AF_TRY(check_class_targets(c, FOCAL_Y, z->shape[1], c->attr.i[2]));
    AF_DISPATCH_FLOAT(z->dtype, focal_loss_forward, z->shape[0], z->shape[1], af_tensor_data(z),
                      af_tensor_data(c->in[FOCAL_Y]), optional_data(c, FOCAL_ALPHA), c->attr.f[0], (int)c->attr.i[0],
                      c->attr.i[2], af_tensor_data(c->saved[0]), af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status focal_loss_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *z = c->in[FOCAL_Z];
    AF_DISPATCH_FLOAT(z->dtype, focal_loss_backward, z->shape[0], z->shape[1], af_tensor_data(c->in[FOCAL_Y]),
                      optional_data(c, FOCAL_ALPHA), c->attr.f[0], (int)c->attr.i[0], (int)c->attr.i[1],
                      c->attr.i[2], af_tensor_data(c->saved[0]), af_tensor_data(dout[0]), af_tensor_data(din[FOCAL_Z]));
    return AF_OK;
}

const af_op_def af_op_def_focal_loss = {
    .name = "focal_loss",
    .input_names = focal_loss_inputs,
    .setup = focal_loss_setup,
    .forward_cpu = focal_loss_forward_cpu,
    .backward_cpu = focal_loss_backward_cpu,
    .differentiable_inputs = 1u << FOCAL_Z,
};

/* ---- ccc_loss ---- */
enum { CCC_X, CCC_Y, CCC_MASK };
static const char *const ccc_loss_inputs[] = {"input", "target", "mask", NULL};

static af_status ccc_loss_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 1));
    AF_TRY(check_max_inputs(c, 3));
    AF_TRY(af_check_float(c, CCC_X));
    AF_TRY(af_check_float(c, CCC_Y));
    AF_TRY(af_check_same_dtype(c, CCC_X, CCC_Y));
    AF_TRY(af_check_ndim(c, CCC_X, 1));
    AF_TRY(check_same_shape(c, CCC_X, CCC_Y));
    if (optional_input(c, CCC_MASK)) {
        af_dtype d = c->in[CCC_MASK]->dtype;
        if (d != AF_DTYPE_BOOL && d != AF_DTYPE_U8)
            return AF_FAIL(AF_ERR_TYPE, "%s: argument 'mask' must be bool or uint8, got %s", op_name(c), af_dtype_name(d));
        AF_TRY(check_same_shape(c, CCC_X, CCC_MASK));
    }
    if (c->attr.i[0] != 0 && c->attr.i[0] != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'unbiased' must be 0 or 1, got %lld", op_name(c), (long long)c->attr.i[0]);
    if (!(c->attr.f[0] >= 0 && isfinite(c->attr.f[0])))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'eps' must be finite and >= 0, got %g", op_name(c), c->attr.f[0]);
    return af_alloc_out(c, 0, 0, NULL, CCC_X);
}

static af_status ccc_loss_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[CCC_X];
    AF_DISPATCH_FLOAT(x->dtype, ccc_loss_forward, x->numel, af_tensor_data(x), af_tensor_data(c->in[CCC_Y]),
                      optional_data(c, CCC_MASK), (int)c->attr.i[0], c->attr.f[0], af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status ccc_loss_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *x = c->in[CCC_X];
    AF_DISPATCH_FLOAT(x->dtype, ccc_loss_backward, x->numel, af_tensor_data(x), af_tensor_data(c->in[CCC_Y]),
                      optional_data(c, CCC_MASK), (int)c->attr.i[0], c->attr.f[0], af_tensor_data(dout[0]),
                      din[CCC_X] ? af_tensor_data(din[CCC_X]) : NULL, din[CCC_Y] ? af_tensor_data(din[CCC_Y]) : NULL);
    return AF_OK;
}

const af_op_def af_op_def_ccc_loss = {
    .name = "ccc_loss",
    .input_names = ccc_loss_inputs,
    .setup = ccc_loss_setup,
    .forward_cpu = ccc_loss_forward_cpu,
    .backward_cpu = ccc_loss_backward_cpu,
    .differentiable_inputs = 1u << CCC_X | 1u << CCC_Y,
};

/* ---- affinity_loss ---- */
enum { AFF_X, AFF_Y, AFF_C };
static const char *const affinity_loss_inputs[] = {"input", "target", "centers", NULL};

static af_status affinity_loss_setup(af_op_call *c) {
    char buf[96];
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(check_max_inputs(c, 3));
    AF_TRY(af_check_float(c, AFF_X));
    AF_TRY(af_check_ndim(c, AFF_X, 2));
    AF_TRY(af_check_dtype(c, AFF_Y, AF_DTYPE_I64));
    AF_TRY(check_vector(c, AFF_Y, c->in[AFF_X]->shape[0], "one class index per feature row"));
    AF_TRY(af_check_float(c, AFF_C));
    AF_TRY(af_check_same_dtype(c, AFF_X, AFF_C));
    const af_tensor *x = c->in[AFF_X], *centers = c->in[AFF_C];
    if (centers->ndim != 2 || centers->shape[1] != x->shape[1] || centers->shape[0] < 2)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'centers' must have shape (K, %lld) with K >= 2 (their variance "
                       "across classes is the normaliser), got %s", op_name(c), (long long)x->shape[1],
                       af_shape_str(centers->ndim, centers->shape, buf, sizeof buf));
    return af_alloc_out(c, 0, 0, NULL, AFF_X);
}

static af_status affinity_loss_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[AFF_X], *centers = c->in[AFF_C];
    AF_TRY(check_class_targets(c, AFF_Y, centers->shape[0], INT64_MIN));
    AF_DISPATCH_FLOAT(x->dtype, affinity_loss_forward, x->shape[0], x->shape[1], centers->shape[0], af_tensor_data(x),
                      af_tensor_data(c->in[AFF_Y]), af_tensor_data(centers), af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status affinity_loss_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *x = c->in[AFF_X], *centers = c->in[AFF_C];
    AF_DISPATCH_FLOAT(x->dtype, affinity_loss_backward, x->shape[0], x->shape[1], centers->shape[0], af_tensor_data(x),
                      af_tensor_data(c->in[AFF_Y]), af_tensor_data(centers), af_tensor_data(dout[0]),
                      din[AFF_X] ? af_tensor_data(din[AFF_X]) : NULL, din[AFF_C] ? af_tensor_data(din[AFF_C]) : NULL);
    return AF_OK;
}

const af_op_def af_op_def_affinity_loss = {
    .name = "affinity_loss",
    .input_names = affinity_loss_inputs,
    .setup = affinity_loss_setup,
    .forward_cpu = affinity_loss_forward_cpu,
    .backward_cpu = affinity_loss_backward_cpu,
    .differentiable_inputs = 1u << AFF_X | 1u << AFF_C,
};

/* ---- partition_loss ---- */
static const char *const partition_loss_inputs[] = {"input", NULL};

static af_status partition_loss_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 1));
    AF_TRY(check_max_inputs(c, 1));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_ndim(c, 0, 3));
    if (c->attr.i[0] != 0 && c->attr.i[0] != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'paper_form' must be 0 or 1, got %lld", op_name(c), (long long)c->attr.i[0]);
    if (!(c->attr.f[0] >= 0 && isfinite(c->attr.f[0])))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'eps' must be finite and >= 0, got %g", op_name(c), c->attr.f[0]);
    return af_alloc_out(c, 0, 0, NULL, 0);
}

static af_status partition_loss_forward_cpu(af_op_call *c) {
    const af_tensor *h = c->in[0];
    AF_DISPATCH_FLOAT(h->dtype, partition_loss_forward, h->shape[0], h->shape[1], h->shape[2], af_tensor_data(h),
                      (int)c->attr.i[0], c->attr.f[0], af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status partition_loss_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *h = c->in[0];
    AF_DISPATCH_FLOAT(h->dtype, partition_loss_backward, h->shape[0], h->shape[1], h->shape[2], af_tensor_data(h),
                      (int)c->attr.i[0], c->attr.f[0], af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

const af_op_def af_op_def_partition_loss = {
    .name = "partition_loss",
    .input_names = partition_loss_inputs,
    .setup = partition_loss_setup,
    .forward_cpu = partition_loss_forward_cpu,
    .backward_cpu = partition_loss_backward_cpu,
    .differentiable_inputs = 1u,
};

#else /* kernels, once per scalar_t */

#include "log_softmax_row.inc"

/* Upstream gradient of element e: the element's own for reduction none, the scalar otherwise,
 * divided by the count for mean. */
static inline double K(upstream)(const scalar_t *dout, int64_t e, int reduction, int64_t count) {
    if (reduction == LOSS_NONE) return (double)dout[e];
    return reduction == LOSS_MEAN ? (double)dout[0] / (double)count : (double)dout[0];
}

static inline void K(store_reduced)(scalar_t *out, double total, int reduction, int64_t count) {
    out[0] = (scalar_t)(reduction == LOSS_MEAN ? total / (double)count : total); /* mean of nothing: NaN, as torch */
}

static inline double K(log_sigmoid)(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }
static inline double K(sigmoid)(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static void K(bce_with_logits_forward)(int64_t n, int64_t cols, const scalar_t *x, const scalar_t *t, const scalar_t *w,
                                       int w_per_column, const scalar_t *pw, int reduction, scalar_t *out) {
    double total = 0;
    for (int64_t e = 0; e < n; e++) {
        double xe = x[e], te = t[e], p = pw ? (double)pw[e % cols] : 1.0;
        double we = w ? (double)w[w_per_column ? e % cols : e] : 1.0;
        double loss = we * ((1 - te) * xe - (1 + (p - 1) * te) * K(log_sigmoid)(xe));
        if (reduction == LOSS_NONE) out[e] = (scalar_t)loss;
        else total += loss;
    }
    if (reduction != LOSS_NONE) K(store_reduced)(out, total, reduction, n);
}

static void K(bce_with_logits_backward)(int64_t n, int64_t cols, const scalar_t *x, const scalar_t *t, const scalar_t *w,
                                        int w_per_column, const scalar_t *pw, int reduction, const scalar_t *dout,
                                        scalar_t *dx, scalar_t *dt) {
    AF_PARALLEL_FOR(n * 8)
    for (int64_t e = 0; e < n; e++) {
        double xe = x[e], te = t[e], p = pw ? (double)pw[e % cols] : 1.0;
        double g = K(upstream)(dout, e, reduction, n) * (w ? (double)w[w_per_column ? e % cols : e] : 1.0);
        if (dx) dx[e] += (scalar_t)(g * ((1 + (p - 1) * te) * K(sigmoid)(xe) - p * te));
        if (dt) dt[e] += (scalar_t)(g * (-xe - (p - 1) * K(log_sigmoid)(xe)));
    }
}

/* Samples whose target is not ignore_index: the mean's denominator. */
static int64_t K(focal_count)(int64_t N, const int64_t *y, int64_t ignore_index) {
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) n += y[i] != ignore_index;
    return n;
}

static void K(focal_loss_forward)(int64_t N, int64_t C, const scalar_t *z, const int64_t *y, const scalar_t *alpha,
                                  double gamma, int reduction, int64_t ignore_index, scalar_t *logp, scalar_t *out) {
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        if (y[i] == ignore_index) {
            if (reduction == LOSS_NONE) out[i] = 0;
            continue;
        }
        const scalar_t *zi = z + i * C;
        double lse = K(log_softmax_row)(zi, C, logp + i * C);
        double log_pt = (double)zi[y[i]] - lse, pt = exp(log_pt);
        double a = alpha ? (double)alpha[y[i]] : 1.0;
        double loss = -a * pow(1 - pt, gamma) * log_pt;
        if (reduction == LOSS_NONE) out[i] = (scalar_t)loss;
        else total += loss;
    }
    if (reduction != LOSS_NONE) K(store_reduced)(out, total, reduction, K(focal_count)(N, y, ignore_index));
}

static void K(focal_loss_backward)(int64_t N, int64_t C, const int64_t *y, const scalar_t *alpha, double gamma,
                                   int reduction, int detach_modulator, int64_t ignore_index, const scalar_t *logp,
                                   const scalar_t *dout, scalar_t *dz) {
    int64_t count = K(focal_count)(N, y, ignore_index);
    AF_PARALLEL_FOR(N * C * 8)
    for (int64_t i = 0; i < N; i++) {
        if (y[i] == ignore_index) continue;
        const scalar_t *li = logp + i * C;
        double log_pt = li[y[i]], pt = exp(log_pt);
        double k = -pow(1 - pt, gamma);
        if (!detach_modulator && gamma > 0 && pt < 1) k += gamma * pt * pow(1 - pt, gamma - 1) * log_pt;
        double g = K(upstream)(dout, i, reduction, count) * (alpha ? (double)alpha[y[i]] : 1.0) * k;
        for (int64_t j = 0; j < C; j++) dz[i * C + j] += (scalar_t)(g * ((j == y[i]) - exp((double)li[j])));
    }
}

/* Moments over the valid pairs: count, means, and the sums of squares / cross products. */
typedef struct {
    int64_t n;
    double mx, my, sxx, syy, sxy;
} K(ccc_moments);

static K(ccc_moments) K(ccc_moments_of)(int64_t N, const scalar_t *x, const scalar_t *y, const uint8_t *mask) {
    K(ccc_moments) m = {0};
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        m.n++;
        m.mx += x[i];
        m.my += y[i];
    }
    if (!m.n) return m;
    m.mx /= (double)m.n;
    m.my /= (double)m.n;
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        double dx = x[i] - m.mx, dy = y[i] - m.my;
        m.sxx += dx * dx;
        m.syy += dy * dy;
        m.sxy += dx * dy;
    }
    return m;
}

static void K(ccc_loss_forward)(int64_t N, const scalar_t *x, const scalar_t *y, const uint8_t *mask, int unbiased,
                                double eps, scalar_t *out) {
    K(ccc_moments) m = K(ccc_moments_of)(N, x, y, mask);
    if (!m.n) {
        out[0] = 0;
        return;
    }
    double q = (double)(m.n - unbiased);
    double D = m.sxx / q + m.syy / q + (m.mx - m.my) * (m.mx - m.my) + eps;
    out[0] = (scalar_t)(1.0 - 2.0 * (m.sxy / q) / D);
}

static void K(ccc_loss_backward)(int64_t N, const scalar_t *x, const scalar_t *y, const uint8_t *mask, int unbiased,
                                 double eps, const scalar_t *dout, scalar_t *dx, scalar_t *dy) {
    K(ccc_moments) m = K(ccc_moments_of)(N, x, y, mask);
    if (!m.n) return;
    double n = (double)m.n, q = (double)(m.n - unbiased);
    double D = m.sxx / q + m.syy / q + (m.mx - m.my) * (m.mx - m.my) + eps;
    double rho = 2.0 * (m.sxy / q) / D, g = -(double)dout[0]; /* loss = 1 - rho */
    for (int64_t i = 0; i < N; i++) {
        if (mask && !mask[i]) continue;
        double cx = x[i] - m.mx, cy = y[i] - m.my;
        if (dx) dx[i] += (scalar_t)(g * (2 * cy / q - rho * (2 * cx / q + 2 * (m.mx - m.my) / n)) / D);
        if (dy) dy[i] += (scalar_t)(g * (2 * cx / q - rho * (2 * cy / q + 2 * (m.my - m.mx) / n)) / D);
    }
}

/* S = sum_d of the unbiased variance of centers[:, d] across the K classes. */
static double K(affinity_center_spread)(int64_t D, int64_t Kc, const scalar_t *centers) {
    double S = 0;
    for (int64_t d = 0; d < D; d++) {
        double mean = 0, ss = 0;
        for (int64_t k = 0; k < Kc; k++) mean += centers[k * D + d];
        mean /= (double)Kc;
        for (int64_t k = 0; k < Kc; k++) ss += (centers[k * D + d] - mean) * (centers[k * D + d] - mean);
        S += ss / (double)(Kc - 1);
    }
    return S;
}

/* dist_i in the expanded form the reference computes: |x|^2 + |c|^2 - 2 x.c */
static double K(affinity_distance)(int64_t D, const scalar_t *x, const scalar_t *c) {
    double xx = 0, cc = 0, xc = 0;
    for (int64_t d = 0; d < D; d++) {
        xx += (double)x[d] * x[d];
        cc += (double)c[d] * c[d];
        xc += (double)x[d] * c[d];
    }
    return xx + cc - 2 * xc;
}

static void K(affinity_loss_forward)(int64_t B, int64_t D, int64_t Kc, const scalar_t *x, const int64_t *y,
                                     const scalar_t *centers, scalar_t *out) {
    double S = K(affinity_center_spread)(D, Kc, centers), total = 0;
    for (int64_t i = 0; i < B; i++) {
        double v = K(affinity_distance)(D, x + i * D, centers + y[i] * D) / S;
        v = v < AFFINITY_CLAMP_MIN ? AFFINITY_CLAMP_MIN : v > AFFINITY_CLAMP_MAX ? AFFINITY_CLAMP_MAX : v;
        total += v + (double)(Kc - 1) * AFFINITY_CLAMP_MIN;
    }
    out[0] = (scalar_t)(total / (double)B);
}

static void K(affinity_loss_backward)(int64_t B, int64_t D, int64_t Kc, const scalar_t *x, const int64_t *y,
                                      const scalar_t *centers, const scalar_t *dout, scalar_t *dx, scalar_t *dcenters) {
    double S = K(affinity_center_spread)(D, Kc, centers), g = (double)dout[0], A = 0;
    for (int64_t i = 0; i < B; i++) {
        const scalar_t *xi = x + i * D, *ci = centers + y[i] * D;
        double dist = K(affinity_distance)(D, xi, ci), v = dist / S;
        if (v < AFFINITY_CLAMP_MIN || v > AFFINITY_CLAMP_MAX) continue; /* clamped: no gradient */
        A += dist / (double)B;
        double s = g * 2.0 / ((double)B * S);
        for (int64_t d = 0; d < D; d++) {
            double diff = (double)xi[d] - ci[d];
            if (dx) dx[i * D + d] += (scalar_t)(s * diff);
            if (dcenters) dcenters[y[i] * D + d] -= (scalar_t)(s * diff);
        }
    }
    if (!dcenters) return;
    for (int64_t d = 0; d < D; d++) { /* the spread term: pushes every centre away from the mean */
        double mean = 0;
        for (int64_t k = 0; k < Kc; k++) mean += centers[k * D + d];
        mean /= (double)Kc;
        for (int64_t k = 0; k < Kc; k++)
            dcenters[k * D + d] -= (scalar_t)(g * (A / (S * S)) * 2.0 * ((double)centers[k * D + d] - mean) / (double)(Kc - 1));
    }
}

/* Unbiased variance over the k heads of column (b, j). */
static double K(partition_head_variance)(int64_t k, int64_t d, const scalar_t *hb, int64_t j, double *mean_out) {
    double mean = 0, ss = 0;
    for (int64_t h = 0; h < k; h++) mean += hb[h * d + j];
    mean /= (double)k;
    for (int64_t h = 0; h < k; h++) ss += (hb[h * d + j] - mean) * (hb[h * d + j] - mean);
    *mean_out = mean;
    return ss / (double)(k - 1);
}

static void K(partition_loss_forward)(int64_t B, int64_t k, int64_t d, const scalar_t *H, int paper_form, double eps,
                                      scalar_t *out) {
    if (k == 1) {
        out[0] = 0;
        return;
    }
    double total = 0, mean;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < d; j++) {
            double v = K(partition_head_variance)(k, d, H + b * k * d, j, &mean);
            total += paper_form ? log1p((double)k / (v + eps)) : v;
        }
    double avg = total / (double)(B * d);
    out[0] = (scalar_t)(paper_form ? avg : log1p((double)k / (avg + eps)));
}

static void K(partition_loss_backward)(int64_t B, int64_t k, int64_t d, const scalar_t *H, int paper_form, double eps,
                                       const scalar_t *dout, scalar_t *dH) {
    if (k == 1) return;
    double count = (double)(B * d), g = (double)dout[0], mean, dL_dV = 0;
    if (!paper_form) {
        double V = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < d; j++) V += K(partition_head_variance)(k, d, H + b * k * d, j, &mean);
        V /= count;
        dL_dV = -(double)k / ((V + eps) * (V + eps + (double)k)) / count;
    }
    for (int64_t b = 0; b < B; b++) {
        const scalar_t *hb = H + b * k * d;
        for (int64_t j = 0; j < d; j++) {
            double v = K(partition_head_variance)(k, d, hb, j, &mean);
            double dv = paper_form ? -(double)k / ((v + eps) * (v + eps + (double)k)) / count : dL_dV;
            for (int64_t h = 0; h < k; h++)
                dH[b * k * d + h * d + j] += (scalar_t)(g * dv * 2.0 * ((double)hb[h * d + j] - mean) / (double)(k - 1));
        }
    }
}

#endif
