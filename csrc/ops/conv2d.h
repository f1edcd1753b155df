/* conv2d's geometry (output size, padding ranges, the depthwise and pointwise special cases), shared
 * by conv2d.c and a CUDA twin: plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_CONV2D_H
#define AF_OPS_CONV2D_H

#include "ops.h"

typedef struct conv_geom {
    int64_t N, Cin, H, W, Cout, KH, KW, Ho, Wo;
    int64_t sh, sw, ph, pw, dh, dw, G;
    int64_t Cin_g, Cout_g, HWo, rows; /* rows = Cin_g KH KW: the GEMM's inner dimension */
} conv_geom;

/* Smallest o >= 0 with o * s >= t (s > 0). */
static inline int64_t first_at_least(int64_t t, int64_t s) {
    return t <= 0 ? 0 : (t + s - 1) / s;
}

/* Output positions o in [*lo, *hi) read input positions i = o s + off inside [0, size). */
static inline void valid_range(int64_t off, int64_t s, int64_t size, int64_t n_out, int64_t *lo, int64_t *hi) {
    int64_t a = first_at_least(-off, s), b = first_at_least(size - off, s);
    *lo = a < n_out ? a : n_out;
    *hi = b < n_out ? b : n_out;
    if (*hi < *lo) *hi = *lo;
}

static inline int conv_is_depthwise(const conv_geom *g) { return g->Cin_g == 1 && g->G > 1; }
static inline int conv_is_pointwise(const conv_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static inline void conv_geom_from_call(const af_op_call *c, conv_geom *g) {
    const af_tensor *x = c->in[0], *w = c->in[1];
    int batched = x->ndim == 4;
    g->N = batched ? x->shape[0] : 1;
    g->Cin = x->shape[batched];
    g->H = x->shape[batched + 1];
    g->W = x->shape[batched + 2];
    g->Cout = w->shape[0];
    g->KH = w->shape[2];
    g->KW = w->shape[3];
    g->sh = c->attr.i[0], g->sw = c->attr.i[1], g->ph = c->attr.i[2], g->pw = c->attr.i[3];
    g->dh = c->attr.i[4], g->dw = c->attr.i[5], g->G = c->attr.i[6];
    g->Ho = (g->H + 2 * g->ph - g->dh * (g->KH - 1) - 1) / g->sh + 1;
    g->Wo = (g->W + 2 * g->pw - g->dw * (g->KW - 1) - 1) / g->sw + 1;
    g->Cin_g = g->Cin / g->G;
    g->Cout_g = g->Cout / g->G;
    g->HWo = g->Ho * g->Wo;
    g->rows = g->Cin_g * g->KH * g->KW;
}

#endif
