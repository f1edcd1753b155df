/* Indexing: gather, index_select, one_hot, with torch's semantics.
 *
 * gather: in = (input float (any shape), index int64 (same ndim)), ints = (dim,); out has index's
 *   shape, out[..., j, ...] = input[..., index[..., j, ...], ...] along dim (torch.gather). index's
 *   sizes must not exceed input's on the other dims. Backward scatters: dinput[...] += dout.
 * index_select: in = (input float, index int64 1-D of length L), ints = (dim,); out is input with
 *   dim's size replaced by L, out[.., k, ..] = input[.., index[k], ..]. Backward: dinput rows +=.
 * one_hot: in = (tensor int64, any shape), ints = (num_classes,); out int64 (*shape, num_classes)
 *   with a 1 at each value (torch.nn.functional.one_hot; num_classes >= 1 here, Python infers it).
 *   No gradient.
 * An index value outside [0, size) fails with IndexError naming the value and the dim, checked by
 * the CPU kernel before it writes anything (setup never reads data, which may be on a device).
 *
 * Threads: forward writes each output once. The backward scatters may hit one input element
 * several times (repeated indices), so work is split only where the targets cannot meet: gather
 * by lines (all index positions that differ only along dim), index_select by outer slices; within
 * one, accumulation runs in index order. */
#ifndef AF_FLOAT_PASS
#include "index.h"

#define AF_TEMPLATE_FILE "index.c"
#include "instantiate_float.h"

/* The checks gather and index_select share: attributes (dim,), a float input, an int64 index, dim
 * in range. */
static af_status check_input_index_dim(const af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 0));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_dtype(c, 1, AF_DTYPE_I64));
    int nd = c->in[0]->ndim;
    int64_t dim = c->attr.i[0];
    if (dim < 0 || dim >= (nd ? nd : 1))
        return AF_FAIL(AF_ERR_INDEX, "%s: argument 'dim' %lld out of range for a %d-D input", af_op_table[c->op]->name,
                       (long long)dim, nd);
    return AF_OK;
}

/* First index value outside [0, size): its position, or -1. */
static int64_t first_bad_index(const int64_t *idx, int64_t n, int64_t size) {
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= size) return i;
    return -1;
}

static af_status index_range_error(const af_op_call *c, const char *arg, int64_t value, int64_t dim, int64_t size) {
    return AF_FAIL(AF_ERR_INDEX, "%s: argument '%s' holds %lld, out of range for dim %lld of size %lld",
                   af_op_table[c->op]->name, arg, (long long)value, (long long)dim, (long long)size);
}

/* ---- gather ---- */

static af_status gather_setup(af_op_call *c) {
    AF_TRY(check_input_index_dim(c));
    const af_tensor *x = c->in[0], *idx = c->in[1];
    int64_t dim = c->attr.i[0];
    char bx[96], bi[96];
    if (idx->ndim != x->ndim)
        return AF_FAIL(AF_ERR_VALUE, "gather: argument 'index' must have as many dims as 'input' %s, got %s",
                       af_shape_str(x->ndim, x->shape, bx, sizeof bx), af_shape_str(idx->ndim, idx->shape, bi, sizeof bi));
    for (int d = 0; d < x->ndim; d++)
        if (d != dim && idx->shape[d] > x->shape[d])
            return AF_FAIL(AF_ERR_VALUE, "gather: argument 'index' %s is larger than 'input' %s in dim %d",
                           af_shape_str(idx->ndim, idx->shape, bi, sizeof bi),
                           af_shape_str(x->ndim, x->shape, bx, sizeof bx), d);
    return af_alloc_out(c, 0, idx->ndim, idx->shape, 0);
}

static af_status gather_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[0], *idx = c->in[1];
    int64_t dim = c->attr.i[0], size = x->ndim ? x->shape[dim] : 1;
    const int64_t *iv = af_tensor_data(idx);
    int64_t bad = first_bad_index(iv, idx->numel, size);
    if (bad >= 0) return index_range_error(c, "index", iv[bad], dim, size);
    gather_plan p = gather_plan_make(c);
    AF_DISPATCH_FLOAT(x->dtype, gather_forward, &p, gather_idx_step(&p), af_tensor_data(x), iv,
                      af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status gather_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    gather_plan p = gather_plan_make(c);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, gather_backward, &p, gather_idx_step(&p), af_tensor_data(c->in[1]),
                      af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

/* ---- index_select ---- */

static af_status index_select_setup(af_op_call *c) {
    AF_TRY(check_input_index_dim(c));
    const af_tensor *x = c->in[0], *idx = c->in[1];
    int64_t dim = c->attr.i[0];
    if (idx->ndim > 1) {
        char bi[96];
        return AF_FAIL(AF_ERR_VALUE, "index_select: argument 'index' must be 1-D (or 0-D), got shape %s",
                       af_shape_str(idx->ndim, idx->shape, bi, sizeof bi));
    }
    if (x->ndim == 0 && idx->numel != 1)
        return AF_FAIL(AF_ERR_VALUE, "index_select: a 0-D 'input' needs a one-element 'index', got %lld elements",
                       (long long)idx->numel);
    int64_t shape[AF_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = d == dim ? idx->numel : x->shape[d];
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

static af_status index_select_forward_cpu(af_op_call *c) {
    const af_tensor *x = c->in[0], *idx = c->in[1];
    int64_t dim = c->attr.i[0];
    af_dim_split s = af_split_at_dim(x, (int)dim);
    const int64_t *iv = af_tensor_data(idx);
    int64_t bad = first_bad_index(iv, idx->numel, s.D);
    if (bad >= 0) return index_range_error(c, "index", iv[bad], dim, s.D);
    AF_DISPATCH_FLOAT(x->dtype, index_select_forward, &s, iv, idx->numel, af_tensor_data(x),
                      af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status index_select_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_dim_split s = af_split_at_dim(c->in[0], (int)c->attr.i[0]);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, index_select_backward, &s, af_tensor_data(c->in[1]), c->in[1]->numel,
                      af_tensor_data(dout[0]), af_tensor_data(din[0]));
    return AF_OK;
}

/* ---- one_hot ---- */

static af_status one_hot_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 1, 0));
    AF_TRY(af_check_dtype(c, 0, AF_DTYPE_I64));
    const af_tensor *t = c->in[0];
    if (c->attr.i[0] < 1)
        return AF_FAIL(AF_ERR_VALUE, "one_hot: argument 'num_classes' must be >= 1, got %lld", (long long)c->attr.i[0]);
    if (t->ndim >= AF_MAX_DIMS)
        return AF_FAIL(AF_ERR_VALUE, "one_hot: argument 'tensor' has %d dims; the result would exceed %d", t->ndim,
                       AF_MAX_DIMS);
    int64_t shape[AF_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
    shape[t->ndim] = c->attr.i[0];
    return af_alloc_out_dtype(c, 0, t->ndim + 1, shape, AF_DTYPE_I64);
}

static af_status one_hot_forward_cpu(af_op_call *c) {
    const af_tensor *t = c->in[0];
    int64_t n = t->numel, k = c->attr.i[0];
    const int64_t *v = af_tensor_data(t);
    int64_t bad = first_bad_index(v, n, k);
    if (bad >= 0)
        return AF_FAIL(AF_ERR_INDEX, "one_hot: argument 'tensor' holds %lld, outside [0, num_classes = %lld)",
                       (long long)v[bad], (long long)k);
    int64_t *out = af_tensor_data(c->out[0]);
    AF_PARALLEL_FOR(n * k)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) out[i * k + j] = j == v[i];
    return AF_OK;
}

static const char *const gather_inputs[] = {"input", "index", NULL};
static const char *const one_hot_inputs[] = {"tensor", NULL};

const af_op_def af_op_def_gather = {.name = "gather", .input_names = gather_inputs, .setup = gather_setup,
                                    .forward_cpu = gather_forward_cpu, .backward_cpu = gather_backward_cpu,
                                    .differentiable_inputs = 0x1u};
const af_op_def af_op_def_index_select = {.name = "index_select", .input_names = gather_inputs,
                                          .setup = index_select_setup, .forward_cpu = index_select_forward_cpu,
                                          .backward_cpu = index_select_backward_cpu, .differentiable_inputs = 0x1u};
const af_op_def af_op_def_one_hot = {.name = "one_hot", .input_names = one_hot_inputs, .setup = one_hot_setup,
                                     .forward_cpu = one_hot_forward_cpu, .differentiable_inputs = 0};

#else /* ---- kernels, once per scalar_t ---- */

/* out, index: p's index shape, walked as lines along dim (positions step apart); x: input */
static void K(gather_forward)(const gather_plan *p, int64_t step, const scalar_t *x, const int64_t *idx,
                              scalar_t *out) {
    int64_t xs = p->x_stride[p->dim];
    AF_PARALLEL_FOR(p->lines * p->D)
    for (int64_t l = 0; l < p->lines; l++) {
        int64_t pos, off;
        gather_line(p, l, &pos, &off);
        for (int64_t k = 0; k < p->D; k++) out[pos + k * step] = x[off + idx[pos + k * step] * xs];
    }
}

/* dx[line's input slice][index] += dout: lines write disjoint input slices */
static void K(gather_backward)(const gather_plan *p, int64_t step, const int64_t *idx, const scalar_t *dout,
                               scalar_t *dx) {
    int64_t xs = p->x_stride[p->dim];
    AF_PARALLEL_FOR(p->lines * p->D)
    for (int64_t l = 0; l < p->lines; l++) {
        int64_t pos, off;
        gather_line(p, l, &pos, &off);
        for (int64_t k = 0; k < p->D; k++) dx[off + idx[pos + k * step] * xs] += dout[pos + k * step];
    }
}

/* x: (outer, D, inner), out: (outer, L, inner) */
static void K(index_select_forward)(const af_dim_split *s, const int64_t *idx, int64_t L, const scalar_t *x,
                                    scalar_t *out) {
    AF_PARALLEL_FOR(s->outer * L * s->inner)
    for (int64_t t = 0; t < s->outer * L; t++) {
        int64_t o = t / L, k = t % L;
        const scalar_t *src = x + (o * s->D + idx[k]) * s->inner;
        scalar_t *dst = out + t * s->inner;
        for (int64_t j = 0; j < s->inner; j++) dst[j] = src[j];
    }
}

/* dx (outer, D, inner) += dout (outer, L, inner) rows, per outer slice in index order */
static void K(index_select_backward)(const af_dim_split *s, const int64_t *idx, int64_t L, const scalar_t *dout,
                                     scalar_t *dx) {
    AF_PARALLEL_FOR(s->outer * L * s->inner)
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t k = 0; k < L; k++) {
            scalar_t *dst = dx + (o * s->D + idx[k]) * s->inner;
            const scalar_t *src = dout + (o * L + k) * s->inner;
            for (int64_t j = 0; j < s->inner; j++) dst[j] += src[j];
        }
}

#endif
