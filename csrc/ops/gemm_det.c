/* Thread-count-independent GEMM: see gemm_det.h. */
#ifndef AF_FLOAT_PASS
#include <cblas.h>
#include <string.h>

#include "gemm_det.h"
#include "ops.h"

/* C tile sizes from the shape alone: up to 256 rows; columns a multiple of 64 in [64, 1024] chosen
 * so that one product has about 16 tiles (enough to balance a few threads). */
static void tile_sizes(int64_t M, int64_t N, int64_t *tm, int64_t *tn) {
    *tm = M < 256 ? M : 256;
    int64_t m_tiles = (M + *tm - 1) / *tm, want_n = (16 + m_tiles - 1) / m_tiles;
    int64_t t = (N + want_n - 1) / want_n;
    t = (t + 63) / 64 * 64;
    *tn = t < 64 ? 64 : t > 1024 ? 1024 : t;
}

#define AF_TEMPLATE_FILE "gemm_det.c"
#include "instantiate_float.h"

#else /* ---- once per scalar_t ---- */

void K(af_gemm_det)(int trans_a, int trans_b, int64_t batch, int64_t M, int64_t N, int64_t Kd, scalar_t alpha,
                    const scalar_t *A, int64_t lda, int64_t sa, const scalar_t *B, int64_t ldb, int64_t sb,
                    scalar_t beta, scalar_t *C, int64_t ldc, int64_t sc) {
    if (batch == 0 || M == 0 || N == 0) return;
    if (Kd == 0) { /* an empty sum: C = beta C (CBLAS would reject a leading dimension of 0) */
        for (int64_t b = 0; b < batch; b++)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    scalar_t *c = C + b * sc + i * ldc + j;
                    *c = beta == 0 ? 0 : beta * *c;
                }
        return;
    }
    int64_t tm, tn;
    tile_sizes(M, N, &tm, &tn);
    int64_t n_tiles = (N + tn - 1) / tn, tiles = (M + tm - 1) / tm * n_tiles;
    int saved = openblas_get_num_threads();
    if (saved != 1) openblas_set_num_threads(1);
    AF_PARALLEL_FOR(batch * tiles > 1 ? batch * M * N * Kd : 0)
    for (int64_t t = 0; t < batch * tiles; t++) {
        int64_t b = t / tiles, tile = t % tiles;
        int64_t i0 = tile / n_tiles * tm, j0 = tile % n_tiles * tn;
        int64_t mm = M - i0 < tm ? M - i0 : tm, nn = N - j0 < tn ? N - j0 : tn;
        const scalar_t *a = A + b * sa + (trans_a ? i0 : i0 * lda);
        const scalar_t *bb = B + b * sb + (trans_b ? j0 * ldb : j0);
        AF_GEMM(trans_a, trans_b, mm, nn, Kd, alpha, a, lda, bb, ldb, beta, C + b * sc + i0 * ldc + j0, ldc);
    }
    if (saved != 1) openblas_set_num_threads(saved);
}

#endif
