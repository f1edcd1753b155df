/* 2-D pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, exactly as torch.nn.functional's.
 *
 * x (N, C, H, W) or unbatched (C, H, W) -> y (N, C, Ho, Wo) (3-D when x is).
 *
 * max_pool2d   ints = (kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode)
 *   y[n, c, oh, ow] = max over ih = oh sh - ph + i dh, iw = ow sw - pw + j dw inside the image;
 *   NaN propagates (the last NaN of the window wins, as in torch); ties keep the first in row-major
 *   window order. The flat
 *   index ih W + iw of the winner is saved (int64, like torch's `indices`) for backward.
 * avg_pool2d   ints = (kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, divisor_override (0 = none))
 *   y = sum over the window clipped to the image / divisor, divisor = divisor_override if given, else
 *   the window clipped to the padded image (count_include_pad) or to the image (torch's
 *   aten/src/ATen/native/cpu/AvgPoolKernel.cpp).
 * adaptive_avg_pool2d  ints = (Ho, Wo): window rows [floor(oh H / Ho), ceil((oh + 1) H / Ho)), same for
 *   columns; y = mean over the window.
 *
 * Output size (torch's pooling_output_shape): Ho = floor_or_ceil((H + 2 ph - dh (kh - 1) - 1) / sh) + 1,
 * and with ceil_mode the last window must start inside the image or the left padding:
 * if (Ho - 1) sh >= H + ph then Ho -= 1. Padding may be at most half the kernel.
 * Every loop runs over whole (n, c) planes, so results do not depend on the thread count. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "conv2d.h" /* valid_range */
#include "pool.h"

#define AF_TEMPLATE_FILE "pool.c"
#include "instantiate_float.h"

static af_status pool_check_input(af_op_call *c) {
    AF_TRY(af_check_float(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "%s takes one input, got %d", af_op_table[c->op]->name, c->n_in);
    const af_tensor *x = c->in[0];
    if (x->ndim != 3 && x->ndim != 4) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape %s",
                       af_op_table[c->op]->name, af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    return AF_OK;
}

static af_status pool_alloc_out(af_op_call *c, int64_t Ho, int64_t Wo) {
    const af_tensor *x = c->in[0];
    int64_t shape[4];
    for (int d = 0; d < x->ndim - 2; d++) shape[d] = x->shape[d];
    shape[x->ndim - 2] = Ho;
    shape[x->ndim - 1] = Wo;
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

/* Fills g from x and the (kernel, stride, padding, dilation, ceil_mode) attributes at ints[0..] of a
 * windowed pool, checking them the way torch's pool2d_shape_check does. */
static af_status pool_window_geom(af_op_call *c, const int64_t *k, const int64_t *s, const int64_t *p,
                                  const int64_t *d, int ceil_mode, pool_geom *g) {
    const char *op = af_op_table[c->op]->name;
    const af_tensor *x = c->in[0];
    for (int i = 0; i < 2; i++) {
        const char *hw = i ? "w" : "h";
        if (k[i] < 1) return AF_FAIL(AF_ERR_VALUE, "%s: 'kernel_size' must be positive, got k%s=%lld", op, hw, (long long)k[i]);
        if (s[i] < 1) return AF_FAIL(AF_ERR_VALUE, "%s: 'stride' must be positive, got s%s=%lld", op, hw, (long long)s[i]);
        if (d[i] < 1) return AF_FAIL(AF_ERR_VALUE, "%s: 'dilation' must be positive, got d%s=%lld", op, hw, (long long)d[i]);
        if (p[i] < 0 || p[i] > k[i] / 2)
            return AF_FAIL(AF_ERR_VALUE, "%s: 'padding' must be between 0 and half the kernel size, got p%s=%lld for k%s=%lld",
                           op, hw, (long long)p[i], hw, (long long)k[i]);
        if (k[i] > ((int64_t)1 << 30) || s[i] > ((int64_t)1 << 30) || d[i] > ((int64_t)1 << 30))
            return AF_FAIL(AF_ERR_VALUE, "%s: kernel, stride or dilation too large", op);
    }
    pool_geom_window(x, k, s, p, d, ceil_mode, g);
    if (g->Ho < 1 || g->Wo < 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: 'input' of size %lldx%lld gives output size %lldx%lld, which is too small",
                       op, (long long)g->H, (long long)g->W, (long long)g->Ho, (long long)g->Wo);
    return AF_OK;
}

/* ---- max_pool2d ---- */

static af_status max_pool2d_geom(af_op_call *c, pool_geom *g) {
    const int64_t *a = c->attr.i;
    if (a[8] != 0 && a[8] != 1)
        return AF_FAIL(AF_ERR_VALUE, "max_pool2d: 'ceil_mode' must be 0 or 1, got %lld", (long long)a[8]);
    return pool_window_geom(c, a, a + 2, a + 4, a + 6, (int)a[8], g);
}

static af_status max_pool2d_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 9, 0));
    AF_TRY(pool_check_input(c));
    pool_geom g = {0};
    AF_TRY(max_pool2d_geom(c, &g));
    AF_TRY(pool_alloc_out(c, g.Ho, g.Wo));
    return af_alloc_saved(c, 0, c->out[0]->ndim, c->out[0]->shape, AF_DTYPE_I64);
}

static af_status max_pool2d_forward_cpu(af_op_call *c) {
    pool_geom g = {0};
    max_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, max_pool2d_forward, &g, af_tensor_data(c->in[0]), af_tensor_data(c->out[0]),
                      af_tensor_data(c->saved[0]));
    return AF_OK;
}

static af_status max_pool2d_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    pool_geom g = {0};
    max_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, max_pool2d_backward, &g, af_tensor_data(c->saved[0]), af_tensor_data(dout[0]),
                      af_tensor_data(din[0]));
    return AF_OK;
}

/* ---- avg_pool2d ---- */

static af_status avg_pool2d_geom(af_op_call *c, pool_geom *g) {
    const int64_t *a = c->attr.i;
    static const int64_t one[2] = {1, 1}; /* no dilation */
    if (a[6] != 0 && a[6] != 1)
        return AF_FAIL(AF_ERR_VALUE, "avg_pool2d: 'ceil_mode' must be 0 or 1, got %lld", (long long)a[6]);
    if (a[7] != 0 && a[7] != 1)
        return AF_FAIL(AF_ERR_VALUE, "avg_pool2d: 'count_include_pad' must be 0 or 1, got %lld", (long long)a[7]);
    AF_TRY(pool_window_geom(c, a, a + 2, a + 4, one, (int)a[6], g));
    avg_pool2d_geom_fill(c, g);
    return AF_OK;
}

static af_status avg_pool2d_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 9, 0));
    AF_TRY(pool_check_input(c));
    pool_geom g = {0};
    AF_TRY(avg_pool2d_geom(c, &g));
    return pool_alloc_out(c, g.Ho, g.Wo);
}

static af_status avg_pool2d_forward_cpu(af_op_call *c) {
    pool_geom g = {0};
    avg_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, avg_pool2d_forward, &g, af_tensor_data(c->in[0]), af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status avg_pool2d_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    pool_geom g = {0};
    avg_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, avg_pool2d_backward, &g, af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

/* ---- adaptive_avg_pool2d ---- */

static af_status adaptive_avg_pool2d_geom(af_op_call *c, pool_geom *g) {
    for (int i = 0; i < 2; i++)
        if (c->attr.i[i] < 1 || c->attr.i[i] > ((int64_t)1 << 30))
            return AF_FAIL(AF_ERR_VALUE, "adaptive_avg_pool2d: 'output_size' must be positive, got %lld",
                           (long long)c->attr.i[i]);
    adaptive_avg_pool2d_geom_fill(c, g);
    if (g->H < 1 || g->W < 1)
        return AF_FAIL(AF_ERR_VALUE, "adaptive_avg_pool2d: 'input' must have non-zero height and width, got %lldx%lld",
                       (long long)g->H, (long long)g->W);
    return AF_OK;
}

static af_status adaptive_avg_pool2d_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 2, 0));
    AF_TRY(pool_check_input(c));
    pool_geom g = {0};
    AF_TRY(adaptive_avg_pool2d_geom(c, &g));
    return pool_alloc_out(c, g.Ho, g.Wo);
}

static af_status adaptive_avg_pool2d_forward_cpu(af_op_call *c) {
    pool_geom g = {0};
    adaptive_avg_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, adaptive_avg_pool2d_forward, &g, af_tensor_data(c->in[0]),
                      af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status adaptive_avg_pool2d_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    pool_geom g = {0};
    adaptive_avg_pool2d_geom_fill(c, &g);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, adaptive_avg_pool2d_backward, &g, af_tensor_data(dout[0]),
                      af_tensor_data(din[0]));
    return AF_OK;
}

static const char *const pool_inputs[] = {"input", NULL};

const af_op_def af_op_def_max_pool2d = {.name = "max_pool2d", .input_names = pool_inputs,
                                        .setup = max_pool2d_setup, .forward_cpu = max_pool2d_forward_cpu,
                                        .backward_cpu = max_pool2d_backward_cpu,
                                        .differentiable_inputs = 0x1u};
const af_op_def af_op_def_avg_pool2d = {.name = "avg_pool2d", .input_names = pool_inputs,
                                        .setup = avg_pool2d_setup, .forward_cpu = avg_pool2d_forward_cpu,
                                        .backward_cpu = avg_pool2d_backward_cpu,
                                        .differentiable_inputs = 0x1u};
const af_op_def af_op_def_adaptive_avg_pool2d = {.name = "adaptive_avg_pool2d", .input_names = pool_inputs,
                                                 .setup = adaptive_avg_pool2d_setup,
                                                 .forward_cpu = adaptive_avg_pool2d_forward_cpu,
                                                 .backward_cpu = adaptive_avg_pool2d_backward_cpu,
                                                 .differentiable_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

/* One output of max_pool2d, its window clipped to the image: the reference loop, used where a window
 * crosses the left or right border. */
static inline void K(max_pool2d_one)(const pool_geom *g, const scalar_t *xp, int64_t oh, int64_t ow, scalar_t *y,
                                     int64_t *idx) {
    scalar_t best = -INFINITY;
    int64_t arg = -1;
    for (int64_t i = 0; i < g->kh; i++) {
        int64_t ih = oh * g->sh - g->ph + i * g->dh;
        if (ih < 0 || ih >= g->H) continue;
        for (int64_t j = 0; j < g->kw; j++) {
            int64_t iw = ow * g->sw - g->pw + j * g->dw;
            if (iw < 0 || iw >= g->W) continue;
            scalar_t v = xp[ih * g->W + iw];
            if (arg < 0 || v > best || isnan(v)) { /* torch's test: a later NaN wins too */
                best = v;
                arg = ih * g->W + iw;
            }
        }
    }
    *y = best;
    *idx = arg;
}

/* x (planes, H, W) -> y, idx (planes, Ho, Wo); idx = ih W + iw of the max, -1 for a window with no
 * pixel inside the image (impossible with padding <= kernel / 2, kept for safety).
 * Outputs whose window columns all lie inside the image are computed a row at a time: for each
 * window offset (i, j) in row-major order, one branch-free pass over the row's outputs updates the
 * running max and its index (the compiler vectorises it across outputs). Same visiting order and
 * the same test as max_pool2d_one, so ties and NaNs resolve identically. */
AF_CPU_DISPATCH
static void K(max_pool2d_forward)(const pool_geom *g, const scalar_t *x, scalar_t *y, int64_t *idx) {
    const int64_t H = g->H, W = g->W, Wo = g->Wo, sw = g->sw;
    /* outputs [ow0, ow1) have every window column inside [0, W) */
    int64_t ow0 = (g->pw + sw - 1) / sw;
    int64_t last = W - 1 - (g->kw - 1) * g->dw + g->pw; /* the largest ow sw allowed */
    int64_t ow1 = last >= 0 ? last / sw + 1 : 0;
    if (ow1 > Wo) ow1 = Wo;
    if (ow0 > ow1) ow0 = ow1;
    AF_PARALLEL_FOR(g->planes * g->Ho * g->Wo * g->kh * g->kw)
    for (int64_t p = 0; p < g->planes; p++) {
        const scalar_t *xp = x + p * H * W;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            scalar_t *yr = y + (p * g->Ho + oh) * Wo;
            int64_t *ir = idx + (p * g->Ho + oh) * Wo;
            int64_t i0 = 0;
            while (i0 < g->kh && oh * g->sh - g->ph + i0 * g->dh < 0) i0++;
            int first = 1;
            for (int64_t i = i0; i < g->kh; i++) {
                int64_t ih = oh * g->sh - g->ph + i * g->dh;
                if (ih >= H) break;
                for (int64_t j = 0; j < g->kw; j++) {
                    const int64_t base = ih * W - g->pw + j * g->dw; /* flat index of (ih, ow sw - pw + j dw) - ow sw */
                    if (first) {
                        for (int64_t ow = ow0; ow < ow1; ow++) {
                            yr[ow] = xp[base + ow * sw];
                            ir[ow] = base + ow * sw;
                        }
                        first = 0;
                        continue;
                    }
                    for (int64_t ow = ow0; ow < ow1; ow++) {
                        scalar_t v = xp[base + ow * sw], b = yr[ow];
                        int take = (v > b) | (v != v);
                        yr[ow] = take ? v : b;
                        ir[ow] = take ? base + ow * sw : ir[ow];
                    }
                }
            }
            if (first) /* no window row inside the image */
                for (int64_t ow = ow0; ow < ow1; ow++) {
                    yr[ow] = -INFINITY;
                    ir[ow] = -1;
                }
            for (int64_t ow = 0; ow < ow0; ow++) K(max_pool2d_one)(g, xp, oh, ow, yr + ow, ir + ow);
            for (int64_t ow = ow1; ow < Wo; ow++) K(max_pool2d_one)(g, xp, oh, ow, yr + ow, ir + ow);
        }
    }
}

/* dx[p, idx[p, o]] += dy[p, o]; one thread per plane */
AF_CPU_DISPATCH
static void K(max_pool2d_backward)(const pool_geom *g, const int64_t *idx, const scalar_t *dy, scalar_t *dx) {
    const int64_t HWo = g->Ho * g->Wo;
    AF_PARALLEL_FOR(g->planes * HWo)
    for (int64_t p = 0; p < g->planes; p++)
        for (int64_t o = 0; o < HWo; o++)
            if (idx[p * HWo + o] >= 0) dx[p * g->H * g->W + idx[p * HWo + o]] += dy[p * HWo + o];
}

/* The window of output (oh, ow) clipped to the image ([*h0, *h1) x [*w0, *w1)), and its divisor. */
static inline scalar_t K(avg_pool2d_window)(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1,
                                            int64_t *w0, int64_t *w1) {
    int64_t a0 = oh * g->sh - g->ph, b0 = ow * g->sw - g->pw;
    int64_t a1 = a0 + g->kh < g->H + g->ph ? a0 + g->kh : g->H + g->ph;
    int64_t b1 = b0 + g->kw < g->W + g->pw ? b0 + g->kw : g->W + g->pw;
    int64_t padded = (a1 - a0) * (b1 - b0);
    *h0 = a0 > 0 ? a0 : 0, *w0 = b0 > 0 ? b0 : 0;
    *h1 = a1 < g->H ? a1 : g->H, *w1 = b1 < g->W ? b1 : g->W;
    if (g->divisor_override) return (scalar_t)g->divisor_override;
    if (g->count_include_pad) return (scalar_t)padded;
    return (scalar_t)((*h1 - *h0) * (*w1 - *w0));
}

/* Output columns are done in chunks of AVG_CHUNK: per output row and chunk, each (window row, kernel
 * column) tap is one pass over the chunk's columns that read it (a loop that vectorises), instead
 * of one short window loop per output. Every sum still runs in the scalar order: window rows, then
 * columns, ascending. */
#define AVG_CHUNK 256

/* out columns [lo, hi) of chunk [c0, c0 + n) whose tap (column offset off from ow sw - pw) lands in the image */
static inline void K(avg_tap_range)(const pool_geom *g, int64_t kw, int64_t c0, int64_t n, int64_t *lo, int64_t *hi) {
    valid_range(kw - g->pw, g->sw, g->W, g->Wo, lo, hi);
    if (*lo < c0) *lo = c0;
    if (*hi > c0 + n) *hi = c0 + n;
    if (*hi < *lo) *hi = *lo;
}

/* x (planes, H, W) -> y (planes, Ho, Wo); an empty clipped window gives 0, as in torch */
AF_CPU_DISPATCH
static void K(avg_pool2d_forward)(const pool_geom *g, const scalar_t *x, scalar_t *y) {
    AF_PARALLEL_FOR(g->planes * g->Ho * g->Wo * g->kh * g->kw)
    for (int64_t p = 0; p < g->planes; p++) {
        const scalar_t *xp = x + p * g->H * g->W;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            scalar_t *yr = y + (p * g->Ho + oh) * g->Wo;
            for (int64_t c0 = 0; c0 < g->Wo; c0 += AVG_CHUNK) {
                const int64_t n = g->Wo - c0 < AVG_CHUNK ? g->Wo - c0 : AVG_CHUNK;
                scalar_t acc[AVG_CHUNK];
                for (int64_t j = 0; j < n; j++) acc[j] = 0;
                int64_t h0, h1, w0, w1;
                K(avg_pool2d_window)(g, oh, c0, &h0, &h1, &w0, &w1); /* the rows: the same for every column */
                for (int64_t ih = h0; ih < h1; ih++) {
                    const scalar_t *xr = xp + ih * g->W;
                    for (int64_t kw = 0; kw < g->kw; kw++) {
                        int64_t lo, hi;
                        K(avg_tap_range)(g, kw, c0, n, &lo, &hi);
                        const scalar_t *xs = xr + kw - g->pw;
                        if (g->sw == 1)
                            for (int64_t ow = lo; ow < hi; ow++) acc[ow - c0] += xs[ow];
                        else
                            for (int64_t ow = lo; ow < hi; ow++) acc[ow - c0] += xs[ow * g->sw];
                    }
                }
                for (int64_t j = 0; j < n; j++) {
                    const scalar_t div = K(avg_pool2d_window)(g, oh, c0 + j, &h0, &h1, &w0, &w1);
                    yr[c0 + j] = h0 >= h1 || w0 >= w1 ? 0 : acc[j] / div;
                }
            }
        }
    }
}

/* dx += each output's dy / divisor over its window; every dx element gets its terms in the scalar
 * order, outputs ascending (oh, then ow: within a window row, kernel columns descending) */
AF_CPU_DISPATCH
static void K(avg_pool2d_backward)(const pool_geom *g, const scalar_t *dy, scalar_t *dx) {
    AF_PARALLEL_FOR(g->planes * g->Ho * g->Wo * g->kh * g->kw)
    for (int64_t p = 0; p < g->planes; p++) {
        scalar_t *dxp = dx + p * g->H * g->W;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            const scalar_t *dyr = dy + (p * g->Ho + oh) * g->Wo;
            for (int64_t c0 = 0; c0 < g->Wo; c0 += AVG_CHUNK) {
                const int64_t n = g->Wo - c0 < AVG_CHUNK ? g->Wo - c0 : AVG_CHUNK;
                scalar_t v[AVG_CHUNK];
                int64_t h0, h1, w0, w1;
                for (int64_t j = 0; j < n; j++) v[j] = dyr[c0 + j] / K(avg_pool2d_window)(g, oh, c0 + j, &h0, &h1, &w0, &w1);
                K(avg_pool2d_window)(g, oh, c0, &h0, &h1, &w0, &w1);
                for (int64_t ih = h0; ih < h1; ih++) {
                    scalar_t *dxr = dxp + ih * g->W;
                    for (int64_t kw = g->kw - 1; kw >= 0; kw--) {
                        int64_t lo, hi;
                        K(avg_tap_range)(g, kw, c0, n, &lo, &hi);
                        scalar_t *ds = dxr + kw - g->pw;
                        if (g->sw == 1)
                            for (int64_t ow = lo; ow < hi; ow++) ds[ow] += v[ow - c0];
                        else
                            for (int64_t ow = lo; ow < hi; ow++) ds[ow * g->sw] += v[ow - c0];
                    }
                }
            }
        }
    }
}

#undef AVG_CHUNK

/* x (planes, H, W) -> y (planes, Ho, Wo), windows [floor(o H / Ho), ceil((o + 1) H / Ho)) */
AF_CPU_DISPATCH
static void K(adaptive_avg_pool2d_forward)(const pool_geom *g, const scalar_t *x, scalar_t *y) {
    AF_PARALLEL_FOR(g->planes * g->H * g->W + g->planes * g->Ho * g->Wo)
    for (int64_t p = 0; p < g->planes; p++) {
        const scalar_t *xp = x + p * g->H * g->W;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            int64_t h0 = oh * g->H / g->Ho, h1 = ((oh + 1) * g->H + g->Ho - 1) / g->Ho;
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                int64_t w0 = ow * g->W / g->Wo, w1 = ((ow + 1) * g->W + g->Wo - 1) / g->Wo;
                scalar_t sum = 0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) sum += xp[ih * g->W + iw];
                y[(p * g->Ho + oh) * g->Wo + ow] = sum / (scalar_t)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

AF_CPU_DISPATCH
static void K(adaptive_avg_pool2d_backward)(const pool_geom *g, const scalar_t *dy, scalar_t *dx) {
    AF_PARALLEL_FOR(g->planes * g->H * g->W + g->planes * g->Ho * g->Wo)
    for (int64_t p = 0; p < g->planes; p++) {
        scalar_t *dxp = dx + p * g->H * g->W;
        for (int64_t oh = 0; oh < g->Ho; oh++) {
            int64_t h0 = oh * g->H / g->Ho, h1 = ((oh + 1) * g->H + g->Ho - 1) / g->Ho;
            for (int64_t ow = 0; ow < g->Wo; ow++) {
                int64_t w0 = ow * g->W / g->Wo, w1 = ((ow + 1) * g->W + g->Wo - 1) / g->Wo;
                scalar_t v = dy[(p * g->Ho + oh) * g->Wo + ow] / (scalar_t)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) dxp[ih * g->W + iw] += v;
            }
        }
    }
}

#endif
