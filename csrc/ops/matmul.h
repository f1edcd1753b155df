/* matmul's GEMM dims (one flattened GEMM or one per batch entry, see matmul.c), shared by matmul.c and
 * a CUDA twin: plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_MATMUL_H
#define AF_OPS_MATMUL_H

#include "ops.h"

typedef struct matmul_dims {
    int64_t batch; /* number of separate GEMMs: 1 when b is 2-D */
    int64_t M, K, N;
} matmul_dims;

static inline void matmul_dims_make(const af_tensor *a, const af_tensor *b, matmul_dims *d) {
    d->K = a->shape[a->ndim - 1];
    d->N = b->shape[b->ndim - 1];
    if (b->ndim == 2) {
        d->batch = 1;
        d->M = d->K ? a->numel / d->K : af_shape_numel(a->ndim - 1, a->shape);
    } else {
        d->batch = af_shape_numel(a->ndim - 2, a->shape);
        d->M = a->shape[a->ndim - 2];
    }
}

#endif
