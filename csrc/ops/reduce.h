/* The reduction plan of sum, mean, var and std (dims merged into kept and reduced groups, see reduce.c), shared
 * by reduce.c and a CUDA twin: plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_REDUCE_H
#define AF_OPS_REDUCE_H

#include <string.h>

#include "ops.h"

typedef struct reduce_plan {
    int n_kept, n_red; /* groups besides the innermost one */
    int64_t kept_size[AF_MAX_DIMS], kept_stride[AF_MAX_DIMS];
    int64_t red_size[AF_MAX_DIMS], red_stride[AF_MAX_DIMS];
    int64_t inner; /* innermost group: contiguous in x */
    int inner_reduced;
    int64_t n_rows;     /* product of kept_size */
    int64_t n_red_rows; /* product of red_size */
    int64_t R;          /* elements summed into each output */
    int mean;
} reduce_plan;

/* Element offset of flat index idx over groups (size, stride), row-major. */
static inline int64_t group_offset(int64_t idx, int n, const int64_t *size, const int64_t *stride) {
    int64_t off = 0;
    for (int g = n - 1; g >= 0; g--) {
        off += (idx % size[g]) * stride[g];
        idx /= size[g];
    }
    return off;
}

/* Offset of output o's first element; its elements are at that offset plus every red_offset, and
 * plus 0..inner-1 when the innermost group is reduced (var and std walk them this way). */
static inline int64_t out_base(const reduce_plan *p, int64_t o) {
    if (p->inner_reduced) return group_offset(o, p->n_kept, p->kept_size, p->kept_stride);
    return group_offset(o / p->inner, p->n_kept, p->kept_size, p->kept_stride) + o % p->inner;
}

/* Reduced-dim flags from the attributes: none listed = all dims. */
static inline void reduce_flags(const af_op_call *c, int *flags) {
    int nd = c->in[0]->ndim;
    for (int d = 0; d < nd; d++) flags[d] = c->attr.n_i == 1;
    for (int k = 1; k < c->attr.n_i; k++) flags[c->attr.i[k]] = 1;
}

static inline void reduce_plan_make(const af_op_call *c, reduce_plan *p) {
    const af_tensor *x = c->in[0];
    int flags[AF_MAX_DIMS] = {0};
    reduce_flags(c, flags);
    int64_t size[AF_MAX_DIMS], R = 1;
    int red[AF_MAX_DIMS], m = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (flags[d]) R *= x->shape[d];
        if (x->shape[d] == 1) continue;
        if (m > 0 && red[m - 1] == flags[d]) {
            size[m - 1] *= x->shape[d];
        } else {
            size[m] = x->shape[d];
            red[m++] = flags[d];
        }
    }
    if (m == 0) { /* every dim has size 1 (or x is 0-d): one output from one element */
        size[0] = 1;
        red[0] = 1;
        m = 1;
    }
    memset(p, 0, sizeof *p);
    p->inner = size[m - 1];
    p->inner_reduced = red[m - 1];
    p->n_rows = p->n_red_rows = 1;
    int64_t stride = p->inner;
    int64_t strides[AF_MAX_DIMS];
    for (int g = m - 2; g >= 0; g--) {
        strides[g] = stride;
        stride *= size[g];
    }
    for (int g = 0; g < m - 1; g++) {
        if (red[g]) {
            p->red_size[p->n_red] = size[g];
            p->red_stride[p->n_red++] = strides[g];
            p->n_red_rows *= size[g];
        } else {
            p->kept_size[p->n_kept] = size[g];
            p->kept_stride[p->n_kept++] = strides[g];
            p->n_rows *= size[g];
        }
    }
    p->R = R;
    p->mean = c->op == AF_OP_MEAN;
}

#endif
