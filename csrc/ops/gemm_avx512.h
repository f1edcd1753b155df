/* The AVX-512 SGEMM of gemm_avx512.c: one single-threaded row-major product, C = alpha op(A) op(B) +
 * beta C (ta/tb: op is a transpose), M, N, K > 0. Call it only where the CPU has AVX-512F (gemm.c
 * checks at run time). Returns 0, or -1 when its packing buffers could not be allocated (nothing
 * written to C then). */
#ifndef AF_GEMM_AVX512_H
#define AF_GEMM_AVX512_H

#include <stdint.h>

int af_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif
