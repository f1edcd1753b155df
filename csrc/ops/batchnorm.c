/* Batch normalisation (Ioffe & Szegedy, ICML 2015, arXiv 1502.03167) with the semantics of
 * torch.nn.functional.batch_norm.
 *
 *   in    = (x (N, C, *), weight (C)?, bias (C)?, running_mean (C)?, running_var (C)?), one float dtype;
 *           x has 2 to 5 dims: (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W). S = prod(*) below.
 *   ints  = (training,)   floats = (momentum, eps)
 *   out   = y, the shape of x
 *   saved = mean (C), invstd (C): the statistics y was normalised with.
 *
 * Training: per channel c, over the M = N*S values, mean_c and the BIASED variance var_c normalise:
 *   y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c.
 * When running stats are given they are updated IN PLACE, as torch does:
 *   running_mean = (1 - momentum) * running_mean + momentum * mean_c
 *   running_var  = (1 - momentum) * running_var  + momentum * var_c * M / (M - 1)   (unbiased)
 * Without running stats this is torch's track_running_stats=False. M == 1 is refused (a variance
 * of one value is meaningless), as torch does; an empty x gives an empty y and leaves the running
 * stats alone (torch's numel() == 0 path).
 * Eval: running_mean / running_var normalise and are required.
 *
 * Backward (weight/bias absent = 1/0), with xhat = (x - mean) * invstd and sums over the channel's M values:
 *   dbias_c += sum(dy)      dw_c += sum(dy * xhat)
 *   training: dx += w_c * invstd_c * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)
 *             (the batch statistics depend on x: the derivation is in the paper, section 3)
 *   eval:     dx += w_c * invstd_c * dy                  (running stats are constants)
 * Each channel is reduced by one thread in a fixed order: bitwise identical for any thread count.
 * Blocks of a channel's rows (about 4096 values) are summed in the input's dtype over 16 interleaved
 * lanes (vector registers), the blocks merged in double; the statistics use shifted sums per block
 * and Chan et al.'s merge, so one pass over memory is numerically as safe as two (bn_channel_stats).
 *
 * batch_norm_relu: the same inputs and attributes, y = max(batch_norm(x), 0) in the same pass (the
 * BN -> ReLU pair of ResNets, one read and one write of the activation instead of two). It also
 * saves the per-channel affine (a, b) the forward applied, z = x a + b, so the backward recomputes
 * the mask z > 0 with the very same arithmetic and runs batch_norm's backward on dy masked by it.
 *
 * batch_norm_silu: the same for y = silu(batch_norm(x)) = z sigmoid(z) (the BN -> SiLU pair of
 * EfficientNet and MobileViT): the backward recomputes z from the saved affine and feeds batch_norm's
 * backward dy silu'(z). Both fused ops give the bits of batch_norm followed by relu / silu
 * (elementwise.c, the same sigmoid.inc arithmetic). */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "batchnorm.h"
#include "vexp.h"

/* the activation a fused batch norm applies to z = x a + b */
enum { BN_ACT_NONE, BN_ACT_RELU, BN_ACT_SILU };

static int batch_norm_act(const af_op_call *c) {
    return c->op == AF_OP_BATCH_NORM_RELU ? BN_ACT_RELU : c->op == AF_OP_BATCH_NORM_SILU ? BN_ACT_SILU : BN_ACT_NONE;
}

#define AF_TEMPLATE_FILE "batchnorm.c"
#include "instantiate_float.h"


static af_status batch_norm_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    AF_TRY(af_check_attrs(c, 1, 2));
    if (c->n_in > 5) return AF_FAIL(AF_ERR_VALUE, "%s takes at most 5 inputs, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, BN_X));
    const af_tensor *x = c->in[BN_X];
    if (x->ndim < 2) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' must be (N, C) or (N, C, ...) with 2 to 5 dims, got shape %s",
                       op, af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    for (int i = BN_WEIGHT; i <= BN_RUNNING_VAR; i++) {
        if (i >= c->n_in || !c->in[i]) continue;
        AF_TRY(af_check_float(c, i));
        AF_TRY(af_check_same_dtype(c, BN_X, i));
        if (c->in[i]->ndim != 1 || c->in[i]->shape[0] != C) {
            char buf[96];
            return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must have shape (C,) = (%lld,) for input channels, got %s",
                           op, af_op_input_name(c, i), (long long)C,
                           af_shape_str(c->in[i]->ndim, c->in[i]->shape, buf, sizeof buf));
        }
    }
    const af_tensor *rm = c->n_in > BN_RUNNING_MEAN ? c->in[BN_RUNNING_MEAN] : NULL;
    const af_tensor *rv = c->n_in > BN_RUNNING_VAR ? c->in[BN_RUNNING_VAR] : NULL;
    if (!rm != !rv)
        return AF_FAIL(AF_ERR_VALUE, "%s: arguments 'running_mean' and 'running_var' must be given together", op);
    int64_t training = c->attr.i[0];
    double momentum = c->attr.f[0], eps = c->attr.f[1];
    if (training != 0 && training != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'training' must be 0 or 1, got %lld", op, (long long)training);
    if (!isfinite(momentum))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'momentum' must be finite, got %g", op, momentum);
    if (!(eps >= 0) || !isfinite(eps))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'eps' must be finite and >= 0, got %g", op, eps);
    if (!training && !rm)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'running_mean' (and 'running_var') is required in eval mode "
                       "(training=0)", op);
    if (training && rm && (rm->readonly || rv->readonly))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' is read-only but training updates it in place", op,
                       rm->readonly ? "running_mean" : "running_var");
    if (training && x->numel > 0 && N * S == 1) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'input' has 1 value per channel (shape %s); training needs more "
                       "than 1 to compute a variance", op, af_shape_str(x->ndim, x->shape, buf, sizeof buf));
    }
    AF_TRY(af_alloc_out(c, 0, x->ndim, x->shape, BN_X));
    AF_TRY(af_alloc_saved(c, 0, 1, &C, x->dtype));
    return af_alloc_saved(c, 1, 1, &C, x->dtype);
}

/* batch_norm_relu and batch_norm_silu: batch_norm's outputs and the affine (a, b) for the backward */
static af_status batch_norm_relu_setup(af_op_call *c) {
    AF_TRY(batch_norm_setup(c));
    int64_t C = c->saved[0]->shape[0];
    AF_TRY(af_alloc_saved(c, 2, 1, &C, c->in[BN_X]->dtype));
    return af_alloc_saved(c, 3, 1, &C, c->in[BN_X]->dtype);
}

static const af_tensor *batch_norm_in(const af_op_call *c, int i) { return i < c->n_in ? c->in[i] : NULL; }
static void *batch_norm_data(const af_tensor *t) { return t ? af_tensor_data(t) : NULL; }

static af_status batch_norm_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[BN_X];
    const int act = batch_norm_act(c), fused = act != BN_ACT_NONE; /* the fused ops save their affine */
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    AF_DISPATCH_FLOAT(x->dtype, batch_norm_forward, N, C, S, (int)c->attr.i[0], act, c->attr.f[0], c->attr.f[1],
                      af_tensor_data(x), batch_norm_data(batch_norm_in(c, BN_WEIGHT)),
                      batch_norm_data(batch_norm_in(c, BN_BIAS)), batch_norm_data(batch_norm_in(c, BN_RUNNING_MEAN)),
                      batch_norm_data(batch_norm_in(c, BN_RUNNING_VAR)), af_tensor_data(c->out[0]),
                      af_tensor_data(c->saved[0]), af_tensor_data(c->saved[1]),
                      fused ? af_tensor_data(c->saved[2]) : NULL, fused ? af_tensor_data(c->saved[3]) : NULL);
    return AF_OK;
}

static af_status batch_norm_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_tensor *x = c->in[BN_X];
    const int act = batch_norm_act(c), fused = act != BN_ACT_NONE;
    int64_t N, C, S;
    batch_norm_dims(x, &N, &C, &S);
    AF_DISPATCH_FLOAT(x->dtype, batch_norm_backward, N, C, S, (int)c->attr.i[0], act, af_tensor_data(x),
                      batch_norm_data(batch_norm_in(c, BN_WEIGHT)), af_tensor_data(c->saved[0]),
                      af_tensor_data(c->saved[1]), fused ? af_tensor_data(c->saved[2]) : NULL,
                      fused ? af_tensor_data(c->saved[3]) : NULL, af_tensor_data(dout[0]),
                      batch_norm_data(din[BN_X]), batch_norm_data(din[BN_WEIGHT]), batch_norm_data(din[BN_BIAS]),
                      c->din_fresh);
    return AF_OK;
}

static const char *const batch_norm_inputs[] = {"input", "weight", "bias", "running_mean", "running_var", NULL};

const af_op_def af_op_def_batch_norm = {.name = "batch_norm", .input_names = batch_norm_inputs,
                                        .setup = batch_norm_setup, .forward_cpu = batch_norm_forward_cpu,
                                        .backward_cpu = batch_norm_backward_cpu,
                                        .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

const af_op_def af_op_def_batch_norm_relu = {.name = "batch_norm_relu", .input_names = batch_norm_inputs,
                                             .setup = batch_norm_relu_setup, .forward_cpu = batch_norm_forward_cpu,
                                             .backward_cpu = batch_norm_backward_cpu,
                                             .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

const af_op_def af_op_def_batch_norm_silu = {.name = "batch_norm_silu", .input_names = batch_norm_inputs,
                                             .setup = batch_norm_relu_setup, .forward_cpu = batch_norm_forward_cpu,
                                             .backward_cpu = batch_norm_backward_cpu,
                                             .differentiable_inputs = 0x7u, .fresh_grad_inputs = 0x7u};

#else /* ---- kernels, once per scalar_t ---- */

#include "sigmoid.inc"

/* z = x a + b: the forward's affine, also the backward's recomputation of batch_norm_relu's mask (one
 * function, so both compile to the same arithmetic) */
static inline scalar_t K(bn_affine)(scalar_t x, scalar_t a, scalar_t b) { return x * a + b; }

/* Sums over a block of a channel's rows (rows n0 .. n0 + rows - 1 of (N, C, S), each S values, the
 * first at x, the next `stride` further): accumulated in scalar_t over BN_LANES interleaved partial
 * sums (the compiler keeps them in vector registers) that run across the block's rows, a row's tail
 * (S % BN_LANES values) in double, the lanes then added in double. A block holds about
 * BN_BLOCK_VALUES values (whole rows, at least one), so a lane sums a few hundred values at most,
 * and its rows are still in L1 for a second pass. Blocks depend on the shape alone: the same order
 * whatever the thread count. */
#define BN_LANES 16
#define BN_BLOCK_VALUES 4096

static inline int64_t K(bn_block_rows)(int64_t S) { return S >= BN_BLOCK_VALUES || S <= 0 ? 1 : BN_BLOCK_VALUES / S; }

static inline double K(bn_block_sum)(const scalar_t *x, int64_t stride, int64_t rows, int64_t S) {
    scalar_t acc[BN_LANES] = {0};
    double t = 0;
    for (int64_t r = 0; r < rows; r++) {
        const scalar_t *xr = x + r * stride;
        int64_t s = 0;
        for (; s + BN_LANES <= S; s += BN_LANES)
            for (int l = 0; l < BN_LANES; l++) acc[l] += xr[s + l];
        for (; s < S; s++) t += xr[s];
    }
    for (int l = 0; l < BN_LANES; l++) t += acc[l];
    return t;
}

/* sum(x - c) and sum((x - c)^2) over the block, for a shift c near its mean: the shifted sums give
 * the block's mean and M2 without cancellation (Chan, Golub & LeVeque, "Algorithms for computing the
 * sample variance", The American Statistician 37(3), 1983). */
static inline void K(bn_block_moments)(const scalar_t *x, int64_t stride, int64_t rows, int64_t S, scalar_t c,
                                       double *sum, double *sq) {
    scalar_t a1[BN_LANES] = {0}, a2[BN_LANES] = {0};
    double t1 = 0, t2 = 0;
    for (int64_t r = 0; r < rows; r++) {
        const scalar_t *xr = x + r * stride;
        int64_t s = 0;
        for (; s + BN_LANES <= S; s += BN_LANES)
            for (int l = 0; l < BN_LANES; l++) {
                scalar_t d = xr[s + l] - c;
                a1[l] += d;
                a2[l] += d * d;
            }
        for (; s < S; s++) {
            double d = (double)(xr[s] - c);
            t1 += d;
            t2 += d * d;
        }
    }
    for (int l = 0; l < BN_LANES; l++) {
        t1 += a1[l];
        t2 += a2[l];
    }
    *sum = t1;
    *sq = t2;
}

/* Mean and M2 (sum of squared deviations) of channel ch: each block's from its shifted sums (the
 * shift is the block's own mean, rounded to scalar_t), merged over the blocks in order with Chan et
 * al.'s pairwise update, in double. */
static inline void K(bn_channel_stats)(const scalar_t *x, int64_t N, int64_t C, int64_t S, int64_t ch,
                                        double *mean_out, double *m2_out) {
    double mean = 0, m2 = 0, count = 0;
    const int64_t step = K(bn_block_rows)(S);
    for (int64_t n0 = 0; n0 < N; n0 += step) {
        const int64_t rows = n0 + step <= N ? step : N - n0;
        const scalar_t *xb = x + (n0 * C + ch) * S;
        const double m = (double)(rows * S);
        scalar_t c = (scalar_t)(K(bn_block_sum)(xb, C * S, rows, S) / m);
        double sum, sq;
        K(bn_block_moments)(xb, C * S, rows, S, c, &sum, &sq);
        double block_mean = c + sum / m, block_m2 = sq - sum * sum / m;
        if (block_m2 < 0) block_m2 = 0;
        double total = count + m, delta = block_mean - mean;
        mean += delta * m / total;
        m2 += block_m2 + delta * delta * count * m / total;
        count = total;
    }
    *mean_out = mean;
    *m2_out = m2;
}

/* x, y: (N, C, S); w, b, running_mean, running_var, save_mean, save_invstd: (C); w, b and the
 * running stats may be NULL. relu_a, relu_b (C): non-NULL for the fused ops (act BN_ACT_RELU: y
 * clamped at 0; BN_ACT_SILU: y = silu(z)), which save the affine there. */
AF_CPU_DISPATCH
static void K(batch_norm_forward)(int64_t N, int64_t C, int64_t S, int training, int act, double momentum, double eps,
                                  const scalar_t *x, const scalar_t *w, const scalar_t *b, scalar_t *running_mean,
                                  scalar_t *running_var, scalar_t *y, scalar_t *save_mean, scalar_t *save_invstd,
                                  scalar_t *relu_a, scalar_t *relu_b) {
    int64_t M = N * S;
    AF_PARALLEL_FOR(M * C * 4)
    for (int64_t ch = 0; ch < C; ch++) {
        double mean, invstd;
        if (training) {
            double sq = 0;
            mean = 0;
            if (M > 0) K(bn_channel_stats)(x, N, C, S, ch, &mean, &sq);
            double var = M > 0 ? sq / (double)M : 0;
            invstd = 1 / sqrt(var + eps);
            if (running_mean && M > 1) {
                running_mean[ch] = (scalar_t)((1 - momentum) * running_mean[ch] + momentum * mean);
                running_var[ch] = (scalar_t)((1 - momentum) * running_var[ch] + momentum * sq / (double)(M - 1));
            }
        } else {
            mean = running_mean[ch];
            invstd = 1 / sqrt((double)running_var[ch] + eps);
        }
        save_mean[ch] = (scalar_t)mean;
        save_invstd[ch] = (scalar_t)invstd;
        /* y = x * alpha + beta with alpha = invstd * w, beta = b - mean * alpha (torch's CPU form) */
        double alpha = invstd * (w ? w[ch] : 1);
        double beta = (b ? b[ch] : 0) - mean * alpha;
        scalar_t a = (scalar_t)alpha, be = (scalar_t)beta;
        if (relu_a) {
            relu_a[ch] = a;
            relu_b[ch] = be;
        }
        for (int64_t n = 0; n < N; n++) {
            const scalar_t *xr = x + (n * C + ch) * S;
            scalar_t *yr = y + (n * C + ch) * S;
            if (act == BN_ACT_RELU)
                for (int64_t s = 0; s < S; s++) {
                    scalar_t z = K(bn_affine)(xr[s], a, be);
                    yr[s] = z > 0 ? z : 0;
                }
            else if (act == BN_ACT_SILU)
                for (int64_t s = 0; s < S; s++) {
                    const scalar_t z = K(bn_affine)(xr[s], a, be);
                    yr[s] = z * K(sigmoid_of)(z); /* elementwise.c's silu */
                }
            else
                for (int64_t s = 0; s < S; s++) yr[s] = K(bn_affine)(xr[s], a, be);
        }
    }
}

/* dy of a fused op's input z = x a + b (the forward's arithmetic): batch_norm_relu dy where z > 0,
 * else 0 (torch's ReLU backward); batch_norm_silu dy silu'(z) (elementwise.c's SiLU backward);
 * plain batch_norm (act BN_ACT_NONE): dy */
static inline scalar_t K(bn_dy)(int act, scalar_t x, scalar_t g, scalar_t ra, scalar_t rb) {
    if (act == BN_ACT_RELU) return K(bn_affine)(x, ra, rb) > 0 ? g : (scalar_t)0;
    if (act == BN_ACT_SILU) return g * K(silu_derivative)(K(bn_affine)(x, ra, rb));
    return g;
}

/* sum(g) and sum(g (x - mu)) over a block of rows, g = bn_dy: lanes as in bn_block_moments. */
static inline void K(bn_block_dsums)(const scalar_t *x, const scalar_t *dy, int64_t stride, int64_t rows, int64_t S,
                                     int act, scalar_t ra, scalar_t rb, scalar_t mu, double *sum_g, double *sum_gx) {
    scalar_t a1[BN_LANES] = {0}, a2[BN_LANES] = {0};
    double t1 = 0, t2 = 0;
    for (int64_t r = 0; r < rows; r++) {
        const scalar_t *xr = x + r * stride, *gr = dy + r * stride;
        int64_t s = 0;
        for (; s + BN_LANES <= S; s += BN_LANES)
#pragma omp simd /* GCC leaves this loop scalar once act is a constant ReLU (its select) without it */
            for (int l = 0; l < BN_LANES; l++) {
                scalar_t g = K(bn_dy)(act, xr[s + l], gr[s + l], ra, rb);
                a1[l] += g;
                a2[l] += g * (xr[s + l] - mu);
            }
        for (; s < S; s++) {
            scalar_t g = K(bn_dy)(act, xr[s], gr[s], ra, rb);
            t1 += g;
            t2 += (double)(g * (xr[s] - mu));
        }
    }
    for (int l = 0; l < BN_LANES; l++) {
        t1 += a1[l];
        t2 += a2[l];
    }
    *sum_g = t1;
    *sum_gx = t2;
}

/* The backward of channel ch (the arguments of batch_norm_backward below), inlined once per
 * activation with `act` a constant. With `act` a variable, GCC if-converted the loops into all three
 * activations' arithmetic (SiLU's exp included) and a blend: plain batch norm's backward took 1.8x
 * torch's time. */
static inline __attribute__((always_inline)) void
K(bn_backward_channel)(int act, int64_t ch, int64_t N, int64_t C, int64_t S, int training, const scalar_t *x,
                       const scalar_t *w, const scalar_t *mean, const scalar_t *invstd, const scalar_t *relu_a,
                       const scalar_t *relu_b, const scalar_t *dy, scalar_t *dx, scalar_t *dw, scalar_t *dbias,
                       uint32_t fresh) {
    const int64_t M = N * S;
    const scalar_t mu = mean[ch];
    double is = invstd[ch];
    const scalar_t ra = relu_a ? relu_a[ch] : 0, rb = relu_a ? relu_b[ch] : 0;
    double sum_dy = 0, sum_dy_xmu = 0;
    const int64_t step = K(bn_block_rows)(S);
    for (int64_t n0 = 0; n0 < N; n0 += step) {
        double sg, sgx;
        K(bn_block_dsums)(x + (n0 * C + ch) * S, dy + (n0 * C + ch) * S, C * S, n0 + step <= N ? step : N - n0, S,
                          act, ra, rb, mu, &sg, &sgx);
        sum_dy += sg;
        sum_dy_xmu += sgx;
    }
    double sum_dy_xhat = sum_dy_xmu * is;
    if (dbias) AF_GRAD_STORE(dbias[ch], !(fresh >> BN_BIAS & 1u), (scalar_t)sum_dy);
    if (dw) AF_GRAD_STORE(dw[ch], !(fresh >> BN_WEIGHT & 1u), (scalar_t)sum_dy_xhat);
    if (!dx) return;
    const int acc = !(fresh >> BN_X & 1u);
    double scale = is * (w ? w[ch] : 1);
    /* training: dx = scale (g - sum_dy / M - xhat sum_dy_xhat / M), xhat = (x - mu) is */
    const scalar_t k1 = (scalar_t)scale;
    const scalar_t k2 = training ? (scalar_t)(-scale * is * sum_dy_xhat / (double)M) : 0;
    const scalar_t k3 = training ? (scalar_t)(-scale * sum_dy / (double)M) : 0;
    for (int64_t n = 0; n < N; n++) {
        const scalar_t *xr = x + (n * C + ch) * S, *gr = dy + (n * C + ch) * S;
        scalar_t *dr = dx + (n * C + ch) * S;
        if (training)
            for (int64_t s = 0; s < S; s++)
                AF_GRAD_STORE(dr[s], acc, K(bn_dy)(act, xr[s], gr[s], ra, rb) * k1 + ((xr[s] - mu) * k2 + k3));
        else
            for (int64_t s = 0; s < S; s++) AF_GRAD_STORE(dr[s], acc, K(bn_dy)(act, xr[s], gr[s], ra, rb) * k1);
    }
}

/* x, dy, dx: (N, C, S); w, mean, invstd, dw, dbias, relu_a, relu_b: (C); w, the gradients and relu_a /
 * relu_b (the fused ops only) may be NULL; fresh: bits BN_X, BN_WEIGHT, BN_BIAS of the gradients to
 * write instead of add to. The per-channel coefficients are formed in double; the
 * per-element update dx += g k1 + ((x - mu) k2 + k3) runs in scalar_t, as torch's CPU kernel does. */
AF_CPU_DISPATCH
static void K(batch_norm_backward)(int64_t N, int64_t C, int64_t S, int training, int act, const scalar_t *x,
                                   const scalar_t *w,
                                   const scalar_t *mean, const scalar_t *invstd, const scalar_t *relu_a,
                                   const scalar_t *relu_b, const scalar_t *dy, scalar_t *dx, scalar_t *dw,
                                   scalar_t *dbias, uint32_t fresh) {
    AF_PARALLEL_FOR(N * S * C * 6)
    for (int64_t ch = 0; ch < C; ch++) {
        if (act == BN_ACT_RELU)
            K(bn_backward_channel)(BN_ACT_RELU, ch, N, C, S, training, x, w, mean, invstd, relu_a, relu_b, dy, dx, dw,
                                   dbias, fresh);
        else if (act == BN_ACT_SILU)
            K(bn_backward_channel)(BN_ACT_SILU, ch, N, C, S, training, x, w, mean, invstd, relu_a, relu_b, dy, dx, dw,
                                   dbias, fresh);
        else
            K(bn_backward_channel)(BN_ACT_NONE, ch, N, C, S, training, x, w, mean, invstd, relu_a, relu_b, dy, dx, dw,
                                   dbias, fresh);
    }
}

#endif
