/* batch_norm's input order and its (N, C, S) view of x (S = the product of the spatial dims), shared
 * by batchnorm.c and a CUDA twin: plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_BATCHNORM_H
#define AF_OPS_BATCHNORM_H

#include "ops.h"

enum { BN_X, BN_WEIGHT, BN_BIAS, BN_RUNNING_MEAN, BN_RUNNING_VAR };

static inline void batch_norm_dims(const af_tensor *x, int64_t *N, int64_t *C, int64_t *S) {
    *N = x->shape[0];
    *C = x->shape[1];
    *S = 1;
    for (int d = 2; d < x->ndim; d++) *S *= x->shape[d];
}

#endif
