/* The AVX-512 SGEMM of gemm_avx512.c: one single-threaded row-major product, C = alpha op(A) op(B) +
 * beta C (ta/tb: op is a transpose), M, N, K > 0. Call it only where the CPU has AVX-512F (gemm.c
 * checks at run time). Returns 0, or -1 when its packing buffers could not be allocated (nothing
 * written to C then). */
#ifndef AF_SGEMM_AVX512_H
#define AF_SGEMM_AVX512_H

#include <stdint.h>

/* x86-64 with GCC/Clang (target attributes, __builtin_cpu_supports); elsewhere OpenBLAS only */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define AF_HAVE_AVX512_SGEMM 1
#else
#define AF_HAVE_AVX512_SGEMM 0
#endif

/* rows of C one micro-kernel call computes (the 8 x 48 register block of gemm_avx512.c) */
#define AF_SGEMM_MR 8

/* op(A) packed once for many products that share it (gemm.c: a weight used for every image of a
 * batch), so each tile skips its own packing. rows: ceil(M / MR) MR of the whole packed A; row0: the
 * tile's first row in it (a multiple of MR). The bits of C are the same as with A packed by the tile. */
typedef struct af_sgemm_packed_a {
    const float *data;
    int64_t rows, row0;
} af_sgemm_packed_a;

/* packed: NULL, or op(A) of the tile's rows already packed by af_sgemm_avx512_pack_a */
int af_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, const af_sgemm_packed_a *packed);
/* Floats of a packed op(A) (M x K); af_sgemm_avx512_pack_a writes its MR-row panel p (p < ceil(M / MR)),
 * all of K, so panels can be packed in parallel. */
int64_t af_sgemm_avx512_packed_a_size(int64_t M, int64_t K);
void af_sgemm_avx512_pack_a(int ta, const float *A, int64_t lda, int64_t M, int64_t K, int64_t p, float *dst);

#endif
