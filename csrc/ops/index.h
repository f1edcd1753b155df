/* gather's geometry (csrc/ops/index.c), shared with a future index.cu: plain C, nvcc-clean. */
#ifndef AF_OPS_INDEX_H
#define AF_OPS_INDEX_H

#include "ops.h"

/* gather's layout: index positions grouped into lines (positions that differ only along dim), and
 * input's strides to find each line's input slice. */
typedef struct gather_plan {
    int nd, dim;
    int64_t idx_shape[AF_MAX_DIMS], x_stride[AF_MAX_DIMS];
    int64_t lines, D; /* lines = index positions with dim fixed at 0 */
} gather_plan;

/* Line l's first index position (flat) and the matching input offset with dim at 0. */
static inline void gather_line(const gather_plan *p, int64_t l, int64_t *idx_pos, int64_t *x_off) {
    int64_t pos = 0, off = 0, step = 1;
    for (int d = p->nd - 1; d >= 0; d--) {
        int64_t coord = 0;
        if (d != p->dim) {
            coord = l % p->idx_shape[d];
            l /= p->idx_shape[d];
        }
        pos += coord * step;
        off += coord * p->x_stride[d];
        step *= p->idx_shape[d];
    }
    *idx_pos = pos;
    *x_off = off;
}

static inline gather_plan gather_plan_make(const af_op_call *c) {
    const af_tensor *x = c->in[0], *idx = c->in[1];
    gather_plan p;
    p.nd = idx->ndim;
    p.dim = (int)c->attr.i[0];
    p.lines = p.D = 1;
    for (int d = 0; d < AF_MAX_DIMS; d++) p.idx_shape[d] = p.x_stride[d] = 0; /* a 0-D x reads stride 0 */
    int64_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        p.x_stride[d] = s;
        s *= x->shape[d];
    }
    for (int d = 0; d < idx->ndim; d++) {
        p.idx_shape[d] = idx->shape[d];
        if (d == p.dim) p.D = idx->shape[d];
        else p.lines *= idx->shape[d];
    }
    return p;
}

/* Distance between consecutive index positions along dim. */
static inline int64_t gather_idx_step(const gather_plan *p) {
    int64_t step = 1;
    for (int d = p->nd - 1; d > p->dim; d--) step *= p->idx_shape[d];
    return step;
}

#endif
