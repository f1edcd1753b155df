/* CUDA twin of linear.c (contract there): the three GEMMs through cuBLASLt, the bias and its
 * gradient in own kernels. Float32 GEMMs use CUBLAS_COMPUTE_32F, not the TF32 variant, so results
 * stay within float32 rounding of the CPU op.
 *
 * cuBLAS is column-major; a row-major (R, C) matrix is the column-major (C, R) one, its transpose.
 * With that, each row-major product below is the column-major product of the transposes:
 *   y (M, out)   = x @ W^T    ->  y^T (out, M)  = op_T(W) @ x^T
 *   dx (M, in)  += dy @ W     ->  dx^T (in, M) += W^T @ dy^T
 *   dW (out, in) += dy^T @ x  ->  dW^T (in, out) += x^T @ op_T(dy^T) */
#include "../cuda/common.cuh"

/* Column-major D (m, n) = alpha op(A) op(B) + beta D, op(A) (m, k), op(B) (k, n); lda/ldb/ldd the
 * stored matrices' leading dimensions. */
static af_status lt_gemm(af_cuda_context *ctx, af_dtype dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                         const void *A, int64_t lda, const void *B, int64_t ldb, void *D, int64_t ldd, double beta) {
    af_status st = AF_OK;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    int f64 = dtype == AF_DTYPE_F64;
    cudaDataType_t t = f64 ? CUDA_R_64F : CUDA_R_32F;
    cublasOperation_t oa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, ob = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    float alpha_f = 1.f, beta_f = (float)beta;
    double alpha_d = 1.0;
    size_t workspace = ctx->workspace_bytes;
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    AF_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, f64 ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F, t));
    AF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa));
    AF_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob));
    AF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, t, trans_a ? k : m, trans_a ? m : k, lda));
    AF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, t, trans_b ? n : k, trans_b ? k : n, ldb));
    AF_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&ld, t, m, n, ldd));
    AF_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    AF_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                         sizeof workspace));
    AF_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx->cublaslt, op, la, lb, ld, ld, pref, 1, &heuristic, &found));
    if (found < 1) AF_CHECK_FAIL(AF_ERR_CUDA, "cuBLASLt has no algorithm for a (%lld, %lld, %lld) GEMM", (long long)m,
                                 (long long)n, (long long)k);
    AF_CUBLAS_CHECK(cublasLtMatmul(ctx->cublaslt, op, f64 ? (const void *)&alpha_d : (const void *)&alpha_f, A, la, B, lb,
                                   f64 ? (const void *)&beta : (const void *)&beta_f, D, ld, D, ld, &heuristic.algo,
                                   ctx->workspace, workspace, ctx->stream));
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return st;
}

/* y: (M, out) += bias per column */
template <typename T> __global__ void add_bias_kernel(T *y, const T *bias, int64_t M, int64_t out) {
    int64_t n = M * out;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % out];
}

/* dbias (out) += column sums of dy (M, out), rows added in order in double as on the CPU */
template <typename T> __global__ void bias_grad_kernel(const T *dy, T *dbias, int64_t M, int64_t out) {
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < out; j += (int64_t)gridDim.x * blockDim.x) {
        double s = 0;
        for (int64_t r = 0; r < M; r++) s += (double)dy[r * out + j];
        dbias[j] = (T)((double)dbias[j] + s);
    }
}

static void dims(const af_op_call *c, int64_t *M, int64_t *in, int64_t *out) {
    const af_tensor *x = c->in[0];
    *in = x->shape[x->ndim - 1];
    *out = c->in[1]->shape[0];
    *M = *in ? x->numel / *in : c->out[0]->numel / (*out ? *out : 1);
}

static af_status linear_forward_cuda(af_op_call *c) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t M, in, out;
    dims(c, &M, &in, &out);
    af_dtype t = c->in[0]->dtype;
    void *y = af_tensor_data(c->out[0]);
    if (M == 0 || out == 0) return AF_OK;
    if (in == 0)
        AF_CUDA_TRY(cudaMemsetAsync(y, 0, af_tensor_nbytes(c->out[0]), ctx->stream));
    else
        AF_TRY(lt_gemm(ctx, t, 1, 0, out, M, in, af_tensor_data(c->in[1]), in, af_tensor_data(c->in[0]), in, y, out, 0.0));
    if (c->n_in > 2 && c->in[2]) {
        if (t == AF_DTYPE_F32)
            add_bias_kernel<float><<<af_cuda_blocks(M * out), AF_CUDA_THREADS, 0, ctx->stream>>>(
                (float *)y, (const float *)af_tensor_data(c->in[2]), M, out);
        else
            add_bias_kernel<double><<<af_cuda_blocks(M * out), AF_CUDA_THREADS, 0, ctx->stream>>>(
                (double *)y, (const double *)af_tensor_data(c->in[2]), M, out);
        AF_CUDA_TRY_LAUNCH();
    }
    return AF_OK;
}

static af_status linear_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    int64_t M, in, out;
    dims(c, &M, &in, &out);
    af_dtype t = c->in[0]->dtype;
    const void *dy = af_tensor_data(dout[0]);
    if (M == 0 || out == 0) return AF_OK;
    if (din[0] && in > 0)
        AF_TRY(lt_gemm(ctx, t, 0, 0, in, M, out, af_tensor_data(c->in[1]), in, dy, out, af_tensor_data(din[0]), in, 1.0));
    if (din[1] && in > 0)
        AF_TRY(lt_gemm(ctx, t, 0, 1, in, out, M, af_tensor_data(c->in[0]), in, dy, out, af_tensor_data(din[1]), in, 1.0));
    if (c->n_in > 2 && din[2]) {
        if (t == AF_DTYPE_F32)
            bias_grad_kernel<float><<<af_cuda_blocks(out), AF_CUDA_THREADS, 0, ctx->stream>>>(
                (const float *)dy, (float *)af_tensor_data(din[2]), M, out);
        else
            bias_grad_kernel<double><<<af_cuda_blocks(out), AF_CUDA_THREADS, 0, ctx->stream>>>(
                (const double *)dy, (double *)af_tensor_data(din[2]), M, out);
        AF_CUDA_TRY_LAUNCH();
    }
    return AF_OK;
}

AF_OP_CUDA_KERNELS(linear) = {.forward = linear_forward_cuda, .backward = linear_backward_cuda};
