/* interpolate: bilinear and bicubic resampling of the last two dims, with the semantics of
 * torch.nn.functional.interpolate(mode='bilinear' | 'bicubic', antialias=False).
 *
 *   in     = (x (..., H, W)), float32/float64, at least 2-D: the leading dims are independent planes
 *   ints   = (mode, align_corners, OH, OW), mode 0 bilinear, 1 bicubic; OH, OW >= 1
 *   floats = (scale_h, scale_w): the user's scale_factor, used for the coordinate mapping as torch
 *            does (0 = none: use H / OH and W / OW)
 *   out    = (..., OH, OW)
 * Coordinates, taps and weights come from interpolate.h (PyTorch's formulas: half-pixel centres
 * unless align_corners, Keys' cubic kernel with A = -0.75, edge taps clamped). The filter is
 * separable: out = sum_i sum_j wy[i] wx[j] x[iy[i], ix[j]], accumulated in double.
 * Backward spreads dout[o] * wy[i] * wx[j] back onto the taps; outputs share taps, so each plane
 * is one thread's work, summed in output order: identical for any thread count. */
#ifndef AF_FLOAT_PASS
#include <stdlib.h>

#include "interpolate.h"
#include "ops.h"

/* x as (planes, H, W) -> (planes, OH, OW), and every output column's taps */
typedef struct interp_plan {
    int64_t planes, H, W, OH, OW;
    int mode, align_corners;
    double scale_h, scale_w;
    af_interp_taps *cols; /* (OW) */
} interp_plan;

#define AF_TEMPLATE_FILE "interpolate.c"
#include "instantiate_float.h"

static af_status interp_plan_make(const af_op_call *c, interp_plan *p) {
    const af_tensor *x = c->in[0];
    *p = (interp_plan){.planes = 1, .H = x->shape[x->ndim - 2], .W = x->shape[x->ndim - 1], .OH = c->attr.i[2],
                       .OW = c->attr.i[3], .mode = (int)c->attr.i[0], .align_corners = (int)c->attr.i[1]};
    for (int d = 0; d < x->ndim - 2; d++) p->planes *= x->shape[d];
    p->scale_h = af_interp_scale(p->H, p->OH, p->align_corners, c->attr.f[0]);
    p->scale_w = af_interp_scale(p->W, p->OW, p->align_corners, c->attr.f[1]);
    p->cols = malloc((size_t)p->OW * sizeof *p->cols);
    if (!p->cols) return AF_FAIL(AF_ERR_OOM, "interpolate: out of memory for %lld column taps", (long long)p->OW);
    for (int64_t j = 0; j < p->OW; j++)
        p->cols[j] = af_interp_taps_at(p->mode, p->scale_w, j, p->W, p->align_corners);
    return AF_OK;
}

static af_status interpolate_setup(af_op_call *c) {
    char buf[96];
    AF_TRY(af_check_attrs(c, 4, 2));
    AF_TRY(af_check_float(c, 0));
    const af_tensor *x = c->in[0];
    if (x->ndim < 2)
        return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'input' must have at least 2 dims, got shape %s",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    int64_t mode = c->attr.i[0], align = c->attr.i[1], OH = c->attr.i[2], OW = c->attr.i[3];
    if (mode != AF_INTERP_BILINEAR && mode != AF_INTERP_BICUBIC)
        return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'mode' must be 0 (bilinear) or 1 (bicubic), got %lld",
                       (long long)mode);
    if (align != 0 && align != 1)
        return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'align_corners' must be 0 or 1, got %lld", (long long)align);
    if (OH < 1 || OW < 1 || OH > ((int64_t)1 << 31) || OW > ((int64_t)1 << 31))
        return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'size' must be positive (and below 2^31), got (%lld, %lld)",
                       (long long)OH, (long long)OW);
    if (x->shape[x->ndim - 2] < 1 || x->shape[x->ndim - 1] < 1)
        return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'input' must have non-empty spatial dims, got shape %s",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    for (int k = 0; k < 2; k++)
        if (!(c->attr.f[k] >= 0) || !isfinite(c->attr.f[k]))
            return AF_FAIL(AF_ERR_VALUE, "interpolate: argument 'scale_factor' must be finite and positive (0 = none), "
                           "got %g", c->attr.f[k]);
    int64_t shape[AF_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 2] = OH;
    shape[x->ndim - 1] = OW;
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

static af_status interpolate_forward_cpu(af_op_call *c) {
    interp_plan p;
    AF_TRY(interp_plan_make(c, &p));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, interpolate_forward, &p, af_tensor_data(c->in[0]), af_tensor_data(c->out[0]));
    free(p.cols);
    return AF_OK;
}

static af_status interpolate_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    interp_plan p;
    AF_TRY(interp_plan_make(c, &p));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, interpolate_backward, &p, af_tensor_data(dout[0]), af_tensor_data(din[0]));
    free(p.cols);
    return AF_OK;
}

static const char *const interpolate_inputs[] = {"input", NULL};

const af_op_def af_op_def_interpolate = {.name = "interpolate", .input_names = interpolate_inputs,
                                         .setup = interpolate_setup, .forward_cpu = interpolate_forward_cpu,
                                         .backward_cpu = interpolate_backward_cpu, .differentiable_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

/* x: (planes, H, W), y: (planes, OH, OW) */
static void K(interpolate_forward)(const interp_plan *p, const scalar_t *x, scalar_t *y) {
    int taps = p->mode == AF_INTERP_BICUBIC ? 16 : 4;
    AF_PARALLEL_FOR(p->planes * p->OH * p->OW * taps)
    for (int64_t r = 0; r < p->planes * p->OH; r++) {
        int64_t plane = r / p->OH;
        af_interp_taps ty = af_interp_taps_at(p->mode, p->scale_h, r % p->OH, p->H, p->align_corners);
        const scalar_t *xp = x + plane * p->H * p->W;
        scalar_t *yr = y + r * p->OW;
        for (int64_t j = 0; j < p->OW; j++) {
            const af_interp_taps *tx = &p->cols[j];
            double acc = 0;
            for (int a = 0; a < ty.n; a++) {
                const scalar_t *row = xp + ty.idx[a] * p->W;
                double s = 0;
                for (int b = 0; b < tx->n; b++) s += tx->w[b] * (double)row[tx->idx[b]];
                acc += ty.w[a] * s;
            }
            yr[j] = (scalar_t)acc;
        }
    }
}

static void K(interpolate_backward)(const interp_plan *p, const scalar_t *dy, scalar_t *dx) {
    int taps = p->mode == AF_INTERP_BICUBIC ? 16 : 4;
    AF_PARALLEL_FOR(p->planes * p->OH * p->OW * taps)
    for (int64_t plane = 0; plane < p->planes; plane++) {
        scalar_t *dp = dx + plane * p->H * p->W;
        for (int64_t i = 0; i < p->OH; i++) {
            af_interp_taps ty = af_interp_taps_at(p->mode, p->scale_h, i, p->H, p->align_corners);
            const scalar_t *gr = dy + (plane * p->OH + i) * p->OW;
            for (int64_t j = 0; j < p->OW; j++) {
                const af_interp_taps *tx = &p->cols[j];
                for (int a = 0; a < ty.n; a++) {
                    scalar_t *row = dp + ty.idx[a] * p->W;
                    double g = ty.w[a] * (double)gr[j];
                    for (int b = 0; b < tx->n; b++) row[tx->idx[b]] += (scalar_t)(g * tx->w[b]);
                }
            }
        }
    }
}

#endif
