/* Geometry of pad (csrc/ops/pad.c), shared with a future pad.cu: plain C, nvcc-clean. */
#ifndef AF_OPS_PAD_H
#define AF_OPS_PAD_H

#include "ops.h"

enum { AF_PAD_CONSTANT = 0, AF_PAD_REFLECT = 1, AF_PAD_REPLICATE = 2 };

/* The input index that output index o (along a dim of input size n padded by `before`) reads, or
 * -1 for a constant-filled position. reflect mirrors about the edge without repeating it
 * (d c b | a b c d | c b a) and needs before, after < n; replicate repeats the edge element. */
static inline int64_t af_pad_source(int64_t o, int64_t before, int64_t n, int mode) {
    int64_t i = o - before;
    if (mode == AF_PAD_CONSTANT) return i >= 0 && i < n ? i : -1;
    if (mode == AF_PAD_REFLECT) {
        if (i < 0) i = -i;
        if (i >= n) i = 2 * (n - 1) - i;
        return i;
    }
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* x as (planes, H, W) -> (planes, OH, OW) */
typedef struct pad_plan {
    int64_t planes, H, W, OH, OW, top, left;
    int mode;
} pad_plan;

static inline pad_plan pad_plan_make(const af_op_call *c) {
    const af_tensor *x = c->in[0];
    pad_plan p;
    p.planes = 1;
    for (int d = 0; d < x->ndim - 2; d++) p.planes *= x->shape[d];
    p.H = x->shape[x->ndim - 2];
    p.W = x->shape[x->ndim - 1];
    p.mode = (int)c->attr.i[0];
    p.left = c->attr.i[1];
    p.top = c->attr.i[3];
    p.OH = p.H + c->attr.i[3] + c->attr.i[4];
    p.OW = p.W + c->attr.i[1] + c->attr.i[2];
    return p;
}

#endif
