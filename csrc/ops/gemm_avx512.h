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

int af_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* op(B) packed once for all row tiles of a product (same bits as packing per tile): a buffer of
 * af_sgemm_avx512_packed_b_floats(K, N) floats, 64-byte aligned, filled by running
 * af_sgemm_avx512_pack_b_task for every task < af_sgemm_avx512_packed_b_tasks(K, N), in any order
 * and on any threads. af_sgemm_avx512_prepacked then computes a tile of C whose columns start at
 * packed_j0 (a multiple of 48) of the packed op(B), whose width is packed_n; with packed NULL it packs
 * B itself (af_sgemm_avx512). */
int64_t af_sgemm_avx512_packed_b_floats(int64_t K, int64_t N);
int64_t af_sgemm_avx512_packed_b_tasks(int64_t K, int64_t N);
void af_sgemm_avx512_pack_b_task(int tb, const float *B, int64_t ldb, int64_t K, int64_t N, int64_t task,
                                 float *packed);
int af_sgemm_avx512_prepacked(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, const float *packed, int64_t packed_n,
                              int64_t packed_j0, float beta, float *C, int64_t ldc);
#define AF_SGEMM_AVX512_PANEL 48

/* dst[t ldd + r] = src[r ld + t] for t < 16, r < 16: a 16 x 16 block transposed in registers; rows
 * past `rows` and columns outside kmask read as 0 (AVX-512F CPUs only, as af_sgemm_avx512) */
void af_avx512_transpose16(const float *src, int64_t ld, int64_t rows, uint16_t kmask, float *dst, int64_t ldd);

#endif
