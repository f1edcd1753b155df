/* Dropout (Srivastava et al., JMLR 2014) in the "inverted" form torch.nn.functional.dropout uses:
 * kept elements are scaled by 1 / (1 - p) at training time, so eval is the identity.
 *
 *   in    = (x,) float32/float64, any shape
 *   ints  = (training, seed, stream): seed and stream are the 64-bit values of _C.next_stream(),
 *           passed as int64 bit patterns   floats = (p,), 0 <= p <= 1
 *   out   = y, the shape of x
 *
 * Training with p > 0: element i (flat index) is kept iff u_i >= floor(p * 2^32), where u_i is word
 * i % 4 of the Philox4x32-10 block at counter i / 4 of (seed, stream) (csrc/core/rng.h), so it is
 * kept with probability 1 - p (to 2^-32). y_i = x_i / (1 - p) when kept, 0 otherwise; p == 1 drops
 * everything (y = 0, as torch). The mask is a pure function of (seed, stream, i): backward
 * regenerates it instead of saving it, and the thread count cannot change it.
 * Eval, or p == 0: y = x (a copy).
 * Backward: dx_i += dy_i / (1 - p) when kept, nothing when dropped; dx += dy for the identity. */
#ifndef AF_FLOAT_PASS
#include "ops.h"

/* Philox words below this are dropped: floor(p * 2^32), or 2^32 (drop all) for p == 1. */
static uint64_t dropout_threshold(double p) { return (uint64_t)(p * 4294967296.0); }

static int dropout_is_identity(const af_attrs *a) { return a->i[0] == 0 || a->f[0] == 0; }

#define AF_TEMPLATE_FILE "dropout.c"
#include "instantiate_float.h"

static af_status dropout_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    AF_TRY(af_check_attrs(c, 3, 1));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "%s takes 1 input, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, 0));
    if (c->attr.i[0] != 0 && c->attr.i[0] != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'training' must be 0 or 1, got %lld", op, (long long)c->attr.i[0]);
    double p = c->attr.f[0];
    if (!(p >= 0 && p <= 1))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'p' must be a probability in [0, 1], got %g", op, p);
    return af_alloc_out(c, 0, c->in[0]->ndim, c->in[0]->shape, 0);
}

static af_status dropout_forward_cpu(af_op_call *c) {
    const af_attrs *a = &c->attr;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, dropout_apply, dropout_is_identity(a), (uint64_t)a->i[1], (uint64_t)a->i[2],
                      a->f[0], af_tensor_data(c->in[0]), af_tensor_data(c->out[0]), c->in[0]->numel, 0);
    return AF_OK;
}

static af_status dropout_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_attrs *a = &c->attr;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, dropout_apply, dropout_is_identity(a), (uint64_t)a->i[1], (uint64_t)a->i[2],
                      a->f[0], af_tensor_data(dout[0]), af_tensor_data(din[0]), c->in[0]->numel,
                      af_din_accumulates(c, 0));
    return AF_OK;
}

static const char *const dropout_inputs[] = {"input", NULL};

const af_op_def af_op_def_dropout = {.name = "dropout", .input_names = dropout_inputs, .setup = dropout_setup,
                                     .forward_cpu = dropout_forward_cpu, .backward_cpu = dropout_backward_cpu,
                                     .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

/* src, dst: (n). Forward: dst = mask * src / (1 - p). Backward: dst += the same of the incoming
 * gradient (accumulate = 1; = into a fresh gradient buffer), the mask regenerated from (seed,
 * stream). One Philox block serves the 4 elements 4b..4b+3, so a block is the unit of work. */
static void K(dropout_apply)(int identity, uint64_t seed, uint64_t stream, double p, const scalar_t *src,
                             scalar_t *dst, int64_t n, int accumulate) {
    if (identity) {
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) dst[i] = accumulate ? dst[i] + src[i] : src[i];
        return;
    }
    uint64_t threshold = dropout_threshold(p);
    scalar_t scale = p < 1 ? (scalar_t)(1 / (1 - p)) : 0;
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    int64_t blocks = (n + 3) / 4;
    AF_PARALLEL_FOR(n * 4)
    for (int64_t blk = 0; blk < blocks; blk++) {
        uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)((uint64_t)blk >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        uint32_t words[4];
        af_philox4x32_10(ctr, key, words);
        for (int k = 0; k < 4 && blk * 4 + k < n; k++) {
            int64_t i = blk * 4 + k;
            scalar_t v = words[k] >= threshold ? src[i] * scale : 0;
            dst[i] = accumulate ? dst[i] + v : v;
        }
    }
}

#endif
