/* The one GEMM of the CPU ops: C = alpha op(A) op(B) + beta C, row-major, bitwise independent of the
 * thread count.
 *
 * Why not hand the whole product to a multithreaded BLAS: OpenBLAS 0.3.21 (Debian's) partitions a
 * GEMM by the number of threads and its edge kernels round differently from its main kernel, so the
 * same sgemm gives different last bits with 1 and 2 threads (measured: M = 268, K = 129, N = 71 and
 * 1024^3). So OpenBLAS runs single-threaded (af_set_num_threads keeps it at 1), C is cut into tiles
 * chosen from the shape alone, each tile is one BLAS call, and our OpenMP threads share the tiles.
 * When C has too few tiles to keep threads busy (a conv's dW of a small filter: K = N Ho Wo is long),
 * K is cut into a shape-determined number of slices whose partial products are summed in slice
 * order - again the same bits for any thread count.
 *
 * Tiles: rows up to 256; columns in near-equal parts of at most 1024, cut further (down to ~128
 * columns) only while the batch has fewer than 16 tiles. Measured on ResNet-50's conv shapes, narrower
 * tiles waste the BLAS packing, wider ones leave a thread idle on 14x14 and 7x7 maps. */
#ifndef AF_FLOAT_PASS
#include <stdlib.h>
#include <string.h>

#include "../core/blas.h"
#include "gemm_avx512.h"
#include "ops.h"

/* float32 tiles go to our AVX-512 kernel (gemm_avx512.c) where the CPU has AVX-512F, to OpenBLAS
 * elsewhere; AFFECTFER_SGEMM=blas forces OpenBLAS (for benchmarks comparing the two). Decided once. */
static int use_avx512(void) {
#if !AF_HAVE_AVX512_SGEMM
    return 0;
#else
    static int cached = -1; /* read by every tile's thread: atomic, and any thread may fill it in */
    int use = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (use < 0) {
        const char *env = getenv("AFFECTFER_SGEMM");
        __builtin_cpu_init();
        use = __builtin_cpu_supports("avx512f") && !(env && strcmp(env, "blas") == 0);
        __atomic_store_n(&cached, use, __ATOMIC_RELAXED);
    }
    return use;
#endif
}

/* granule: tile widths are rounded up to it (16, or 48 for the AVX-512 kernel's micro-panels) */
static void tile_sizes(int64_t count, int64_t M, int64_t N, int64_t granule, int64_t *tm, int64_t *tn) {
    *tm = M < 256 ? (M > 0 ? M : 1) : 256;
    int64_t tiles = count * ((M + *tm - 1) / *tm), want_n = tiles >= 16 ? 1 : (16 + tiles - 1) / tiles;
    if (want_n > N / 128) want_n = N / 128 > 1 ? N / 128 : 1;
    int64_t parts = (N + 1023) / 1024 > want_n ? (N + 1023) / 1024 : want_n;
    int64_t t = (N + parts - 1) / parts;
    t = (t + granule - 1) / granule * granule; /* near-equal parts: a multiple of 64 would leave a thin last tile */
    *tn = t < N ? t : (N > 0 ? N : 1);
}

static inline int64_t batch_offset(const af_gemm_batch *bt, int64_t b, int64_t outer, int64_t inner) {
    return b / bt->inner * outer + b % bt->inner * inner;
}

#define AF_TEMPLATE_FILE "gemm.c"
#include "instantiate_float.h"

#else /* ---- once per scalar_t ---- */

/* One tile of C. packed: op(B) packed whole for the AVX-512 kernel (packed_n wide, this tile's columns
 * from packed_j0 on), or NULL. */
static inline void K(blas)(int ta, int tb, int64_t M, int64_t N, int64_t Kd, scalar_t alpha, const scalar_t *A,
                           int64_t lda, const scalar_t *B, int64_t ldb, const scalar_t *packed, int64_t packed_n,
                           int64_t packed_j0, scalar_t beta, scalar_t *C, int64_t ldc) {
#if AF_FLOAT_PASS == 1 && AF_HAVE_AVX512_SGEMM
    if (use_avx512() && af_sgemm_avx512_prepacked(ta, tb, M, N, Kd, alpha, A, lda, B, ldb, packed, packed_n, packed_j0,
                                                  beta, C, ldc) == 0)
        return;
#else
    (void)packed; /* only the AVX-512 kernel packs ahead */
    (void)packed_n;
    (void)packed_j0;
#endif
#if AF_FLOAT_PASS == 1
    AF_BLAS(cblas_sgemm)(
#else
    AF_BLAS(cblas_dgemm)(
#endif
        CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)Kd, alpha,
        A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* C = beta C: an empty sum (CBLAS would reject a leading dimension of 0) */
static void K(scale_c)(int64_t M, int64_t N, scalar_t beta, scalar_t *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
}

void K(af_gemm_batched)(const af_gemm_batch *bt, int ta, int tb, int64_t M, int64_t N, int64_t Kd, scalar_t alpha,
                        const scalar_t *A, int64_t lda, const scalar_t *B, int64_t ldb, scalar_t beta, scalar_t *C,
                        int64_t ldc) {
    if (M == 0 || N == 0 || bt->count == 0) return;
    if (Kd == 0) {
        for (int64_t b = 0; b < bt->count; b++) K(scale_c)(M, N, beta, C + batch_offset(bt, b, bt->c_outer, bt->c_inner), ldc);
        return;
    }
    int64_t tm, tn;
    const int avx512 = AF_FLOAT_PASS == 1 && use_avx512();
    tile_sizes(bt->count, M, N, avx512 ? AF_SGEMM_AVX512_PANEL : 16, &tm, &tn);
    const int64_t n_tiles = (N + tn - 1) / tn, per = (M + tm - 1) / tm * n_tiles, tiles = bt->count * per;
    /* split K only for a single product with few tiles and a long K */
    int64_t slices = (bt->count > 1 || tiles >= 8) ? 1 : Kd / 1024 < 8 / tiles ? Kd / 1024 : 8 / tiles;
    scalar_t *part = slices > 1 ? af_alloc_host((size_t)(slices * M * N) * sizeof(scalar_t)) : NULL;
    if (!part) slices = 1; /* out of memory for the partials: the unsplit product is just slower */
    const int64_t ks = (Kd + slices - 1) / slices;
    /* op(B) packed once when several row tiles would each pack it again: from 3 tiles, or from 2 when B
     * is transposed (a strided read and 16 x 16 transposes per panel). With 2 tiles of a plain B (a
     * convolution's im2col columns), writing and re-reading the packed copy costs what it saves. */
    scalar_t *packed = NULL;
#if AF_FLOAT_PASS == 1 && AF_HAVE_AVX512_SGEMM
    if (avx512 && bt->count == 1 && slices == 1 && (M > 2 * tm || (tb && M > tm)))
        packed = af_alloc_host((size_t)af_sgemm_avx512_packed_b_floats(Kd, N) * sizeof(scalar_t));
    if (packed) {
        const int64_t tasks = af_sgemm_avx512_packed_b_tasks(Kd, N);
        AF_PARALLEL_FOR(Kd * N)
        for (int64_t t = 0; t < tasks; t++) af_sgemm_avx512_pack_b_task(tb, B, ldb, Kd, N, t, packed);
    }
#endif
    AF_PARALLEL_FOR(tiles * slices > 1 ? bt->count * M * N * Kd : 0)
    for (int64_t t = 0; t < tiles * slices; t++) {
        int64_t sl = t / tiles, b = t % tiles / per, i0 = t % per / n_tiles * tm, j0 = t % n_tiles * tn;
        int64_t mm = M - i0 < tm ? M - i0 : tm, nn = N - j0 < tn ? N - j0 : tn;
        const scalar_t *a = A + batch_offset(bt, b, bt->a_outer, bt->a_inner) + (ta ? i0 : i0 * lda);
        const scalar_t *bb = B + batch_offset(bt, b, bt->b_outer, bt->b_inner) + (tb ? j0 * ldb : j0);
        if (slices == 1) {
            K(blas)(ta, tb, mm, nn, Kd, alpha, a, lda, bb, ldb, packed, N, j0, beta,
                    C + batch_offset(bt, b, bt->c_outer, bt->c_inner) + i0 * ldc + j0, ldc);
        } else {
            int64_t k0 = sl * ks, kk = Kd - k0 < ks ? Kd - k0 : ks;
            if (kk <= 0) continue;
            a += ta ? k0 * lda : k0;
            bb += tb ? k0 : k0 * ldb;
            K(blas)(ta, tb, mm, nn, kk, 1, a, lda, bb, ldb, NULL, 0, 0, 0, part + sl * M * N + i0 * N + j0, N);
        }
    }
    af_free_host(packed);
    if (slices == 1) return;
    const int64_t used = (Kd + ks - 1) / ks; /* slices that received a partial product */
    AF_PARALLEL_FOR(M * N * slices)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            scalar_t acc = 0;
            for (int64_t sl = 0; sl < used; sl++) acc += part[sl * M * N + i * N + j];
            C[i * ldc + j] = alpha * acc + (beta == 0 ? 0 : beta * C[i * ldc + j]);
        }
    af_free_host(part);
}

void K(af_gemm)(int ta, int tb, int64_t M, int64_t N, int64_t Kd, scalar_t alpha, const scalar_t *A, int64_t lda,
                const scalar_t *B, int64_t ldb, scalar_t beta, scalar_t *C, int64_t ldc) {
    const af_gemm_batch single = {1, 1, 0, 0, 0, 0, 0, 0};
    K(af_gemm_batched)(&single, ta, tb, M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc);
}

#endif
