/* Matrix product, following torch.matmul for the shapes below.
 *
 * in = (a, b), same float dtype:
 *   a (..., M, K) @ b (K, N)              -> (..., M, N)   leading dims of a flattened: one GEMM
 *                                                          (covers (M,K)@(K,N) and (B,M,K)@(K,N))
 *   a (B, M, K) @ b (B, K, N)             -> (B, M, N)     one GEMM per batch entry
 *   a (B1, B2, M, K) @ b (B1, B2, K, N)   -> (B1, B2, M, N)
 * No attributes. Batch dims must match exactly (no broadcasting of size-1 batch dims).
 *
 * Backward (matrix calculus, e.g. the Matrix Cookbook eq. 69-70, for Y = A B):
 *   dA += dY @ B^T, dB += A^T @ dY, per batch entry; when b is shared by the flattened batch, the
 *   single GEMM over (B*M, K) sums dB over the batch (beta = 1 accumulates into din).
 * GEMMs go through AF_GEMM_BATCHED (csrc/ops/gemm.c), whose results do not depend on the thread
 * count. */
#ifndef AF_FLOAT_PASS
#include <limits.h>

#include "matmul.h"

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
    if (b->ndim > 2) {
        int same = a->ndim == b->ndim;
        for (int d = 0; same && d < a->ndim - 2; d++) same = a->shape[d] == b->shape[d];
        if (!same)
            return AF_FAIL(AF_ERR_VALUE, "matmul: 'input' of shape %s and 'other' of shape %s: a batched 'other' "
                           "needs the same batch dims as 'input' (or make 'other' 2-D)", sa, sb);
    }
    if (a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
        return AF_FAIL(AF_ERR_VALUE, "matmul: 'input' of shape %s and 'other' of shape %s cannot be multiplied "
                       "(inner dims %lld and %lld differ)", sa, sb, (long long)a->shape[a->ndim - 1],
                       (long long)b->shape[b->ndim - 2]);
    int64_t shape[AF_MAX_DIMS];
    for (int k = 0; k < a->ndim - 1; k++) shape[k] = a->shape[k];
    shape[a->ndim - 1] = b->shape[b->ndim - 1];
    return af_alloc_out(c, 0, a->ndim, shape, 0);
}

/* CBLAS takes int sizes; the limit belongs to this CPU path, not to setup. */
static af_status matmul_check_cblas(const af_op_call *c, const matmul_dims *d) {
    if (d->M <= INT_MAX && d->N <= INT_MAX && d->K <= INT_MAX) return AF_OK;
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
    AF_DISPATCH_FLOAT(c->in[0]->dtype, matmul_backward, &d, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      af_tensor_data(dout[0]), din[0] ? af_tensor_data(din[0]) : NULL,
                      din[1] ? af_tensor_data(din[1]) : NULL);
    return AF_OK;
}

static const char *const matmul_inputs[] = {"input", "other", NULL};
const af_op_def af_op_def_matmul = {.name = "matmul", .input_names = matmul_inputs, .setup = matmul_setup,
                                    .forward_cpu = matmul_forward_cpu, .backward_cpu = matmul_backward_cpu,
                                    .differentiable_inputs = 0x3u};

#else /* ---- kernels, once per scalar_t ---- */

/* a: (batch, M, K), b: (batch, K, N) or (K, N) when batch == 1, y: (batch, M, N) */
static void K(matmul_forward)(const matmul_dims *d, const scalar_t *a, const scalar_t *b, scalar_t *y) {
    int64_t M = d->M, K = d->K, N = d->N;
    const af_gemm_batch bt = {d->batch, 1, M * K, 0, K * N, 0, M * N, 0};
    AF_GEMM_BATCHED(&bt, 0, 0, M, N, K, 1, a, K, b, N, 0, y, N);
}

/* da: (batch, M, K) += dy @ b^T; db: (batch, K, N) += a^T @ dy (either may be NULL) */
static void K(matmul_backward)(const matmul_dims *d, const scalar_t *a, const scalar_t *b, const scalar_t *dy,
                               scalar_t *da, scalar_t *db) {
    int64_t M = d->M, K = d->K, N = d->N;
    const af_gemm_batch bt_da = {d->batch, 1, M * N, 0, K * N, 0, M * K, 0};
    const af_gemm_batch bt_db = {d->batch, 1, M * K, 0, M * N, 0, K * N, 0};
    if (da) AF_GEMM_BATCHED(&bt_da, 0, 1, M, K, N, 1, dy, N, b, N, 1, da, K);
    if (db) AF_GEMM_BATCHED(&bt_db, 1, 0, K, N, M, 1, a, K, dy, N, 1, db, N);
}

#endif
