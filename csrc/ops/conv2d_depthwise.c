/* conv2d's depthwise case (Cin/G == 1, G > 1: MobileNet/EfficientNet/MobileViT blocks), called by
 * conv2d.c: x (N, Cin, H, W), w (Cout, 1, KH, KW), y (N, Cout, Ho, Wo), output channel co reading
 * input channel co / Cout_g:  y[n, co] = bias[co] + sum_{kh, kw} w[co, 0, kh, kw] x[n, co / Cout_g]
 * shifted by (kh dil_h - pad_h, kw dil_w - pad_w) and strided.
 *
 * Stride 1, the common case, runs on zero-padded planes: with the input plane padded to
 * (H + 2 pad_h) x Wp, Wp = W + 2 pad_w, and the output held Wp wide, every tap is one shift of the
 * flat plane, so each tap is a single long axpy (forward, dx) or dot product (dw) that vectorises,
 * instead of Ho short rows of Wo with their edge ranges (Wo is 7 to 56 in these networks). The
 * padded output columns past Wo are computed and dropped. Each output element still sums bias, then
 * the taps in (kh, kw) order; a padded tap adds w * 0. dw sums in 16 fixed lanes (the same order for
 * every vector width of the CPU dispatch clones) over images in order, then the lanes in order.
 * Other strides keep the row-wise direct kernels. One thread per output plane (forward), input
 * plane (dx) or output channel (dw): results do not depend on the thread count. */
#ifndef AF_FLOAT_PASS
#include <string.h>

#include "../core/alloc.h"
#include "conv2d_depthwise.h"

#define AF_TEMPLATE_FILE "conv2d_depthwise.c"
#include "instantiate_float.h"

#else /* ---- kernels, once per scalar_t ---- */

/* Any stride: one thread per output plane; each (kh, kw) tap is a row-wise axpy over the valid
 * output range. */
AF_CPU_DISPATCH
static void K(dw_forward_strided)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                                        scalar_t *y) {
    const int64_t planes = g->N * g->Cout;
    AF_PARALLEL_FOR(planes * g->HWo * g->KH * g->KW)
    for (int64_t p = 0; p < planes; p++) {
        int64_t n = p / g->Cout, co = p % g->Cout, ci = co / g->Cout_g;
        const scalar_t *xp = x + (n * g->Cin + ci) * g->H * g->W, *wp = w + co * g->KH * g->KW;
        scalar_t *yp = y + p * g->HWo, b = bias ? bias[co] : 0;
        for (int64_t i = 0; i < g->HWo; i++) yp[i] = b;
        for (int64_t kh = 0; kh < g->KH; kh++) {
            int64_t oh_lo, oh_hi;
            valid_range(kh * g->dh - g->ph, g->sh, g->H, g->Ho, &oh_lo, &oh_hi);
            for (int64_t kw = 0; kw < g->KW; kw++) {
                scalar_t wv = wp[kh * g->KW + kw];
                int64_t off_w = kw * g->dw - g->pw, lo, hi;
                valid_range(off_w, g->sw, g->W, g->Wo, &lo, &hi);
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    const scalar_t *xrow = xp + (oh * g->sh - g->ph + kh * g->dh) * g->W + off_w;
                    scalar_t *yrow = yp + oh * g->Wo;
                    if (g->sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) yrow[ow] += wv * xrow[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) yrow[ow] += wv * xrow[ow * g->sw];
                }
            }
        }
    }
}

/* dx (one thread per input plane, over its Cout_g output channels) and dw (one thread per output
 * channel, summing over images in order) += the adjoints of dw_forward_strided */
AF_CPU_DISPATCH
static void K(dw_backward_strided)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                                         scalar_t *dx, scalar_t *dw) {
    const int64_t KK = g->KH * g->KW;
    if (dx) {
        const int64_t planes = g->N * g->Cin;
        AF_PARALLEL_FOR(planes * g->Cout_g * g->HWo * KK)
        for (int64_t p = 0; p < planes; p++) {
            int64_t n = p / g->Cin, ci = p % g->Cin;
            scalar_t *dxp = dx + p * g->H * g->W;
            for (int64_t j = 0; j < g->Cout_g; j++) {
                int64_t co = ci * g->Cout_g + j;
                const scalar_t *dyp = dy + (n * g->Cout + co) * g->HWo, *wp = w + co * KK;
                for (int64_t kh = 0; kh < g->KH; kh++) {
                    int64_t oh_lo, oh_hi;
                    valid_range(kh * g->dh - g->ph, g->sh, g->H, g->Ho, &oh_lo, &oh_hi);
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        scalar_t wv = wp[kh * g->KW + kw];
                        int64_t off_w = kw * g->dw - g->pw, lo, hi;
                        valid_range(off_w, g->sw, g->W, g->Wo, &lo, &hi);
                        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                            scalar_t *dxrow = dxp + (oh * g->sh - g->ph + kh * g->dh) * g->W + off_w;
                            const scalar_t *dyrow = dyp + oh * g->Wo;
                            for (int64_t ow = lo; ow < hi; ow++) dxrow[ow * g->sw] += wv * dyrow[ow];
                        }
                    }
                }
            }
        }
    }
    if (dw) {
        AF_PARALLEL_FOR(g->Cout * g->N * g->HWo * KK)
        for (int64_t co = 0; co < g->Cout; co++) {
            int64_t ci = co / g->Cout_g;
            for (int64_t kh = 0; kh < g->KH; kh++) {
                int64_t oh_lo, oh_hi;
                valid_range(kh * g->dh - g->ph, g->sh, g->H, g->Ho, &oh_lo, &oh_hi);
                for (int64_t kw = 0; kw < g->KW; kw++) {
                    int64_t off_w = kw * g->dw - g->pw, lo, hi;
                    valid_range(off_w, g->sw, g->W, g->Wo, &lo, &hi);
                    scalar_t lt[16] = {0}; /* 16 fixed lanes along each row, as in dw_backward_s1 */
                    for (int64_t n = 0; n < g->N; n++) {
                        const scalar_t *xp = x + (n * g->Cin + ci) * g->H * g->W;
                        const scalar_t *dyp = dy + (n * g->Cout + co) * g->HWo;
                        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                            const scalar_t *xrow = xp + (oh * g->sh - g->ph + kh * g->dh) * g->W + off_w;
                            const scalar_t *dyrow = dyp + oh * g->Wo;
                            int64_t ow = lo;
                            for (; ow + 16 <= hi; ow += 16)
                                for (int l = 0; l < 16; l++) lt[l] += dyrow[ow + l] * xrow[(ow + l) * g->sw];
                            for (int l = 0; ow + l < hi; l++) lt[l] += dyrow[ow + l] * xrow[(ow + l) * g->sw];
                        }
                    }
                    scalar_t acc = 0;
                    for (int l = 0; l < 16; l++) acc += lt[l];
                    dw[co * KK + kh * g->KW + kw] += acc;
                }
            }
        }
    }
}


/* The padded plane of stride 1: Hp x Wp plus a zero tail, so that the last tap's shift stays inside */
static inline int64_t K(dw_padded_size)(const conv_geom *g) {
    return (g->H + 2 * g->ph) * (g->W + 2 * g->pw) + (g->KW - 1) * g->dw + 16;
}

/* dst (Hp, Wp) = src (H, W) with pad_h rows and pad_w columns of zeros around it, and a zero tail */
static void K(dw_pad_plane)(const conv_geom *g, const scalar_t *src, scalar_t *dst) {
    const int64_t Wp = g->W + 2 * g->pw, n = K(dw_padded_size)(g);
    memset(dst, 0, sizeof(scalar_t) * (size_t)n);
    for (int64_t h = 0; h < g->H; h++) memcpy(dst + (h + g->ph) * Wp + g->pw, src + h * g->W, sizeof(scalar_t) * (size_t)g->W);
}

/* dst (Ho, Wp) = src (Ho, Wo), columns past Wo zero */
static void K(dw_widen)(const conv_geom *g, const scalar_t *src, scalar_t *dst) {
    const int64_t Wp = g->W + 2 * g->pw;
    for (int64_t oh = 0; oh < g->Ho; oh++) {
        memcpy(dst + oh * Wp, src + oh * g->Wo, sizeof(scalar_t) * (size_t)g->Wo);
        memset(dst + oh * Wp + g->Wo, 0, sizeof(scalar_t) * (size_t)(Wp - g->Wo));
    }
}

/* stride 1; returns non-zero when a task's scratch could not be allocated (nothing written then by it) */
AF_CPU_DISPATCH
static int K(dw_forward_s1)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                            scalar_t *y) {
    const int64_t planes = g->N * g->Cout, Wp = g->W + 2 * g->pw, L = g->Ho * Wp, KK = g->KH * g->KW;
    const int64_t psize = K(dw_padded_size)(g);
    int failed = 0;
    AF_PARALLEL_FOR(planes * L * KK)
    for (int64_t p = 0; p < planes; p++) {
        const int64_t n = p / g->Cout, co = p % g->Cout, ci = co / g->Cout_g;
        scalar_t *xpad = af_alloc_host(sizeof(scalar_t) * (size_t)(psize + L));
        if (!xpad) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        scalar_t *acc = xpad + psize;
        K(dw_pad_plane)(g, x + (n * g->Cin + ci) * g->H * g->W, xpad);
        const scalar_t b = bias ? bias[co] : 0, *wp = w + co * KK;
        for (int64_t u = 0; u < L; u++) acc[u] = b;
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++) {
                const scalar_t wv = wp[kh * g->KW + kw], *xs = xpad + kh * g->dh * Wp + kw * g->dw;
                for (int64_t u = 0; u < L; u++) acc[u] += wv * xs[u];
            }
        scalar_t *yp = y + p * g->HWo;
        for (int64_t oh = 0; oh < g->Ho; oh++) memcpy(yp + oh * g->Wo, acc + oh * Wp, sizeof(scalar_t) * (size_t)g->Wo);
        af_free_host(xpad);
    }
    return failed;
}

/* stride 1: dx (per input plane) and dw (per output channel) += the adjoints of dw_forward_s1 */
AF_CPU_DISPATCH
static int K(dw_backward_s1)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                             scalar_t *dx, scalar_t *dw) {
    const int64_t Wp = g->W + 2 * g->pw, L = g->Ho * Wp, KK = g->KH * g->KW, psize = K(dw_padded_size)(g);
    int failed = 0;
    if (dx) {
        const int64_t planes = g->N * g->Cin;
        AF_PARALLEL_FOR(planes * g->Cout_g * L * KK)
        for (int64_t p = 0; p < planes; p++) {
            const int64_t n = p / g->Cin, ci = p % g->Cin;
            scalar_t *dxpad = af_alloc_host(sizeof(scalar_t) * (size_t)(psize + L));
            if (!dxpad) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            scalar_t *dyw = dxpad + psize;
            memset(dxpad, 0, sizeof(scalar_t) * (size_t)psize);
            for (int64_t j = 0; j < g->Cout_g; j++) {
                const int64_t co = ci * g->Cout_g + j;
                K(dw_widen)(g, dy + (n * g->Cout + co) * g->HWo, dyw);
                for (int64_t kh = 0; kh < g->KH; kh++)
                    for (int64_t kw = 0; kw < g->KW; kw++) {
                        const scalar_t wv = w[co * KK + kh * g->KW + kw];
                        scalar_t *ds = dxpad + kh * g->dh * Wp + kw * g->dw;
                        for (int64_t u = 0; u < L; u++) ds[u] += wv * dyw[u];
                    }
            }
            scalar_t *dxp = dx + p * g->H * g->W;
            for (int64_t h = 0; h < g->H; h++)
                for (int64_t c = 0; c < g->W; c++) dxp[h * g->W + c] += dxpad[(h + g->ph) * Wp + c + g->pw];
            af_free_host(dxpad);
        }
    }
    if (dw) {
        AF_PARALLEL_FOR(g->Cout * g->N * L * KK)
        for (int64_t co = 0; co < g->Cout; co++) {
            const int64_t ci = co / g->Cout_g;
            scalar_t *xpad = af_alloc_host(sizeof(scalar_t) * (size_t)(psize + L + 16 * KK));
            if (!xpad) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            scalar_t *dyw = xpad + psize, *lane = dyw + L; /* lane[tap][16] */
            memset(lane, 0, sizeof(scalar_t) * (size_t)(16 * KK));
            for (int64_t n = 0; n < g->N; n++) {
                K(dw_pad_plane)(g, x + (n * g->Cin + ci) * g->H * g->W, xpad);
                K(dw_widen)(g, dy + (n * g->Cout + co) * g->HWo, dyw);
                for (int64_t t = 0; t < KK; t++) {
                    const scalar_t *xs = xpad + t / g->KW * g->dh * Wp + t % g->KW * g->dw;
                    scalar_t lt[16]; /* a local copy: the compiler keeps it in registers */
                    memcpy(lt, lane + 16 * t, sizeof lt);
                    int64_t u = 0;
                    for (; u + 16 <= L; u += 16)
                        for (int l = 0; l < 16; l++) lt[l] += dyw[u + l] * xs[u + l];
                    for (int l = 0; u + l < L; l++) lt[l] += dyw[u + l] * xs[u + l];
                    memcpy(lane + 16 * t, lt, sizeof lt);
                }
            }
            for (int64_t t = 0; t < KK; t++) {
                scalar_t acc = 0;
                for (int l = 0; l < 16; l++) acc += lane[16 * t + l];
                dw[co * KK + t] += acc;
            }
            af_free_host(xpad);
        }
    }
    return failed;
}

int K(conv2d_depthwise_forward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                                scalar_t *y) {
    if (g->sh == 1 && g->sw == 1) return K(dw_forward_s1)(g, x, w, bias, y);
    K(dw_forward_strided)(g, x, w, bias, y);
    return 0;
}

int K(conv2d_depthwise_backward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                                 scalar_t *dx, scalar_t *dw) {
    if (g->sh == 1 && g->sw == 1) return K(dw_backward_s1)(g, x, w, dy, dx, dw);
    K(dw_backward_strided)(g, x, w, dy, dx, dw);
    return 0;
}

#endif
