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

static af_status attention_oom(void) {
    return AF_FAIL(AF_ERR_OOM, "scaled_dot_product_attention: out of memory for a block of scores");
}

#if ATTN_HAVE_AVX512
/* ---- the short-sequence forward: one (batch entry) in registers, float32, AVX-512 ----
 *
 * At Nk <= 64 keys (ViT-B/16 at 112x112 has 50 tokens) one score row is four 16-float vectors, so a
 * block of ATTN_SMALL_R query rows of S = scale Q K^T lives in 24 zmm registers: the scores, the
 * row softmax and P V run without a GEMM call, its packing buffers and its edge tiles, which cost
 * more than the arithmetic at these sizes. K is transposed once per batch entry into a 64-column
 * panel (zero columns beyond Nk, masked to -inf before the max). Each S element sums over d in order
 * with one FMA per step, as the GEMM's micro-kernel does; the sums of P run in a fixed vector order;
 * so the result depends only on the shapes, never on the thread count. Compiled with a target
 * attribute and run only where the CPU has AVX-512F (checked at run time), like gemm_avx512.c. */
#define ATTN_SMALL_R 6   /* query rows per block: 6 x 4 accumulators + 4 operands fit 32 zmm */
#define ATTN_SMALL_N 64  /* most keys, and most value columns, of the short path */
#define ATTN_SMALL_D 128 /* most head dims (the K panel, D x 64 floats, stays on the stack) */
#define ATTN_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

static int attention_small_supported(void) {
    static int cached = -1; /* any thread may fill it in */
    int use = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (use < 0) {
        __builtin_cpu_init();
        use = __builtin_cpu_supports("avx512f") != 0;
        __atomic_store_n(&cached, use, __ATOMIC_RELAXED);
    }
    return use;
}

static inline __mmask16 attn_first_n(int64_t n) { return (__mmask16)(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }

/* one batch entry: q (Nq, D), k (Nk, D), v (Nk, Dv) -> o (Nq, Dv), lse (Nq); 1 <= Nk, Dv <= 64, D <= 128 */
ATTN_AVX512 static void attention_small_entry(int64_t Nq, int64_t Nk, int64_t D, int64_t Dv, float scale,
                                              const float *q, const float *k, const float *v, float *o, float *lse) {
    float kt[ATTN_SMALL_D * ATTN_SMALL_N] __attribute__((aligned(64)));
    float p[ATTN_SMALL_R * ATTN_SMALL_N] __attribute__((aligned(64)));
    const __mmask16 km[4] = {attn_first_n(Nk), attn_first_n(Nk - 16), attn_first_n(Nk - 32), attn_first_n(Nk - 48)};
    for (int64_t j0 = 0; j0 < ATTN_SMALL_N; j0 += 16) /* kt[d][j] = k[j][d], zeros past Nk */
        for (int64_t d0 = 0; d0 < D; d0 += 16)
            af_avx512_transpose16(k + j0 * D + d0, D, Nk - j0, (uint16_t)attn_first_n(D - d0),
                                  kt + d0 * ATTN_SMALL_N + j0, ATTN_SMALL_N);
    const __mmask16 vm[4] = {attn_first_n(Dv), attn_first_n(Dv - 16), attn_first_n(Dv - 32), attn_first_n(Dv - 48)};
    const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t i0 = 0; i0 < Nq; i0 += ATTN_SMALL_R) {
        const int64_t mr = Nq - i0 < ATTN_SMALL_R ? Nq - i0 : ATTN_SMALL_R;
        const float *qr[ATTN_SMALL_R]; /* rows past the end repeat the last one (computed, not stored) */
        for (int r = 0; r < ATTN_SMALL_R; r++) qr[r] = q + (i0 + (r < mr ? r : mr - 1)) * D;
        __m512 acc[ATTN_SMALL_R][4];
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            __m512 kv[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) kv[c] = _mm512_load_ps(kt + d * ATTN_SMALL_N + 16 * c);
#pragma GCC unroll 6
            for (int r = 0; r < ATTN_SMALL_R; r++) {
                const __m512 qb = _mm512_set1_ps(qr[r][d]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(qb, kv[c], acc[r][c]);
            }
        }
        float m[ATTN_SMALL_R], inv[ATTN_SMALL_R];
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) {
            __m512 mx = ninf;
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                acc[r][c] = _mm512_mask_mul_ps(ninf, km[c], acc[r][c], vscale); /* -inf past the keys */
                mx = _mm512_max_ps(mx, acc[r][c]);
                _mm512_store_ps(p + r * ATTN_SMALL_N + 16 * c, acc[r][c]);
            }
            m[r] = _mm512_reduce_max_ps(mx);
        }
        for (int r = 0; r < ATTN_SMALL_R; r++) { /* P = exp(S - m): a loop the compiler vectorises */
            float *pr = p + r * ATTN_SMALL_N;
            const float mr_ = m[r];
            for (int j = 0; j < ATTN_SMALL_N; j++) pr[j] = af_expf(pr[j] - mr_);
            __m512 sum = _mm512_load_ps(pr);
            for (int c = 1; c < 4; c++) sum = _mm512_add_ps(sum, _mm512_load_ps(pr + 16 * c));
            const float l = _mm512_reduce_add_ps(sum);
            inv[r] = 1.0f / l;
            if (r < mr) lse[i0 + r] = m[r] + logf(l);
        }
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
        for (int64_t j = 0; j < Nk; j++) { /* O = P V, V's rows read in place */
            __m512 vv[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) vv[c] = _mm512_maskz_loadu_ps(vm[c], v + j * Dv + 16 * c);
#pragma GCC unroll 6
            for (int r = 0; r < ATTN_SMALL_R; r++) {
                const __m512 pb = _mm512_set1_ps(p[r * ATTN_SMALL_N + j]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
            }
        }
#pragma GCC unroll 6
        for (int r = 0; r < ATTN_SMALL_R; r++) /* unrolled with constant indices: acc stays in registers */
            if (r < mr)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    _mm512_mask_storeu_ps(o + (i0 + r) * Dv + 16 * c, vm[c],
                                          _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inv[r])));
    }
}

static int attention_small_applies(const attention_dims *d, af_dtype dtype) {
    return dtype == AF_DTYPE_F32 && d->Nk >= 1 && d->Nk <= ATTN_SMALL_N && d->Dv >= 1 && d->Dv <= ATTN_SMALL_N &&
           d->D >= 1 && d->D <= ATTN_SMALL_D && d->Nq >= 1 && attention_small_supported();
}

static void attention_small_forward(const attention_dims *d, float scale, const float *q, const float *k,
                                    const float *v, float *out, float *lse) {
    AF_PARALLEL_FOR(d->batch > 1 ? d->batch * d->Nq * (d->Nk + 1) * (d->D + d->Dv + 8) : 0)
    for (int64_t b = 0; b < d->batch; b++)
        attention_small_entry(d->Nq, d->Nk, d->D, d->Dv, scale, q + b * d->Nq * d->D, k + b * d->Nk * d->D,
                              v + b * d->Nk * d->Dv, out + b * d->Nq * d->Dv, lse + b * d->Nq);
}
#endif

static af_status scaled_dot_product_attention_forward_cpu(af_op_call *c) {
    attention_dims d;
    attention_dims_make(c->in[0], c->in[2], c->in[1]->shape[c->in[1]->ndim - 2], &d);
    AF_TRY(attention_check(c, &d));
#if ATTN_HAVE_AVX512
    if (attention_small_applies(&d, c->in[0]->dtype)) {
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
    for (int i = 0; i < 3; i++) g[i] = din[i] ? af_tensor_data(din[i]) : NULL;
    int failed = AF_DISPATCH_FLOAT(c->in[0]->dtype, attention_backward, &d, c->attr.f[0], af_tensor_data(c->in[0]),
                                   af_tensor_data(c->in[1]), af_tensor_data(c->in[2]), af_tensor_data(c->out[0]),
                                   af_tensor_data(c->saved[0]), af_tensor_data(dout[0]), g[0], g[1], g[2]);
    return failed ? attention_oom() : AF_OK;
}

const af_op_def af_op_def_scaled_dot_product_attention = {
    .name = "scaled_dot_product_attention", .input_names = attention_inputs, .setup = attention_setup,
    .forward_cpu = scaled_dot_product_attention_forward_cpu,
    .backward_cpu = scaled_dot_product_attention_backward_cpu, .differentiable_inputs = 0x7u};

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
 * from dout (batch, Nq, Dv), with out and lse as the forward left them. */
static int K(attention_backward)(const attention_dims *d, double scale_d, const scalar_t *q, const scalar_t *k,
                                 const scalar_t *v, const scalar_t *out, const scalar_t *lse, const scalar_t *dout,
                                 scalar_t *dq, scalar_t *dk, scalar_t *dv) {
    const int64_t Nq = d->Nq, Nk = d->Nk, D = d->D, Dv = d->Dv;
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
                if (dv) AF_GEMM(1, 0, nk, Dv, mq, 1, s, nk, dOi, Dv, 1, dv + (b * Nk + j0) * Dv, Dv);
                if (!dq && !dk) continue;
                AF_GEMM(0, 1, mq, nk, Dv, 1, dOi, Dv, Vj, Dv, 0, dp, nk);
                for (int64_t r = 0; r < mq; r++) {
                    scalar_t *pr = s + r * nk, *gr = dp + r * nk, dl = delta[i0 + r];
#pragma omp simd
                    for (int64_t j = 0; j < nk; j++) gr[j] = pr[j] * (gr[j] - dl); /* dS */
                }
                if (dq) AF_GEMM(0, 0, mq, D, nk, scale, dp, nk, Kj, D, 1, dq + (b * Nq + i0) * D, D);
                if (dk) AF_GEMM(1, 0, nk, D, mq, scale, dp, nk, Qi, D, 1, dk + (b * Nk + j0) * D, D);
            }
        }
        af_free_host(s);
    }
    return failed;
}

#endif
