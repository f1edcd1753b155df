/* The pooling geometry (output size, windows), shared by pool.c and a CUDA twin: plain C (nvcc
 * compiles it as C++), no OpenMP, no CBLAS. The *_fill functions read attributes that setup has
 * already checked (pool.c), so kernels call them without re-checking. */
#ifndef AF_OPS_POOL_H
#define AF_OPS_POOL_H

#include "ops.h"

typedef struct pool_geom {
    int64_t planes, H, W, Ho, Wo;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int count_include_pad;
    int64_t divisor_override;
} pool_geom;

/* torch's pooling_output_shape (see pool.c's header comment) */
static inline int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int ceil_mode) {
    int64_t span = in + 2 * p - d * (k - 1) - 1;
    int64_t out = (span + (ceil_mode ? s - 1 : 0));
    out = (out >= 0 ? out / s : -((-out + s - 1) / s)) + 1; /* floor division, as torch's div_rtn */
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

/* g from x's shape and a window of kernel k, stride s, padding p, dilation d (each (h, w)) */
static inline void pool_geom_window(const af_tensor *x, const int64_t *k, const int64_t *s, const int64_t *p,
                                    const int64_t *d, int ceil_mode, pool_geom *g) {
    g->planes = x->ndim == 4 ? x->shape[0] * x->shape[1] : x->shape[0];
    g->H = x->shape[x->ndim - 2];
    g->W = x->shape[x->ndim - 1];
    g->kh = k[0], g->kw = k[1], g->sh = s[0], g->sw = s[1], g->ph = p[0], g->pw = p[1], g->dh = d[0], g->dw = d[1];
    g->Ho = pool_out_size(g->H, g->kh, g->sh, g->ph, g->dh, ceil_mode);
    g->Wo = pool_out_size(g->W, g->kw, g->sw, g->pw, g->dw, ceil_mode);
}

/* max_pool2d ints = (kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode) */
static inline void max_pool2d_geom_fill(const af_op_call *c, pool_geom *g) {
    const int64_t *a = c->attr.i;
    pool_geom_window(c->in[0], a, a + 2, a + 4, a + 6, (int)a[8], g);
}

/* avg_pool2d ints = (kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, divisor_override) */
static inline void avg_pool2d_geom_fill(const af_op_call *c, pool_geom *g) {
    const int64_t *a = c->attr.i;
    static const int64_t one[2] = {1, 1}; /* no dilation */
    pool_geom_window(c->in[0], a, a + 2, a + 4, one, (int)a[6], g);
    g->count_include_pad = (int)a[7];
    g->divisor_override = a[8];
}

/* adaptive_avg_pool2d ints = (Ho, Wo) */
static inline void adaptive_avg_pool2d_geom_fill(const af_op_call *c, pool_geom *g) {
    const af_tensor *x = c->in[0];
    g->planes = x->ndim == 4 ? x->shape[0] * x->shape[1] : x->shape[0];
    g->H = x->shape[x->ndim - 2];
    g->W = x->shape[x->ndim - 1];
    g->Ho = c->attr.i[0];
    g->Wo = c->attr.i[1];
}

#endif
