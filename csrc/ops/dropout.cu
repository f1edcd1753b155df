/* CUDA twin of dropout.c (contract there). The keep mask is the same pure function of (seed, stream,
 * flat index) as on the CPU (word i % 4 of the Philox4x32-10 block at counter i / 4, core/rng.h), so
 * CPU and CUDA drop exactly the same elements. One thread per Philox block of 4 elements. */
#include "../cuda/common.cuh"

/* src, dst: (n). dst = mask * src / (1 - p), or dst += that (accumulate: backward). */
template <typename T>
__global__ void dropout_kernel(int identity, uint64_t seed, uint64_t stream, uint64_t threshold, T scale, const T *src, T *dst,
                               int64_t n, int accumulate) {
    int64_t blocks = (n + 3) / 4;
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int64_t blk = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; blk < blocks; blk += (int64_t)gridDim.x * blockDim.x) {
        uint32_t words[4] = {0, 0, 0, 0};
        if (!identity) {
            uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)((uint64_t)blk >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
            af_philox4x32_10(ctr, key, words);
        }
        for (int k = 0; k < 4 && blk * 4 + k < n; k++) {
            int64_t i = blk * 4 + k;
            T v = identity ? src[i] : words[k] >= threshold ? src[i] * scale : T(0);
            dst[i] = accumulate ? dst[i] + v : v;
        }
    }
}

static af_status dropout_run(const af_op_call *c, const af_tensor *src, af_tensor *dst, int accumulate) {
    af_cuda_context *ctx;
    AF_TRY(af_cuda_call_context(c, &ctx));
    const af_attrs *a = &c->attr;
    int64_t n = c->in[0]->numel;
    if (n == 0) return AF_OK;
    int identity = a->i[0] == 0 || a->f[0] == 0;
    double p = a->f[0];
    uint64_t threshold = (uint64_t)(p * 4294967296.0); /* dropout.c's dropout_threshold */
    unsigned grid = af_cuda_blocks((n + 3) / 4);
    if (c->in[0]->dtype == AF_DTYPE_F32)
        dropout_kernel<float><<<grid, AF_CUDA_THREADS, 0, ctx->stream>>>(
            identity, (uint64_t)a->i[1], (uint64_t)a->i[2], threshold, p < 1 ? (float)(1 / (1 - p)) : 0.f,
            (const float *)af_tensor_data(src), (float *)af_tensor_data(dst), n, accumulate);
    else
        dropout_kernel<double><<<grid, AF_CUDA_THREADS, 0, ctx->stream>>>(
            identity, (uint64_t)a->i[1], (uint64_t)a->i[2], threshold, p < 1 ? 1 / (1 - p) : 0.0,
            (const double *)af_tensor_data(src), (double *)af_tensor_data(dst), n, accumulate);
    AF_CUDA_TRY_LAUNCH();
    return AF_OK;
}

static af_status dropout_forward_cuda(af_op_call *c) { return dropout_run(c, c->in[0], c->out[0], 0); }

static af_status dropout_backward_cuda(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    return din[0] ? dropout_run(c, dout[0], din[0], 1) : AF_OK;
}

AF_OP_CUDA_KERNELS(dropout) = {.forward = dropout_forward_cuda, .backward = dropout_backward_cuda};
