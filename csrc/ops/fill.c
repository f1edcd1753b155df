/* In-place writes: fill_, copy_, uniform_, normal_, add_, and nonfinite_index (a reduction the tape
 * uses for detect_anomaly). The in-place ops have no outputs and write their first input (the
 * op-table convention for in-place ops); the tape bumps that storage's version so that a backward
 * through a graph that saved the old values raises (csrc/autograd/tape.c). None is differentiable.
 * They are how device-neutral code (the tape, tensor creation in Python, optimizers) writes tensor
 * data without touching a data pointer: each device supplies the kernels.
 *
 * fill_:    in [input]          floats (value,)
 *   input[i] = value. Any dtype but float16/bfloat16; for uint8/int32/int64/bool the value must be a
 *   whole number the dtype can hold (bool: 0 or 1).
 * copy_:    in [input, src]     no attributes
 *   input[i] = src[i]; same shape. Same dtype (any): the bytes are copied. float32 <-> float64:
 *   converted (float64 -> float32 rounds to nearest, as a C cast does). Other conversions raise
 *   TypeError: use the cast op.
 * uniform_: in [input]          ints (seed, stream)  floats (a, b)
 *   input[i] = a + (b - a) * u_i, u_i uniform in [0, 1) with 53 random bits (af_rng_uniform) drawn
 *   from counter block i of Philox stream (seed, stream), computed in double and rounded to the
 *   dtype. float32/float64; a, b finite, a <= b. seed and stream are the uint64 values' bits
 *   (a negative int64 stands for seed + 2**64).
 * normal_:  in [input]          ints (seed, stream)  floats (mean, std)
 *   input[i] = mean + std * sqrt(-2 ln(1 - u1)) cos(2 pi u2) (Box & Muller 1958), u1 then u2 from
 *   counter block i of the stream. mean finite, std finite and >= 0.
 *   Element i depends on (seed, stream, i) only: the same values for every thread count and split.
 * add_:     in [input, other]   no attributes
 *   input[i] += other[i]; same shape, same float dtype. The one gradient accumulation of the code
 *   base (af_tensor_accumulate below dispatches it).
 * nonfinite_index: in [input]   no attributes   out: int64, shape (1,)
 *   the smallest flat index i with input[i] NaN or +-Inf, or -1 (always -1 for non-float dtypes). */
#ifndef AF_FLOAT_PASS
#include <math.h>
#include <string.h>

#include "ops.h"

#define AF_TEMPLATE_FILE "fill.c"
#include "instantiate_float.h"

static af_status check_inputs(const af_op_call *c, int n) {
    if (c->n_in != n)
        return AF_FAIL(AF_ERR_VALUE, "%s takes %d tensor input%s, got %d", af_op_table[c->op]->name, n,
                       n == 1 ? "" : "s", c->n_in);
    for (int i = 0; i < n; i++) AF_TRY(af_check_present(c, i));
    return AF_OK;
}

static af_status check_writable(const af_op_call *c, int i) {
    if (c->in[i]->readonly)
        return AF_FAIL(AF_ERR_VALUE, "%s: '%s' is read-only memory and cannot be written in place",
                       af_op_table[c->op]->name, af_op_input_name(c, i));
    return AF_OK;
}

static af_status check_same_shape(const af_op_call *c, int i, int j) {
    if (af_tensor_same_shape(c->in[i], c->in[j])) return AF_OK;
    char a[96], b[96];
    return AF_FAIL(AF_ERR_VALUE, "%s: '%s' has shape %s but '%s' has shape %s", af_op_table[c->op]->name,
                   af_op_input_name(c, j), af_shape_str(c->in[j]->ndim, c->in[j]->shape, a, sizeof a),
                   af_op_input_name(c, i), af_shape_str(c->in[i]->ndim, c->in[i]->shape, b, sizeof b));
}

/* ---------------------------------------------------------------- fill_ */

static af_status fill_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 1));
    AF_TRY(check_inputs(c, 1));
    AF_TRY(check_writable(c, 0));
    af_dtype d = c->in[0]->dtype;
    double v = c->attr.f[0];
    if (d == AF_DTYPE_F16 || d == AF_DTYPE_BF16)
        return AF_FAIL(AF_ERR_TYPE, "fill_: argument 'input' of dtype %s is not supported", af_dtype_name(d));
    if (d == AF_DTYPE_F32 || d == AF_DTYPE_F64) return AF_OK;
    static const double lo[AF_DTYPE_COUNT] = {[AF_DTYPE_U8] = 0, [AF_DTYPE_I32] = -2147483648.0,
                                              [AF_DTYPE_I64] = -9223372036854775808.0, [AF_DTYPE_BOOL] = 0};
    static const double hi[AF_DTYPE_COUNT] = {[AF_DTYPE_U8] = 255, [AF_DTYPE_I32] = 2147483647.0,
                                              [AF_DTYPE_I64] = 9223372036854775807.0, [AF_DTYPE_BOOL] = 1};
    /* 2**63 - 1 rounds up to 2**63 as a double: compare with < for the int64 upper bound */
    int in_range = d == AF_DTYPE_I64 ? (v >= lo[d] && v < hi[d]) : (v >= lo[d] && v <= hi[d]);
    if (!(v == floor(v)) || !in_range)
        return AF_FAIL(AF_ERR_VALUE, "fill_: value %.17g is not a whole number that %s can hold", v,
                       af_dtype_name(d));
    return AF_OK;
}

static af_status fill_forward_cpu(af_op_call *c) {
    af_tensor *t = c->in[0];
    double v = c->attr.f[0];
    int64_t n = t->numel;
    void *p = af_tensor_data(t);
    switch (t->dtype) {
    case AF_DTYPE_F32:
    case AF_DTYPE_F64: AF_DISPATCH_FLOAT(t->dtype, fill_values, p, v, n); break;
    case AF_DTYPE_U8:
    case AF_DTYPE_BOOL: memset(p, (int)v, (size_t)n); break;
    case AF_DTYPE_I32: {
        int32_t *q = p, x = (int32_t)v;
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) q[i] = x;
        break;
    }
    default: {
        int64_t *q = p, x = (int64_t)v;
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) q[i] = x;
        break;
    }
    }
    return AF_OK;
}

/* ---------------------------------------------------------------- copy_ */

static af_status copy_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(check_inputs(c, 2));
    AF_TRY(check_writable(c, 0));
    AF_TRY(check_same_shape(c, 0, 1));
    if (c->in[0]->dtype == c->in[1]->dtype) return AF_OK;
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    return AF_OK;
}

static af_status copy_forward_cpu(af_op_call *c) {
    af_tensor *dst = c->in[0], *src = c->in[1];
    int64_t n = dst->numel;
    if (dst->dtype == src->dtype) {
        if (af_tensor_data(dst) != af_tensor_data(src))
            memmove(af_tensor_data(dst), af_tensor_data(src), af_tensor_nbytes(dst));
    } else if (dst->dtype == AF_DTYPE_F32) {
        float *d = af_tensor_data(dst);
        const double *s = af_tensor_data(src);
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) d[i] = (float)s[i];
    } else {
        double *d = af_tensor_data(dst);
        const float *s = af_tensor_data(src);
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) d[i] = s[i];
    }
    return AF_OK;
}

/* ---------------------------------------------------------------- uniform_, normal_ */

static af_status random_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 2, 2));
    AF_TRY(check_inputs(c, 1));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(check_writable(c, 0));
    double a = c->attr.f[0], b = c->attr.f[1];
    if (c->op == AF_OP_UNIFORM_) {
        if (!isfinite(a) || !isfinite(b) || a > b)
            return AF_FAIL(AF_ERR_VALUE, "uniform_: needs finite a <= b, got a=%.17g, b=%.17g", a, b);
    } else if (!isfinite(a) || !isfinite(b) || b < 0) {
        return AF_FAIL(AF_ERR_VALUE, "normal_: needs a finite mean and a finite std >= 0, got mean=%.17g, std=%.17g",
                       a, b);
    }
    return AF_OK;
}

static af_status random_forward_cpu(af_op_call *c) {
    af_tensor *t = c->in[0];
    AF_DISPATCH_FLOAT(t->dtype, random_values, af_tensor_data(t), t->numel, (uint64_t)c->attr.i[0],
                      (uint64_t)c->attr.i[1], c->op == AF_OP_NORMAL_, c->attr.f[0], c->attr.f[1]);
    return AF_OK;
}

/* ---------------------------------------------------------------- add_ */

static af_status add_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(check_inputs(c, 2));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    AF_TRY(check_writable(c, 0));
    return check_same_shape(c, 0, 1);
}

static af_status add_forward_cpu(af_op_call *c) {
    AF_DISPATCH_FLOAT(c->in[0]->dtype, add_values, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      c->in[0]->numel);
    return AF_OK;
}

af_status af_tensor_accumulate(af_tensor *dst, const af_tensor *src) {
    af_op_call c = {.op = AF_OP_ADD_, .n_in = 2, .in = {dst, (af_tensor *)src}};
    return af_op_forward(&c);
}

/* ---------------------------------------------------------------- nonfinite_index */

static af_status nonfinite_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(check_inputs(c, 1));
    int64_t one = 1;
    return af_alloc_out_dtype(c, 0, 1, &one, AF_DTYPE_I64);
}

static af_status nonfinite_forward_cpu(af_op_call *c) {
    const af_tensor *t = c->in[0];
    int64_t first = -1;
    if (t->dtype == AF_DTYPE_F32 || t->dtype == AF_DTYPE_F64)
        first = AF_DISPATCH_FLOAT(t->dtype, first_nonfinite, af_tensor_data(t), t->numel);
    *(int64_t *)af_tensor_data(c->out[0]) = first;
    return AF_OK;
}

static const char *const one_input[] = {"input", NULL};
static const char *const copy_inputs[] = {"input", "src", NULL};
static const char *const add_inputs[] = {"input", "other", NULL};

const af_op_def af_op_def_fill_ = {.name = "fill_", .input_names = one_input, .setup = fill_setup,
                                   .forward_cpu = fill_forward_cpu};
const af_op_def af_op_def_copy_ = {.name = "copy_", .input_names = copy_inputs, .setup = copy_setup,
                                   .forward_cpu = copy_forward_cpu};
const af_op_def af_op_def_uniform_ = {.name = "uniform_", .input_names = one_input, .setup = random_setup,
                                      .forward_cpu = random_forward_cpu};
const af_op_def af_op_def_normal_ = {.name = "normal_", .input_names = one_input, .setup = random_setup,
                                     .forward_cpu = random_forward_cpu};
const af_op_def af_op_def_add_ = {.name = "add_", .input_names = add_inputs, .setup = add_setup,
                                  .forward_cpu = add_forward_cpu};
const af_op_def af_op_def_nonfinite_index = {.name = "nonfinite_index", .input_names = one_input,
                                             .setup = nonfinite_setup, .forward_cpu = nonfinite_forward_cpu};

#else /* ---- kernels, once per scalar_t ---- */

/* p: (n) */
static void K(fill_values)(scalar_t *p, double value, int64_t n) {
    const scalar_t v = (scalar_t)value;
    AF_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

/* p: (n). Values are computed in double and rounded once, so float32 and float64 draws agree to
 * float32 precision. */
static void K(random_values)(scalar_t *p, int64_t n, uint64_t seed, uint64_t stream, int normal, double a,
                             double b) {
    AF_PARALLEL_FOR(n * 16)
    for (int64_t i = 0; i < n; i++) {
        af_rng r = af_rng_make(seed, stream, (uint64_t)i);
        double v;
        if (!normal) {
            v = a + (b - a) * af_rng_uniform(&r);
        } else { /* two uniforms from this element's own counter block */
            double u1 = 1.0 - af_rng_uniform(&r), u2 = af_rng_uniform(&r);
            v = a + b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        }
        p[i] = (scalar_t)v;
    }
}

/* dst, src: (n) */
AF_CPU_DISPATCH
static void K(add_values)(scalar_t *dst, const scalar_t *src, int64_t n) {
    AF_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

/* p: (n). min is order-independent, so the OpenMP reduction gives the same index for any split. */
static int64_t K(first_nonfinite)(const scalar_t *p, int64_t n) {
    int64_t first = INT64_MAX;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) reduction(min : first) if (n > 32768)
#endif
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i]) && i < first) first = i;
    return first == INT64_MAX ? -1 : first;
}

#endif
