/* pad: the last two dims of x padded like torch.nn.functional.pad with a 4-tuple
 * (left, right, top, bottom).
 *
 *   in    = (x (..., H, W)), float32/float64, at least 2-D: the leading dims are independent planes
 *   ints  = (mode, left, right, top, bottom), mode 0 constant, 1 reflect, 2 replicate
 *   floats = (value,): the fill of constant mode
 *   out   = (..., H + top + bottom, W + left + right)
 * Constant padding may be negative (it crops, as in torch); reflect needs 0 <= pad < the dim's
 * size, replicate 0 <= pad and a non-empty input. out[o] = x[af_pad_source(o)] (pad.h).
 * Backward: dx[source(o)] += dout[o]. reflect and replicate fold several outputs onto one input,
 * so each plane is one thread's work, summed in output order: identical for any thread count. */
#ifndef AF_FLOAT_PASS
#include "pad.h"

#define AF_TEMPLATE_FILE "pad.c"
#include "instantiate_float.h"

static af_status pad_setup(af_op_call *c) {
    static const char *const side[] = {"left", "right", "top", "bottom"};
    AF_TRY(af_check_attrs(c, 5, 1));
    AF_TRY(af_check_float(c, 0));
    const af_tensor *x = c->in[0];
    char buf[96];
    if (x->ndim < 2)
        return AF_FAIL(AF_ERR_VALUE, "pad: argument 'input' must have at least 2 dims, got shape %s",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t mode = c->attr.i[0];
    if (mode < AF_PAD_CONSTANT || mode > AF_PAD_REPLICATE)
        return AF_FAIL(AF_ERR_VALUE, "pad: argument 'mode' must be 0 (constant), 1 (reflect) or 2 (replicate), got %lld",
                       (long long)mode);
    for (int k = 0; k < 4; k++) {
        int64_t v = c->attr.i[1 + k], n = x->shape[x->ndim - 1 - k / 2];
        if (v < -((int64_t)1 << 40) || v > ((int64_t)1 << 40))
            return AF_FAIL(AF_ERR_VALUE, "pad: argument 'pad' (%s) %lld is too large", side[k], (long long)v);
        if (mode != AF_PAD_CONSTANT && v < 0)
            return AF_FAIL(AF_ERR_VALUE, "pad: argument 'pad' (%s) must be >= 0 in %s mode, got %lld", side[k],
                           mode == AF_PAD_REFLECT ? "reflect" : "replicate", (long long)v);
        if (mode == AF_PAD_REFLECT && v >= n)
            return AF_FAIL(AF_ERR_VALUE, "pad: argument 'pad' (%s) %lld must be smaller than the padded dim's size %lld "
                           "in reflect mode (input shape %s)", side[k], (long long)v, (long long)n,
                           af_shape_str(x->ndim, x->shape, buf, sizeof buf));
        if (mode == AF_PAD_REPLICATE && n == 0 && v > 0)
            return AF_FAIL(AF_ERR_VALUE, "pad: replicate mode cannot pad an empty dim (input shape %s)",
                           af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    int64_t shape[AF_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 2] += c->attr.i[3] + c->attr.i[4];
    shape[x->ndim - 1] += c->attr.i[1] + c->attr.i[2];
    if (shape[x->ndim - 2] < 0 || shape[x->ndim - 1] < 0)
        return AF_FAIL(AF_ERR_VALUE, "pad: argument 'pad' crops more than the input shape %s has",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

static af_status pad_forward_cpu(af_op_call *c) {
    pad_plan p = pad_plan_make(c);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, pad_forward, &p, c->attr.f[0], af_tensor_data(c->in[0]),
                      af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status pad_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    pad_plan p = pad_plan_make(c);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, pad_backward, &p, af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

static const char *const pad_inputs[] = {"input", NULL};

const af_op_def af_op_def_pad = {.name = "pad", .input_names = pad_inputs, .setup = pad_setup,
                                 .forward_cpu = pad_forward_cpu, .backward_cpu = pad_backward_cpu,
                                 .differentiable_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

/* x: (planes, H, W), y: (planes, OH, OW) */
static void K(pad_forward)(const pad_plan *p, double value, const scalar_t *x, scalar_t *y) {
    AF_PARALLEL_FOR(p->planes * p->OH * p->OW)
    for (int64_t r = 0; r < p->planes * p->OH; r++) {
        int64_t plane = r / p->OH, sh = af_pad_source(r % p->OH, p->top, p->H, p->mode);
        scalar_t *yr = y + r * p->OW;
        if (sh < 0) {
            for (int64_t j = 0; j < p->OW; j++) yr[j] = (scalar_t)value;
            continue;
        }
        const scalar_t *xr = x + (plane * p->H + sh) * p->W;
        for (int64_t j = 0; j < p->OW; j++) {
            int64_t sw = af_pad_source(j, p->left, p->W, p->mode);
            yr[j] = sw < 0 ? (scalar_t)value : xr[sw];
        }
    }
}

static void K(pad_backward)(const pad_plan *p, const scalar_t *dy, scalar_t *dx) {
    AF_PARALLEL_FOR(p->planes * p->OH * p->OW)
    for (int64_t plane = 0; plane < p->planes; plane++)
        for (int64_t i = 0; i < p->OH; i++) {
            int64_t sh = af_pad_source(i, p->top, p->H, p->mode);
            if (sh < 0) continue;
            const scalar_t *gr = dy + (plane * p->OH + i) * p->OW;
            scalar_t *dr = dx + (plane * p->H + sh) * p->W;
            for (int64_t j = 0; j < p->OW; j++) {
                int64_t sw = af_pad_source(j, p->left, p->W, p->mode);
                if (sw >= 0) dr[sw] += gr[j];
            }
        }
}

#endif
