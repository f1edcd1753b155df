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
 * 41(3), 2015): for each block of K, each NR-column micro-panel of op(B) is packed once (kept in L1)
 * and swept by every 8-row panel of op(A), and a register-blocked micro-kernel keeps the 8 x 48 block
 * of C in 24 of the 32 zmm registers: per k it loads three vectors of B, broadcasts 8 values of A and
 * issues 24 independent FMAs, enough to cover the FMA latency on both pipes. Unlike Goto's scheme,
 * op(A) is not packed: the kernel broadcasts its values where they lie (8 rows of A, or 8 adjacent
 * values of a row of A for A^T), whose lines stay in L1/L2 across the micro-panels. Packing it (a
 * transposing copy per tile and K block) cost more than it saved: without it, 6-15% faster at
 * ResNet's and ViT's shapes on an Emerald Rapids core, the same bits. 8 rows divide every ResNet
 * channel count; a micro-panel with fewer than 48 columns runs a kernel with one or two vectors per
 * row, so a 196- or 49-column product wastes at most 15 columns. B's edges are zero-padded in the
 * packed buffer, C's stored with masks, and A's rows past M read the last row again (not stored).
 *
 * The caller checks af_sgemm_avx512_supported() (a run-time CPU test) before calling: every function
 * here is compiled for AVX-512 with a target attribute, so a portable build carries it without
 * -march flags and never executes it on a CPU without AVX-512. */
#include "gemm_avx512.h"

#if AF_HAVE_AVX512_SGEMM
#include <immintrin.h>
#include <stdint.h>

#include "core/alloc.h"

#define AF_SGEMM_MR 8
#define AF_SGEMM_NV 3 /* vectors of 16 per micro-panel row */
#define AF_SGEMM_NR (16 * AF_SGEMM_NV)
_Static_assert(AF_SGEMM_NR == AF_SGEMM_AVX512_PANEL, "gemm.c cuts C's columns into tiles of whole micro-panels");
/* K block: the packed B micro-panel (KC x NR floats, 48 KiB) stays in L1/L2 while every A panel
 * streams past it; 128, 192, 256 and 384 measured within 3% of each other on ResNet conv shapes. */
#define AF_SGEMM_KC 256

#define AF_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

/* c[MR x 16 nv] (+)= alpha * op(A)[MR x kc] b_panel[kc x NR] (only its first nv vectors), op(A)'s
 * element (r, k) read at ar[r][k ks].
 * first: C = alpha acc + beta C (C not read when beta == 0); otherwise C += alpha acc. Only mr rows
 * and the columns in mask[] are stored. nv is a constant at every call site, so each use compiles to
 * a kernel with 8 nv accumulators in registers. */
AF_AVX512 static inline __attribute__((always_inline)) void kernel_mr(const int nv, int64_t kc,
                                                                      const float *const *ar, int64_t ks,
                                                                      const float *b, float *c, int64_t ldc, int mr,
                                                                      const __mmask16 *mask, float alpha, float beta,
                                                                      int first) {
    __m512 acc[AF_SGEMM_MR][AF_SGEMM_NV];
    /* C's lines are read (or only written) after the kc steps: asked for now, they are in the cache by
     * then instead of stalling the stores (C is often far larger than the L2: a weight gradient) */
    for (int r = 0; r < mr; r++) { /* the lines of the row's first float and of every 64 bytes on; the
                                    * addresses as integers: the last may lie past C's end, where a
                                    * prefetch does nothing (it never faults) */
        const uintptr_t row = (uintptr_t)(c + r * ldc);
        for (int v = 0; v <= nv; v++) __asm__ volatile("prefetchw (%0)" : : "r"(row + 64 * (uintptr_t)v));
    }
#pragma GCC unroll 8
    for (int r = 0; r < AF_SGEMM_MR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 bv[AF_SGEMM_NV];
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) bv[v] = _mm512_load_ps(b + k * AF_SGEMM_NR + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < AF_SGEMM_MR; r++) {
            const __m512 av = _mm512_set1_ps(ar[r][k * ks]);
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vs = _mm512_set1_ps(first ? beta : 1.0f);
    const int read_c = !first || beta != 0;
#pragma GCC unroll 8
    for (int r = 0; r < AF_SGEMM_MR; r++) {
        if (r >= mr) break;
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) {
            float *cv = c + r * ldc + 16 * v;
            __m512 o = _mm512_mul_ps(va, acc[r][v]);
            if (read_c) o = _mm512_fmadd_ps(vs, _mm512_maskz_loadu_ps(mask[v], cv), o);
            _mm512_mask_storeu_ps(cv, mask[v], o);
        }
    }
}

AF_AVX512 static void kernel_nv1(int64_t kc, const float *const *ar, int64_t ks, const float *b, float *c,
                                 int64_t ldc, int mr, const __mmask16 *mask, float alpha, float beta, int first) {
    kernel_mr(1, kc, ar, ks, b, c, ldc, mr, mask, alpha, beta, first);
}
AF_AVX512 static void kernel_nv2(int64_t kc, const float *const *ar, int64_t ks, const float *b, float *c,
                                 int64_t ldc, int mr, const __mmask16 *mask, float alpha, float beta, int first) {
    kernel_mr(2, kc, ar, ks, b, c, ldc, mr, mask, alpha, beta, first);
}
AF_AVX512 static void kernel_nv3(int64_t kc, const float *const *ar, int64_t ks, const float *b, float *c,
                                 int64_t ldc, int mr, const __mmask16 *mask, float alpha, float beta, int first) {
    kernel_mr(3, kc, ar, ks, b, c, ldc, mr, mask, alpha, beta, first);
}

/* out[c][r] = src[r ld + c] for r < rows (zero rows beyond), c in kmask (zero elsewhere): a 16 x 16
 * transpose in registers, so packing a strided operand costs vector loads and shuffles, not 256
 * scalar moves (interleave pairs of rows, then pairs of pairs, then 128-bit lanes). */
AF_AVX512 static inline void transpose16(const float *src, int64_t ld, int64_t rows, __mmask16 kmask, __m512 out[16]) {
    __m512 r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(kmask, src + i * ld) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* r[4i + e], 128-bit lane L: rows 4i..4i+3 of column 4L + e */
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
        const __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        const __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
#pragma GCC unroll 4
    for (int e = 0; e < 4; e++) {
        const __m512 v0 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x44), v1 = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xEE);
        const __m512 w0 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x44);
        const __m512 w1 = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xEE);
        out[e] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        out[4 + e] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        out[8 + e] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        out[12 + e] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}

static inline __mmask16 first_n(int64_t n) { return (__mmask16)(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }

/* op(B) rows [k0, k0 + kc), columns [j0, j0 + nn) (nn <= NR) into kc x NR, zero-padded columns */
AF_AVX512 static void pack_b(int tb, const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nn,
                             float *dst) {
    if (!tb) { /* op(B)(k, j) = B[k ldb + j]: two (masked) vector copies per k */
        const int64_t nv = (nn + 15) / 16; /* the kernel reads only the vectors holding columns */
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + (k0 + k) * ldb + j0;
            for (int64_t v = 0; v < nv; v++)
                _mm512_store_ps(dst + k * AF_SGEMM_NR + 16 * v, _mm512_maskz_loadu_ps(first_n(nn - 16 * v), src + 16 * v));
        }
        return;
    }
    __m512 tr[16]; /* op(B)(k, j) = B[j ldb + k]: 16 x 16 transposes, each vector of NR on its own */
    for (int64_t h = 0; h < AF_SGEMM_NR; h += 16) {
        const int64_t rows = nn - h < 16 ? nn - h : 16;
        if (rows <= 0) break; /* vectors without columns: the kernel does not read them */
        for (int64_t kk = 0; kk < kc; kk += 16) {
            const int64_t kt = kc - kk < 16 ? kc - kk : 16;
            transpose16(B + (j0 + h) * ldb + k0 + kk, ldb, rows, first_n(kt), tr);
            for (int64_t t = 0; t < kt; t++) _mm512_store_ps(dst + (kk + t) * AF_SGEMM_NR + h, tr[t]);
        }
    }
}

/* The micro-panels of a whole op(B) (K x N) packed once, for products whose C has several row tiles
 * (gemm.c): otherwise each tile packs the same panels again, and a transposed B (a linear layer's
 * weight) is read through strided rows each time (7% of a ViT-B/16 training step on a Zen 4). Layout:
 * K blocks in order; in each, the ceil(N / NR) micro-panels in column order, kc x NR each. */
int64_t af_sgemm_avx512_packed_b_floats(int64_t K, int64_t N) {
    return K * ((N + AF_SGEMM_NR - 1) / AF_SGEMM_NR) * AF_SGEMM_NR;
}

/* where the micro-panel of K block k0 and columns j0.. starts in the packed op(B) of width N */
static inline int64_t packed_offset(int64_t K, int64_t N, int64_t k0, int64_t j0) {
    const int64_t per_block = (N + AF_SGEMM_NR - 1) / AF_SGEMM_NR, kc = K - k0 < AF_SGEMM_KC ? K - k0 : AF_SGEMM_KC;
    return k0 * per_block * AF_SGEMM_NR + j0 / AF_SGEMM_NR * kc * AF_SGEMM_NR;
}

int64_t af_sgemm_avx512_packed_b_tasks(int64_t K, int64_t N) {
    return (K + AF_SGEMM_KC - 1) / AF_SGEMM_KC * ((N + AF_SGEMM_NR - 1) / AF_SGEMM_NR);
}

AF_AVX512 void af_sgemm_avx512_pack_b_task(int tb, const float *B, int64_t ldb, int64_t K, int64_t N, int64_t task,
                                           float *packed) {
    const int64_t per_block = (N + AF_SGEMM_NR - 1) / AF_SGEMM_NR;
    const int64_t k0 = task / per_block * AF_SGEMM_KC, j0 = task % per_block * AF_SGEMM_NR;
    const int64_t kc = K - k0 < AF_SGEMM_KC ? K - k0 : AF_SGEMM_KC, nn = N - j0 < AF_SGEMM_NR ? N - j0 : AF_SGEMM_NR;
    pack_b(tb, B, ldb, k0, kc, j0, nn, packed + packed_offset(K, N, k0, j0));
}

AF_AVX512 int af_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return af_sgemm_avx512_prepacked(ta, tb, M, N, K, alpha, A, lda, B, ldb, NULL, 0, 0, beta, C, ldc);
}

AF_AVX512 int af_sgemm_avx512_prepacked(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                                        int64_t lda, const float *B, int64_t ldb, const float *packed,
                                        int64_t packed_n, int64_t packed_j0, float beta, float *C, int64_t ldc) {
    const int64_t panels = (M + AF_SGEMM_MR - 1) / AF_SGEMM_MR, kcmax = K < AF_SGEMM_KC ? K : AF_SGEMM_KC;
    float *bbuf = packed ? NULL : af_alloc_host((size_t)(kcmax * AF_SGEMM_NR) * sizeof(float));
    if (!packed && !bbuf) return -1;
    for (int64_t k0 = 0; k0 < K; k0 += AF_SGEMM_KC) {
        const int64_t kc = K - k0 < AF_SGEMM_KC ? K - k0 : AF_SGEMM_KC;
        for (int64_t j0 = 0; j0 < N; j0 += AF_SGEMM_NR) {
            const int64_t nn = N - j0 < AF_SGEMM_NR ? N - j0 : AF_SGEMM_NR;
            const __mmask16 mask[AF_SGEMM_NV] = {first_n(nn), first_n(nn - 16), first_n(nn - 32)};
            const int64_t nv = (nn + 15) / 16;
            void (*kernel)(int64_t, const float *const *, int64_t, const float *, float *, int64_t, int,
                           const __mmask16 *, float, float, int) = nv == 3   ? kernel_nv3
                                                                   : nv == 2 ? kernel_nv2
                                                                             : kernel_nv1;
            const float *bpanel = packed ? packed + packed_offset(K, packed_n, k0, packed_j0 + j0) : bbuf;
            if (!packed) pack_b(tb, B, ldb, k0, kc, j0, nn, bbuf);
            for (int64_t p = 0; p < panels; p++) {
                const int64_t i0 = p * AF_SGEMM_MR, mr = M - i0 < AF_SGEMM_MR ? M - i0 : AF_SGEMM_MR;
                const float *ar[AF_SGEMM_MR]; /* op(A)'s rows in place; past M, the last again (not stored) */
                for (int r = 0; r < AF_SGEMM_MR; r++) {
                    const int64_t i = i0 + (r < mr ? r : mr - 1);
                    ar[r] = ta ? A + k0 * lda + i : A + i * lda + k0; /* op(A)(i, k): A[k lda + i] or A[i lda + k] */
                }
                const int64_t ks = ta ? lda : 1;
                kernel(kc, ar, ks, bpanel, C + i0 * ldc + j0, ldc, (int)mr, mask, alpha, beta, k0 == 0);
            }
        }
    }
    af_free_host(bbuf);
    return 0;
}

/* transpose16 for other AVX-512 kernels (attention.c's K panel); declared in gemm_avx512.h */
AF_AVX512 void af_avx512_transpose16(const float *src, int64_t ld, int64_t rows, uint16_t kmask, float *dst,
                                     int64_t ldd) {
    __m512 tr[16];
    transpose16(src, ld, rows, (__mmask16)kmask, tr);
    for (int t = 0; t < 16; t++) _mm512_storeu_ps(dst + t * ldd, tr[t]);
}

#endif /* AF_HAVE_AVX512_SGEMM */
