/* Matrix product with torch.matmul's batch broadcasting.
 *
 * in = (a, b), same float dtype, both at least 2-D:
 *   a (..., M, K) @ b (..., K, N) -> (broadcast(a.batch, b.batch), M, N)
 * The batch dims (all but the last two) broadcast right-aligned, as torch.matmul's: e.g.
 * (B,H,N,D)@(B,H,D,M), (B,1,N,D)@(1,H,D,M), (N,D)@(B,D,M), (B,M,K)@(K,N). No attributes. (1-D
 * operands, which torch.matmul also takes, are refused: unsqueeze them.)
 *
 * Forward: when b is one matrix shared by all of a's (b 2-D, or its batch dims all 1 and a's not
 * broadcast), a's batch folds into M: one GEMM (batch*M, K) @ (K, N). Otherwise one GEMM per output
 * matrix, following the batch plan of matmul.h (a broadcast operand has matrix stride 0).
 *
 * Backward (matrix calculus, e.g. the Matrix Cookbook eq. 69-70, for Y = A B):
 *   dA += dY @ B^T, dB += A^T @ dY, per output matrix, summed over the batch dims the operand was
 *   broadcast along (torch's rule: the gradient of a broadcast operand is reduced to its shape).
 *   Folded (flat) case: dB is one GEMM A_flat^T dY_flat, whose K = batch*M sums the batch. An
 *   operand that is not broadcast gets one GEMM per matrix with beta = 1 (each of its matrices is
 *   written by one product). A broadcast one: the per-output products go to a scratch buffer, then
 *   each of the operand's elements adds its terms in output order - bitwise the same for any thread
 *   count, like every GEMM here (AF_GEMM_BATCHED, csrc/ops/gemm.c). */
#ifndef AF_FLOAT_PASS
#include <limits.h>

#include "matmul.h"

/* Per-level strides, in matrices, of one operand of a product over d's batch: a's, b's, or those of
 * a contiguous per-output array (the output, dY, a scratch). */
enum { MM_A, MM_B, MM_OUT };
static void matmul_strides(const matmul_dims *d, int role, int64_t *s) {
    int64_t contig = 1;
    for (int l = d->nlev - 1; l >= 0; l--) {
        s[l] = role == MM_A ? d->sa[l] : role == MM_B ? d->sb[l] : contig;
        contig *= d->size[l];
    }
}

/* One GEMM per output matrix o: C[o] = beta C[o] + op(A[o]) op(B[o]), X[o] at X + sum_l i_l sx[l] x_mat.
 * The last two levels are one AF_GEMM_BATCHED call (its (outer, inner) indexing), outer ones a loop. */
typedef struct matmul_run {
    int64_t sa[AF_MAX_DIMS], sb[AF_MAX_DIMS], sc[AF_MAX_DIMS];
    int64_t a_mat, b_mat, c_mat;
    int64_t outer;       /* products of the looped levels */
    int first;           /* first level inside the batched call */
    af_gemm_batch bt;
} matmul_run;

static matmul_run matmul_run_make(const matmul_dims *d, int ra, int rb, int rc, int64_t a_mat, int64_t b_mat,
                                  int64_t c_mat) {
    matmul_run r = {.a_mat = a_mat, .b_mat = b_mat, .c_mat = c_mat, .outer = 1};
    matmul_strides(d, ra, r.sa);
    matmul_strides(d, rb, r.sb);
    matmul_strides(d, rc, r.sc);
    r.first = d->nlev > 2 ? d->nlev - 2 : 0;
    for (int l = 0; l < r.first; l++) r.outer *= d->size[l];
    int n = d->nlev - r.first, f = r.first;
    r.bt = (af_gemm_batch){1, 1, 0, 0, 0, 0, 0, 0};
    if (n == 1) {
        r.bt = (af_gemm_batch){d->size[f], 1, r.sa[f] * a_mat, 0, r.sb[f] * b_mat, 0, r.sc[f] * c_mat, 0};
    } else if (n == 2) {
        r.bt = (af_gemm_batch){d->size[f] * d->size[f + 1], d->size[f + 1], r.sa[f] * a_mat, r.sa[f + 1] * a_mat,
                               r.sb[f] * b_mat, r.sb[f + 1] * b_mat, r.sc[f] * c_mat, r.sc[f + 1] * c_mat};
    }
    return r;
}

/* Element offsets of A, B, C for the o-th combination of the looped (outer) levels. */
static void matmul_run_offsets(const matmul_dims *d, const matmul_run *r, int64_t o, int64_t *oa, int64_t *ob,
                               int64_t *oc) {
    *oa = *ob = *oc = 0;
    for (int l = r->first - 1; l >= 0; l--) {
        int64_t i = o % d->size[l];
        o /= d->size[l];
        *oa += i * r->sa[l] * r->a_mat;
        *ob += i * r->sb[l] * r->b_mat;
        *oc += i * r->sc[l] * r->c_mat;
    }
}

#define AF_TEMPLATE_FILE "matmul.c"
#include "instantiate_float.h"

static af_status matmul_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    const af_tensor *a = c->in[0], *b = c->in[1];
    char sa[96], sb[96];
    af_shape_str(a->ndim, a->shape, sa, sizeof sa);
    af_shape_str(b->ndim, b->shape, sb, sizeof sb);
    if (a->ndim < 2) return AF_FAIL(AF_ERR_VALUE, "matmul: argument 'input' must be at least 2-D, got shape %s", sa);
    if (b->ndim < 2) return AF_FAIL(AF_ERR_VALUE, "matmul: argument 'other' must be at least 2-D, got shape %s", sb);
    int64_t shape[AF_MAX_DIMS];
    if (!matmul_batch_shape(a, b, shape))
        return AF_FAIL(AF_ERR_VALUE, "matmul: 'input' of shape %s and 'other' of shape %s: the batch dims (all "
                       "but the last two) do not broadcast", sa, sb);
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return AF_FAIL(AF_ERR_VALUE, "matmul: 'input' of shape %s and 'other' of shape %s cannot be multiplied "
                       "(inner dims %lld and %lld differ)", sa, sb, (long long)a->shape[a->ndim - 1],
                       (long long)b->shape[b->ndim - 2]);
    int nd = (a->ndim > b->ndim ? a->ndim : b->ndim);
    shape[nd - 2] = a->shape[a->ndim - 2];
    shape[nd - 1] = b->shape[b->ndim - 1];
    return af_alloc_out(c, 0, nd, shape, 0);
}

/* CBLAS takes int sizes; the limit belongs to this CPU path, not to setup. */
static af_status matmul_check_cblas(const af_op_call *c, const matmul_dims *d) {
    int64_t rows = d->flat ? d->batch * d->M : d->M;
    if (rows <= INT_MAX && d->N <= INT_MAX && d->K <= INT_MAX) return AF_OK;
    char sa[96], sb[96];
    return AF_FAIL(AF_ERR_VALUE, "matmul: 'input' %s @ 'other' %s exceeds the BLAS limit of 2^31 per dim",
                   af_shape_str(c->in[0]->ndim, c->in[0]->shape, sa, sizeof sa),
                   af_shape_str(c->in[1]->ndim, c->in[1]->shape, sb, sizeof sb));
}

static af_status matmul_forward_cpu(af_op_call *c) {
    matmul_dims d;
    matmul_dims_make(c->in[0], c->in[1], &d);
    AF_TRY(matmul_check_cblas(c, &d));
    AF_DISPATCH_FLOAT(c->in[0]->dtype, matmul_forward, &d, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status matmul_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    matmul_dims d;
    matmul_dims_make(c->in[0], c->in[1], &d);
    AF_TRY(matmul_check_cblas(c, &d));
    /* scratch for a broadcast operand's per-output gradients: (batch, M, K) or (batch, K, N) */
    size_t es = af_dtype_size(c->in[0]->dtype);
    int red_a = din[0] && !d.flat && d.a_batch < d.batch, red_b = din[1] && !d.flat && d.b_batch < d.batch;
    int64_t per = (red_a ? d.M * d.K : 0) > (red_b ? d.K * d.N : 0) ? d.M * d.K : (red_b ? d.K * d.N : 0);
    void *scratch = NULL;
    if ((red_a || red_b) && d.batch * per > 0) {
        scratch = af_alloc_host((size_t)(d.batch * per) * es);
        if (!scratch)
            return AF_FAIL(AF_ERR_OOM, "matmul: out of memory for the %lld-element gradient of a broadcast operand",
                           (long long)(d.batch * per));
    }
    /* a broadcast operand's gradient sums several products into each matrix, an empty product none:
     * such a gradient starts from zeros */
    uint32_t fresh = c->din_fresh;
    for (int i = 0; i < 2; i++) {
        af_status st = (i ? red_b : red_a) || c->out[0]->numel == 0 ? af_din_from_zeros(din, i, &fresh) : AF_OK;
        if (st != AF_OK) {
            af_free_host(scratch);
            return st;
        }
    }
    AF_DISPATCH_FLOAT(c->in[0]->dtype, matmul_backward, &d, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      af_tensor_data(dout[0]), din[0] ? af_tensor_data(din[0]) : NULL,
                      din[1] ? af_tensor_data(din[1]) : NULL, scratch, fresh);
    af_free_host(scratch);
    return AF_OK;
}

static const char *const matmul_inputs[] = {"input", "other", NULL};
const af_op_def af_op_def_matmul = {.name = "matmul", .input_names = matmul_inputs, .setup = matmul_setup,
                                    .forward_cpu = matmul_forward_cpu, .backward_cpu = matmul_backward_cpu,
                                    .differentiable_inputs = 0x3u, .fresh_grad_inputs = 0x3u};

#else /* ---- kernels, once per scalar_t ---- */

static void K(matmul_run)(const matmul_dims *d, const matmul_run *r, int ta, int tb, int64_t M, int64_t N,
                          int64_t Kd, const scalar_t *A, int64_t lda, const scalar_t *B, int64_t ldb, scalar_t beta,
                          scalar_t *C, int64_t ldc) {
    for (int64_t o = 0; o < r->outer; o++) {
        int64_t oa, ob, oc;
        matmul_run_offsets(d, r, o, &oa, &ob, &oc);
        AF_GEMM_BATCHED(&r->bt, ta, tb, M, N, Kd, 1, A + oa, lda, B + ob, ldb, beta, C + oc, ldc);
    }
}

/* a: a_batch matrices (M, K), b: b_batch matrices (K, N), y: batch matrices (M, N) */
static void K(matmul_forward)(const matmul_dims *d, const scalar_t *a, const scalar_t *b, scalar_t *y) {
    int64_t M = d->M, K = d->K, N = d->N;
    if (d->flat) {
        AF_GEMM(0, 0, d->batch * M, N, K, 1, a, K, b, N, 0, y, N);
        return;
    }
    const matmul_run r = matmul_run_make(d, MM_A, MM_B, MM_OUT, M * K, K * N, M * N);
    K(matmul_run)(d, &r, 0, 0, M, N, K, a, K, b, N, 0, y, N);
}

/* dst (n_dst matrices of `mat` elements) += the scratch's batch matrices, each added to the matrix
 * role's strides map it to, in output order for every element. */
static void K(matmul_reduce)(const matmul_dims *d, int role, int64_t mat, const scalar_t *scratch, scalar_t *dst) {
    const int64_t chunk = 1024, chunks = (mat + chunk - 1) / chunk;
    AF_PARALLEL_FOR(d->batch * mat)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t e0 = c * chunk, e1 = e0 + chunk < mat ? e0 + chunk : mat;
        for (int64_t o = 0; o < d->batch; o++) {
            scalar_t *out = dst + matmul_source(d, role, o) * mat;
            const scalar_t *src = scratch + o * mat;
            for (int64_t e = e0; e < e1; e++) out[e] += src[e];
        }
    }
}

/* da (a's shape) += dy @ b^T; db (b's shape) += a^T @ dy (either may be NULL; written instead where
 * bit 0 / 1 of fresh is set, never for a broadcast operand); scratch: batch matrices of the larger
 * of M*K, K*N when an operand with a gradient is broadcast (see matmul.c). */
static void K(matmul_backward)(const matmul_dims *d, const scalar_t *a, const scalar_t *b, const scalar_t *dy,
                               scalar_t *da, scalar_t *db, void *scratch, uint32_t fresh) {
    int64_t M = d->M, K = d->K, N = d->N;
    scalar_t *tmp = scratch;
    const scalar_t beta_a = fresh & 1u ? 0 : 1, beta_b = fresh & 2u ? 0 : 1;
    if (d->flat) {
        if (da) AF_GEMM(0, 1, d->batch * M, K, N, 1, dy, N, b, N, beta_a, da, K);
        if (db) AF_GEMM(1, 0, K, N, d->batch * M, 1, a, K, dy, N, beta_b, db, N);
        return;
    }
    if (da) {
        int red = d->a_batch < d->batch;
        const matmul_run r = matmul_run_make(d, MM_OUT, MM_B, red ? MM_OUT : MM_A, M * N, K * N, M * K);
        K(matmul_run)(d, &r, 0, 1, M, K, N, dy, N, b, N, red ? 0 : beta_a, red ? tmp : da, K);
        if (red) K(matmul_reduce)(d, MM_A, M * K, tmp, da);
    }
    if (db) {
        int red = d->b_batch < d->batch;
        const matmul_run r = matmul_run_make(d, MM_A, MM_OUT, red ? MM_OUT : MM_B, M * K, M * N, K * N);
        K(matmul_run)(d, &r, 1, 0, K, N, M, a, K, dy, N, red ? 0 : beta_b, red ? tmp : db, N);
        if (red) K(matmul_reduce)(d, MM_B, K * N, tmp, db);
    }
}

#endif
