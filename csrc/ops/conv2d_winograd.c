/* conv2d's Winograd case, called by conv2d.c for the shapes conv_use_winograd() accepts (3x3, stride 1,
 * no dilation, groups 1, padding <= 2, at least CONV_WINOGRAD_MIN_CHANNELS channels on both sides:
 * every 3x3 layer of a ResNet body but the strided ones).
 *
 * F(2x2, 3x3) of Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016),
 * section 4.1: each 2x2 block of outputs is Y = A^T [(G g G^T) . (B^T d B)] A for the 4x4 input patch d
 * under it and the 3x3 filter g, with
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *     A^T = [1 1 1 0; 0 1 -1 -1].
 * Summed over input channels, the 16 element-wise products become 16 GEMMs, one per position e of the
 * 4x4 transformed tile: M[e] (P, tiles) = U[e] (P, Q) @ V[e] (Q, tiles). That is 16 multiplications
 * per 4 outputs and input channel instead of 36: 2.25x fewer on even-sized maps (1.72x on 7x7, whose
 * tiles cover 8x8).
 *
 * The backward uses the same machinery. dx is the stride-1 convolution of dy with the flipped,
 * transposed filter w[co, ci, 2 - kh, 2 - kw] and padding 2 - pad, so it runs through the forward
 * code. dw is the adjoint of the forward with respect to g: per tile, dU[e] += (A dY A^T)[e] V[e]
 * summed over tiles and images by 16 GEMMs (dY's 2x2 block, zero past the map's edge), then
 * dw += G^T dU G.
 *
 * Numerics: the transforms add and subtract neighbouring pixels (and halve filter taps) before the
 * products, so the rounding differs from the direct sum. An output's error is bounded by a few
 * epsilon times sum over its 4x4 patch and channels of |x| |w| rather than the direct sum's
 * |x w| terms of its 3x3 window only. On unit-scale data in float32, y and dx agree with the float64
 * direct sum within 1e-4 absolute + 1e-4 relative, and dw (a sum over N Ho Wo products) within 1e-4
 * relative + 1e-6 of its largest entry (pinned by tests/ops/test_conv2d.py). Pixels of very different
 * magnitude in one tile (1 beside 2^30) lose the small one's low bits where the direct sum would not,
 * and an infinite input can give NaN (Inf - Inf inside the transforms) where the direct sum gives
 * +-Inf; NaN inputs stay NaN in the outputs they reach.
 *
 * Threads: the tiles of a chunk of images and the GEMMs are split across threads, each writing its
 * own outputs; the chunk size, the GEMM tiling (gemm.c) and every summation order depend only on the
 * shape, so results are bitwise identical for any thread count. */
#ifndef AF_FLOAT_PASS
#include <string.h>

#include "../core/alloc.h"
#include "conv2d_winograd.h"

/* A stride-1 3x3 convolution of `in` (N, Q, H, W), padding (ph, pw), into out (N, P, Ho, Wo), cut
 * into th x tw tiles of 2x2 outputs, T per image (the last row/column of tiles may hang over). */
typedef struct wino_geom {
    int64_t N, P, Q, H, W, ph, pw, Ho, Wo, th, tw, T;
} wino_geom;

static wino_geom wino_geom_make(int64_t N, int64_t P, int64_t Q, int64_t H, int64_t W, int64_t ph, int64_t pw) {
    wino_geom s = {N, P, Q, H, W, ph, pw, H + 2 * ph - 2, W + 2 * pw - 2, 0, 0, 0};
    s.th = (s.Ho + 1) / 2;
    s.tw = (s.Wo + 1) / 2;
    s.T = s.th * s.tw;
    return s;
}

/* Images per chunk: the transformed input and output of a chunk (16 (P + Q) T per image) stay within
 * WINO_CHUNK_CAP elements (4 MiB in float32), so they are still in cache when the GEMMs read them,
 * unless the transformed filter (16 P Q elements, read once per chunk) is larger: then a chunk holds
 * at least as much data as the filter, so re-reading it costs at most as much as the data. Measured
 * at batch 32, one thread, forward + backward: 64->64 on 28x28 (data-bound) ran 12% faster with a cap
 * of 2^20 than with 2^21; 512->512 on 4x4 (filter-bound, now the whole batch in one chunk) 8% slower
 * with the cap alone. */
#define WINO_CHUNK_CAP ((int64_t)1 << 20)

static int64_t wino_images_per_chunk(const wino_geom *s) {
    const int64_t per_image = 16 * (s->P + s->Q) * s->T, filter = 16 * s->P * s->Q;
    if (per_image <= 0) return s->N;
    int64_t nb = (WINO_CHUNK_CAP > filter ? WINO_CHUNK_CAP : filter) / per_image;
    if (nb < 1) nb = 1;
    return nb < s->N ? nb : s->N;
}

/* Scalars per row buffer of a run of tile rows in the data transforms (8 buffers: 32 KiB of stack in
 * float32): long enough for a vector loop over a 4x4 map's whole batch. */
#define WINO_RUN 1024

#define AF_TEMPLATE_FILE "conv2d_winograd.c"
#include "instantiate_float.h"

#else /* ---- kernels, once per scalar_t ---- */

/* Pairs (p, q) per block of the filter transforms: each of the 16 planes of U gets a contiguous run
 * per block. Writing one value per plane per pair instead puts 16 store streams P Q apart, a power of
 * two on ResNet's layers, on the same cache sets: it ran 5x slower on 512x512 filters. */
#define WINO_FILTER_BLOCK 64

/* U (16, P, Q): U[4 i + j, p, q] = (G g G^T)[i, j] with g = w[p, q] (w: (P, Q, 3, 3)), or, with flip,
 * g = w[q, p, 2 - kh, 2 - kw] (w: (Q, P, 3, 3)): the filter of dx. */
AF_CPU_DISPATCH
static void K(wino_filter)(const scalar_t *w, int64_t P, int64_t Q, int flip, scalar_t *U) {
    const int64_t PQ = P * Q, blocks = (PQ + WINO_FILTER_BLOCK - 1) / WINO_FILTER_BLOCK;
    const scalar_t half = (scalar_t)0.5;
    AF_PARALLEL_FOR(PQ * 64)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t pq0 = blk * WINO_FILTER_BLOCK, len = PQ - pq0 < WINO_FILTER_BLOCK ? PQ - pq0 : WINO_FILTER_BLOCK;
        scalar_t out[16][WINO_FILTER_BLOCK];
        for (int64_t k = 0; k < len; k++) {
            const int64_t p = (pq0 + k) / Q, q = (pq0 + k) % Q;
            const scalar_t *src = flip ? w + (q * P + p) * 9 : w + (pq0 + k) * 9;
            scalar_t g[3][3], t[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) g[i][j] = flip ? src[(2 - i) * 3 + 2 - j] : src[i * 3 + j];
            for (int j = 0; j < 3; j++) { /* t = G g */
                t[0][j] = g[0][j];
                t[1][j] = (g[0][j] + g[1][j] + g[2][j]) * half;
                t[2][j] = (g[0][j] - g[1][j] + g[2][j]) * half;
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* U = t G^T */
                out[4 * i][k] = t[i][0];
                out[4 * i + 1][k] = (t[i][0] + t[i][1] + t[i][2]) * half;
                out[4 * i + 2][k] = (t[i][0] - t[i][1] + t[i][2]) * half;
                out[4 * i + 3][k] = t[i][2];
            }
        }
        for (int e = 0; e < 16; e++) memcpy(U + e * PQ + pq0, out[e], (size_t)len * sizeof(scalar_t));
    }
}

/* dw (P, Q, 3, 3) += G^T dU G per (p, q), dU (16, P, Q): the adjoint of wino_filter without flip */
AF_CPU_DISPATCH
static void K(wino_filter_grad)(const scalar_t *dU, int64_t P, int64_t Q, scalar_t *dw) {
    const int64_t PQ = P * Q, blocks = (PQ + WINO_FILTER_BLOCK - 1) / WINO_FILTER_BLOCK;
    const scalar_t half = (scalar_t)0.5;
    AF_PARALLEL_FOR(PQ * 64)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t pq0 = blk * WINO_FILTER_BLOCK, len = PQ - pq0 < WINO_FILTER_BLOCK ? PQ - pq0 : WINO_FILTER_BLOCK;
        scalar_t in[16][WINO_FILTER_BLOCK];
        for (int e = 0; e < 16; e++) memcpy(in[e], dU + e * PQ + pq0, (size_t)len * sizeof(scalar_t));
        for (int64_t k = 0; k < len; k++) {
            scalar_t t[3][4];
            for (int j = 0; j < 4; j++) { /* t = G^T u */
                const scalar_t u0 = in[j][k], u1 = in[4 + j][k], u2 = in[8 + j][k], u3 = in[12 + j][k];
                t[0][j] = u0 + (u1 + u2) * half;
                t[1][j] = (u1 - u2) * half;
                t[2][j] = (u1 + u2) * half + u3;
            }
            scalar_t *d = dw + (pq0 + k) * 9;
            for (int r = 0; r < 3; r++) { /* dw += t G */
                d[r * 3 + 0] += t[r][0] + (t[r][1] + t[r][2]) * half;
                d[r * 3 + 1] += (t[r][1] - t[r][2]) * half;
                d[r * 3 + 2] += (t[r][1] + t[r][2]) * half + t[r][3];
            }
        }
    }
}

/* The data transforms below work on runs of consecutive tile rows k = n th + ty of one channel across
 * the chunk's images: tile t of row k sits at column k tw + t of its plane of V, M or D, so a run's
 * tiles are contiguous there and each transform is one long loop over them. On 7x7 and 4x4 maps a
 * tile row holds 4 or 2 tiles; looping over one tile row at a time ran scalar. */
static inline void K(wino_runs)(const wino_geom *s, int64_t m, int64_t *run, int64_t *runs) {
    *run = WINO_RUN / (2 * s->tw) > 1 ? WINO_RUN / (2 * s->tw) : 1;
    *runs = (m * s->th + *run - 1) / *run;
}

/* r[i][j] = (B^T d)[i] for columns c = c0 + j, j < n, of the 4 input rows x[i] (W wide; zero outside) */
static inline void K(wino_input_cols)(const scalar_t *const x[4], int64_t c0, int64_t n, int64_t W, scalar_t *const r[4]) {
    const int64_t lo = c0 < 0 ? (-c0 < n ? -c0 : n) : 0, hi = W - c0 < n ? (W - c0 > lo ? W - c0 : lo) : n;
    for (int i = 0; i < 4; i++) {
        for (int64_t j = 0; j < lo; j++) r[i][j] = 0;
        for (int64_t j = hi; j < n; j++) r[i][j] = 0;
    }
    const scalar_t *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    scalar_t *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
    for (int64_t j = lo; j < hi; j++) {
        r0[j] = x0[c0 + j] - x2[c0 + j];
        r1[j] = x1[c0 + j] + x2[c0 + j];
        r2[j] = x2[c0 + j] - x1[c0 + j];
        r3[j] = x1[c0 + j] - x3[c0 + j];
    }
}

/* V (16, Q, L), L = m T: V[4 i + j, q, n T + t] = (B^T d B)[i, j], d the 4x4 patch of in[n, q] (m images)
 * whose corner is (2 ty - ph, 2 tx - pw), zero outside the plane. One thread per run of tile rows of
 * a channel: B^T d down the columns of each tile row's 4 input rows (read in place; rows and columns
 * outside the plane are zeros), kept twice (columns from -pw in R, from 2 - pw in S, 2 tw each),
 * then (B^T d) B along the run: tile t reads R[2t], R[2t + 1], S[2t], S[2t + 1]. */
AF_CPU_DISPATCH
static void K(wino_input)(const wino_geom *s, const scalar_t *in, int64_t m, scalar_t *V) {
    const int64_t L = m * s->T, QL = s->Q * L, Wq = 2 * s->tw;
    int64_t run, runs;
    K(wino_runs)(s, m, &run, &runs);
    AF_PARALLEL_FOR(QL * 16)
    for (int64_t it = 0; it < s->Q * runs; it++) {
        const int64_t q = it / runs, k0 = it % runs * run, k1 = k0 + run < m * s->th ? k0 + run : m * s->th;
        scalar_t R[4][run * Wq], S[4][run * Wq], zero[s->W];
        memset(zero, 0, sizeof zero);
        for (int64_t k = k0; k < k1; k++) {
            const int64_t n = k / s->th, ty = k % s->th, o = (k - k0) * Wq;
            const scalar_t *plane = in + (n * s->Q + q) * s->H * s->W;
            const scalar_t *x[4];
            for (int i = 0; i < 4; i++) {
                const int64_t ih = 2 * ty - s->ph + i;
                x[i] = ih >= 0 && ih < s->H ? plane + ih * s->W : zero;
            }
            scalar_t *const r[4] = {R[0] + o, R[1] + o, R[2] + o, R[3] + o};
            scalar_t *const sv[4] = {S[0] + o, S[1] + o, S[2] + o, S[3] + o};
            K(wino_input_cols)(x, -s->pw, Wq, s->W, r);
            K(wino_input_cols)(x, 2 - s->pw, Wq, s->W, sv);
        }
        const int64_t nt = (k1 - k0) * s->tw;
        scalar_t *dst = V + q * L + k0 * s->tw;
        for (int i = 0; i < 4; i++) { /* (B^T d) B */
            scalar_t *o0 = dst + 4 * i * QL, *o1 = o0 + QL, *o2 = o1 + QL, *o3 = o2 + QL;
            const scalar_t *r = R[i], *sv = S[i];
            for (int64_t t = 0; t < nt; t++) {
                const scalar_t a = r[2 * t], b = r[2 * t + 1], c = sv[2 * t], d = sv[2 * t + 1];
                o0[t] = a - c;
                o1[t] = b + c;
                o2[t] = c - b;
                o3[t] = b - d;
            }
        }
    }
}

/* out[n, p] (Ho, Wo) = A^T M A + bias[p], or += A^T M A (accumulate), per tile; M (16, P, L) from the
 * GEMMs. One thread per run of tile rows of an output channel: the run's 2x2 blocks go to two rows
 * per tile row (Y0, Y1), which are then copied to the planes. */
AF_CPU_DISPATCH
static void K(wino_output)(const wino_geom *s, const scalar_t *M, const scalar_t *bias, int accumulate, int64_t m,
                           scalar_t *out) {
    const int64_t L = m * s->T, PL = s->P * L, Wq = 2 * s->tw;
    int64_t run, runs;
    K(wino_runs)(s, m, &run, &runs);
    AF_PARALLEL_FOR(PL * 16)
    for (int64_t it = 0; it < s->P * runs; it++) {
        const int64_t p = it / runs, k0 = it % runs * run, k1 = k0 + run < m * s->th ? k0 + run : m * s->th;
        const int64_t nt = (k1 - k0) * s->tw;
        const scalar_t *src = M + p * L + k0 * s->tw;
        const scalar_t b = bias ? bias[p] : 0;
        scalar_t Y0[run * Wq], Y1[run * Wq];
        for (int64_t t = 0; t < nt; t++) {
            scalar_t s0[4], s1[4]; /* A^T M: rows 0 + 1 + 2 and 1 - 2 - 3 */
            for (int j = 0; j < 4; j++) {
                const scalar_t m0 = src[j * PL + t], m1 = src[(4 + j) * PL + t];
                const scalar_t m2 = src[(8 + j) * PL + t], m3 = src[(12 + j) * PL + t];
                s0[j] = m0 + m1 + m2;
                s1[j] = m1 - m2 - m3;
            }
            Y0[2 * t] = s0[0] + s0[1] + s0[2];
            Y0[2 * t + 1] = s0[1] - s0[2] - s0[3];
            Y1[2 * t] = s1[0] + s1[1] + s1[2];
            Y1[2 * t + 1] = s1[1] - s1[2] - s1[3];
        }
        for (int64_t k = k0; k < k1; k++) {
            const int64_t n = k / s->th, ty = k % s->th;
            scalar_t *plane = out + (n * s->P + p) * s->Ho * s->Wo;
            for (int i = 0; i < 2 && 2 * ty + i < s->Ho; i++) {
                scalar_t *row = plane + (2 * ty + i) * s->Wo;
                const scalar_t *y = (i ? Y1 : Y0) + (k - k0) * Wq;
                if (accumulate)
                    for (int64_t ow = 0; ow < s->Wo; ow++) row[ow] += y[ow];
                else
                    for (int64_t ow = 0; ow < s->Wo; ow++) row[ow] = y[ow] + b;
            }
        }
    }
}

/* D (16, P, L): D[4 i + j, p, n T + t] = (A dY A^T)[i, j], dY the 2x2 block of dy[n, p] (m images) at
 * tile t, zero past the map's edge: the adjoint of wino_output. One thread per run of tile rows of a
 * channel: the run's two dy rows per tile row (Y0, Y1, zero-padded), then per tile A dY (rows y0,
 * y0 + y1, y0 - y1, -y1) and each row's (u, v) times A^T: (u, u + v, u - v, -v). */
AF_CPU_DISPATCH
static void K(wino_grad_output)(const wino_geom *s, const scalar_t *dy, int64_t m, scalar_t *D) {
    const int64_t L = m * s->T, PL = s->P * L, Wq = 2 * s->tw;
    int64_t run, runs;
    K(wino_runs)(s, m, &run, &runs);
    AF_PARALLEL_FOR(PL * 16)
    for (int64_t it = 0; it < s->P * runs; it++) {
        const int64_t p = it / runs, k0 = it % runs * run, k1 = k0 + run < m * s->th ? k0 + run : m * s->th;
        const int64_t nt = (k1 - k0) * s->tw;
        scalar_t Y0[run * Wq], Y1[run * Wq];
        for (int64_t k = k0; k < k1; k++) {
            const int64_t n = k / s->th, ty = k % s->th;
            const scalar_t *plane = dy + (n * s->P + p) * s->Ho * s->Wo;
            for (int i = 0; i < 2; i++) {
                scalar_t *y = (i ? Y1 : Y0) + (k - k0) * Wq;
                if (2 * ty + i < s->Ho) {
                    memcpy(y, plane + (2 * ty + i) * s->Wo, (size_t)s->Wo * sizeof(scalar_t));
                    for (int64_t j = s->Wo; j < Wq; j++) y[j] = 0;
                } else {
                    memset(y, 0, (size_t)Wq * sizeof(scalar_t));
                }
            }
        }
        scalar_t *dst = D + p * L + k0 * s->tw;
        for (int i = 0; i < 4; i++) {
            scalar_t *o0 = dst + 4 * i * PL, *o1 = o0 + PL, *o2 = o1 + PL, *o3 = o2 + PL;
            for (int64_t t = 0; t < nt; t++) {
                const scalar_t a = Y0[2 * t], b = Y0[2 * t + 1], c = Y1[2 * t], d = Y1[2 * t + 1];
                const scalar_t u = i == 0 ? a : i == 1 ? a + c : i == 2 ? a - c : -c;
                const scalar_t v = i == 0 ? b : i == 1 ? b + d : i == 2 ? b - d : -d;
                o0[t] = u;
                o1[t] = u + v;
                o2[t] = u - v;
                o3[t] = -v;
            }
        }
    }
}

/* out (N, P, Ho, Wo) = conv(in, w) + bias, or += conv(in, w) with accumulate; w is (P, Q, 3, 3), or
 * (Q, P, 3, 3) read flipped and transposed with `transposed` (the data gradient) */
static int K(wino_conv)(const wino_geom *s, const scalar_t *in, const scalar_t *w, int transposed,
                        const scalar_t *bias, int accumulate, scalar_t *out) {
    const int64_t nb = wino_images_per_chunk(s);
    scalar_t *U = af_alloc_host((size_t)(16 * s->P * s->Q) * sizeof(scalar_t));
    scalar_t *V = af_alloc_host((size_t)(16 * s->Q * nb * s->T) * sizeof(scalar_t));
    scalar_t *M = af_alloc_host((size_t)(16 * s->P * nb * s->T) * sizeof(scalar_t));
    if (!U || !V || !M) {
        af_free_host(U);
        af_free_host(V);
        af_free_host(M);
        return -1;
    }
    K(wino_filter)(w, s->P, s->Q, transposed, U);
    for (int64_t n0 = 0; n0 < s->N; n0 += nb) {
        const int64_t m = s->N - n0 < nb ? s->N - n0 : nb, L = m * s->T;
        K(wino_input)(s, in + n0 * s->Q * s->H * s->W, m, V);
        /* M[e] (P, L) = U[e] (P, Q) @ V[e] (Q, L), e < 16 */
        const af_gemm_batch bt = {16, 1, s->P * s->Q, 0, s->Q * L, 0, s->P * L, 0};
        AF_GEMM_BATCHED(&bt, 0, 0, s->P, L, s->Q, 1, U, s->Q, V, L, 0, M, L);
        K(wino_output)(s, M, bias, accumulate, m, out + n0 * s->P * s->Ho * s->Wo);
    }
    af_free_host(U);
    af_free_host(V);
    af_free_host(M);
    return 0;
}

/* y (N, Cout, Ho, Wo) = conv2d(x, w) + bias */
int K(conv2d_winograd_forward)(const conv_geom *g, const scalar_t *x, const scalar_t *w, const scalar_t *bias,
                               scalar_t *y) {
    const wino_geom s = wino_geom_make(g->N, g->Cout, g->Cin, g->H, g->W, g->ph, g->pw);
    return K(wino_conv)(&s, x, w, 0, bias, 0, y);
}

/* dx (N, Cin, H, W) += conv2d(dy, w flipped and transposed, padding 2 - pad) */
int K(conv2d_winograd_backward_dx)(const conv_geom *g, const scalar_t *w, const scalar_t *dy, scalar_t *dx) {
    const wino_geom s = wino_geom_make(g->N, g->Cin, g->Cout, g->Ho, g->Wo, 2 - g->ph, 2 - g->pw);
    return K(wino_conv)(&s, dy, w, 1, NULL, 1, dx);
}

/* dw (Cout, Cin, 3, 3) += G^T [sum over tiles of (A dY A^T) . (B^T d B)] G */
int K(conv2d_winograd_backward_dw)(const conv_geom *g, const scalar_t *x, const scalar_t *dy, scalar_t *dw) {
    const wino_geom s = wino_geom_make(g->N, g->Cout, g->Cin, g->H, g->W, g->ph, g->pw);
    const int64_t nb = wino_images_per_chunk(&s);
    scalar_t *V = af_alloc_host((size_t)(16 * s.Q * nb * s.T) * sizeof(scalar_t));
    scalar_t *D = af_alloc_host((size_t)(16 * s.P * nb * s.T) * sizeof(scalar_t));
    scalar_t *dU = af_alloc_host((size_t)(16 * s.P * s.Q) * sizeof(scalar_t));
    if (!V || !D || !dU) {
        af_free_host(V);
        af_free_host(D);
        af_free_host(dU);
        return -1;
    }
    for (int64_t n0 = 0; n0 < s.N; n0 += nb) {
        const int64_t m = s.N - n0 < nb ? s.N - n0 : nb, L = m * s.T;
        K(wino_input)(&s, x + n0 * s.Q * s.H * s.W, m, V);
        K(wino_grad_output)(&s, dy + n0 * s.P * s.Ho * s.Wo, m, D);
        /* dU[e] (P, Q) (+)= D[e] (P, L) @ V[e]^T (L, Q); chunks summed in order */
        const af_gemm_batch bt = {16, 1, s.P * L, 0, s.Q * L, 0, s.P * s.Q, 0};
        AF_GEMM_BATCHED(&bt, 0, 1, s.P, s.Q, L, 1, D, L, V, L, n0 ? 1 : 0, dU, s.Q);
    }
    K(wino_filter_grad)(dU, s.P, s.Q, dw);
    af_free_host(V);
    af_free_host(D);
    af_free_host(dU);
    return 0;
}

#endif
