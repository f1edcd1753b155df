/* Optimizer updates: one call updates one parameter tensor and its state IN PLACE. No outputs, no
 * backward (they run outside autograd, after backward(), on leaves). affectfer/optim/ loops over
 * the parameters of each group and calls these; the formulas are torch.optim's single-tensor
 * ("for-loop") implementations, step for step, so that a run can be compared with PyTorch.
 *
 * sgd_step: in [param (any shape), grad (same), momentum_buffer (same; required iff momentum != 0)]
 *   ints   = (nesterov, buffer_is_new)      buffer_is_new = 1 on the first step of this parameter
 *   floats = (lr, momentum, dampening, weight_decay)
 *   torch.optim.SGD:  g = grad + weight_decay * param
 *                     buf = g (first step) | momentum * buf + (1 - dampening) * g
 *                     g = g + momentum * buf (nesterov) | buf
 *                     param -= lr * g
 *
 * adam_step: in [param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (required iff amsgrad)]
 *   ints   = (step, amsgrad, decoupled_weight_decay)   step >= 1 counts this update (1 the first time)
 *   floats = (lr, beta1, beta2, eps, weight_decay)
 *   torch.optim.Adam (decoupled 0):  g = grad + weight_decay * param
 *   torch.optim.AdamW (decoupled 1): param *= 1 - lr * weight_decay; g = grad
 *   then (Kingma & Ba 2015, Alg. 1, with eps added after the bias-corrected sqrt, as torch does):
 *     m = lerp(m, g, 1 - beta1)             v = beta2 * v + (1 - beta2) * g * g
 *     vmax = max(vmax, v) (amsgrad)         denom = sqrt(v or vmax) / sqrt(1 - beta2^step) + eps
 *     param -= lr / (1 - beta1^step) * m / denom
 * All tensors: float32 or float64, one dtype, one shape. The bias corrections are computed in
 * double like torch's Python floats, then rounded to the tensor type once. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "ops.h"

#define AF_TEMPLATE_FILE "optim.c"
#include "instantiate_float.h"

/* Inputs 0..n-1 present (or optional and absent), float, one dtype, one shape, writable. */
static af_status check_state_tensors(const af_op_call *c, int n_required, int n_total) {
    const char *op = af_op_table[c->op]->name;
    if (c->n_in > n_total)
        return AF_FAIL(AF_ERR_VALUE, "%s takes at most %d tensors, got %d", op, n_total, c->n_in);
    for (int i = 0; i < n_required; i++) AF_TRY(af_check_float(c, i));
    for (int i = 0; i < c->n_in; i++) {
        const af_tensor *t = c->in[i];
        if (!t) continue;
        AF_TRY(af_check_float(c, i));
        AF_TRY(af_check_same_dtype(c, i, 0));
        if (!af_tensor_same_shape(t, c->in[0])) {
            char a[96], b[96];
            return AF_FAIL(AF_ERR_VALUE, "%s: '%s' has shape %s but 'param' has shape %s", op,
                           af_op_input_name(c, i), af_shape_str(t->ndim, t->shape, a, sizeof a),
                           af_shape_str(c->in[0]->ndim, c->in[0]->shape, b, sizeof b));
        }
        if (t->readonly && i != 1)
            return AF_FAIL(AF_ERR_VALUE, "%s: '%s' is read-only memory and cannot be updated in place", op,
                           af_op_input_name(c, i));
    }
    return AF_OK;
}

static af_status check_finite_attr(const af_op_call *c, int k, const char *name) {
    if (!isfinite(c->attr.f[k]))
        return AF_FAIL(AF_ERR_VALUE, "%s: %s must be finite, got %g", af_op_table[c->op]->name, name, c->attr.f[k]);
    return AF_OK;
}

static af_status sgd_step_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 2, 4));
    AF_TRY(check_state_tensors(c, 2, 3));
    static const char *const names[] = {"lr", "momentum", "dampening", "weight_decay"};
    for (int k = 0; k < 4; k++) AF_TRY(check_finite_attr(c, k, names[k]));
    if (c->attr.f[1] != 0 && (c->n_in < 3 || !c->in[2]))
        return AF_FAIL(AF_ERR_VALUE, "sgd_step: argument 'momentum_buffer' is required when momentum != 0");
    if (c->attr.i[0] && (c->attr.f[1] <= 0 || c->attr.f[2] != 0))
        return AF_FAIL(AF_ERR_VALUE, "sgd_step: nesterov needs momentum > 0 and dampening 0");
    return AF_OK;
}

static af_status sgd_step_forward_cpu(af_op_call *c) {
    af_tensor *buf = (c->n_in > 2 && c->attr.f[1] != 0) ? c->in[2] : NULL;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, sgd_step_forward, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      buf ? af_tensor_data(buf) : NULL, c->in[0]->numel, (int)c->attr.i[0], (int)c->attr.i[1],
                      c->attr.f[0], c->attr.f[1], c->attr.f[2], c->attr.f[3]);
    return AF_OK;
}

static af_status adam_step_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 3, 5));
    AF_TRY(check_state_tensors(c, 4, 5));
    static const char *const names[] = {"lr", "beta1", "beta2", "eps", "weight_decay"};
    for (int k = 0; k < 5; k++) AF_TRY(check_finite_attr(c, k, names[k]));
    if (c->attr.i[0] < 1)
        return AF_FAIL(AF_ERR_VALUE, "adam_step: step must be >= 1 (the count including this update), got %lld",
                       (long long)c->attr.i[0]);
    double beta1 = c->attr.f[1], beta2 = c->attr.f[2];
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1))
        return AF_FAIL(AF_ERR_VALUE, "adam_step: betas must lie in [0, 1), got (%g, %g)", beta1, beta2);
    if (c->attr.i[1] && (c->n_in < 5 || !c->in[4]))
        return AF_FAIL(AF_ERR_VALUE, "adam_step: argument 'max_exp_avg_sq' is required with amsgrad");
    return AF_OK;
}

static af_status adam_step_forward_cpu(af_op_call *c) {
    int64_t step = c->attr.i[0];
    int amsgrad = (int)c->attr.i[1], decoupled = (int)c->attr.i[2];
    double lr = c->attr.f[0], beta1 = c->attr.f[1], beta2 = c->attr.f[2];
    /* torch: step_size = lr / (1 - beta1**step), bias_correction2_sqrt = (1 - beta2**step) ** 0.5 */
    double step_size = lr / (1.0 - pow(beta1, (double)step));
    double bc2_sqrt = sqrt(1.0 - pow(beta2, (double)step));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, adam_step_forward, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      af_tensor_data(c->in[2]), af_tensor_data(c->in[3]), amsgrad ? af_tensor_data(c->in[4]) : NULL,
                      c->in[0]->numel, decoupled, lr, beta1, beta2, c->attr.f[3], c->attr.f[4], step_size, bc2_sqrt);
    return AF_OK;
}

static const char *const sgd_step_inputs[] = {"param", "grad", "momentum_buffer", NULL};
static const char *const adam_step_inputs[] = {"param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", NULL};

const af_op_def af_op_def_sgd_step = {.name = "sgd_step", .input_names = sgd_step_inputs,
                                      .setup = sgd_step_setup, .forward_cpu = sgd_step_forward_cpu,
                                      .differentiable_inputs = 0};
const af_op_def af_op_def_adam_step = {.name = "adam_step", .input_names = adam_step_inputs,
                                       .setup = adam_step_setup, .forward_cpu = adam_step_forward_cpu,
                                       .differentiable_inputs = 0};

#else /* ---- kernels, once per scalar_t ---- */

/* param, grad, buf: (n). Each element is independent: any thread split gives the same bits. */
AF_CPU_DISPATCH
static void K(sgd_step_forward)(scalar_t *param, const scalar_t *grad, scalar_t *buf, int64_t n, int nesterov,
                                int buffer_is_new, double lr_d, double momentum_d, double dampening_d,
                                double weight_decay_d) {
    const scalar_t lr = (scalar_t)lr_d, momentum = (scalar_t)momentum_d;
    const scalar_t keep = (scalar_t)(1.0 - dampening_d), wd = (scalar_t)weight_decay_d;
    AF_PARALLEL_FOR(n * 4)
    for (int64_t i = 0; i < n; i++) {
        scalar_t g = grad[i];
        if (wd != 0) g = g + wd * param[i];
        if (buf) {
            buf[i] = buffer_is_new ? g : momentum * buf[i] + keep * g;
            g = nesterov ? g + momentum * buf[i] : buf[i];
        }
        param[i] = param[i] - lr * g;
    }
}

/* One element of adam_step; amsgrad is a constant at each call, so the loop without vmax has no
 * trace of it: if-converted, its loads from a NULL vmax would be masked off, and a masked-off load
 * from an invalid address is a slow microcode assist on x86 (it made the whole step 2x slower). */
static inline void K(adam_one)(scalar_t *param, const scalar_t *grad, scalar_t *m, scalar_t *v, scalar_t *vmax,
                               int64_t i, int amsgrad, int decoupled, scalar_t w1, scalar_t beta2, scalar_t w2,
                               scalar_t eps, scalar_t wd, scalar_t shrink, scalar_t step_size, scalar_t bc2_sqrt) {
    scalar_t p = param[i], g = grad[i];
    if (decoupled) p = p * shrink;
    else if (wd != 0) g = g + wd * p;
    /* torch's lerp: the formula it picks depends on the weight, for accuracy near 1 */
    scalar_t diff = g - m[i];
    scalar_t mi = w1 < (scalar_t)0.5 ? m[i] + w1 * diff : g - diff * (1 - w1);
    m[i] = mi;
    scalar_t second = v[i] * beta2 + w2 * g * g;
    v[i] = second;
    if (amsgrad) {
        second = vmax[i] < second || second != second ? second : vmax[i];
        vmax[i] = second;
    }
    /* in scalar_t, as torch's (v.sqrt() / bc2_sqrt).add_(eps): the float rounding of the double
     * square root is the float square root, so this vectorises */
    scalar_t denom = (scalar_t)sqrt(second) / bc2_sqrt + eps;
    param[i] = p - step_size * (mi / denom);
}

/* param, grad, m, v, vmax: (n) */
AF_CPU_DISPATCH
static void K(adam_step_forward)(scalar_t *param, const scalar_t *grad, scalar_t *m, scalar_t *v, scalar_t *vmax,
                                 int64_t n, int decoupled, double lr, double beta1_d, double beta2_d, double eps_d,
                                 double weight_decay_d, double step_size_d, double bc2_sqrt_d) {
    const scalar_t w1 = (scalar_t)(1.0 - beta1_d), beta2 = (scalar_t)beta2_d, w2 = (scalar_t)(1.0 - beta2_d);
    const scalar_t eps = (scalar_t)eps_d, wd = (scalar_t)weight_decay_d;
    const scalar_t shrink = (scalar_t)(1.0 - lr * weight_decay_d);
    const scalar_t step_size = (scalar_t)step_size_d, bc2_sqrt = (scalar_t)bc2_sqrt_d;
    if (vmax) {
        AF_PARALLEL_FOR(n * 8)
        for (int64_t i = 0; i < n; i++)
            K(adam_one)(param, grad, m, v, vmax, i, 1, decoupled, w1, beta2, w2, eps, wd, shrink, step_size, bc2_sqrt);
    } else {
        AF_PARALLEL_FOR(n * 8)
        for (int64_t i = 0; i < n; i++)
            K(adam_one)(param, grad, m, v, NULL, i, 0, decoupled, w1, beta2, w2, eps, wd, shrink, step_size, bc2_sqrt);
    }
}

#endif
