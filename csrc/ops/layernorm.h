/* layer_norm's input order and its (R, M) view of x (M = the product of the k normalised trailing
 * dims), shared by layernorm.c and a CUDA twin: plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_LAYERNORM_H
#define AF_OPS_LAYERNORM_H

#include "ops.h"

enum { LN_X, LN_WEIGHT, LN_BIAS };

static inline void layer_norm_dims(const af_tensor *x, int k, int64_t *R, int64_t *M) {
    *R = *M = 1;
    for (int d = 0; d < x->ndim - k; d++) *R *= x->shape[d];
    for (int d = x->ndim - k; d < x->ndim; d++) *M *= x->shape[d];
}

#endif
