/* A GEMM whose bits do not depend on the thread count.
 *
 * OpenBLAS 0.3.21 (Debian's) partitions a multithreaded GEMM by the number of threads, and its edge
 * kernels round differently from its main kernel, so the same sgemm gives different last bits with
 * 1 and 2 threads (measured here: M = 268, K = 129, N = 71). af_gemm_det_* cuts C into tiles that
 * depend only on (M, N) (and the batch), runs each tile as one single-threaded BLAS call, and spreads
 * the tiles over our OpenMP threads; K is never split. Same arguments as af_gemm_* (row-major,
 * C = alpha op(A) op(B) + beta C), plus `batch` products with element strides sa, sb, sc between
 * them (sb = 0 shares B). In templated kernels, K(af_gemm_det) names the right instance. */
#ifndef AF_GEMM_DET_H
#define AF_GEMM_DET_H

#include <stdint.h>

void af_gemm_det_f32(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta,
                     float *C, int64_t ldc, int64_t sc);
void af_gemm_det_f64(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t K, double alpha,
                     const double *A, int64_t lda, int64_t sa, const double *B, int64_t ldb, int64_t sb, double beta,
                     double *C, int64_t ldc, int64_t sc);

#endif
