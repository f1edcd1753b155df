/* SGEMM for CPUs with AVX-512: C = alpha op(A) op(B) + beta C, row-major, one thread.
 *
 * Why our own: the OpenBLAS that Debian ships runs its Haswell (AVX2) kernels on this generation of
 * CPUs when OPENBLAS_CORETYPE pins them, which halves the fp32 peak of a core with 512-bit FMA units.
 * af_gemm (gemm.c) calls this once per shape-determined tile of C, so the tiling and the threads stay
 * where they were; this file only computes one tile, and its reduction order depends only on the
 * tile's shape (K is cut into blocks of AF_SGEMM_KC in order), never on the thread that runs it.
 *
 * The structure is the packed GEMM of Goto and van de Geijn, "Anatomy of high-performance matrix
 * multiplication" (ACM TOMS 34(3), 2008) as refined by BLIS (Van Zee and van de Geijn, ACM TOMS
 * 41(3), 2015): for each block of K, op(A) is packed into MR-row panels (kept in L2), each NR-column
 * micro-panel of op(B) is packed once (kept in L1) and swept by every A panel, and a register-blocked
 * micro-kernel keeps the MR x NR block of C in 24 of the 32 zmm registers: per k it loads two
 * vectors of B, broadcasts MR values of A and issues 2 MR independent FMAs, enough to cover the
 * FMA latency on both pipes. Edges are zero-padded in the packed buffers and stored with masks.
 *
 * The caller checks af_sgemm_avx512_supported() (a run-time CPU test) before calling: every function
 * here is compiled for AVX-512 with a target attribute, so a portable build carries it without
 * -march flags and never executes it on a CPU without AVX-512. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "gemm_avx512.h"

#define AF_SGEMM_MR 12
#define AF_SGEMM_NR 32
/* K block: the packed B micro-panel (KC x NR floats, 32 KiB) and the streamed A panel stay in a
 * 48 KiB L1; measured 256 vs 128/192/384 on ResNet conv shapes. */
#define AF_SGEMM_KC 256

#define AF_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

/* c[MR x NR] (+)= alpha * a_panel[kc x MR]^T b_panel[kc x NR]. first: C = alpha acc + beta C (C not
 * read when beta == 0); otherwise C += alpha acc. Only mr rows and the columns in m0/m1 are stored. */
AF_AVX512 static void kernel_12x32(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int mr,
                                    __mmask16 m0, __mmask16 m1, float alpha, float beta, int first) {
    __m512 acc[AF_SGEMM_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < AF_SGEMM_MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b + k * AF_SGEMM_NR), b1 = _mm512_load_ps(b + k * AF_SGEMM_NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < AF_SGEMM_MR; r++) {
            const __m512 ar = _mm512_set1_ps(a[k * AF_SGEMM_MR + r]);
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < AF_SGEMM_MR; r++) {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        __m512 o0 = _mm512_mul_ps(va, acc[r][0]), o1 = _mm512_mul_ps(va, acc[r][1]);
        if (!first || beta != 0) {
            const __m512 s = first ? vb : _mm512_set1_ps(1.0f);
            o0 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m0, cr), o0);
            o1 = _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m1, cr + 16), o1);
        }
        _mm512_mask_storeu_ps(cr, m0, o0);
        _mm512_mask_storeu_ps(cr + 16, m1, o1);
    }
}

/* op(A) rows [0, M), K columns [k0, k0 + kc) into ceil(M / MR) panels of kc x MR, zero-padded rows */
AF_AVX512 static void pack_a(int ta, const float *A, int64_t lda, int64_t M, int64_t k0, int64_t kc, float *dst) {
    for (int64_t i0 = 0; i0 < M; i0 += AF_SGEMM_MR, dst += kc * AF_SGEMM_MR) {
        const int64_t mr = M - i0 < AF_SGEMM_MR ? M - i0 : AF_SGEMM_MR;
        if (ta) { /* op(A)(i, k) = A[k lda + i]: MR contiguous values per k */
            const __mmask16 m = (__mmask16)((1u << mr) - 1);
            for (int64_t k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(dst + k * AF_SGEMM_MR, 0xFFF,
                                      _mm512_maskz_loadu_ps(m, A + (k0 + k) * lda + i0));
        } else { /* op(A)(i, k) = A[i lda + k] */
            if (mr < AF_SGEMM_MR) memset(dst, 0, (size_t)(kc * AF_SGEMM_MR) * sizeof(float));
            for (int64_t r = 0; r < mr; r++) {
                const float *src = A + (i0 + r) * lda + k0;
                for (int64_t k = 0; k < kc; k++) dst[k * AF_SGEMM_MR + r] = src[k];
            }
        }
    }
}

/* op(B) rows [k0, k0 + kc), columns [j0, j0 + nn) (nn <= NR) into kc x NR, zero-padded columns */
AF_AVX512 static void pack_b(int tb, const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nn,
                             float *dst) {
    if (!tb) { /* op(B)(k, j) = B[k ldb + j]: two (masked) vector copies per k */
        const __mmask16 m0 = (__mmask16)(nn >= 16 ? 0xFFFF : (1u << nn) - 1);
        const __mmask16 m1 = (__mmask16)(nn >= 32 ? 0xFFFF : nn > 16 ? (1u << (nn - 16)) - 1 : 0);
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + (k0 + k) * ldb + j0;
            _mm512_store_ps(dst + k * AF_SGEMM_NR, _mm512_maskz_loadu_ps(m0, src));
            _mm512_store_ps(dst + k * AF_SGEMM_NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
        }
        return;
    }
    /* op(B)(k, j) = B[j ldb + k] */
    if (nn < AF_SGEMM_NR) memset(dst, 0, (size_t)(kc * AF_SGEMM_NR) * sizeof(float));
    for (int64_t j = 0; j < nn; j++) {
        const float *src = B + (j0 + j) * ldb + k0;
        for (int64_t k = 0; k < kc; k++) dst[k * AF_SGEMM_NR + j] = src[k];
    }
}

AF_AVX512 int af_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t panels = (M + AF_SGEMM_MR - 1) / AF_SGEMM_MR, kcmax = K < AF_SGEMM_KC ? K : AF_SGEMM_KC;
    const int64_t asize = (panels * AF_SGEMM_MR * kcmax + 15) / 16 * 16; /* keeps bbuf 64-byte aligned */
    float *abuf = af_alloc_host((size_t)(asize + kcmax * AF_SGEMM_NR) * sizeof(float));
    if (!abuf) return -1;
    float *bbuf = abuf + asize;
    for (int64_t k0 = 0; k0 < K; k0 += AF_SGEMM_KC) {
        const int64_t kc = K - k0 < AF_SGEMM_KC ? K - k0 : AF_SGEMM_KC;
        pack_a(ta, A, lda, M, k0, kc, abuf);
        for (int64_t j0 = 0; j0 < N; j0 += AF_SGEMM_NR) {
            const int64_t nn = N - j0 < AF_SGEMM_NR ? N - j0 : AF_SGEMM_NR;
            const __mmask16 m0 = (__mmask16)(nn >= 16 ? 0xFFFF : (1u << nn) - 1);
            const __mmask16 m1 = (__mmask16)(nn >= 32 ? 0xFFFF : nn > 16 ? (1u << (nn - 16)) - 1 : 0);
            pack_b(tb, B, ldb, k0, kc, j0, nn, bbuf);
            for (int64_t p = 0; p < panels; p++) {
                const int64_t i0 = p * AF_SGEMM_MR, mr = M - i0 < AF_SGEMM_MR ? M - i0 : AF_SGEMM_MR;
                kernel_12x32(kc, abuf + p * AF_SGEMM_MR * kc, bbuf, C + i0 * ldc + j0, ldc, (int)mr, m0, m1, alpha,
                             beta, k0 == 0);
            }
        }
    }
    af_free_host(abuf);
    return 0;
}
