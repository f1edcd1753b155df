/* scaled_dot_product_attention: softmax(Q K^T * scale) V in one op, never holding more of the
 * attention matrix than one block of scores (the blocked "flash" scheme of Dao et al. 2022,
 * "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness", Algorithm 1-2,
 * with the backward of FlashAttention-2, Dao 2023).
 *
 *   in     = (query (..., Nq, D), key (..., Nk, D), value (..., Nk, Dv)), one float dtype, the same
 *            leading (batch) dims, e.g. (B, H, N, D) heads
 *   floats = (scale,): the factor on Q K^T (torch's default 1/sqrt(D) is applied by the Python side)
 *   out    = (..., Nq, Dv); saved[0] = the row log-sum-exp L = log sum_j exp(S_ij), (batch * Nq)
 * torch.nn.functional.scaled_dot_product_attention without a mask, dropout or causal option.
 *
 * Forward, per (batch entry, block of <= 128 query rows), over blocks of <= 256 keys (one block at
 * ViT sizes): S = scale Q_i K_j^T (GEMM), the running row max m and sum l are updated, the block's
 * P = exp(S - m) is added into O with the earlier part rescaled by exp(m_old - m) (GEMM), and at the
 * end O /= l and L = m + log l. A key-less row (Nk = 0) gives 0, as torch's empty sum does.
 * Backward, with P recomputed from L (P_ij = exp(S_ij - L_i)) and delta_i = sum_c dO_ic O_ic:
 *   dV_j += P^T dO_i,  dP = dO_i V_j^T,  dS = P * (dP - delta),  dQ_i += scale dS K_j,
 *   dK_j += scale dS^T Q_i        (all GEMMs but the elementwise dS)
 * Determinism: the forward's tasks own their output rows; the backward's task is a whole batch entry
 * (it owns that entry's dQ, dK, dV and walks its blocks in a fixed order), and every GEMM is the
 * project's (csrc/ops/gemm.c): bitwise the same for any thread count. Inside a task the GEMM runs on
 * the task's thread (OpenMP does not nest), so blocks, not the GEMM, spread over the cores. */
#ifndef AF_FLOAT_PASS
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "attention.h"
#include "gemm_avx512.h"
#include "vexp.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#include <immintrin.h>
#define ATTN_HAVE_AVX512 1
#else
#define ATTN_HAVE_AVX512 0
#endif

#define AF_TEMPLATE_FILE "attention.c"
#include "instantiate_float.h"

static const char *const attention_inputs[] = {"query", "key", "value", NULL};

static af_status attention_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 1));
    for (int i = 0; i < 3; i++) AF_TRY(af_check_float(c, i));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    AF_TRY(af_check_same_dtype(c, 0, 2));
    const af_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2];
    char s0[96], s1[96], s2[96];
    af_shape_str(q->ndim, q->shape, s0, sizeof s0);
    af_shape_str(k->ndim, k->shape, s1, sizeof s1);
    af_shape_str(v->ndim, v->shape, s2, sizeof s2);
    for (int i = 0; i < 3; i++)
        if (c->in[i]->ndim < 2)
            return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: argument '%s' must be at least 2-D, got "
                           "shape %s", attention_inputs[i], i == 0 ? s0 : i == 1 ? s1 : s2);
    int same = q->ndim == k->ndim && q->ndim == v->ndim;
    for (int d = 0; same && d < q->ndim - 2; d++) same = q->shape[d] == k->shape[d] && q->shape[d] == v->shape[d];
    if (!same)
        return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: 'query' %s, 'key' %s and 'value' %s must have "
                       "the same leading (batch) dims", s0, s1, s2);
    if (k->shape[k->ndim - 1] != q->shape[q->ndim - 1])
        return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: 'key' %s must have the last dim of 'query' %s",
                       s1, s0);
    if (v->shape[v->ndim - 2] != k->shape[k->ndim - 2])
        return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: 'value' %s must have as many rows as 'key' %s",
                       s2, s1);
    if (!isfinite(c->attr.f[0]))
        return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: argument 'scale' must be finite");
    int64_t shape[AF_MAX_DIMS];
    memcpy(shape, q->shape, sizeof shape);
    shape[q->ndim - 1] = v->shape[v->ndim - 1];
    AF_TRY(af_alloc_out(c, 0, q->ndim, shape, 0));
    int64_t rows = af_shape_numel(q->ndim - 1, q->shape);
    return af_alloc_saved(c, 0, 1, &rows, q->dtype);
}

static af_status attention_check(const af_op_call *c, const attention_dims *d) {
    if (d->D <= INT_MAX && d->Dv <= INT_MAX) return AF_OK;
    return AF_FAIL(AF_ERR_VALUE, "scaled_dot_product_attention: head dims %lld, %lld exceed the BLAS limit of 2^31",
                   (long long)d->D, (long long)d->Dv);
}

static int attention_kernel_cap = AF_ATTENTION_AVX512;

int af_attention_cap_kernel(int cap) { return __atomic_exchange_n(&attention_kernel_cap, cap, __ATOMIC_RELAXED); }

static af_status attention_oom(void) {
    return AF_FAIL(AF_ERR_OOM, "scaled_dot_product_attention: out of memory for a block of scores");
}

#if ATTN_HAVE_AVX512
/* ---- the short-sequence kernels: one batch entry in registers, float32, AVX-512 ----
 *
 * At ViT sizes (Nk = 50 keys at 112x112, 197 at 224x224) a block of ATTN_SMALL_R query rows times 64
 * keys of S = scale Q K^T lives in 20 zmm registers: the scores, the row softmax and P V run without
 * a GEMM call, its packing buffers and its edge tiles, which cost more than the arithmetic at these
 * sizes. The forward scores a row block's keys 64 at a time (the last chunk only as many 16-key
 * vectors as there are keys: 197 keys are 3 x 64 + 1 x 16, not 4 x 64), keeps the block's whole score
 * rows (at most ATTN_SMALL_NK_FWD keys) in a small buffer for the softmax, and sums P V over the keys
 * with the 20 accumulators again. With at most 64 keys the scores stay in registers through the
 * softmax, and 1-4 keys past the last full 16 (Nk = 50 is 3 x 16 + 2) are scored apart as dot
 * products rather than by a fourth vector of FMAs landing mostly on padding lanes. K is transposed
 * once per batch entry into a panel (zero columns beyond Nk, masked to -inf before the max). Each
 * other S element sums over d in order with one FMA per step, as the GEMM's micro-kernel does; the
 * sums of P run in a fixed vector order; so the result depends only on the shapes, never on the
 * thread count or on which rows share a block. The backward
 * (Nk <= 64) recomputes P from the saved log-sum-exp the same way and runs its four products through
 * the same two helpers. Compiled with a target attribute and run only where the CPU has AVX-512F
 * (checked at run time), like gemm_avx512.c; a CPU with AVX2 and FMA only runs the forward's AVX2
 * twin further down; elsewhere, for float64 and for longer sequences, the blocked GEMM path below
 * runs. */
#define ATTN_SMALL_R 5         /* query rows per block: 5 x 4 accumulators + 4 operands fit 32 zmm */
#define ATTN_SMALL_N 64        /* most keys of the backward, most value columns of both directions */
#define ATTN_SMALL_NK_FWD 256  /* most keys of the forward: a score row is 16 vectors at most */
#define ATTN_SMALL_D 128       /* most head dims (the K panel, D x 256 floats, stays on the stack) */
#define ATTN_SMALL_TAIL 4      /* most keys past the last full 16 scored as dot products (forward) */
/* Query rows per forward task: a batch entry's rows in one task at ViT sizes (the K panel is built
 * once), in several when Nq is long, so a single entry still spreads over the threads. A multiple of
 * ATTN_SMALL_R: the split changes no bit, every row's sums being the same in any block. */
#define ATTN_SMALL_TASK_ROWS 200
#define ATTN_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

/* the register kernels this CPU runs: AF_ATTENTION_AVX512 (forward and backward), AF_ATTENTION_AVX2
 * (the forward only: attention_avx2_entry below) or AF_ATTENTION_BLOCKED, at most the cap */
static int attention_small_isa(void) {
    static int cached = -1; /* any thread may fill it in */
    int isa = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (isa < 0) {
        __builtin_cpu_init();
        isa = __builtin_cpu_supports("avx512f")                                      ? AF_ATTENTION_AVX512
              : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? AF_ATTENTION_AVX2
                                                                                    : AF_ATTENTION_BLOCKED;
        __atomic_store_n(&cached, isa, __ATOMIC_RELAXED);
    }
    const int cap = __atomic_load_n(&attention_kernel_cap, __ATOMIC_RELAXED);
    return isa < cap ? isa : cap;
}

static inline __mmask16 attn_first_n(int64_t n) { return (__mmask16)(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }

/* acc[r][c] = sum_{t < n} a[r][t] B[t ldb + 16 c + lane] for c < nv (a constant once inlined) and
 * lanes in mask[c] (0 elsewhere): R rows times an n x 16 nv matrix, the R x nv accumulators in
 * registers; t runs in order, one FMA per step */
ATTN_AVX512 static inline __attribute__((always_inline)) void attn_rows_times(int nv, const float *const *a, int64_t n,
                                                                              const float *B, int64_t ldb,
                                                                              const __mmask16 *mask,
                                                                              __m512 acc[ATTN_SMALL_R][4]) {
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < nv; c++) acc[r][c] = _mm512_setzero_ps();
    for (int64_t t = 0; t < n; t++) {
        __m512 bv[4];
#pragma GCC unroll 4
        for (int c = 0; c < nv; c++) bv[c] = _mm512_maskz_loadu_ps(mask[c], B + t * ldb + 16 * c);
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) {
            const __m512 ab = _mm512_set1_ps(a[r][t]);
#pragma GCC unroll 4
            for (int c = 0; c < nv; c++) acc[r][c] = _mm512_fmadd_ps(ab, bv[c], acc[r][c]);
        }
    }
}

/* acc[j][0:64 masked] += sum_r w[r][j] x[r][0:64 masked] for j < n: a rank-R update of n rows of a
 * 64-column buffer (ld 64), x's R row vectors held in registers; rows r ascending */
ATTN_AVX512 static inline __attribute__((always_inline)) void attn_rank_update(const float *w, int64_t n,
                                                                               const float *const *x,
                                                                               const __mmask16 *mask, float *acc) {
    __m512 xv[ATTN_SMALL_R][4];
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) xv[r][c] = _mm512_maskz_loadu_ps(mask[c], x[r] + 16 * c);
    for (int64_t j = 0; j < n; j++) {
        __m512 av[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) av[c] = _mm512_load_ps(acc + j * ATTN_SMALL_N + 16 * c);
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) {
            const __m512 wb = _mm512_set1_ps(w[r * ATTN_SMALL_N + j]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) av[c] = _mm512_fmadd_ps(wb, xv[r][c], av[c]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm512_store_ps(acc + j * ATTN_SMALL_N + 16 * c, av[c]);
    }
}

static inline void attn_masks(int64_t n, __mmask16 m[4]) {
    for (int c = 0; c < 4; c++) m[c] = attn_first_n(n - 16 * c);
}

/* dst (n0 x ld) = src^T for src (`rows` rows, ld ls; n0 columns), ld a multiple of 16: zeros past
 * `rows` up to ld (n0 is rounded up to 16) */
static void attn_panel(const float *src, int64_t rows, int64_t n0, int64_t ls, float *dst, int64_t ld) {
    for (int64_t j0 = 0; j0 < ld; j0 += 16)
        for (int64_t d0 = 0; d0 < n0; d0 += 16)
            af_avx512_transpose16(src + j0 * ls + d0, ls, rows - j0, (uint16_t)attn_first_n(n0 - d0),
                                  dst + d0 * ld + j0, ld);
}

/* The operands of the next batch entry, laid end to end as cache lines: an entry's own work is a few
 * tens of kilobytes, so its first loads (the K panel above all) would wait on memory; each row block
 * prefetches its share of the next entry's lines into L2 instead, a few dozen at a time. The forward
 * includes the next entry's output rows: a store that misses waits for the line like a load (on the
 * Zen 4, +5% at 50 tokens from memory). Only timing changes, never a result. */
typedef struct attn_next {
    const char *p[8];
    int64_t lines[8], total;
    int n;
} attn_next;

static inline void attn_next_add(attn_next *nx, const void *p, int64_t floats) {
    if (!p || floats <= 0) return;
    nx->p[nx->n] = (const char *)p;
    nx->lines[nx->n] = (floats * (int64_t)sizeof(float) + 63) / 64 + 1; /* p need not start a line */
    nx->total += nx->lines[nx->n++];
}

/* lines [from, to) of nx */
static inline void attn_prefetch(const attn_next *nx, int64_t from, int64_t to) {
    int64_t base = 0;
    for (int i = 0; i < nx->n && base < to; base += nx->lines[i++]) {
        const int64_t lo = from > base ? from - base : 0, hi = to - base < nx->lines[i] ? to - base : nx->lines[i];
        for (int64_t l = lo; l < hi; l++) /* asm volatile: GCC deletes a loop of _mm_prefetch alone */
            __asm__ volatile("prefetcht1 %0" : : "m"(*(const char *)(nx->p[i] + 64 * l)));
    }
}

/* the lines [from, to) of nx that row block i0 / R of Nq rows (in blocks of R) prefetches */
typedef struct attn_share {
    int64_t from, to;
} attn_share;

static inline attn_share attn_block_share(const attn_next *nx, int64_t i0, int64_t Nq, int64_t R) {
    const int64_t blocks = (Nq + R - 1) / R, per = (nx->total + blocks - 1) / blocks, b = i0 / R;
    return (attn_share){b * per, (b + 1) * per};
}

/* The forwards issue a block's share in ATTN_PREFETCH_PARTS parts, one before each phase of the block
 * (scores, softmax, P V): a burst of the whole share at once (some 60 lines at 50 tokens) holds
 * load-queue and miss-buffer entries while the scores start. Operands cold in memory, 384 heads, one
 * thread, on the Zen 4: 2-7% faster at 50 tokens (the AVX2 forward 10.6 -> 9.9 us per head, the
 * AVX-512 one 10.5 -> 10.1), 3% at 197 tokens. */
#define ATTN_PREFETCH_PARTS 3
static inline void attn_prefetch_part(const attn_next *nx, attn_share share, int part) {
    const int64_t step = (share.to - share.from + ATTN_PREFETCH_PARTS - 1) / ATTN_PREFETCH_PARTS;
    const int64_t from = share.from + part * step;
    attn_prefetch(nx, from, from + step < share.to ? from + step : share.to);
}

/* the scores of a row block against keys [16 g0, 16 (g0 + nv)) (kt's columns), scaled, -inf past
 * the Nk keys, in acc */
ATTN_AVX512 static inline __attribute__((always_inline)) void attn_score_chunk(int nv, const float *const *qr,
                                                                               int64_t D, const float *kt, int64_t ldk,
                                                                               int64_t g0, int64_t Nk, __m512 vscale,
                                                                               __m512 acc[ATTN_SMALL_R][4]) {
    __mmask16 all[4], km[4];
    attn_masks(16 * nv, all);
    attn_masks(Nk - 16 * g0, km);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    attn_rows_times(nv, qr, D, kt + 16 * g0, ldk, all, acc);
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < nv; c++) acc[r][c] = _mm512_mask_mul_ps(ninf, km[c], acc[r][c], vscale);
}

/* the nv score vectors of a chunk starting at vector g0 into the block's score rows p */
ATTN_AVX512 static inline __attribute__((always_inline)) void attn_store_chunk(int nv, __m512 acc[ATTN_SMALL_R][4],
                                                                               int64_t g0, float *p) {
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < nv; c++) _mm512_store_ps(p + r * ATTN_SMALL_NK_FWD + 16 * (g0 + c), acc[r][c]);
}

/* lane r (r < 4) and lane 8 (r = 4) of the result: the sum of the 16 lanes of x[r]; a tree of
 * in-lane then cross-lane adds, the same order for every r */
ATTN_AVX512 static inline __attribute__((always_inline)) __m512 attn_sum_rows(const __m512 x[ATTN_SMALL_R]) {
    const __m512 zero = _mm512_setzero_ps();
    /* per 128-bit lane: [x0_0+x0_2, x1_0+x1_2, x0_1+x0_3, x1_1+x1_3], and so on */
    const __m512 a01 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
    const __m512 a23 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
    const __m512 a4 = _mm512_add_ps(_mm512_unpacklo_ps(x[4], zero), _mm512_unpackhi_ps(x[4], zero));
    /* per 128-bit lane: the partial sums of rows 0-3, and of row 4 */
    const __m512 b03 = _mm512_add_ps(_mm512_shuffle_ps(a01, a23, _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_ps(a01, a23, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 b4 = _mm512_add_ps(_mm512_shuffle_ps(a4, zero, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(a4, zero, _MM_SHUFFLE(3, 2, 3, 2)));
    /* 128-bit lanes: b03's 0+2, 1+3, then b4's 0+2, 1+3; then the pairs added */
    const __m512 c = _mm512_add_ps(_mm512_shuffle_f32x4(b03, b4, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(b03, b4, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_ps(c, _mm512_shuffle_f32x4(c, c, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* The scores of the block's rows against the nt <= ATTN_SMALL_TAIL keys past the last full 16 (k_tail:
 * nt rows of D), as dot products with d in the lanes: lanes 0..nt-1 of out[r], scaled, -inf beyond.
 * At Nk = 50 (3 x 16 + 2) this replaces a fourth score vector whose FMAs would land 14 times in 16
 * on padding lanes. The dot products sum d by lanes then a tree, so these scores may differ from
 * the in-order sums of the other keys in the last bits (still the same for any rows and threads). */
ATTN_AVX512 static inline __attribute__((always_inline)) void attn_tail_scores(const float *const *qr,
                                                                               const float *k_tail, int64_t nt,
                                                                               int64_t D, __m512 vscale,
                                                                               __m512 out[ATTN_SMALL_R]) {
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++) out[r] = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < nt; j++) {
        __m512 dot[ATTN_SMALL_R];
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) dot[r] = _mm512_setzero_ps();
        for (int64_t d0 = 0; d0 < D; d0 += 16) {
            const __mmask16 m = attn_first_n(D - d0);
            const __m512 kv = _mm512_maskz_loadu_ps(m, k_tail + j * D + d0);
#pragma GCC unroll 6
            for (int r = 0; r < ATTN_SMALL_R; r++)
                dot[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qr[r] + d0), kv, dot[r]);
        }
        const __m512 sums = attn_sum_rows(dot);
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) /* lane j of out[r] = lane r's sum */
            out[r] = _mm512_mask_permutexvar_ps(out[r], (__mmask16)(1u << j),
                                                _mm512_set1_epi32(r < 4 ? r : 8), sums);
    }
#pragma GCC unroll 6
    for (int r = 0; r < ATTN_SMALL_R; r++)
        out[r] = _mm512_mask_mul_ps(out[r], attn_first_n(nt), out[r], vscale);
}

/* e = exp(s - m) of one row's nv score vectors s, stored at p; returns the vector of their sums */
ATTN_AVX512 static inline __attribute__((always_inline)) __m512 attn_exp_row(int64_t nv, const __m512 *s, float m,
                                                                             float *p) {
    const __m512 shift = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int64_t g = 0; g < nv; g++) {
        const __m512 e = af_exp16_avx512(_mm512_sub_ps(s[g], shift));
        _mm512_store_ps(p + 16 * g, e);
        sum = _mm512_add_ps(sum, e);
    }
    return sum;
}

/* one batch entry's query rows [i_begin, i_end) (at most ATTN_SMALL_TASK_ROWS): q (Nq, D), k (Nk, D),
 * v (Nk, Dv) -> o (Nq, Dv), lse (Nq); 1 <= Nk <= 256, 1 <= Dv <= 64, D <= 128. A row's nvec =
 * ceil(Nk / 16) score vectors: with nvec <= 4 (`single`, a constant in its instance, as is every acc
 * index) they stay in registers from Q K^T through the softmax; longer rows are scored in chunks of
 * 4 vectors, then nvec % 4 = tail, into the score rows p, whose max is known only at the end. */
ATTN_AVX512 static inline __attribute__((always_inline)) void
attention_small_rows(int single, int split, int tail, int64_t i_begin, int64_t i_end, int64_t Nk, int64_t D, int64_t Dv,
                     float scale, const float *q, const float *k, const float *v, float *o, float *lse,
                     const attn_next *nx) {
    float kt[ATTN_SMALL_D * ATTN_SMALL_NK_FWD] __attribute__((aligned(64)));
    float p[ATTN_SMALL_R * ATTN_SMALL_NK_FWD] __attribute__((aligned(64)));
    float row_max[ATTN_SMALL_TASK_ROWS + ATTN_SMALL_R], row_sum[ATTN_SMALL_TASK_ROWS + ATTN_SMALL_R];
    const int64_t nvec = (Nk + 15) / 16, ldk = 16 * (split ? nvec - 1 : nvec); /* split: the tail apart */
    attn_panel(k, split ? ldk : Nk, D, D, kt, ldk);
    __mmask16 vm[4];
    attn_masks(Dv, vm);
    const __m512 vscale = _mm512_set1_ps(scale);
    const float *pr[ATTN_SMALL_R]; /* the score rows, as P V reads them */
    for (int r = 0; r < ATTN_SMALL_R; r++) pr[r] = p + r * ATTN_SMALL_NK_FWD;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += ATTN_SMALL_R) {
        const int64_t mr = i_end - i0 < ATTN_SMALL_R ? i_end - i0 : ATTN_SMALL_R;
        const attn_share share = attn_block_share(nx, i0 - i_begin, i_end - i_begin, ATTN_SMALL_R);
        attn_prefetch_part(nx, share, 0);
        const float *qr[ATTN_SMALL_R]; /* rows past the end repeat the last (not stored) */
        for (int r = 0; r < ATTN_SMALL_R; r++) qr[r] = q + (i0 + (r < mr ? r : mr - 1)) * D;
        float *m = row_max + (i0 - i_begin), *l = row_sum + (i0 - i_begin);
        __m512 acc[ATTN_SMALL_R][4];
        if (single) { /* P = exp(S - m), m the row max, from the accumulators */
            if (split) {
                __m512 tail_scores[ATTN_SMALL_R];
                attn_score_chunk(single - 1, qr, D, kt, ldk, 0, Nk, vscale, acc);
                attn_tail_scores(qr, k + ldk * D, Nk - ldk, D, vscale, tail_scores);
#pragma GCC unroll 6
                for (int r = 0; r < ATTN_SMALL_R; r++) acc[r][single - 1] = tail_scores[r];
            } else {
                attn_score_chunk(single, qr, D, kt, ldk, 0, Nk, vscale, acc);
            }
            attn_prefetch_part(nx, share, 1);
#pragma GCC unroll 6
            for (int r = 0; r < ATTN_SMALL_R; r++) {
                __m512 mx = acc[r][0];
#pragma GCC unroll 4
                for (int c = 1; c < single; c++) mx = _mm512_max_ps(mx, acc[r][c]);
                m[r] = _mm512_reduce_max_ps(mx);
                l[r] = _mm512_reduce_add_ps(attn_exp_row(single, acc[r], m[r], p + r * ATTN_SMALL_NK_FWD));
            }
        } else {
            int64_t g0 = 0;
            for (; g0 + 4 <= nvec; g0 += 4) {
                attn_score_chunk(4, qr, D, kt, ldk, g0, Nk, vscale, acc);
                attn_store_chunk(4, acc, g0, p);
            }
            if (tail) {
                attn_score_chunk(tail, qr, D, kt, ldk, g0, Nk, vscale, acc);
                attn_store_chunk(tail, acc, g0, p);
            }
            attn_prefetch_part(nx, share, 1);
            for (int r = 0; r < ATTN_SMALL_R; r++) { /* P = exp(S - m), m the row max */
                const __m512 *s = (const __m512 *)(p + r * ATTN_SMALL_NK_FWD); /* p is 64-byte aligned */
                __m512 mx = s[0];
                for (int64_t g = 1; g < nvec; g++) mx = _mm512_max_ps(mx, s[g]);
                m[r] = _mm512_reduce_max_ps(mx);
                l[r] = _mm512_reduce_add_ps(attn_exp_row(nvec, s, m[r], p + r * ATTN_SMALL_NK_FWD));
            }
        }
        attn_prefetch_part(nx, share, 2);
        attn_rows_times(4, pr, Nk, v, Dv, vm, acc); /* O = P V, V's rows read in place */
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) /* unrolled with constant indices: acc stays in registers */
            if (r < mr)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    _mm512_mask_storeu_ps(o + (i0 + r) * Dv + 16 * c, vm[c],
                                          _mm512_mul_ps(acc[r][c], _mm512_set1_ps(1.0f / l[r])));
    }
    for (int64_t i = i_begin; i < i_end; i++) lse[i] = row_max[i - i_begin] + logf(row_sum[i - i_begin]);
}

ATTN_AVX512 static void attention_small_entry(int64_t i_begin, int64_t i_end, int64_t Nk, int64_t D, int64_t Dv,
                                              float scale, const float *q, const float *k, const float *v, float *o,
                                              float *lse, const attn_next *nx) {
    const int64_t nvec = (Nk + 15) / 16;
    const int split = nvec >= 2 && nvec <= 4 && Nk - 16 * (nvec - 1) <= ATTN_SMALL_TAIL;
    switch (nvec <= 4 ? 2 * nvec + split : 10 + nvec % 4) { /* every instance's vector counts are constants */
    case 2: attention_small_rows(1, 0, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 4: attention_small_rows(2, 0, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 5: attention_small_rows(2, 1, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 6: attention_small_rows(3, 0, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 7: attention_small_rows(3, 1, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 8: attention_small_rows(4, 0, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 9: attention_small_rows(4, 1, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 10: attention_small_rows(0, 0, 0, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 11: attention_small_rows(0, 0, 1, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    case 12: attention_small_rows(0, 0, 2, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    default: attention_small_rows(0, 0, 3, i_begin, i_end, Nk, D, Dv, scale, q, k, v, o, lse, nx); break;
    }
}

/* ---- the AVX2 forward (CPUs without AVX-512: AMD Zen 1-3, Intel client cores) ----
 *
 * The register kernel's scheme with 16 ymm registers of 8 floats: blocks of ATTN_AVX2_R = 4 query
 * rows times 3 vectors (24 keys of Q K^T, or 24 value columns of P V) in 12 accumulators, plus the 3
 * operand vectors and a broadcast. A block's score rows (at most ATTN_SMALL_NK_FWD keys) are
 * stored, then scaled by exp(S - m) and summed in a fixed vector order, the 4 rows' vectors g computed
 * in lockstep by af_exp8xn_avx2 (one row at a time, then one e^x after another, the softmax was bound
 * by the latency of the e^x chain, not by the FMA ports: 4-5% of the 50-token forward), then P V
 * runs over the keys with V's rows read in place (copied to a panel 8 columns wide when Dv is not a
 * multiple of 8). K is transposed once per task into a panel with zero columns past Nk, whose scores
 * are set to -inf in registers; 1-4 keys past the last full 8, when they would make a product chunk
 * of their own, are scored as dot products (attn_avx2_tail_scores). Every other S element sums over
 * d in order, one FMA per step, so as in the AVX-512 kernel the result depends only on the shapes.
 * Each row block prefetches its share of the next task's operands and output rows, as the AVX-512
 * kernel does. Its limits are the AVX-512 forward's. */
#define ATTN_AVX2_R 4
#define ATTN_AVX2 __attribute__((target("avx2,fma")))

/* all ones in lanes 0 .. n-1 of 8, the AVX2 form of attn_first_n */
ATTN_AVX2 static inline __m256i attn_avx2_first_n(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* acc[r][c] = sum_{t < n} a[r][t] B[t ldb + 8 c + lane] for c < nv (a constant once inlined) */
ATTN_AVX2 static inline __attribute__((always_inline)) void attn_avx2_rows_times(int nv, const float *const *a,
                                                                                 int64_t n, const float *B,
                                                                                 int64_t ldb, __m256 acc[ATTN_AVX2_R][3]) {
#pragma GCC unroll 4
    for (int r = 0; r < ATTN_AVX2_R; r++)
#pragma GCC unroll 3
        for (int c = 0; c < nv; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t t = 0; t < n; t++) {
        __m256 b[3];
#pragma GCC unroll 3
        for (int c = 0; c < nv; c++) {
            b[c] = _mm256_loadu_ps(B + t * ldb + 8 * c);
            /* keeps b[c] in a register: GCC otherwise folds the load into each row's FMA, 12 loads
             * of B per step instead of 3, and the loop is bound by loads, not FMAs */
            __asm__("" : "+x"(b[c]));
        }
#pragma GCC unroll 4
        for (int r = 0; r < ATTN_AVX2_R; r++) {
            const __m256 x = _mm256_broadcast_ss(a[r] + t);
#pragma GCC unroll 3
            for (int c = 0; c < nv; c++) acc[r][c] = _mm256_fmadd_ps(x, b[c], acc[r][c]);
        }
    }
}

/* the nv (1-3) vectors at columns 8 c0 .. of the block's product a B, times row factors f[r], into
 * dst rows (ldd apart) for the first `rows` rows; columns past `cols` are not stored */
ATTN_AVX2 static inline __attribute__((always_inline)) void attn_avx2_chunk(int nv, const float *const *a, int64_t n,
                                                                            const float *B, int64_t ldb, int64_t c0,
                                                                            const float *f, float *dst, int64_t ldd,
                                                                            int rows, int64_t cols) {
    __m256 acc[ATTN_AVX2_R][3];
    attn_avx2_rows_times(nv, a, n, B + 8 * c0, ldb, acc);
#pragma GCC unroll 4
    for (int r = 0; r < ATTN_AVX2_R; r++) {
        if (r >= rows) break;
        const __m256 fr = _mm256_set1_ps(f[r]);
#pragma GCC unroll 3
        for (int c = 0; c < nv; c++) {
            const int64_t col = 8 * (c0 + c);
            const __m256 y = _mm256_mul_ps(acc[r][c], fr);
            if (col + 8 <= cols) {
                _mm256_storeu_ps(dst + r * ldd + col, y);
            } else {
                _mm256_maskstore_ps(dst + r * ldd + col, attn_avx2_first_n(cols - col), y);
            }
        }
    }
}

/* dst[r ldd + j] = f (q_r . k_j) for the block's rows r and the nt <= 4 keys at k_tail (rows of D),
 * -inf for j = nt..7: the keys past the last full 8 as dot products with d in the lanes, where a chunk
 * of one vector over the panel would put most of its FMAs on padding (Nk = 50 is 6 x 8 + 2: 64 steps
 * of 4 FMAs for 2 keys, against 2 x 8 here). Each row is one vector store (the loads that follow
 * read it whole). The sums run by lanes then a fixed tree, so these scores may differ from the
 * in-order sums of the other keys in the last bits (still the same for any rows and threads). */
ATTN_AVX2 static void attn_avx2_tail_scores(const float *const *qr, const float *k_tail, int64_t nt, int64_t D,
                                            float f, float *dst, int64_t ldd) {
    _Static_assert(ATTN_AVX2_R == 4 && ATTN_SMALL_TAIL <= 4, "a 4 x 4 transpose of rows and keys");
    __m128 key[4]; /* key[j]: the scores of rows 0-3 against key j */
    for (int j = 0; j < 4; j++) key[j] = _mm_set1_ps(-INFINITY);
    for (int64_t j = 0; j < nt; j++) {
        __m256 dot[ATTN_AVX2_R];
        for (int r = 0; r < ATTN_AVX2_R; r++) dot[r] = _mm256_setzero_ps();
        for (int64_t d0 = 0; d0 < D; d0 += 8) {
            const __m256i m = attn_avx2_first_n(D - d0);
            const __m256 kv = _mm256_maskload_ps(k_tail + j * D + d0, m);
#pragma GCC unroll 4
            for (int r = 0; r < ATTN_AVX2_R; r++)
                dot[r] = _mm256_fmadd_ps(_mm256_maskload_ps(qr[r] + d0, m), kv, dot[r]);
        }
        /* lanes of h: rows 0-3's sums over lanes 0-3, then over lanes 4-7 */
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(dot[0], dot[1]), _mm256_hadd_ps(dot[2], dot[3]));
        key[j] = _mm_mul_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), _mm_set1_ps(f));
    }
    _MM_TRANSPOSE4_PS(key[0], key[1], key[2], key[3]); /* key[r]: row r's scores against keys 0-3 */
    for (int r = 0; r < ATTN_AVX2_R; r++)
        _mm256_storeu_ps(dst + r * ldd, _mm256_insertf128_ps(_mm256_set1_ps(-INFINITY), key[r], 0));
}

/* score vector g of nvec in the row s, -inf outside the lanes of keep if it is the last: set in
 * registers, since scalar stores of -inf would stall the vector loads that read them (no store
 * forwarding) */
ATTN_AVX2 static inline __attribute__((always_inline)) __m256 attn_avx2_scores(const float *s, int64_t g,
                                                                              int64_t nvec, __m256 keep) {
    const __m256 x = _mm256_load_ps(s + 8 * g);
    return g == nvec - 1 ? _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), x, keep) : x;
}

/* the whole product's nvec vectors in chunks of 3, the last 1-3 */
ATTN_AVX2 static void attn_avx2_product(const float *const *a, int64_t n, const float *B, int64_t ldb, int64_t nvec,
                                        const float *f, float *dst, int64_t ldd, int rows, int64_t cols) {
    int64_t c0 = 0;
    for (; c0 + 3 <= nvec; c0 += 3) attn_avx2_chunk(3, a, n, B, ldb, c0, f, dst, ldd, rows, cols);
    if (nvec - c0 == 2) attn_avx2_chunk(2, a, n, B, ldb, c0, f, dst, ldd, rows, cols);
    if (nvec - c0 == 1) attn_avx2_chunk(1, a, n, B, ldb, c0, f, dst, ldd, rows, cols);
}

/* the sum and the max of the 8 lanes of x, each a fixed tree */
ATTN_AVX2 static inline float attn_avx2_hsum(__m256 x) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
ATTN_AVX2 static inline float attn_avx2_hmax(__m256 x) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

/* dst rows 0-7 (ld apart) = the 8 x 8 block at src (rows ls apart), transposed */
ATTN_AVX2 static inline void attn_avx2_transpose8(const float *src, int64_t ls, float *dst, int64_t ld) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * ls);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(dst + i * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

/* attention_small_entry's contract, with AVX2 and FMA */
ATTN_AVX2 static void attention_avx2_entry(int64_t i_begin, int64_t i_end, int64_t Nk, int64_t D, int64_t Dv,
                                           float scale, const float *q, const float *k, const float *v, float *o,
                                           float *lse, const attn_next *nx) {
    float kt[ATTN_SMALL_D * ATTN_SMALL_NK_FWD] __attribute__((aligned(32)));
    float vpanel[ATTN_SMALL_NK_FWD * ATTN_SMALL_N] __attribute__((aligned(32)));
    float p[ATTN_AVX2_R * ATTN_SMALL_NK_FWD] __attribute__((aligned(32)));
    const int64_t nvec = (Nk + 7) / 8, ldk = 8 * nvec, ldv = (Dv + 7) / 8 * 8;
    /* the keys past the last full 8 are scored apart when the product's last chunk would be that one
     * vector (chunks of 3) */
    const int64_t tail = nvec % 3 == 1 && Nk % 8 && Nk % 8 <= ATTN_SMALL_TAIL ? Nk % 8 : 0;
    const __m256 keep = _mm256_castsi256_ps(attn_avx2_first_n(Nk - 8 * (nvec - 1))); /* the last vector's keys */
    /* kt = K^T, 8 x 8 blocks where whole, zeros past Nk (the tail's block is not read) */
    for (int64_t j0 = 0; j0 < (tail ? ldk - 8 : ldk); j0 += 8)
        for (int64_t d0 = 0; d0 < D; d0 += 8) {
            if (j0 + 8 <= Nk && d0 + 8 <= D) {
                attn_avx2_transpose8(k + j0 * D + d0, D, kt + d0 * ldk + j0, ldk);
                continue;
            }
            for (int64_t d = d0; d < D && d < d0 + 8; d++)
                for (int64_t j = j0; j < j0 + 8; j++) kt[d * ldk + j] = j < Nk ? k[j * D + d] : 0;
        }
    const float *vb = v;
    if (ldv != Dv) {
        for (int64_t j = 0; j < Nk; j++) {
            memcpy(vpanel + j * ldv, v + j * Dv, sizeof(float) * (size_t)Dv);
            memset(vpanel + j * ldv + Dv, 0, sizeof(float) * (size_t)(ldv - Dv));
        }
        vb = vpanel;
    }
    const float scales[ATTN_AVX2_R] = {scale, scale, scale, scale};
    const float *pr[ATTN_AVX2_R];
    for (int r = 0; r < ATTN_AVX2_R; r++) pr[r] = p + r * ATTN_SMALL_NK_FWD;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += ATTN_AVX2_R) {
        const int mr = i_end - i0 < ATTN_AVX2_R ? (int)(i_end - i0) : ATTN_AVX2_R;
        const attn_share share = attn_block_share(nx, i0 - i_begin, i_end - i_begin, ATTN_AVX2_R);
        attn_prefetch_part(nx, share, 0);
        const float *qr[ATTN_AVX2_R]; /* rows past the end repeat the last (their scores are not used) */
        for (int r = 0; r < ATTN_AVX2_R; r++) qr[r] = q + (i0 + (r < mr ? r : mr - 1)) * D;
        attn_avx2_product(qr, D, kt, ldk, tail ? nvec - 1 : nvec, scales, p, ATTN_SMALL_NK_FWD, ATTN_AVX2_R, ldk);
        if (tail) attn_avx2_tail_scores(qr, k + (Nk - tail) * D, tail, D, scale, p + (Nk - tail), ATTN_SMALL_NK_FWD);
        attn_prefetch_part(nx, share, 1);
        /* P = exp(S - m), m the row max; vector g of the 4 rows in lockstep, then g + 1; each row
         * sums in the order of g */
        float m[ATTN_AVX2_R], inv[ATTN_AVX2_R];
        __m256 shift[ATTN_AVX2_R], sum[ATTN_AVX2_R];
#pragma GCC unroll 4
        for (int r = 0; r < ATTN_AVX2_R; r++) shift[r] = attn_avx2_scores(p + r * ATTN_SMALL_NK_FWD, 0, nvec, keep);
        for (int64_t g = 1; g < nvec; g++)
#pragma GCC unroll 4
            for (int r = 0; r < ATTN_AVX2_R; r++)
                shift[r] = _mm256_max_ps(shift[r], attn_avx2_scores(p + r * ATTN_SMALL_NK_FWD, g, nvec, keep));
#pragma GCC unroll 4
        for (int r = 0; r < ATTN_AVX2_R; r++) {
            m[r] = attn_avx2_hmax(shift[r]);
            shift[r] = _mm256_set1_ps(m[r]);
            sum[r] = _mm256_setzero_ps();
        }
        for (int64_t g = 0; g < nvec; g++) {
            __m256 e[ATTN_AVX2_R];
#pragma GCC unroll 4
            for (int r = 0; r < ATTN_AVX2_R; r++)
                e[r] = _mm256_sub_ps(attn_avx2_scores(p + r * ATTN_SMALL_NK_FWD, g, nvec, keep), shift[r]);
            af_exp8xn_avx2(ATTN_AVX2_R, e);
#pragma GCC unroll 4
            for (int r = 0; r < ATTN_AVX2_R; r++) {
                _mm256_store_ps(p + r * ATTN_SMALL_NK_FWD + 8 * g, e[r]);
                sum[r] = _mm256_add_ps(sum[r], e[r]);
            }
        }
        for (int r = 0; r < ATTN_AVX2_R; r++) {
            const float l = attn_avx2_hsum(sum[r]);
            inv[r] = 1.0f / l;
            if (r < mr) lse[i0 + r] = m[r] + logf(l);
        }
        attn_prefetch_part(nx, share, 2);
        attn_avx2_product(pr, Nk, vb, ldv, ldv / 8, inv, o + i0 * Dv, Dv, mr, Dv); /* O = P V / l */
    }
}

/* The backward of one batch entry (the formulas in the header), blocks of R query rows: P from the
 * saved lse, dP = dO V^T, dS = P (dP - delta) in registers; dQ rows += scale dS K at once, while
 * dK and dV gather over the row blocks in order (scale dS^T Q and P^T dO) in local buffers that are
 * added into dk, dv at the end. Any of dq, dk, dv may be NULL; bits 0-2 of fresh: dq, dk, dv written
 * instead of added to. */
ATTN_AVX512 static void attention_small_backward_entry(int64_t Nq, int64_t Nk, int64_t D, int64_t Dv, float scale,
                                                       const float *q, const float *k, const float *v,
                                                       const float *out, const float *lse, const float *dout,
                                                       float *dq, float *dk, float *dv, uint32_t fresh,
                                                       const attn_next *nx) {
    float kt[ATTN_SMALL_D * ATTN_SMALL_N] __attribute__((aligned(64)));
    float vt[ATTN_SMALL_N * ATTN_SMALL_N] __attribute__((aligned(64)));
    float dkb[ATTN_SMALL_D / 64][ATTN_SMALL_N * ATTN_SMALL_N] __attribute__((aligned(64)));
    float dvb[ATTN_SMALL_N * ATTN_SMALL_N] __attribute__((aligned(64)));
    float p[ATTN_SMALL_R * ATTN_SMALL_N] __attribute__((aligned(64)));
    float ds[ATTN_SMALL_R * ATTN_SMALL_N] __attribute__((aligned(64)));
    const int64_t nchunk = (D + 63) / 64; /* D in chunks of 64 columns for dQ and dK */
    attn_panel(k, Nk, D, D, kt, ATTN_SMALL_N);
    if (dq || dk) attn_panel(v, Nk, Dv, Dv, vt, ATTN_SMALL_N);
    if (dk) memset(dkb, 0, sizeof(float) * (size_t)(nchunk * ATTN_SMALL_N * ATTN_SMALL_N));
    if (dv) memset(dvb, 0, sizeof dvb);
    __mmask16 all[4], km[4], vm[4];
    attn_masks(ATTN_SMALL_N, all);
    attn_masks(Nk, km);
    attn_masks(Dv, vm);
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int64_t i0 = 0; i0 < Nq; i0 += ATTN_SMALL_R) {
        const int64_t mr = Nq - i0 < ATTN_SMALL_R ? Nq - i0 : ATTN_SMALL_R;
        const attn_share share = attn_block_share(nx, i0, Nq, ATTN_SMALL_R);
        attn_prefetch(nx, share.from, share.to);
        const float *qr[ATTN_SMALL_R], *gr[ATTN_SMALL_R], *dsr[ATTN_SMALL_R];
        float delta[ATTN_SMALL_R];
        for (int r = 0; r < ATTN_SMALL_R; r++) {
            const int64_t i = i0 + (r < mr ? r : mr - 1);
            qr[r] = q + i * D, gr[r] = dout + i * Dv, dsr[r] = ds + r * ATTN_SMALL_N;
            double acc = 0; /* delta_i = dO_i . O_i, as the blocked path sums it */
            for (int64_t c = 0; c < Dv; c++) acc += (double)out[i * Dv + c] * dout[i * Dv + c];
            delta[r] = (float)acc;
        }
        __m512 acc[ATTN_SMALL_R][4];
        attn_rows_times(4, qr, D, kt, ATTN_SMALL_N, all, acc);
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) { /* P = exp(S - L); 0 past the keys and past the rows */
            const __m512 shift = _mm512_set1_ps(lse[i0 + (r < mr ? r : mr - 1)]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m512 e = af_exp16_avx512(_mm512_sub_ps(_mm512_mul_ps(acc[r][c], vscale), shift));
                _mm512_store_ps(p + r * ATTN_SMALL_N + 16 * c, _mm512_maskz_mov_ps(r < mr ? km[c] : 0, e));
            }
        }
        if (dv) attn_rank_update(p, Nk, gr, vm, dvb); /* dV += P^T dO */
        if (!dq && !dk) continue;
        attn_rows_times(4, gr, Dv, vt, ATTN_SMALL_N, all, acc); /* dP = dO V^T */
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) {
            const __m512 dl = _mm512_set1_ps(delta[r]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                const __m512 pv = _mm512_load_ps(p + r * ATTN_SMALL_N + 16 * c);
                _mm512_store_ps(ds + r * ATTN_SMALL_N + 16 * c, _mm512_mul_ps(pv, _mm512_sub_ps(acc[r][c], dl)));
            }
        }
        for (int64_t h = 0; h < nchunk; h++) {
            __mmask16 dm[4];
            attn_masks(D - 64 * h, dm);
            if (dq) {
                attn_rows_times(4, dsr, Nk, k + 64 * h, D, dm, acc); /* dQ += scale dS K */
#pragma GCC unroll 6
                for (int r = 0; r < ATTN_SMALL_R; r++)
                    if (r < mr)
#pragma GCC unroll 4
                        for (int c = 0; c < 4; c++) {
                            float *dst = dq + (i0 + r) * D + 64 * h + 16 * c;
                            const __m512 old = _mm512_maskz_loadu_ps(fresh & 1u ? 0 : dm[c], dst);
                            _mm512_mask_storeu_ps(dst, dm[c], _mm512_add_ps(old, _mm512_mul_ps(acc[r][c], vscale)));
                        }
            }
            if (dk) {
                const float *qh[ATTN_SMALL_R];
                for (int r = 0; r < ATTN_SMALL_R; r++) qh[r] = qr[r] + 64 * h;
                attn_rank_update(ds, Nk, qh, dm, dkb[h]); /* dK += dS^T Q (scaled at the end) */
            }
        }
    }
    const int acc_k = !(fresh & 2u), acc_v = !(fresh & 4u);
    for (int64_t j = 0; j < Nk; j++) {
        if (dk)
            for (int64_t c = 0; c < D; c++)
                AF_GRAD_STORE(dk[j * D + c], acc_k, scale * dkb[c / 64][j * ATTN_SMALL_N + c % 64]);
        if (dv)
            for (int64_t c = 0; c < Dv; c++) AF_GRAD_STORE(dv[j * Dv + c], acc_v, dvb[j * ATTN_SMALL_N + c]);
    }
}

/* the short-sequence kernels apply: float32, Nk <= 256 keys forward on an AVX-512 or AVX2 CPU, the
 * backward (Nk <= 64) on an AVX-512 CPU */
static int attention_small_applies(const attention_dims *d, af_dtype dtype, int backward) {
    const int64_t most_keys = backward ? ATTN_SMALL_N : ATTN_SMALL_NK_FWD;
    const int isa = attention_small_isa();
    return dtype == AF_DTYPE_F32 && d->Nk >= 1 && d->Nk <= most_keys && d->Dv >= 1 && d->Dv <= ATTN_SMALL_N &&
           d->D >= 1 && d->D <= ATTN_SMALL_D && d->Nq >= 1 &&
           (isa == AF_ATTENTION_AVX512 || (isa == AF_ATTENTION_AVX2 && !backward));
}

static void attention_small_forward(const attention_dims *d, float scale, const float *q, const float *k,
                                    const float *v, float *out, float *lse) {
    const int64_t per = (d->Nq + ATTN_SMALL_TASK_ROWS - 1) / ATTN_SMALL_TASK_ROWS, tasks = d->batch * per;
    AF_PARALLEL_FOR(tasks > 1 ? d->batch * d->Nq * (d->Nk + 1) * (d->D + d->Dv + 8) : 0)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / per, i_begin = t % per * ATTN_SMALL_TASK_ROWS;
        const int64_t i_end = d->Nq - i_begin < ATTN_SMALL_TASK_ROWS ? d->Nq : i_begin + ATTN_SMALL_TASK_ROWS;
        attn_next nx = {.n = 0, .total = 0}; /* the next task's operands */
        if (t + 1 < tasks) {
            const int64_t nb = (t + 1) / per, ni = (t + 1) % per * ATTN_SMALL_TASK_ROWS;
            const int64_t nrows = d->Nq - ni < ATTN_SMALL_TASK_ROWS ? d->Nq - ni : ATTN_SMALL_TASK_ROWS;
            attn_next_add(&nx, k + nb * d->Nk * d->D, d->Nk * d->D);
            attn_next_add(&nx, q + (nb * d->Nq + ni) * d->D, nrows * d->D);
            attn_next_add(&nx, v + nb * d->Nk * d->Dv, d->Nk * d->Dv);
            attn_next_add(&nx, out + (nb * d->Nq + ni) * d->Dv, nrows * d->Dv); /* its stores wait on none */
        }
        if (attention_small_isa() == AF_ATTENTION_AVX2) {
            attention_avx2_entry(i_begin, i_end, d->Nk, d->D, d->Dv, scale, q + b * d->Nq * d->D, k + b * d->Nk * d->D,
                                 v + b * d->Nk * d->Dv, out + b * d->Nq * d->Dv, lse + b * d->Nq, &nx);
            continue;
        }
        attention_small_entry(i_begin, i_end, d->Nk, d->D, d->Dv, scale, q + b * d->Nq * d->D,
                              k + b * d->Nk * d->D, v + b * d->Nk * d->Dv, out + b * d->Nq * d->Dv, lse + b * d->Nq,
                              &nx);
    }
}

static void attention_small_backward(const attention_dims *d, float scale, const float *q, const float *k,
                                     const float *v, const float *out, const float *lse, const float *dout, float *dq,
                                     float *dk, float *dv, uint32_t fresh) {
    AF_PARALLEL_FOR(d->batch > 1 ? d->batch * d->Nq * (d->Nk + 1) * (d->D + d->Dv + 8) : 0)
    for (int64_t b = 0; b < d->batch; b++) {
        attn_next nx = {.n = 0, .total = 0};
        if (b + 1 < d->batch) {
            const int64_t e = b + 1, qd = d->Nq * d->D, kd = d->Nk * d->D, vd = d->Nk * d->Dv, od = d->Nq * d->Dv;
            attn_next_add(&nx, k + e * kd, kd);
            attn_next_add(&nx, v + e * vd, vd);
            attn_next_add(&nx, q + e * qd, qd);
            attn_next_add(&nx, out + e * od, od);
            attn_next_add(&nx, dout + e * od, od);
            attn_next_add(&nx, dq ? dq + e * qd : NULL, qd);
            attn_next_add(&nx, dk ? dk + e * kd : NULL, kd);
            attn_next_add(&nx, dv ? dv + e * vd : NULL, vd);
        }
        attention_small_backward_entry(d->Nq, d->Nk, d->D, d->Dv, scale, q + b * d->Nq * d->D, k + b * d->Nk * d->D,
                                       v + b * d->Nk * d->Dv, out + b * d->Nq * d->Dv, lse + b * d->Nq,
                                       dout + b * d->Nq * d->Dv, dq ? dq + b * d->Nq * d->D : NULL,
                                       dk ? dk + b * d->Nk * d->D : NULL, dv ? dv + b * d->Nk * d->Dv : NULL, fresh,
                                       &nx);
    }
}
#endif

int af_attention_kernel(void) {
#if ATTN_HAVE_AVX512
    return attention_small_isa();
#else
    return AF_ATTENTION_BLOCKED;
#endif
}

static af_status scaled_dot_product_attention_forward_cpu(af_op_call *c) {
    attention_dims d;
    attention_dims_make(c->in[0], c->in[2], c->in[1]->shape[c->in[1]->ndim - 2], &d);
    AF_TRY(attention_check(c, &d));
#if ATTN_HAVE_AVX512
    if (attention_small_applies(&d, c->in[0]->dtype, 0)) {
        attention_small_forward(&d, (float)c->attr.f[0], af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                                af_tensor_data(c->in[2]), af_tensor_data(c->out[0]), af_tensor_data(c->saved[0]));
        return AF_OK;
    }
#endif
    int failed = AF_DISPATCH_FLOAT(c->in[0]->dtype, attention_forward, &d, c->attr.f[0], af_tensor_data(c->in[0]),
                                   af_tensor_data(c->in[1]), af_tensor_data(c->in[2]), af_tensor_data(c->out[0]),
                                   af_tensor_data(c->saved[0]));
    return failed ? attention_oom() : AF_OK;
}

static af_status scaled_dot_product_attention_backward_cpu(const af_op_call *c, af_tensor *const *dout,
                                                           af_tensor *const *din) {
    attention_dims d;
    attention_dims_make(c->in[0], c->in[2], c->in[1]->shape[c->in[1]->ndim - 2], &d);
    AF_TRY(attention_check(c, &d));
    void *g[3];
    uint32_t fresh = c->din_fresh;
    for (int i = 0; i < 3; i++) {
        g[i] = din[i] ? af_tensor_data(din[i]) : NULL;
        if (d.Nq == 0 || d.Nk == 0) AF_TRY(af_din_from_zeros(din, i, &fresh)); /* no term sums into it */
    }
#if ATTN_HAVE_AVX512
    if (attention_small_applies(&d, c->in[0]->dtype, 1)) {
        attention_small_backward(&d, (float)c->attr.f[0], af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                                 af_tensor_data(c->in[2]), af_tensor_data(c->out[0]), af_tensor_data(c->saved[0]),
                                 af_tensor_data(dout[0]), g[0], g[1], g[2], fresh);
        return AF_OK;
    }
#endif
    int failed = AF_DISPATCH_FLOAT(c->in[0]->dtype, attention_backward, &d, c->attr.f[0], af_tensor_data(c->in[0]),
                                   af_tensor_data(c->in[1]), af_tensor_data(c->in[2]), af_tensor_data(c->out[0]),
                                   af_tensor_data(c->saved[0]), af_tensor_data(dout[0]), g[0], g[1], g[2], fresh);
    return failed ? attention_oom() : AF_OK;
}

const af_op_def af_op_def_scaled_dot_product_attention = {
    .name = "scaled_dot_product_attention", .input_names = attention_inputs, .setup = attention_setup,
    .forward_cpu = scaled_dot_product_attention_forward_cpu,
    .backward_cpu = scaled_dot_product_attention_backward_cpu, .differentiable_inputs = 0x7u,
    .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

/* e^x for the softmax numerators: float32 through the vectorisable af_expf (vexp.h) */
#if AF_FLOAT_PASS == 1
static inline float attn_exp_f32(float x) { return af_expf(x); }
#else
static inline double attn_exp_f64(double x) { return exp(x); }
#endif

/* p[j] = exp(p[j] - shift); returns their sum */
static scalar_t K(attn_exp_row)(scalar_t *p, int64_t n, scalar_t shift) {
    scalar_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        scalar_t e = K(attn_exp)(p[j] - shift);
        p[j] = e;
        sum += e;
    }
    return sum;
}

/* q (batch, Nq, D), k (batch, Nk, D), v (batch, Nk, Dv) -> out (batch, Nq, Dv), lse (batch, Nq).
 * Returns non-zero when a task could not get its score block. */
static int K(attention_forward)(const attention_dims *d, double scale_d, const scalar_t *q, const scalar_t *k,
                                const scalar_t *v, scalar_t *out, scalar_t *lse) {
    const int64_t Nq = d->Nq, Nk = d->Nk, D = d->D, Dv = d->Dv;
    const scalar_t scale = (scalar_t)scale_d;
    int64_t bq, bk;
    const int64_t nqb = attention_blocks(Nq, ATTN_BLOCK_Q, &bq), nkb = attention_blocks(Nk, ATTN_BLOCK_K, &bk);
    const int64_t tasks = d->batch * nqb;
    int failed = 0;
    AF_PARALLEL_FOR(tasks > 1 ? d->batch * Nq * (Nk + 1) * (D + Dv + 8) : 0)
    for (int64_t t = 0; t < tasks; t++) {
        const int64_t b = t / nqb, i0 = t % nqb * bq, mq = Nq - i0 < bq ? Nq - i0 : bq;
        const scalar_t *Q = q + (b * Nq + i0) * D;
        scalar_t *O = out + (b * Nq + i0) * Dv, *L = lse + b * Nq + i0;
        scalar_t *s = af_alloc_host(sizeof(scalar_t) * (size_t)(mq * bk + 2 * mq));
        if (!s) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        scalar_t *m = s + mq * bk, *l = m + mq;
        for (int64_t r = 0; r < mq; r++) m[r] = -INFINITY, l[r] = 0;
        memset(O, 0, sizeof(scalar_t) * (size_t)(mq * Dv));
        for (int64_t jb = 0; jb < nkb; jb++) {
            const int64_t j0 = jb * bk, nk = Nk - j0 < bk ? Nk - j0 : bk;
            AF_GEMM(0, 1, mq, nk, D, scale, Q, D, k + (b * Nk + j0) * D, D, 0, s, nk);
            for (int64_t r = 0; r < mq; r++) {
                scalar_t *row = s + r * nk, mx = row[0];
#pragma omp simd reduction(max : mx)
                for (int64_t j = 1; j < nk; j++) mx = row[j] > mx ? row[j] : mx;
                const scalar_t mnew = mx > m[r] ? mx : m[r];
                const scalar_t corr = jb == 0 ? 0 : exp(m[r] - mnew); /* rescales the earlier blocks' sums */
                l[r] = l[r] * corr + K(attn_exp_row)(row, nk, mnew);
                m[r] = mnew;
                if (jb > 0 && corr != 1)
                    for (int64_t c = 0; c < Dv; c++) O[r * Dv + c] *= corr;
            }
            AF_GEMM(0, 0, mq, Dv, nk, 1, s, nk, v + (b * Nk + j0) * Dv, Dv, 1, O, Dv);
        }
        for (int64_t r = 0; r < mq; r++) {
            if (l[r] > 0) {
                const scalar_t inv = 1 / l[r];
                for (int64_t c = 0; c < Dv; c++) O[r * Dv + c] *= inv;
            }
            L[r] = l[r] > 0 ? m[r] + log(l[r]) : -INFINITY;
        }
        af_free_host(s);
    }
    return failed;
}

/* Gradients (each may be NULL) accumulate into dq (batch, Nq, D), dk (batch, Nk, D), dv (batch, Nk, Dv)
 * from dout (batch, Nq, Dv), with out and lse as the forward left them; those with their bit of fresh
 * set (0-2: dq, dk, dv) are written by the first block's GEMM (beta 0) instead. */
static int K(attention_backward)(const attention_dims *d, double scale_d, const scalar_t *q, const scalar_t *k,
                                 const scalar_t *v, const scalar_t *out, const scalar_t *lse, const scalar_t *dout,
                                 scalar_t *dq, scalar_t *dk, scalar_t *dv, uint32_t fresh) {
    const int64_t Nq = d->Nq, Nk = d->Nk, D = d->D, Dv = d->Dv;
    const int acc_q = !(fresh & 1u), acc_k = !(fresh & 2u), acc_v = !(fresh & 4u); /* else the first block writes */
    const scalar_t scale = (scalar_t)scale_d;
    int64_t bq, bk;
    const int64_t nqb = attention_blocks(Nq, ATTN_BLOCK_K, &bq), nkb = attention_blocks(Nk, ATTN_BLOCK_K, &bk);
    int failed = 0;
    if (!dq && !dk && !dv) return 0;
    AF_PARALLEL_FOR(d->batch > 1 ? d->batch * Nq * (Nk + 1) * (D + Dv + 8) : 0)
    for (int64_t b = 0; b < d->batch; b++) {
        scalar_t *s = af_alloc_host(sizeof(scalar_t) * (size_t)(2 * bq * bk + Nq));
        if (!s) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        scalar_t *dp = s + bq * bk, *delta = dp + bq * bk;
        for (int64_t i = 0; i < Nq; i++) { /* delta_i = dO_i . O_i = sum_j P_ij dP_ij */
            const scalar_t *o = out + (b * Nq + i) * Dv, *g = dout + (b * Nq + i) * Dv;
            double acc = 0;
            for (int64_t c = 0; c < Dv; c++) acc += (double)o[c] * g[c];
            delta[i] = (scalar_t)acc;
        }
        for (int64_t jb = 0; jb < nkb; jb++) {
            const int64_t j0 = jb * bk, nk = Nk - j0 < bk ? Nk - j0 : bk;
            const scalar_t *Kj = k + (b * Nk + j0) * D, *Vj = v + (b * Nk + j0) * Dv;
            for (int64_t ib = 0; ib < nqb; ib++) {
                const int64_t i0 = ib * bq, mq = Nq - i0 < bq ? Nq - i0 : bq;
                const scalar_t *Qi = q + (b * Nq + i0) * D, *dOi = dout + (b * Nq + i0) * Dv;
                const scalar_t *L = lse + b * Nq + i0;
                AF_GEMM(0, 1, mq, nk, D, scale, Qi, D, Kj, D, 0, s, nk);
                for (int64_t r = 0; r < mq; r++) K(attn_exp_row)(s + r * nk, nk, L[r]); /* P */
                if (dv)
                    AF_GEMM(1, 0, nk, Dv, mq, 1, s, nk, dOi, Dv, acc_v || ib ? 1 : 0, dv + (b * Nk + j0) * Dv, Dv);
                if (!dq && !dk) continue;
                AF_GEMM(0, 1, mq, nk, Dv, 1, dOi, Dv, Vj, Dv, 0, dp, nk);
                for (int64_t r = 0; r < mq; r++) {
                    scalar_t *pr = s + r * nk, *gr = dp + r * nk, dl = delta[i0 + r];
#pragma omp simd
                    for (int64_t j = 0; j < nk; j++) gr[j] = pr[j] * (gr[j] - dl); /* dS */
                }
                if (dq)
                    AF_GEMM(0, 0, mq, D, nk, scale, dp, nk, Kj, D, acc_q || jb ? 1 : 0, dq + (b * Nq + i0) * D, D);
                if (dk)
                    AF_GEMM(1, 0, nk, D, mq, scale, dp, nk, Qi, D, acc_k || ib ? 1 : 0, dk + (b * Nk + j0) * D, D);
            }
        }
        af_free_host(s);
    }
    return failed;
}

#endif
