/* softmax's (outer, D, inner) view of x around the softmax dim, shared by softmax.c and a CUDA twin:
 * plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_SOFTMAX_H
#define AF_OPS_SOFTMAX_H

#include "ops.h"

static inline void softmax_dims(const af_tensor *x, int dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = *inner = 1;
    *D = x->ndim ? x->shape[dim] : 1;
    for (int d = 0; d < dim; d++) *outer *= x->shape[d];
    for (int d = dim + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

#endif
