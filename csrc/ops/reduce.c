/* Reductions: sum and mean (and var, std) over a set of dims; max and argmax along one dim.
 *
 * in = (x) float32/float64, any shape (0 to 5 dims). ints = (keepdim, d0, d1, ...): the dims to
 * reduce, sorted, unique, each in [0, ndim); no dims = every dim (a 0-d result, or all ones with
 * keepdim). out: x's shape without the reduced dims (kept as 1 when keepdim). mean = sum / R, R the
 * number of elements summed into each output (R = 0 gives NaN, as torch.mean of an empty tensor).
 * Backward is a broadcast: dx[i] += dout[o(i)] (sum) or dout[o(i)] / R (mean).
 *
 * Layout: dims of size 1 are dropped and neighbours that are both reduced or both kept are merged,
 * so any call becomes at most 5 alternating groups. Two loops then cover every case:
 *   innermost group reduced (a mean over H*W, a full sum): one thread owns an output and sums
 *       contiguous runs;
 *   innermost group kept (a sum over the batch of (N, C)): a thread owns a block of up to 256
 *       adjacent outputs and adds whole rows into them, so memory is read sequentially.
 *
 * Accuracy and determinism: an output is never split across threads and every sum runs in a fixed
 * order, so results are bitwise identical for any thread count. Both float32 and float64 inputs
 * accumulate in double; for float32 the rounding error of the sum is then ~n * 1e-16 relative to
 * sum |x| instead of ~n * 6e-8 for a float32 running sum, so the final rounding to float32 is the
 * only error that shows. Contiguous runs use 8 interleaved lanes (lane k adds elements k, k+8, ...)
 * combined pairwise: the loop vectorises and error growth per lane is 8 times shorter.
 *
 * var, std: the same (keepdim, dims...) integers and floats = (correction,), torch.var semantics:
 * var = sum (x - mean)^2 / max(0, R - correction) (correction 1 = Bessel's, 0 = biased; a zero
 * divisor gives inf or NaN as in torch), std = sqrt(var). Two passes in double per output (mean,
 * then squared deviations), each output owned by one thread. saved = the mean (float64, out's
 * shape). Backward: dx += dout * 2 (x - mean) / divisor for var; dout * (x - mean) / (divisor * std)
 * for std, 0 where std == 0 (torch masks that case the same way).
 *
 * max, argmax: ints = (dim, keepdim); x viewed as (outer, D, inner) around dim, D >= 1 (a 0-d x
 * counts as D = 1 with dim 0). max outputs (values, indices int64), argmax only the indices. The
 * index is the first maximum, a NaN counting as larger than everything (torch.max(x, dim)).
 * Backward of max: dx[index] += dvalues, as torch routes it to the selected element only; argmax
 * has no gradient. */
#ifndef AF_FLOAT_PASS
#include <math.h>

#include "reduce.h"

#define REDUCE_COLS 256 /* outputs per work item when the innermost group is kept */

#define AF_TEMPLATE_FILE "reduce.c"
#include "instantiate_float.h"

static int is_var(int op) { return op == AF_OP_VAR || op == AF_OP_STD; }

static af_status reduce_setup(af_op_call *c) {
    const char *name = af_op_table[c->op]->name;
    AF_TRY(af_check_float(c, 0));
    int n_f = is_var(c->op) ? 1 : 0;
    if (c->attr.n_f != n_f || c->attr.n_i < 1)
        return AF_FAIL(AF_ERR_VALUE, "%s takes integer attributes (keepdim, dims...) and %s, got %d and %d", name,
                       n_f ? "one float (correction)" : "no floats", c->attr.n_i, c->attr.n_f);
    if (n_f && !isfinite(c->attr.f[0]))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'correction' must be finite, got %g", name, c->attr.f[0]);
    const af_tensor *x = c->in[0];
    if (c->attr.i[0] != 0 && c->attr.i[0] != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'keepdim' must be 0 or 1, got %lld", name, (long long)c->attr.i[0]);
    int n_dims = c->attr.n_i - 1;
    if (n_dims > x->ndim)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'dim' lists %d dims but 'input' has %d", name, n_dims, x->ndim);
    for (int k = 1; k < c->attr.n_i; k++) {
        int64_t d = c->attr.i[k];
        if (d < 0 || d >= x->ndim)
            return AF_FAIL(AF_ERR_INDEX, "%s: argument 'dim' %lld out of range for a %d-D input", name, (long long)d, x->ndim);
        if (k > 1 && d <= c->attr.i[k - 1])
            return AF_FAIL(AF_ERR_VALUE, "%s: argument 'dim' must be sorted and unique", name);
    }
    int flags[AF_MAX_DIMS] = {0};
    reduce_flags(c, flags);
    int64_t shape[AF_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!flags[d]) shape[nd++] = x->shape[d];
        else if (c->attr.i[0]) shape[nd++] = 1;
    }
    AF_TRY(af_alloc_out(c, 0, nd, shape, 0));
    if (is_var(c->op)) AF_TRY(af_alloc_saved(c, 0, nd, shape, AF_DTYPE_F64));
    return AF_OK;
}

static af_status reduce_forward_cpu(af_op_call *c) {
    reduce_plan p;
    reduce_plan_make(c, &p);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, reduce_forward, &p, af_tensor_data(c->in[0]), af_tensor_data(c->out[0]),
                      c->out[0]->numel);
    return AF_OK;
}

static af_status reduce_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (c->in[0]->numel == 0) return AF_OK;
    reduce_plan p;
    reduce_plan_make(c, &p);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, reduce_backward, &p, af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

/* R - correction, floored at 0 as torch does */
static double var_divisor(const af_op_call *c, const reduce_plan *p) {
    double d = (double)p->R - c->attr.f[0];
    return d > 0 ? d : 0;
}

static af_status var_forward_cpu(af_op_call *c) {
    reduce_plan p;
    reduce_plan_make(c, &p);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, var_forward, &p, var_divisor(c, &p), c->op == AF_OP_STD,
                      af_tensor_data(c->in[0]), af_tensor_data(c->out[0]), af_tensor_data(c->saved[0]),
                      c->out[0]->numel);
    return AF_OK;
}

static af_status var_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (c->in[0]->numel == 0) return AF_OK;
    reduce_plan p;
    reduce_plan_make(c, &p);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, var_backward, &p, var_divisor(c, &p), c->op == AF_OP_STD,
                      af_tensor_data(c->in[0]), af_tensor_data(c->out[0]), af_tensor_data(c->saved[0]),
                      af_tensor_data(dout[0]), af_tensor_data(din[0]), c->out[0]->numel);
    return AF_OK;
}

/* ---- max, argmax along one dim ---- */

static af_status max_setup(af_op_call *c) {
    const char *name = af_op_table[c->op]->name;
    AF_TRY(af_check_attrs(c, 2, 0));
    AF_TRY(af_check_float(c, 0));
    const af_tensor *x = c->in[0];
    int64_t dim = c->attr.i[0], keepdim = c->attr.i[1];
    if (dim < 0 || dim >= (x->ndim ? x->ndim : 1))
        return AF_FAIL(AF_ERR_INDEX, "%s: argument 'dim' %lld out of range for a %d-D input", name, (long long)dim,
                       x->ndim);
    if (keepdim != 0 && keepdim != 1)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'keepdim' must be 0 or 1, got %lld", name, (long long)keepdim);
    if (x->ndim && x->shape[dim] == 0)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'dim' %lld has size 0; a maximum over no elements is undefined",
                       name, (long long)dim);
    int64_t shape[AF_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != dim) shape[nd++] = x->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    int k = 0;
    if (c->op == AF_OP_MAX) AF_TRY(af_alloc_out(c, k++, nd, shape, 0));
    return af_alloc_out_dtype(c, k, nd, shape, AF_DTYPE_I64);
}

static af_status max_forward_cpu(af_op_call *c) {
    af_dim_split p = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    int has_values = c->op == AF_OP_MAX;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, max_forward, &p, af_tensor_data(c->in[0]),
                      has_values ? af_tensor_data(c->out[0]) : NULL, af_tensor_data(c->out[has_values]));
    return AF_OK;
}

static af_status max_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_dim_split p = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, max_backward, &p, af_tensor_data(c->out[1]), af_tensor_data(dout[0]),
                      af_tensor_data(din[0]));
    return AF_OK;
}

static const char *const reduce_inputs[] = {"input", NULL};
const af_op_def af_op_def_sum = {.name = "sum", .input_names = reduce_inputs, .setup = reduce_setup,
                                 .forward_cpu = reduce_forward_cpu, .backward_cpu = reduce_backward_cpu,
                                 .differentiable_inputs = 0x1u};
const af_op_def af_op_def_mean = {.name = "mean", .input_names = reduce_inputs, .setup = reduce_setup,
                                  .forward_cpu = reduce_forward_cpu, .backward_cpu = reduce_backward_cpu,
                                  .differentiable_inputs = 0x1u};
const af_op_def af_op_def_var = {.name = "var", .input_names = reduce_inputs, .setup = reduce_setup,
                                 .forward_cpu = var_forward_cpu, .backward_cpu = var_backward_cpu,
                                 .differentiable_inputs = 0x1u};
const af_op_def af_op_def_std = {.name = "std", .input_names = reduce_inputs, .setup = reduce_setup,
                                 .forward_cpu = var_forward_cpu, .backward_cpu = var_backward_cpu,
                                 .differentiable_inputs = 0x1u};
const af_op_def af_op_def_max = {.name = "max", .input_names = reduce_inputs, .setup = max_setup,
                                 .forward_cpu = max_forward_cpu, .backward_cpu = max_backward_cpu,
                                 .differentiable_inputs = 0x1u};
const af_op_def af_op_def_argmax = {.name = "argmax", .input_names = reduce_inputs, .setup = max_setup,
                                    .forward_cpu = max_forward_cpu, .differentiable_inputs = 0};

#else /* ---- kernels, once per scalar_t ---- */

/* sum of x[0..n) in double: 8 lanes, combined pairwise (see the header) */
static inline double K(run_sum)(const scalar_t *x, int64_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) lane[k] += (double)x[i + k];
    double s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; i < n; i++) s += (double)x[i];
    return s;
}

/* x: input (contiguous, grouped as in p), y: (n_out) outputs in row-major order of the kept dims */
AF_CPU_DISPATCH
static void K(reduce_forward)(const reduce_plan *p, const scalar_t *x, scalar_t *y, int64_t n_out) {
    if (n_out == 0) return;
    int64_t work = p->R * n_out;
    if (p->inner_reduced) {
        AF_PARALLEL_FOR(work)
        for (int64_t o = 0; o < p->n_rows; o++) {
            const scalar_t *xo = x + group_offset(o, p->n_kept, p->kept_size, p->kept_stride);
            double s = 0;
            for (int64_t r = 0; r < p->n_red_rows; r++)
                s += K(run_sum)(xo + group_offset(r, p->n_red, p->red_size, p->red_stride), p->inner);
            y[o] = (scalar_t)(p->mean ? s / (double)p->R : s);
        }
        return;
    }
    int64_t n_blocks = (p->inner + REDUCE_COLS - 1) / REDUCE_COLS;
    AF_PARALLEL_FOR(work)
    for (int64_t t = 0; t < p->n_rows * n_blocks; t++) {
        int64_t o = t / n_blocks, j0 = t % n_blocks * REDUCE_COLS;
        int64_t len = p->inner - j0 < REDUCE_COLS ? p->inner - j0 : REDUCE_COLS;
        double acc[REDUCE_COLS];
        for (int64_t j = 0; j < len; j++) acc[j] = 0;
        const scalar_t *xo = x + group_offset(o, p->n_kept, p->kept_size, p->kept_stride) + j0;
        for (int64_t r = 0; r < p->n_red_rows; r++) {
            const scalar_t *row = xo + group_offset(r, p->n_red, p->red_size, p->red_stride);
            for (int64_t j = 0; j < len; j++) acc[j] += (double)row[j];
        }
        scalar_t *yo = y + o * p->inner + j0;
        for (int64_t j = 0; j < len; j++) yo[j] = (scalar_t)(p->mean ? acc[j] / (double)p->R : acc[j]);
    }
}

/* dx (input shape) += dy broadcast back over the reduced dims (divided by R for mean) */
AF_CPU_DISPATCH
static void K(reduce_backward)(const reduce_plan *p, const scalar_t *dy, scalar_t *dx) {
    scalar_t scale = p->mean ? (scalar_t)(1.0 / (double)p->R) : 1;
    int64_t work = p->R * p->n_rows * (p->inner_reduced ? 1 : p->inner);
    if (p->inner_reduced) {
        AF_PARALLEL_FOR(work)
        for (int64_t o = 0; o < p->n_rows; o++) {
            scalar_t g = dy[o] * scale;
            scalar_t *dxo = dx + group_offset(o, p->n_kept, p->kept_size, p->kept_stride);
            for (int64_t r = 0; r < p->n_red_rows; r++) {
                scalar_t *run = dxo + group_offset(r, p->n_red, p->red_size, p->red_stride);
                for (int64_t i = 0; i < p->inner; i++) run[i] += g;
            }
        }
        return;
    }
    AF_PARALLEL_FOR(work)
    for (int64_t o = 0; o < p->n_rows; o++) {
        const scalar_t *g = dy + o * p->inner;
        scalar_t *dxo = dx + group_offset(o, p->n_kept, p->kept_size, p->kept_stride);
        for (int64_t r = 0; r < p->n_red_rows; r++) {
            scalar_t *row = dxo + group_offset(r, p->n_red, p->red_size, p->red_stride);
            for (int64_t j = 0; j < p->inner; j++) row[j] += g[j] * scale;
        }
    }
}

/* y, mean: (n_out); per output the mean, then the squared deviations, both summed in double */
AF_CPU_DISPATCH
static void K(var_forward)(const reduce_plan *p, double divisor, int take_sqrt, const scalar_t *x, scalar_t *y,
                           double *mean, int64_t n_out) {
    int64_t run = p->inner_reduced ? p->inner : 1;
    AF_PARALLEL_FOR(p->R * n_out * 2)
    for (int64_t o = 0; o < n_out; o++) {
        const scalar_t *xo = x + out_base(p, o);
        double s = 0, m2 = 0;
        for (int64_t r = 0; r < p->n_red_rows; r++) {
            const scalar_t *e = xo + group_offset(r, p->n_red, p->red_size, p->red_stride);
            for (int64_t i = 0; i < run; i++) s += (double)e[i];
        }
        double m = s / (double)p->R;
        for (int64_t r = 0; r < p->n_red_rows; r++) {
            const scalar_t *e = xo + group_offset(r, p->n_red, p->red_size, p->red_stride);
            for (int64_t i = 0; i < run; i++) m2 += ((double)e[i] - m) * ((double)e[i] - m);
        }
        double v = m2 / divisor;
        mean[o] = m;
        y[o] = (scalar_t)(take_sqrt ? sqrt(v) : v);
    }
}

/* dx (input shape) += dy * d var / dx (or d std / dx); outputs own disjoint elements */
AF_CPU_DISPATCH
static void K(var_backward)(const reduce_plan *p, double divisor, int is_std, const scalar_t *x, const scalar_t *y,
                            const double *mean, const scalar_t *dy, scalar_t *dx, int64_t n_out) {
    int64_t run = p->inner_reduced ? p->inner : 1;
    AF_PARALLEL_FOR(p->R * n_out)
    for (int64_t o = 0; o < n_out; o++) {
        double g = is_std ? (y[o] == 0 ? 0 : (double)dy[o] / ((double)y[o] * divisor)) : 2 * (double)dy[o] / divisor;
        int64_t base = out_base(p, o);
        for (int64_t r = 0; r < p->n_red_rows; r++) {
            int64_t off = base + group_offset(r, p->n_red, p->red_size, p->red_stride);
            for (int64_t i = 0; i < run; i++) dx[off + i] += (scalar_t)(g * ((double)x[off + i] - mean[o]));
        }
    }
}

/* x: (outer, D, inner); values (NULL for argmax), indices: (outer, inner) */
AF_CPU_DISPATCH
static void K(max_forward)(const af_dim_split *p, const scalar_t *x, scalar_t *values, int64_t *indices) {
    AF_PARALLEL_FOR(p->outer * p->D * p->inner)
    for (int64_t t = 0; t < p->outer * p->inner; t++) {
        const scalar_t *xo = x + t / p->inner * p->D * p->inner + t % p->inner;
        scalar_t best = xo[0];
        int64_t at = 0;
        for (int64_t k = 1; k < p->D; k++) {
            scalar_t v = xo[k * p->inner];
            if (v > best || (v != v && best == best)) {
                best = v;
                at = k;
            }
        }
        if (values) values[t] = best;
        indices[t] = at;
    }
}

AF_CPU_DISPATCH
static void K(max_backward)(const af_dim_split *p, const int64_t *indices, const scalar_t *dvalues, scalar_t *dx) {
    AF_PARALLEL_FOR(p->outer * p->inner)
    for (int64_t t = 0; t < p->outer * p->inner; t++)
        dx[t / p->inner * p->D * p->inner + indices[t] * p->inner + t % p->inner] += dvalues[t];
}

#endif
