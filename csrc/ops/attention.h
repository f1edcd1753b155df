/* scaled_dot_product_attention's shapes and block plan, shared by attention.c and a CUDA twin: plain
 * C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_ATTENTION_H
#define AF_OPS_ATTENTION_H

#include "ops.h"

/* q (..., Nq, D), k (..., Nk, D), v (..., Nk, Dv): `batch` independent attentions */
typedef struct attention_dims {
    int64_t batch, Nq, Nk, D, Dv;
} attention_dims;

/* Longest query and key blocks: a score block is at most ATTN_BLOCK_Q x ATTN_BLOCK_K in the forward
 * and ATTN_BLOCK_K x ATTN_BLOCK_K in the backward. 256 keys hold ViT-B/16's 197 tokens in one block
 * (no rescaling pass), and a 256 x 256 float block (256 KiB) stays in a core's L2. */
#define ATTN_BLOCK_Q 128
#define ATTN_BLOCK_K 256

static inline void attention_dims_make(const af_tensor *q, const af_tensor *v, int64_t Nk, attention_dims *d) {
    d->Nq = q->shape[q->ndim - 2];
    d->D = q->shape[q->ndim - 1];
    d->Nk = Nk;
    d->Dv = v->shape[v->ndim - 1];
    d->batch = af_shape_numel(q->ndim - 2, q->shape);
}

/* n rows cut into near-equal blocks of at most `most`: how many, and the size of each but the last
 * (near-equal, so 197 tokens are 2 blocks of 99 and 98 rows, not 128 and 69) */
static inline int64_t attention_blocks(int64_t n, int64_t most, int64_t *size) {
    int64_t count = n > 0 ? (n + most - 1) / most : 0;
    *size = count ? (n + count - 1) / count : 0;
    return count ? (n + *size - 1) / *size : 0; /* every block non-empty */
}

/* The CPU forward's kernels for float32 at short lengths, widest last: the blocked GEMM path (every
 * length, every dtype), the AVX2 register kernel, the AVX-512 one (which has a backward too). */
enum { AF_ATTENTION_BLOCKED, AF_ATTENTION_AVX2, AF_ATTENTION_AVX512 };
/* Tests and benchmarks: the widest of them the CPU path may choose (the CPU's own limit still holds),
 * so that a machine with AVX-512 also runs the AVX2 kernel and the blocked path; returns the previous
 * cap. Process-wide. */
int af_attention_cap_kernel(int cap);
/* The widest the CPU path chooses now: the CPU's and the cap's limit. */
int af_attention_kernel(void);

#endif
