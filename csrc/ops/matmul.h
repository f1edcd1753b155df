/* matmul's batch plan, shared by matmul.c and a CUDA twin: plain C (nvcc compiles it as C++), no
 * OpenMP, no CBLAS.
 *
 * The batch dims of a (..., M, K) and b (..., K, N) broadcast as torch.matmul's do (right-aligned,
 * a size-1 or missing dim stretches). The output's batch dims are cut into "levels": a level is a
 * run of output batch dims through which a and b advance by a constant number of matrices (0 where
 * that operand is broadcast); size-1 output dims are dropped and adjacent dims merged when their
 * strides chain, so (B,H,N,D)@(B,H,D,M) is one level of B*H and (B,1,N,D)@(1,H,D,M) two. */
#ifndef AF_OPS_MATMUL_H
#define AF_OPS_MATMUL_H

#include "ops.h"

typedef struct matmul_dims {
    int64_t M, K, N;
    int64_t batch;            /* output matrices: the product of the levels' sizes */
    int64_t a_batch, b_batch; /* matrices a and b hold */
    int flat;                 /* b is one matrix shared by all of a's: one GEMM of (batch*M, K) @ (K, N) */
    int nlev;                 /* levels, outermost first */
    int64_t size[AF_MAX_DIMS], sa[AF_MAX_DIMS], sb[AF_MAX_DIMS]; /* extent; a's, b's stride in matrices */
} matmul_dims;

/* Broadcast batch shape of a and b into shape[0 .. ndim-2) (ndim = the larger ndim); 0 when the batch
 * dims do not broadcast. */
static inline int matmul_batch_shape(const af_tensor *a, const af_tensor *b, int64_t *shape) {
    int nd = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - (a->ndim - 2)), ib = i - (nd - (b->ndim - 2));
        int64_t ea = ia >= 0 ? a->shape[ia] : 1, eb = ib >= 0 ? b->shape[ib] : 1;
        if (ea != eb && ea != 1 && eb != 1) return 0;
        shape[i] = ea == 1 ? eb : ea;
    }
    return 1;
}

static inline void matmul_dims_make(const af_tensor *a, const af_tensor *b, matmul_dims *d) {
    int64_t shape[AF_MAX_DIMS];
    int nd = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    matmul_batch_shape(a, b, shape);
    d->M = a->shape[a->ndim - 2];
    d->K = a->shape[a->ndim - 1];
    d->N = b->shape[b->ndim - 1];
    d->batch = af_shape_numel(nd, shape);
    d->a_batch = af_shape_numel(a->ndim - 2, a->shape);
    d->b_batch = af_shape_numel(b->ndim - 2, b->shape);
    /* strides in matrices, innermost batch dim first, then merged into levels */
    int64_t size[AF_MAX_DIMS], sa[AF_MAX_DIMS], sb[AF_MAX_DIMS];
    int n = 0;
    int64_t ra = 1, rb = 1; /* running contiguous strides of a and b */
    for (int i = nd - 1; i >= 0; i--) {
        int ia = i - (nd - (a->ndim - 2)), ib = i - (nd - (b->ndim - 2));
        int64_t ea = ia >= 0 ? a->shape[ia] : 1, eb = ib >= 0 ? b->shape[ib] : 1;
        int64_t za = ea == 1 ? 0 : ra, zb = eb == 1 ? 0 : rb;
        ra *= ea;
        rb *= eb;
        if (shape[i] == 1) continue;
        if (n > 0 && za == sa[n - 1] * size[n - 1] && zb == sb[n - 1] * size[n - 1]) {
            size[n - 1] *= shape[i]; /* chains with the level inside it */
            continue;
        }
        size[n] = shape[i];
        sa[n] = za;
        sb[n] = zb;
        n++;
    }
    d->nlev = n;
    for (int l = 0; l < n; l++) { /* outermost first */
        d->size[l] = size[n - 1 - l];
        d->sa[l] = sa[n - 1 - l];
        d->sb[l] = sb[n - 1 - l];
    }
    d->flat = n == 0 || (n == 1 && d->sb[0] == 0 && d->sa[0] == 1);
}

/* Output matrix index -> a's (operand 0) or b's (operand 1) matrix index. */
static inline int64_t matmul_source(const matmul_dims *d, int operand, int64_t idx) {
    int64_t off = 0;
    for (int l = d->nlev - 1; l >= 0; l--) {
        int64_t i = idx % d->size[l];
        idx /= d->size[l];
        off += i * (operand == 0 ? d->sa[l] : d->sb[l]);
    }
    return off;
}

#endif
