/* conv2d: 2-D cross-correlation with stride, zero padding, dilation and groups, exactly
 * torch.nn.functional.conv2d.
 *
 * in    = (x (N, Cin, H, W) or unbatched (Cin, H, W), weight (Cout, Cin/G, KH, KW), bias (Cout) or NULL)
 * ints  = (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups G)
 * out   = y (N, Cout, Ho, Wo) (3-D when x is), Ho = floor((H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h) + 1
 *
 *   y[n, co, oh, ow] = bias[co] + sum_{ci < Cin/G, kh, kw} weight[co, ci, kh, kw]
 *                      * x[n, g Cin/G + ci, oh stride_h - pad_h + kh dil_h, ow stride_w - pad_w + kw dil_w]
 * with g = co / (Cout/G) and x = 0 outside the image (the formula in the torch.nn.Conv2d docs).
 *
 * Four CPU algorithms, chosen per call (same results up to float rounding):
 *   Winograd F(2x2, 3x3) (3x3, stride 1, groups 1, enough channels: conv_use_winograd in
 *     conv2d_winograd.h): 2.25x fewer multiplications than im2col, forward, dx and dw
 *     (conv2d_winograd.c).
 *   depthwise (Cin/G == 1, G > 1): a direct kernel (conv2d_depthwise.c); a GEMM with K = KH KW would be
 *     all overhead.
 *   pointwise (1x1, stride 1, no padding) with Ho Wo >= 64: x[n] already is the GEMM's right
 *     operand, so y[n, g] = W[g] @ x[n, g] per image without any copy.
 *   everything else: im2col over a chunk of images, col (Cin/G KH KW, n_chunk Ho Wo). With Ho Wo >= 64,
 *     y[n, g] = W[g] @ col[:, image n] per image straight into y; on smaller maps (7x7, 4x4) one wide
 *     GEMM per group over the whole chunk and a scatter to NCHW, since 49-column GEMMs run slowly.
 * All GEMMs go through AF_GEMM / AF_GEMM_BATCHED (csrc/ops/gemm.c), whose tiles depend only on the
 * shape, so the thread count never changes a bit of the result.
 * Backward (the adjoint of each step): dbias += sum of dy; dW[g] += dY[g] @ col^T; dx: dcol = W[g]^T @
 * dY[g], then col2im accumulates dcol into dx. Every parallel loop owns whole outputs (col2im runs
 * per input channel plane), so results do not depend on the thread count. */
#ifndef AF_FLOAT_PASS
#include <string.h>

#include "conv2d.h"
#include "conv2d_depthwise.h"
#include "conv2d_winograd.h"

/* Upper bound on the elements of one im2col buffer (4 MiB in float32): a chunk's col stays in cache
 * between im2col and the GEMM. Measured on ResNet-50's 3x3 and 7x7 layers at batch 32 (one thread):
 * 2^24 (col in DRAM) ran at 27 GFLOP/s, 2^20 at 60. */
#define CONV_COL_CAP ((int64_t)1 << 20)
/* From this many output pixels per image on, GEMMs run per image straight from x / into y (no
 * im2col copy for pointwise convs, no NCHW scatter otherwise); below it, per-image GEMMs are too
 * narrow and one wide GEMM over the chunk plus a scatter is faster. Measured on ResNet-50's layers
 * (benchmarks/bench_cpu.py): 1x1 convs on 28x28 maps gain ~25%, 4x4 maps lose ~15% per image. */
#define CONV_POINTWISE_DIRECT_HWO 64
#define CONV_DIRECT_HWO 64

static int64_t images_per_chunk(const conv_geom *g) {
    int64_t per_image = g->rows * g->HWo;
    if (g->Cout * g->HWo > per_image) per_image = g->Cout * g->HWo; /* the GEMM output buffer too */
    int64_t nb = per_image > 0 ? CONV_COL_CAP / per_image : g->N;
    if (nb < 1) nb = 1;
    return nb < g->N ? nb : g->N;
}

#define AF_TEMPLATE_FILE "conv2d.c"
#include "instantiate_float.h"

static af_status conv2d_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 7, 0));
    if (c->n_in < 2 || c->n_in > 3)
        return AF_FAIL(AF_ERR_VALUE, "conv2d takes (input, weight, bias=None), got %d inputs", c->n_in);
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    const af_tensor *x = c->in[0], *w = c->in[1], *b = c->n_in > 2 ? c->in[2] : NULL;
    char buf[96];
    if (x->ndim != 3 && x->ndim != 4)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: argument 'input' must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape %s",
                       af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    if (w->ndim != 4)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: argument 'weight' must be 4-D (Cout, Cin/groups, KH, KW), got shape %s",
                       af_shape_str(w->ndim, w->shape, buf, sizeof buf));
    const int64_t *a = c->attr.i;
    static const char *const attr_names[] = {"stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups"};
    for (int k = 0; k < 7; k++) {
        int is_pad = k == 2 || k == 3;
        if (is_pad ? a[k] < 0 : a[k] < 1)
            return AF_FAIL(AF_ERR_VALUE, "conv2d: '%s' must be %s, got %lld", attr_names[k],
                           is_pad ? "non-negative" : "positive", (long long)a[k]);
        if (a[k] > ((int64_t)1 << 30))
            return AF_FAIL(AF_ERR_VALUE, "conv2d: '%s' = %lld is too large", attr_names[k], (long long)a[k]);
    }
    int batched = x->ndim == 4;
    int64_t Cin = x->shape[batched], H = x->shape[batched + 1], W = x->shape[batched + 2];
    int64_t Cout = w->shape[0], G = a[6];
    if (Cin % G != 0)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: 'input' has %lld channels, not divisible by groups=%lld",
                       (long long)Cin, (long long)G);
    if (Cout % G != 0)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: 'weight' has %lld output channels, not divisible by groups=%lld",
                       (long long)Cout, (long long)G);
    if (w->shape[1] * G != Cin)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: 'weight' has %lld input channels per group but 'input' has %lld channels with groups=%lld",
                       (long long)w->shape[1], (long long)Cin, (long long)G);
    if (w->shape[2] < 1 || w->shape[3] < 1)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: 'weight' must have a kernel of at least 1x1, got shape %s",
                       af_shape_str(w->ndim, w->shape, buf, sizeof buf));
    if (b) {
        AF_TRY(af_check_float(c, 2));
        AF_TRY(af_check_same_dtype(c, 0, 2));
        if (b->ndim != 1 || b->shape[0] != Cout)
            return AF_FAIL(AF_ERR_VALUE, "conv2d: 'bias' must have shape (%lld,) to match 'weight', got %s",
                           (long long)Cout, af_shape_str(b->ndim, b->shape, buf, sizeof buf));
    }
    int64_t eff_h = a[4] * (w->shape[2] - 1) + 1, eff_w = a[5] * (w->shape[3] - 1) + 1;
    int64_t padded_h = H + 2 * a[2], padded_w = W + 2 * a[3];
    if (eff_h > padded_h || eff_w > padded_w)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: padded 'input' is %lldx%lld but the (dilated) kernel of 'weight' is %lldx%lld; "
                       "the kernel can't be larger than the padded input",
                       (long long)padded_h, (long long)padded_w, (long long)eff_h, (long long)eff_w);
    conv_geom g;
    conv_geom_from_call(c, &g);
    int64_t shape[4] = {g.N, Cout, g.Ho, g.Wo};
    return batched ? af_alloc_out(c, 0, 4, shape, 0) : af_alloc_out(c, 0, 3, shape + 1, 0);
}

/* CBLAS dimensions are int: keep every GEMM dimension and leading dimension below 2^31. The limit
 * belongs to this CPU path, not to setup. */
static af_status conv2d_check_cblas(const conv_geom *g) {
    const int64_t lim = INT32_MAX;
    if (g->HWo > lim / 2 || g->rows > lim / 2 || g->H * g->W > lim / 2)
        return AF_FAIL(AF_ERR_VALUE, "conv2d: 'input' %lldx%lld with this kernel is too large for the CPU kernel",
                       (long long)g->H, (long long)g->W);
    return AF_OK;
}

static af_status conv2d_forward_cpu(af_op_call *c) {
    conv_geom g;
    conv_geom_from_call(c, &g);
    AF_TRY(conv2d_check_cblas(&g));
    const af_tensor *b = c->n_in > 2 ? c->in[2] : NULL;
    const void *bias = b ? af_tensor_data(b) : NULL;
    if (c->out[0]->numel == 0) return AF_OK;
    if (conv_is_depthwise(&g)) {
        if (AF_DISPATCH_FLOAT(c->in[0]->dtype, conv2d_depthwise_forward, &g, af_tensor_data(c->in[0]),
                              af_tensor_data(c->in[1]), bias, af_tensor_data(c->out[0])))
            return AF_FAIL(AF_ERR_OOM, "conv2d: out of memory for a padded depthwise plane");
        return AF_OK;
    }
    if (conv_use_winograd(&g)) {
        if (AF_DISPATCH_FLOAT(c->in[0]->dtype, conv2d_winograd_forward, &g, af_tensor_data(c->in[0]),
                              af_tensor_data(c->in[1]), bias, af_tensor_data(c->out[0])))
            return AF_FAIL(AF_ERR_OOM, "conv2d: out of memory for the Winograd buffers");
        return AF_OK;
    }
    if (conv_is_pointwise(&g) && g.HWo >= CONV_POINTWISE_DIRECT_HWO) {
        AF_DISPATCH_FLOAT(c->in[0]->dtype, conv2d_pointwise_forward, &g, af_tensor_data(c->in[0]),
                          af_tensor_data(c->in[1]), bias, af_tensor_data(c->out[0]));
        return AF_OK;
    }
    return AF_DISPATCH_FLOAT(c->in[0]->dtype, conv2d_gemm_forward, &g, af_tensor_data(c->in[0]),
                             af_tensor_data(c->in[1]), bias, af_tensor_data(c->out[0]));
}

static af_status conv2d_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    conv_geom g;
    conv_geom_from_call(c, &g);
    AF_TRY(conv2d_check_cblas(&g));
    af_dtype dt = c->in[0]->dtype;
    void *dx = din[0] ? af_tensor_data(din[0]) : NULL;
    void *dw = din[1] ? af_tensor_data(din[1]) : NULL;
    void *dbias = c->n_in > 2 && din[2] ? af_tensor_data(din[2]) : NULL;
    const void *x = af_tensor_data(c->in[0]), *w = af_tensor_data(c->in[1]), *dy = af_tensor_data(dout[0]);
    if (dbias) AF_DISPATCH_FLOAT(dt, conv2d_bias_backward, &g, dy, dbias, af_din_accumulates(c, 2));
    if (!dx && !dw) return AF_OK;
    /* the depthwise and Winograd kernels only add; an empty product adds nothing: both from zeros */
    const int empty = g.N * g.HWo == 0 || g.Cout == 0 || g.Cin == 0;
    uint32_t fresh = c->din_fresh;
    if (empty || conv_is_depthwise(&g) || conv_use_winograd(&g))
        for (int i = 0; i < 2; i++) AF_TRY(af_din_from_zeros(din, i, &fresh));
    const int acc_x = !(fresh & 1u), acc_w = !(fresh & 2u);
    if (empty) return AF_OK;
    if (conv_is_depthwise(&g)) {
        if (AF_DISPATCH_FLOAT(dt, conv2d_depthwise_backward, &g, x, w, dy, dx, dw))
            return AF_FAIL(AF_ERR_OOM, "conv2d: out of memory for a padded depthwise plane");
        return AF_OK;
    }
    if (conv_use_winograd(&g)) {
        if ((dx && AF_DISPATCH_FLOAT(dt, conv2d_winograd_backward_dx, &g, w, dy, dx)) ||
            (dw && AF_DISPATCH_FLOAT(dt, conv2d_winograd_backward_dw, &g, x, dy, dw)))
            return AF_FAIL(AF_ERR_OOM, "conv2d backward: out of memory for the Winograd buffers");
        return AF_OK;
    }
    if (conv_is_pointwise(&g) && g.HWo >= CONV_POINTWISE_DIRECT_HWO) {
        /* dx per image straight from dy; dW needs dy in (Cout, N HW) layout, which conv2d_gemm_backward builds */
        if (dx) AF_DISPATCH_FLOAT(dt, conv2d_pointwise_backward_dx, &g, w, dy, dx, acc_x);
        return dw ? AF_DISPATCH_FLOAT(dt, conv2d_gemm_backward, &g, x, w, dy, NULL, dw, acc_x, acc_w) : AF_OK;
    }
    return AF_DISPATCH_FLOAT(dt, conv2d_gemm_backward, &g, x, w, dy, dx, dw, acc_x, acc_w);
}

static const char *const conv2d_inputs[] = {"input", "weight", "bias", NULL};

const af_op_def af_op_def_conv2d = {.name = "conv2d", .input_names = conv2d_inputs, .setup = conv2d_setup,
                                    .forward_cpu = conv2d_forward_cpu, .backward_cpu = conv2d_backward_cpu,
                                    .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

/* y (N, Cout, HWo) += bias (Cout) */
AF_CPU_DISPATCH
static void K(add_bias)(const conv_geom *g, const scalar_t *bias, scalar_t *y) {
    AF_PARALLEL_FOR(g->N * g->Cout * g->HWo)
    for (int64_t it = 0; it < g->N * g->Cout; it++) {
        scalar_t b = bias[it % g->Cout], *dst = y + it * g->HWo;
        for (int64_t p = 0; p < g->HWo; p++) dst[p] += b;
    }
}

/* col (rows, m Ho Wo) with rows = (ci, kh, kw) of group grp and columns = (n, oh, ow):
 * col[(ci KH + kh) KW + kw, n HWo + oh Wo + ow] = x[n, grp Cin_g + ci, oh sh - ph + kh dh, ow sw - pw + kw dw]
 * (0 outside). x: the chunk's first image (m images). */
AF_CPU_DISPATCH
static void K(im2col)(const conv_geom *g, const scalar_t *x, int64_t grp, int64_t m, scalar_t *col) {
    const int64_t KK = g->KH * g->KW, L = m * g->HWo, items = g->rows * m;
    AF_PARALLEL_FOR(items * g->HWo)
    for (int64_t it = 0; it < items; it++) {
        int64_t r = it / m, n = it % m;
        int64_t ci = r / KK, kh = r % KK / g->KW, kw = r % g->KW;
        const scalar_t *xp = x + (n * g->Cin + grp * g->Cin_g + ci) * g->H * g->W;
        scalar_t *dst = col + r * L + n * g->HWo;
        int64_t off_w = kw * g->dw - g->pw, lo, hi;
        valid_range(off_w, g->sw, g->W, g->Wo, &lo, &hi);
        for (int64_t oh = 0; oh < g->Ho; oh++, dst += g->Wo) {
            int64_t ih = oh * g->sh - g->ph + kh * g->dh;
            if (ih < 0 || ih >= g->H) {
                memset(dst, 0, (size_t)g->Wo * sizeof(scalar_t));
                continue;
            }
            const scalar_t *xrow = xp + ih * g->W + off_w;
            for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
            if (g->sw == 1)
                memcpy(dst + lo, xrow + lo, (size_t)(hi - lo) * sizeof(scalar_t));
            else
                for (int64_t ow = lo; ow < hi; ow++) dst[ow] = xrow[ow * g->sw];
            for (int64_t ow = hi; ow < g->Wo; ow++) dst[ow] = 0;
        }
    }
}

/* dx[n, grp Cin_g + ci] += the adjoint of im2col applied to dcol (rows, m HWo); acc 0: a fresh dx,
 * each plane zeroed first by its thread (no call touches a plane another call does). One thread per
 * input plane (n, ci), which sums its (kh, kw) contributions in a fixed order. */
AF_CPU_DISPATCH
static void K(col2im)(const conv_geom *g, const scalar_t *dcol, int64_t grp, int64_t m, scalar_t *dx, int acc) {
    const int64_t KK = g->KH * g->KW, L = m * g->HWo, planes = m * g->Cin_g;
    AF_PARALLEL_FOR(planes * KK * g->HWo)
    for (int64_t p = 0; p < planes; p++) {
        int64_t n = p / g->Cin_g, ci = p % g->Cin_g;
        scalar_t *dxp = dx + (n * g->Cin + grp * g->Cin_g + ci) * g->H * g->W;
        if (!acc) memset(dxp, 0, (size_t)(g->H * g->W) * sizeof(scalar_t));
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const scalar_t *src = dcol + ((ci * g->KH + kh) * g->KW + kw) * L + n * g->HWo;
                int64_t off_w = kw * g->dw - g->pw, lo, hi;
                valid_range(off_w, g->sw, g->W, g->Wo, &lo, &hi);
                for (int64_t oh = 0; oh < g->Ho; oh++, src += g->Wo) {
                    int64_t ih = oh * g->sh - g->ph + kh * g->dh;
                    if (ih < 0 || ih >= g->H) continue;
                    scalar_t *dxrow = dxp + ih * g->W + off_w;
                    if (g->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) dxrow[ow] += src[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) dxrow[ow * g->sw] += src[ow];
                }
            }
    }
}

/* y (m, Cout, HWo) = tmp (Cout, m HWo) transposed per image, plus bias (Cout) or nothing */
AF_CPU_DISPATCH
static void K(scatter_out)(const conv_geom *g, const scalar_t *tmp, const scalar_t *bias, int64_t m, scalar_t *y) {
    const int64_t L = m * g->HWo, items = m * g->Cout;
    AF_PARALLEL_FOR(items * g->HWo)
    for (int64_t it = 0; it < items; it++) {
        int64_t n = it / g->Cout, co = it % g->Cout;
        const scalar_t *src = tmp + co * L + n * g->HWo;
        scalar_t *dst = y + it * g->HWo;
        scalar_t b = bias ? bias[co] : 0;
        if (bias)
            for (int64_t p = 0; p < g->HWo; p++) dst[p] = src[p] + b;
        else
            memcpy(dst, src, (size_t)g->HWo * sizeof(scalar_t));
    }
}

/* dyt (Cout, m HWo) = dy (m, Cout, HWo) transposed per image: the layout the GEMMs read */
AF_CPU_DISPATCH
static void K(gather_dy)(const conv_geom *g, const scalar_t *dy, int64_t m, scalar_t *dyt) {
    const int64_t L = m * g->HWo, items = m * g->Cout;
    AF_PARALLEL_FOR(items * g->HWo)
    for (int64_t it = 0; it < items; it++) {
        int64_t co = it / m, n = it % m;
        memcpy(dyt + co * L + n * g->HWo, dy + (n * g->Cout + co) * g->HWo, (size_t)g->HWo * sizeof(scalar_t));
    }
}

/* x (N, Cin, H, W), w (Cout, Cin_g, KH, KW), bias (Cout) or NULL -> y (N, Cout, Ho, Wo), via im2col + GEMM */
static af_status K(conv2d_gemm_forward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                                        scalar_t *y) {
    int64_t nb = images_per_chunk(g);
    int direct = g->HWo >= CONV_DIRECT_HWO;
    scalar_t *col = af_alloc_host((size_t)(g->rows * nb * g->HWo) * sizeof(scalar_t));
    scalar_t *tmp = direct ? NULL : af_alloc_host((size_t)(g->Cout * nb * g->HWo) * sizeof(scalar_t));
    if (!col || (!direct && !tmp)) {
        af_free_host(col);
        af_free_host(tmp);
        return AF_FAIL(AF_ERR_OOM, "conv2d: out of memory for the im2col buffers (%lld images per chunk)", (long long)nb);
    }
    for (int64_t n0 = 0; n0 < g->N; n0 += nb) {
        int64_t m = g->N - n0 < nb ? g->N - n0 : nb, L = m * g->HWo;
        const scalar_t *xc = x + n0 * g->Cin * g->H * g->W;
        for (int64_t grp = 0; grp < g->G; grp++) {
            K(im2col)(g, xc, grp, m, col);
            if (direct) {
                /* y[n, g] (Cout_g, HWo) = W[g] (Cout_g, rows) @ col[:, n HWo : (n + 1) HWo] */
                af_gemm_batch bt = {m, 1, 0, 0, g->HWo, 0, g->Cout * g->HWo, 0};
                AF_GEMM_BATCHED(&bt, 0, 0, g->Cout_g, g->HWo, g->rows, 1, w + grp * g->Cout_g * g->rows, g->rows, col, L,
                                0, y + n0 * g->Cout * g->HWo + grp * g->Cout_g * g->HWo, g->HWo);
            } else {
                /* tmp[g] (Cout_g, L) = W[g] (Cout_g, rows) @ col (rows, L), scattered to NCHW below */
                AF_GEMM(0, 0, g->Cout_g, L, g->rows, 1, w + grp * g->Cout_g * g->rows, g->rows, col, L, 0,
                        tmp + grp * g->Cout_g * L, L);
            }
        }
        if (!direct) K(scatter_out)(g, tmp, bias, m, y + n0 * g->Cout * g->HWo);
    }
    if (direct && bias) K(add_bias)(g, bias, y);
    af_free_host(col);
    af_free_host(tmp);
    return AF_OK;
}

/* dx (N, Cin, H, W) and/or dw (Cout, Cin_g, KH, KW) += ..., either may be NULL; = into a fresh one
 * (acc_x, acc_w 0) */
static af_status K(conv2d_gemm_backward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                                         scalar_t *dx, scalar_t *dw, int acc_x, int acc_w) {
    int64_t nb = images_per_chunk(g);
    int direct = g->HWo >= CONV_DIRECT_HWO;
    scalar_t *col = af_alloc_host((size_t)(g->rows * nb * g->HWo) * sizeof(scalar_t));
    scalar_t *dyt = af_alloc_host((size_t)(g->Cout * nb * g->HWo) * sizeof(scalar_t));
    if (!col || !dyt) {
        af_free_host(col);
        af_free_host(dyt);
        return AF_FAIL(AF_ERR_OOM, "conv2d backward: out of memory for the im2col buffers (%lld images per chunk)",
                       (long long)nb);
    }
    for (int64_t n0 = 0; n0 < g->N; n0 += nb) {
        int64_t m = g->N - n0 < nb ? g->N - n0 : nb, L = m * g->HWo;
        if (dw || !direct) K(gather_dy)(g, dy + n0 * g->Cout * g->HWo, m, dyt);
        for (int64_t grp = 0; grp < g->G; grp++) {
            const scalar_t *dyt_g = dyt + grp * g->Cout_g * L;
            if (dw) {
                K(im2col)(g, x + n0 * g->Cin * g->H * g->W, grp, m, col);
                /* dW[g] (Cout_g, rows) += dY[g] (Cout_g, L) @ col^T (L, rows) */
                AF_GEMM(0, 1, g->Cout_g, g->rows, L, 1, dyt_g, L, col, L, acc_w || n0 > 0 ? 1 : 0,
                        dw + grp * g->Cout_g * g->rows, g->rows);
            }
            if (dx && direct) {
                /* dcol[:, n HWo : (n + 1) HWo] (rows, HWo) = W[g]^T (rows, Cout_g) @ dy[n, g] (Cout_g, HWo) */
                af_gemm_batch bt = {m, 1, 0, 0, g->Cout * g->HWo, 0, g->HWo, 0};
                AF_GEMM_BATCHED(&bt, 1, 0, g->rows, g->HWo, g->Cout_g, 1, w + grp * g->Cout_g * g->rows, g->rows,
                                dy + n0 * g->Cout * g->HWo + grp * g->Cout_g * g->HWo, g->HWo, 0, col, L);
                K(col2im)(g, col, grp, m, dx + n0 * g->Cin * g->H * g->W, acc_x);
            } else if (dx) {
                /* dcol (rows, L) = W[g]^T (rows, Cout_g) @ dY[g] (Cout_g, L), reusing col */
                AF_GEMM(1, 0, g->rows, L, g->Cout_g, 1, w + grp * g->Cout_g * g->rows, g->rows, dyt_g, L, 0, col, L);
                K(col2im)(g, col, grp, m, dx + n0 * g->Cin * g->H * g->W, acc_x);
            }
        }
    }
    af_free_host(col);
    af_free_host(dyt);
    return AF_OK;
}

/* Pointwise (1x1, stride 1, no padding): y[n, g] (Cout_g, HW) = W[g] (Cout_g, Cin_g) @ x[n, g] (Cin_g, HW) */
static void K(conv2d_pointwise_forward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                                        scalar_t *y) {
    af_gemm_batch bt = {g->N * g->G, g->G, 0, g->Cout_g * g->Cin_g, g->Cin * g->HWo, g->Cin_g * g->HWo,
                     g->Cout * g->HWo, g->Cout_g * g->HWo};
    AF_GEMM_BATCHED(&bt, 0, 0, g->Cout_g, g->HWo, g->Cin_g, 1, w, g->Cin_g, x, g->HWo, 0, y, g->HWo);
    if (bias) K(add_bias)(g, bias, y);
}

/* dx[n, g] (Cin_g, HW) += W[g]^T (Cin_g, Cout_g) @ dY[n, g] (Cout_g, HW), or = (acc 0) */
static void K(conv2d_pointwise_backward_dx)(const conv_geom *g, const scalar_t *w, const scalar_t *dy, scalar_t *dx,
                                            int acc) {
    af_gemm_batch bt = {g->N * g->G, g->G, 0, g->Cout_g * g->Cin_g, g->Cout * g->HWo, g->Cout_g * g->HWo,
                     g->Cin * g->HWo, g->Cin_g * g->HWo};
    AF_GEMM_BATCHED(&bt, 1, 0, g->Cin_g, g->HWo, g->Cout_g, 1, w, g->Cin_g, dy, g->HWo, acc ? 1 : 0, dx, g->HWo);
}

/* dbias[co] += sum_{n, oh, ow} dy[n, co, oh, ow] (= when acc is 0); one thread per channel, images in order */
AF_CPU_DISPATCH
static void K(conv2d_bias_backward)(const conv_geom *g, const scalar_t *dy, scalar_t *dbias, int acc) {
    AF_PARALLEL_FOR(g->N * g->Cout * g->HWo)
    for (int64_t co = 0; co < g->Cout; co++) {
        scalar_t sum = 0;
        for (int64_t n = 0; n < g->N; n++) {
            const scalar_t *p = dy + (n * g->Cout + co) * g->HWo;
            for (int64_t i = 0; i < g->HWo; i++) sum += p[i];
        }
        AF_GRAD_STORE(dbias[co], acc, sum);
    }
}

#endif
