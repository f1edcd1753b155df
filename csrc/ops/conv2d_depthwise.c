/* conv2d's depthwise case (Cin/G == 1, G > 1: MobileNet/EfficientNet/MobileViT blocks), called by
 * conv2d.c: x (N, Cin, H, W), w (Cout, 1, KH, KW), y (N, Cout, Ho, Wo), output channel co reading
 * input channel co / Cout_g:  y[n, co] = bias[co] + sum_{kh, kw} w[co, 0, kh, kw] x[n, co / Cout_g]
 * shifted by (kh dil_h - pad_h, kw dil_w - pad_w) and strided.
 *
 * Every stride runs on "phase planes": the input plane zero-padded to Hp x Wp (Hp = H + 2 pad_h,
 * Wp = W + 2 pad_w) and split into sh x sw planes of Hq x Wq = ceil(Hp / sh) x ceil(Wp / sw), phase
 * (a, b) holding the padded pixels (sh i + a, sw j + b) at (i, j); stride 1 has one phase, the padded
 * plane. A tap (kh, kw) of a strided output then reads one phase plane, ((kh dh) % sh, (kw dw) % sw),
 * shifted by (kh dh / sh, kw dw / sw), at the output's own position: with the output held Wq wide,
 * each tap is one shift of a flat plane, for every stride. So a block of 64 (then 16) consecutive
 * outputs sums all its taps in registers, instead of Ho short rows of Wo (Wo is 4 to 56 in these
 * networks) with their edge ranges; the padded columns past Wo are computed and dropped. The shifted
 * reads of a valid output never wrap into the next row: Wo + (KW - 1) dw / sw <= Wq.
 *
 * dx is the same gather run backwards: each phase plane of the padded dx sums, per output position,
 * the taps of its phase over dy held Wq wide with zeros before it (dx's reads reach back by the
 * largest shift), then the phase planes are added into dx. dw is one dot product per tap of dy
 * (held Wq wide, zero past Wo) with the shifted phase plane.
 *
 * Summation orders (the same for every thread count and every vector width of the CPU dispatch
 * clones): y sums bias, then the taps in (kh, kw) order; dx sums, over the output channels of its
 * input channel in order, the taps in (kh, kw) order; dw sums in 16 fixed lanes over images in order,
 * then the lanes in order. One thread per output plane (forward), input plane (dx) or output channel
 * (dw), each with its own scratch, allocated once per thread. */
#ifndef AF_FLOAT_PASS
#include <string.h>

#include "../core/alloc.h"
#include "conv2d_depthwise.h"

/* a parallel region (one scratch allocation per thread) around an omp for */
#ifdef _OPENMP
#define DW_PARALLEL(work) AF_PRAGMA(omp parallel if ((work) > 32768))
#define DW_FOR AF_PRAGMA(omp for schedule(static))
#else
#define DW_PARALLEL(work)
#define DW_FOR
#endif

/* The phase-plane geometry of one call; sizes in elements. */
typedef struct dw_plan {
    int64_t Hq, Wq, phases; /* phase plane size and count (sh sw) */
    int64_t Sq;             /* phase plane stride: room for the shifted reads of the last block, a multiple of 16 */
    int64_t Lo, Lq;         /* Ho Wq: the output held Wq wide; Hq Wq: one phase plane */
    int64_t front;          /* the largest in-phase shift: dx's zeros before dy */
    int64_t dyw;            /* dy held Wq wide with front zeros and a zero tail */
    int64_t KK;
} dw_plan;

static void dw_plan_make(const conv_geom *g, dw_plan *p) {
    const int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw;
    p->Hq = (Hp + g->sh - 1) / g->sh;
    p->Wq = (Wp + g->sw - 1) / g->sw;
    p->phases = g->sh * g->sw;
    p->Lo = g->Ho * p->Wq;
    p->Lq = p->Hq * p->Wq;
    p->Sq = (p->Lq + p->Wq + 64 + 15) / 16 * 16;
    p->front = (g->KH - 1) * g->dh / g->sh * p->Wq + (g->KW - 1) * g->dw / g->sw;
    p->dyw = (p->front + p->Lq + 16 + 15) / 16 * 16;
    p->KK = g->KH * g->KW;
}

/* tap t = kh KW + kw: shift[t] its in-phase shift, at[t] its phase plane's offset plus that shift */
static void dw_taps(const conv_geom *g, const dw_plan *p, int64_t *shift, int64_t *at) {
    for (int64_t kh = 0; kh < g->KH; kh++)
        for (int64_t kw = 0; kw < g->KW; kw++) {
            const int64_t t = kh * g->KW + kw, r = kh * g->dh, c = kw * g->dw;
            shift[t] = r / g->sh * p->Wq + c / g->sw;
            at[t] = (r % g->sh * g->sw + c % g->sw) * p->Sq + shift[t];
        }
}

#define AF_TEMPLATE_FILE "conv2d_depthwise.c"
#include "instantiate_float.h"

#undef DW_PARALLEL
#undef DW_FOR

#else /* ---- kernels, once per scalar_t ---- */

/* P (phases x Sq) = the phase planes of the input plane x (H, W), zeros elsewhere */
static void K(dw_phases)(const conv_geom *g, const dw_plan *p, const scalar_t *x, scalar_t *P) {
    memset(P, 0, sizeof(scalar_t) * (size_t)(p->phases * p->Sq));
    for (int64_t h = 0; h < g->H; h++) {
        const int64_t r = h + g->ph;
        const scalar_t *xr = x + h * g->W;
        if (g->sw == 1) {
            scalar_t *dst = P + r % g->sh * p->Sq + r / g->sh * p->Wq + g->pw;
            for (int64_t w = 0; w < g->W; w++) dst[w] = xr[w];
            continue;
        }
        if (g->sw == 2) { /* even and odd columns in one loop (an interleaved pair of loads that vectorises) */
            const int64_t bh = r % g->sh * 2, row = r / g->sh * p->Wq;
            scalar_t *de = P + (bh + g->pw % 2) * p->Sq + row + g->pw / 2;
            scalar_t *dd = P + (bh + (g->pw + 1) % 2) * p->Sq + row + (g->pw + 1) / 2;
            int64_t k = 0;
            for (; 2 * k + 1 < g->W; k++) {
                de[k] = xr[2 * k];
                dd[k] = xr[2 * k + 1];
            }
            if (2 * k < g->W) de[k] = xr[2 * k];
            continue;
        }
        for (int64_t b = 0; b < g->sw; b++) {
            const int64_t w0 = ((b - g->pw) % g->sw + g->sw) % g->sw; /* first w with (w + pw) % sw == b */
            scalar_t *dst = P + (r % g->sh * g->sw + b) * p->Sq + r / g->sh * p->Wq + (w0 + g->pw) / g->sw;
            for (int64_t w = w0, k = 0; w < g->W; w += g->sw, k++) dst[k] = xr[w];
        }
    }
}

/* dx (H, W) += the phase planes dP, read back as dw_phases wrote them */
static void K(dw_unphase_add)(const conv_geom *g, const dw_plan *p, const scalar_t *dP, scalar_t *dx) {
    for (int64_t h = 0; h < g->H; h++) {
        const int64_t r = h + g->ph;
        scalar_t *dr = dx + h * g->W;
        if (g->sw == 1) {
            const scalar_t *src = dP + r % g->sh * p->Sq + r / g->sh * p->Wq + g->pw;
            for (int64_t w = 0; w < g->W; w++) dr[w] += src[w];
            continue;
        }
        if (g->sw == 2) {
            const int64_t bh = r % g->sh * 2, row = r / g->sh * p->Wq;
            const scalar_t *se = dP + (bh + g->pw % 2) * p->Sq + row + g->pw / 2;
            const scalar_t *sd = dP + (bh + (g->pw + 1) % 2) * p->Sq + row + (g->pw + 1) / 2;
            int64_t k = 0;
            for (; 2 * k + 1 < g->W; k++) {
                dr[2 * k] += se[k];
                dr[2 * k + 1] += sd[k];
            }
            if (2 * k < g->W) dr[2 * k] += se[k];
            continue;
        }
        for (int64_t b = 0; b < g->sw; b++) {
            const int64_t w0 = ((b - g->pw) % g->sw + g->sw) % g->sw;
            const scalar_t *src = dP + (r % g->sh * g->sw + b) * p->Sq + r / g->sh * p->Wq + (w0 + g->pw) / g->sw;
            for (int64_t w = w0, k = 0; w < g->W; w += g->sw, k++) dr[w] += src[k];
        }
    }
}

/* dyw (p->dyw) = front zeros, the dy plane (Ho, Wo) held Wq wide with zeros past Wo, zeros after */
static void K(dw_widen)(const conv_geom *g, const dw_plan *p, const scalar_t *dy, scalar_t *dyw) {
    memset(dyw, 0, sizeof(scalar_t) * (size_t)p->dyw);
    scalar_t *d = dyw + p->front;
    for (int64_t oh = 0; oh < g->Ho; oh++)
        for (int64_t ow = 0; ow < g->Wo; ow++) d[oh * p->Wq + ow] = dy[oh * g->Wo + ow];
}

/* A block is NV vectors of DW_VEC_BYTES (GCC/Clang vector extensions), written with explicit vectors
 * because, with a plain loop over the block, GCC vectorises the tap loop instead, with gathers. The
 * vectors are as wide as the registers the build is sure of: with 64-byte vectors and no AVX-512,
 * GCC keeps them in memory and moves them through the stack in pieces (5x slower on an AVX2 Zen 3).
 * A portable build's AVX-512 clone therefore runs 32-byte vectors too. Each output's taps are summed
 * in the same order whatever the width: the same bits. */
#ifdef __AVX512F__
#define DW_VEC_BYTES 64
#else
#define DW_VEC_BYTES 32
#endif
typedef scalar_t K(dw_vec) __attribute__((vector_size(DW_VEC_BYTES)));
#define DW_VL ((int64_t)(DW_VEC_BYTES / sizeof(scalar_t)))

/* v = the vector at src (unaligned); a macro, since a function returning a wide vector changes the
 * ABI in the clones built without the registers for it */
#define DW_LOAD(v, src) memcpy(&(v), (src), sizeof(v))

/* acc[v] += wt * src[v DW_VL ..] for the NV vectors of a block: one tap */
#define DW_ADD_TAP(NV, acc, wt, src)                                                    \
    do {                                                                                \
        const K(dw_vec) wv = (K(dw_vec)){0} + (wt);                                     \
        for (int v = 0; v < NV; v++) {                                                  \
            K(dw_vec) xv;                                                               \
            DW_LOAD(xv, (src) + v * DW_VL);                                             \
            acc[v] += wv * xv;                                                          \
        }                                                                               \
    } while (0)

/* out[u ..] = b + sum_t w[t] P[at[t] + u ..] over blocks of NV vectors while u < LIMIT */
#define DW_FORWARD_BLOCKS(NV, LIMIT)                                                    \
    for (; u < (LIMIT); u += NV * DW_VL) {                                              \
        K(dw_vec) acc[NV];                                                              \
        for (int v = 0; v < NV; v++) acc[v] = (K(dw_vec)){0} + b;                       \
        for (int64_t t = 0; t < p->KK; t++) DW_ADD_TAP(NV, acc, wp[t], P + at[t] + u);  \
        memcpy(out + u, acc, sizeof acc);                                               \
    }

/* returns non-zero when a thread's scratch could not be allocated (nothing written by it then) */
AF_CPU_DISPATCH
static int K(dw_forward)(const conv_geom *g, const dw_plan *p, const int64_t *at, const scalar_t *x,
                         const scalar_t *w, const scalar_t *bias, scalar_t *y) {
    const int64_t planes = g->N * g->Cout;
    int failed = 0;
    DW_PARALLEL(planes * p->Lo * p->KK) {
        scalar_t *P = af_alloc_host(sizeof(scalar_t) * (size_t)(p->phases * p->Sq + p->Lo + 16));
        if (!P) {
#pragma omp atomic write
            failed = 1;
        }
        DW_FOR
        for (int64_t q = 0; q < planes; q++) {
            if (!P) continue;
            const int64_t n = q / g->Cout, co = q % g->Cout, ci = co / g->Cout_g;
            scalar_t *out = P + p->phases * p->Sq;
            K(dw_phases)(g, p, x + (n * g->Cin + ci) * g->H * g->W, P);
            const scalar_t b = bias ? bias[co] : 0, *wp = w + co * p->KK;
            int64_t u = 0;
            DW_FORWARD_BLOCKS(4, p->Lo - 4 * DW_VL + 1)
            DW_FORWARD_BLOCKS(1, p->Lo)
            scalar_t *yp = y + q * g->HWo;
            for (int64_t oh = 0; oh < g->Ho; oh++)
                for (int64_t ow = 0; ow < g->Wo; ow++) yp[oh * g->Wo + ow] = out[oh * p->Wq + ow];
        }
        af_free_host(P);
    }
    return failed;
}

/* dst[u ..] = (j ? dst : 0) + sum over the taps of phase ph of w[t] d[u - shift[t] ..], blocks of NV
 * vectors while u < LIMIT */
#define DW_DX_BLOCKS(NV, LIMIT, dst)                                                    \
    for (; u < (LIMIT); u += NV * DW_VL) {                                              \
        K(dw_vec) acc[NV];                                                              \
        for (int v = 0; v < NV; v++) {                                                  \
            acc[v] = (K(dw_vec)){0};                                                    \
            if (j) DW_LOAD(acc[v], dst + u + v * DW_VL);                                \
        }                                                                               \
        for (int64_t t = 0; t < p->KK; t++)                                             \
            if (tap_phase[t] == ph) DW_ADD_TAP(NV, acc, wp[t], d + u - shift[t]);        \
        memcpy(dst + u, acc, sizeof acc);                                               \
    }

/* dx (one thread per input plane, over its Cout_g output channels) and dw (one thread per output
 * channel, over the images in order) += the adjoints of dw_forward */
AF_CPU_DISPATCH
static int K(dw_backward)(const conv_geom *g, const dw_plan *p, const int64_t *shift, const int64_t *at,
                          const int64_t *tap_phase, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                          scalar_t *dx, scalar_t *dw) {
    int failed = 0;
    if (dx) {
        const int64_t planes = g->N * g->Cin;
        DW_PARALLEL(planes * g->Cout_g * p->Lq * p->KK) {
            scalar_t *dP = af_alloc_host(sizeof(scalar_t) * (size_t)(p->phases * p->Sq + p->dyw));
            if (!dP) {
#pragma omp atomic write
                failed = 1;
            }
            DW_FOR
            for (int64_t q = 0; q < planes; q++) {
                if (!dP) continue;
                const int64_t n = q / g->Cin, ci = q % g->Cin;
                scalar_t *dyw = dP + p->phases * p->Sq;
                const scalar_t *d = dyw + p->front;
                for (int64_t j = 0; j < g->Cout_g; j++) {
                    const int64_t co = ci * g->Cout_g + j;
                    const scalar_t *wp = w + co * p->KK;
                    K(dw_widen)(g, p, dy + (n * g->Cout + co) * g->HWo, dyw);
                    for (int64_t ph = 0; ph < p->phases; ph++) {
                        scalar_t *dPh = dP + ph * p->Sq;
                        int64_t u = 0;
                        DW_DX_BLOCKS(4, p->Lq - 4 * DW_VL + 1, dPh)
                        DW_DX_BLOCKS(1, p->Lq, dPh)
                    }
                }
                K(dw_unphase_add)(g, p, dP, dx + q * g->H * g->W);
            }
            af_free_host(dP);
        }
    }
    if (dw) {
        const int64_t Lr = (p->Lo + 15) / 16 * 16; /* dyw is zero from Lo to Lr */
        DW_PARALLEL(g->Cout * g->N * p->Lo * p->KK) {
            scalar_t *P = af_alloc_host(sizeof(scalar_t) * (size_t)(p->phases * p->Sq + p->dyw + 16 * p->KK));
            if (!P) {
#pragma omp atomic write
                failed = 1;
            }
            DW_FOR
            for (int64_t co = 0; co < g->Cout; co++) {
                if (!P) continue;
                const int64_t ci = co / g->Cout_g;
                scalar_t *dyw = P + p->phases * p->Sq, *lane = dyw + p->dyw; /* lane[tap][16] */
                const scalar_t *d = dyw + p->front;
                memset(lane, 0, sizeof(scalar_t) * (size_t)(16 * p->KK));
                for (int64_t n = 0; n < g->N; n++) {
                    K(dw_phases)(g, p, x + (n * g->Cin + ci) * g->H * g->W, P);
                    K(dw_widen)(g, p, dy + (n * g->Cout + co) * g->HWo, dyw);
                    for (int64_t t = 0; t < p->KK; t++) {
                        const scalar_t *xs = P + at[t];
                        scalar_t lt[16]; /* a local copy: the compiler keeps it in registers */
                        memcpy(lt, lane + 16 * t, sizeof lt);
                        for (int64_t u = 0; u < Lr; u += 16)
                            for (int l = 0; l < 16; l++) lt[l] += d[u + l] * xs[u + l];
                        memcpy(lane + 16 * t, lt, sizeof lt);
                    }
                }
                for (int64_t t = 0; t < p->KK; t++) {
                    scalar_t acc = 0;
                    for (int l = 0; l < 16; l++) acc += lane[16 * t + l];
                    dw[co * p->KK + t] += acc;
                }
            }
            af_free_host(P);
        }
    }
    return failed;
}

#undef DW_FORWARD_BLOCKS
#undef DW_DX_BLOCKS
#undef DW_LOAD
#undef DW_VL
#undef DW_VEC_BYTES

/* The tap tables of a call: shift, at and phase per tap, in one allocation */
static int64_t *K(dw_tables)(const conv_geom *g, const dw_plan *p) {
    int64_t *tab = af_alloc_host(sizeof(int64_t) * (size_t)(3 * p->KK));
    if (!tab) return NULL;
    dw_taps(g, p, tab, tab + p->KK);
    for (int64_t t = 0; t < p->KK; t++) tab[2 * p->KK + t] = (tab[p->KK + t] - tab[t]) / p->Sq;
    return tab;
}

int K(conv2d_depthwise_forward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                                scalar_t *y) {
    dw_plan p;
    dw_plan_make(g, &p);
    int64_t *tab = K(dw_tables)(g, &p);
    if (!tab) return 1;
    int failed = K(dw_forward)(g, &p, tab + p.KK, x, w, bias, y);
    af_free_host(tab);
    return failed;
}

int K(conv2d_depthwise_backward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *dy,
                                 scalar_t *dx, scalar_t *dw) {
    dw_plan p;
    dw_plan_make(g, &p);
    int64_t *tab = K(dw_tables)(g, &p);
    if (!tab) return 1;
    int failed = K(dw_backward)(g, &p, tab, tab + p.KK, tab + 2 * p.KK, x, w, dy, dx, dw);
    af_free_host(tab);
    return failed;
}

#endif
