/* group_norm's geometry (csrc/ops/group_norm.c), shared with a future group_norm.cu: plain C,
 * nvcc-clean. */
#ifndef AF_OPS_GROUP_NORM_H
#define AF_OPS_GROUP_NORM_H

#include "ops.h"

enum { GN_X, GN_WEIGHT, GN_BIAS }; /* inputs */

/* x as (N, G, Cg, S) */
typedef struct gn_dims {
    int64_t N, G, Cg, S;
} gn_dims;

static inline gn_dims group_norm_dims(const af_op_call *c) {
    const af_tensor *x = c->in[GN_X];
    gn_dims d;
    d.N = x->shape[0];
    d.G = c->attr.i[0];
    d.Cg = x->shape[1] / d.G;
    d.S = 1;
    for (int k = 2; k < x->ndim; k++) d.S *= x->shape[k];
    return d;
}

#endif
