/* The broadcast plans of the binary elementwise ops and of where, shared by elementwise.c and a CUDA twin:
 * plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_ELEMENTWISE_H
#define AF_OPS_ELEMENTWISE_H

#include "ops.h"

/* Right-aligned broadcast of a and b into 5 dims; stride 0 on stretched dims. */
typedef struct broadcast {
    int64_t shape[AF_MAX_DIMS];
    int64_t stride_a[AF_MAX_DIMS], stride_b[AF_MAX_DIMS];
    int same; /* a, b and out all have the same shape: a flat loop will do */
} broadcast;

static inline void padded_strides(const af_tensor *t, const int64_t *out_shape, int64_t *stride) {
    int64_t padded[AF_MAX_DIMS];
    int lead = AF_MAX_DIMS - t->ndim;
    for (int d = 0; d < AF_MAX_DIMS; d++) padded[d] = d < lead ? 1 : t->shape[d - lead];
    int64_t s = 1;
    for (int d = AF_MAX_DIMS - 1; d >= 0; d--) {
        stride[d] = (padded[d] == 1 && out_shape[d] != 1) ? 0 : s;
        s *= padded[d];
    }
}

static inline void broadcast_make(const af_tensor *a, const af_tensor *b, broadcast *bc) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int d = 0; d < AF_MAX_DIMS; d++) {
        int k = d - (AF_MAX_DIMS - nd);
        int64_t da = (k >= nd - a->ndim && k >= 0) ? a->shape[k - (nd - a->ndim)] : 1;
        int64_t db = (k >= nd - b->ndim && k >= 0) ? b->shape[k - (nd - b->ndim)] : 1;
        bc->shape[d] = da == 1 ? db : da;
    }
    padded_strides(a, bc->shape, bc->stride_a);
    padded_strides(b, bc->shape, bc->stride_b);
    bc->same = af_tensor_same_shape(a, b);
}

/* where's three operands right-aligned into 5 dims, stride 0 on stretched dims */
typedef struct where_plan {
    int64_t shape[AF_MAX_DIMS];
    int64_t stride[3][AF_MAX_DIMS]; /* condition, input, other */
} where_plan;

/* from the inputs and the output setup allocated with their broadcast shape */
static inline void where_plan_make(const af_op_call *c, where_plan *p) {
    int nd = c->out[0]->ndim;
    for (int d = 0; d < AF_MAX_DIMS; d++) {
        int k = d - (AF_MAX_DIMS - nd);
        p->shape[d] = k >= 0 ? c->out[0]->shape[k] : 1;
    }
    for (int i = 0; i < 3; i++) padded_strides(c->in[i], p->shape, p->stride[i]);
}

#endif
