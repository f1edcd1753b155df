/* Shape ops: pure data movement, for every dtype; gradients flow through float32/float64 only.
 *
 *   reshape  in (x); ints = target shape (no -1; same numel). out: a VIEW of x (af_tensor_view:
 *            shares storage, no copy). Backward: dx += dout (same elements, other shape).
 *   permute  in (x); ints = a permutation of range(ndim). out[i0..] = x[...] with
 *            out.shape[k] = x.shape[perm[k]], as torch.permute, but a contiguous copy.
 *            Backward: dx += dout permuted by the inverse permutation.
 *   cat      in (x0 .. x(n-1)), n <= 32, one dtype, equal shapes except along dim; ints = (dim,).
 *            Backward: dx_i += dout's slab of x_i.
 *   split    in (x); ints = (dim, size0, size1, ...), 1 to 15 sizes summing to shape[dim];
 *            out_i = consecutive slabs of those sizes. Backward: dx's slab i += dout_i.
 *   slice    in (x); ints = (dim, start, stop, step), 0 <= start <= stop <= shape[dim], step >= 1;
 *            out = x[..., start:stop:step, ...] (along dim). Backward: scatter-add into dx.
 *   cast     in (x); ints = (dtype id,) (af_dtype: float32=0 float64=1 float16=2 bfloat16=3 uint8=4
 *            int32=5 int64=6 bool=7). Semantics of torch.Tensor.to: float -> integer truncates
 *            toward zero; anything -> bool is (x != 0) (NaN -> true); bool -> number is 0 or 1;
 *            integer -> narrower integer wraps modulo 2^bits (int64 -> uint8 keeps the low byte);
 *            float -> float16/bfloat16 rounds to nearest even (float64 goes through float32 first,
 *            as torch's c10::Half / c10::BFloat16 constructors take a float). A float outside the
 *            integer type's range, or NaN, gives what torch gives on x86 (cvttss2si's "integer
 *            indefinite"): INT64_MIN for int64, INT32_MIN for int32, and for uint8 the low byte of
 *            the int32 conversion (so -1.0 -> 255, 300.0 -> 44). Differentiable between float32
 *            and float64 (dx += dout converted); any other pair passes no gradient (the map is
 *            piecewise constant; Tensor.to runs such casts without recording them, as torch).
 *
 * cat, split and slice are one kernel: view every tensor as (outer, D, inner) around dim and copy
 * (forward) or add (backward) rows of `inner` elements between slab positions. Each destination
 * row is written by exactly one thread, so results never depend on the thread count. */
#ifndef AF_FLOAT_PASS
#include <math.h>
#include <string.h>

#include "ops.h"

/* dst[(o*dst_D + dst_off + k*dst_step)*inner + j] (=, +=) src[(o*src_D + src_off + k*src_step)*inner + j]
 * for o < outer, k < L, j < inner. */
typedef struct row_map {
    int64_t outer, L, inner;
    int64_t dst_D, dst_off, dst_step;
    int64_t src_D, src_off, src_step;
} row_map;

#define AF_TEMPLATE_FILE "shape.c"
#include "instantiate_float.h"

static int is_grad_dtype(af_dtype d) { return d == AF_DTYPE_F32 || d == AF_DTYPE_F64; }

/* ---------------------------------------------------------------- reshape */

static af_status reshape_setup(af_op_call *c) {
    AF_TRY(af_check_present(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "reshape takes one tensor, got %d", c->n_in);
    if (c->attr.n_f != 0 || c->attr.n_i > AF_MAX_DIMS)
        return AF_FAIL(AF_ERR_VALUE, "reshape: argument 'shape' must have 0 to %d entries (and no floats), got %d",
                       AF_MAX_DIMS, c->attr.n_i);
    const af_tensor *x = c->in[0];
    char sx[96], ss[96];
    af_shape_str(x->ndim, x->shape, sx, sizeof sx);
    af_shape_str(c->attr.n_i, c->attr.i, ss, sizeof ss);
    int64_t n = 1;
    int overflow = 0;
    for (int k = 0; k < c->attr.n_i; k++) {
        int64_t s = c->attr.i[k];
        if (s < 0) return AF_FAIL(AF_ERR_VALUE, "reshape: argument 'shape' %s has a negative size", ss);
        if (s > 0 && n > INT64_MAX / s) overflow = 1;
        else n *= s;
    }
    for (int k = 0; k < c->attr.n_i; k++)
        if (c->attr.i[k] == 0) n = 0, overflow = 0;
    if (overflow || n != x->numel)
        return AF_FAIL(AF_ERR_VALUE, "reshape: cannot reshape 'input' of shape %s (%lld elements) into shape %s",
                       sx, (long long)x->numel, ss);
    AF_TRY(af_tensor_view(x, c->attr.n_i, c->attr.i, &c->out[0]));
    c->n_out = 1;
    return AF_OK;
}

static af_status reshape_forward_cpu(af_op_call *c) {
    (void)c; /* setup made the view: nothing to compute */
    return AF_OK;
}

static af_status reshape_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (!is_grad_dtype(c->in[0]->dtype)) return AF_OK;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, flat_accumulate, af_tensor_data(dout[0]), af_tensor_data(din[0]),
                      c->in[0]->numel, af_din_accumulates(c, 0));
    return AF_OK;
}

/* ---------------------------------------------------------------- permute */

/* Moves elements of size ES: out (P, Q) per batch entry = transpose of in (Q, P), in 32x32 tiles so
 * both sides touch whole cache lines. */
#define TILE 32
#define DEFINE_MOVERS(T, ES)                                                                          \
    static void transpose_##ES(const T *in, T *out, int64_t batch, int64_t P, int64_t Q) {            \
        int64_t tp = (P + TILE - 1) / TILE, tq = (Q + TILE - 1) / TILE;                               \
        AF_PARALLEL_FOR(batch * P * Q)                                                                \
        for (int64_t t = 0; t < batch * tp * tq; t++) {                                               \
            int64_t b = t / (tp * tq), p0 = t / tq % tp * TILE, q0 = t % tq * TILE;                   \
            int64_t p1 = p0 + TILE < P ? p0 + TILE : P, q1 = q0 + TILE < Q ? q0 + TILE : Q;           \
            const T *ib = in + b * P * Q;                                                             \
            T *ob = out + b * P * Q;                                                                  \
            for (int64_t p = p0; p < p1; p++)                                                         \
                for (int64_t q = q0; q < q1; q++) ob[p * Q + q] = ib[q * P + p];                      \
        }                                                                                             \
    }                                                                                                 \
    /* out rows of `last` elements gathered with input stride `st_last`; rows enumerated over the   \
     * other m-1 (size, stride) dims */                                                              \
    static void gather_##ES(const T *in, T *out, int m, const int64_t *size, const int64_t *st) {    \
        int64_t last = size[m - 1], st_last = st[m - 1], rows = 1;                                    \
        for (int d = 0; d < m - 1; d++) rows *= size[d];                                              \
        AF_PARALLEL_FOR(rows * last)                                                                  \
        for (int64_t r = 0; r < rows; r++) {                                                          \
            int64_t off = 0, idx = r;                                                                 \
            for (int d = m - 2; d >= 0; d--) {                                                        \
                off += idx % size[d] * st[d];                                                         \
                idx /= size[d];                                                                       \
            }                                                                                         \
            const T *src = in + off;                                                                  \
            T *dst = out + r * last;                                                                  \
            for (int64_t j = 0; j < last; j++) dst[j] = src[j * st_last];                             \
        }                                                                                             \
    }
DEFINE_MOVERS(uint8_t, 1)
DEFINE_MOVERS(uint16_t, 2)
DEFINE_MOVERS(uint32_t, 4)
DEFINE_MOVERS(uint64_t, 8)

/* Contiguous rows of `bytes`, gathered over the m (size, stride in elements) dims. */
static void gather_rows(const char *in, char *out, size_t es, int m, const int64_t *size, const int64_t *st,
                        size_t bytes) {
    int64_t rows = 1;
    for (int d = 0; d < m; d++) rows *= size[d];
    AF_PARALLEL_FOR(rows * (int64_t)bytes / 4)
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = 0, idx = r;
        for (int d = m - 1; d >= 0; d--) {
            off += idx % size[d] * st[d];
            idx /= size[d];
        }
        memcpy(out + r * bytes, in + off * (int64_t)es, bytes);
    }
}

/* out (contiguous, x's shape permuted by perm) = x permuted. Dims of size 1 are dropped and out
 * dims that stay neighbours in x are merged, so NCHW <-> NHWC and last-two-dims transposes become a
 * batched 2-D transpose (tiled), and permutes that keep the last dim become row copies. */
static void permute_bytes(const af_tensor *x, const int64_t *perm, void *out) {
    size_t es = af_dtype_size(x->dtype);
    int64_t xst[AF_MAX_DIMS], size[AF_MAX_DIMS], st[AF_MAX_DIMS];
    int64_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        xst[d] = s;
        s *= x->shape[d];
    }
    if (x->numel == 0) return;
    int m = 0;
    for (int k = 0; k < x->ndim; k++) {
        int64_t n = x->shape[perm[k]], t = xst[perm[k]];
        if (n == 1) continue;
        if (m > 0 && st[m - 1] == t * n) {
            size[m - 1] *= n;
            st[m - 1] = t;
        } else {
            size[m] = n;
            st[m++] = t;
        }
    }
    const char *in = af_tensor_data(x);
    if (m == 0 || (m == 1 && st[0] == 1)) {
        memcpy(out, in, (size_t)x->numel * es);
        return;
    }
    if (st[m - 1] == 1) {
        gather_rows(in, out, es, m - 1, size, st, (size_t)size[m - 1] * es);
        return;
    }
    /* batched transpose: out (batch, P, Q) from in (batch, Q, P) */
    int64_t batch = 0, P = 0, Q = 0;
    if (m == 2 && st[0] == 1 && st[1] == size[0]) batch = 1, P = size[0], Q = size[1];
    if (m == 3 && st[1] == 1 && st[2] == size[1] && st[0] == size[1] * size[2]) batch = size[0], P = size[1], Q = size[2];
    if (batch) {
        switch (es) {
        case 1: transpose_1((const void *)in, out, batch, P, Q); return;
        case 2: transpose_2((const void *)in, out, batch, P, Q); return;
        case 4: transpose_4((const void *)in, out, batch, P, Q); return;
        default: transpose_8((const void *)in, out, batch, P, Q); return;
        }
    }
    switch (es) {
    case 1: gather_1((const void *)in, out, m, size, st); return;
    case 2: gather_2((const void *)in, out, m, size, st); return;
    case 4: gather_4((const void *)in, out, m, size, st); return;
    default: gather_8((const void *)in, out, m, size, st); return;
    }
}

static af_status permute_setup(af_op_call *c) {
    AF_TRY(af_check_present(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "permute takes one tensor, got %d", c->n_in);
    const af_tensor *x = c->in[0];
    if (c->attr.n_f != 0 || c->attr.n_i != x->ndim)
        return AF_FAIL(AF_ERR_VALUE, "permute: argument 'dims' must list all %d dims of 'input', got %d", x->ndim,
                       c->attr.n_i);
    int seen[AF_MAX_DIMS] = {0};
    int64_t shape[AF_MAX_DIMS];
    for (int k = 0; k < x->ndim; k++) {
        int64_t d = c->attr.i[k];
        if (d < 0 || d >= x->ndim || seen[d])
            return AF_FAIL(d < 0 || d >= x->ndim ? AF_ERR_INDEX : AF_ERR_VALUE,
                           "permute: argument 'dims' must be a permutation of 0..%d, got %lld at position %d",
                           x->ndim - 1, (long long)d, k);
        seen[d] = 1;
        shape[k] = x->shape[d];
    }
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

static af_status permute_forward_cpu(af_op_call *c) {
    permute_bytes(c->in[0], c->attr.i, af_tensor_data(c->out[0]));
    return AF_OK;
}

static af_status permute_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (!is_grad_dtype(c->in[0]->dtype)) return AF_OK;
    int64_t inverse[AF_MAX_DIMS];
    for (int k = 0; k < c->in[0]->ndim; k++) inverse[c->attr.i[k]] = k;
    if (!af_din_accumulates(c, 0)) {
        permute_bytes(dout[0], inverse, af_tensor_data(din[0]));
        return AF_OK;
    }
    af_tensor *tmp = NULL;
    AF_TRY(af_tensor_empty_like(c->in[0], &tmp));
    permute_bytes(dout[0], inverse, af_tensor_data(tmp));
    af_status st = af_tensor_accumulate(din[0], tmp);
    af_tensor_release(tmp);
    return st;
}

/* ---------------------------------------------------------------- cat, split, slice */

static void move_rows(const row_map *r, const void *src, void *dst, size_t es) {
    size_t row_bytes = (size_t)r->inner * es;
    if (r->dst_step == 1 && r->src_step == 1) { /* L consecutive rows are one block */
        size_t block = row_bytes * (size_t)r->L;
        AF_PARALLEL_FOR(r->outer * r->L * r->inner / 4)
        for (int64_t o = 0; o < r->outer; o++)
            memcpy((char *)dst + (size_t)((o * r->dst_D + r->dst_off) * r->inner) * es,
                   (const char *)src + (size_t)((o * r->src_D + r->src_off) * r->inner) * es, block);
        return;
    }
    AF_PARALLEL_FOR(r->outer * r->L * r->inner / 4)
    for (int64_t t = 0; t < r->outer * r->L; t++) {
        int64_t o = t / r->L, k = t % r->L;
        memcpy((char *)dst + (size_t)((o * r->dst_D + r->dst_off + k * r->dst_step) * r->inner) * es,
               (const char *)src + (size_t)((o * r->src_D + r->src_off + k * r->src_step) * r->inner) * es,
               row_bytes);
    }
}

/* outer = product of dims before dim, inner = product after */
static void outer_inner(const af_tensor *t, int dim, int64_t *outer, int64_t *inner) {
    *outer = af_shape_numel(dim, t->shape);
    *inner = af_shape_numel(t->ndim - dim - 1, t->shape + dim + 1);
}

static af_status check_dim(const af_op_call *c, int64_t dim) {
    const af_tensor *x = c->in[0];
    if (x->ndim == 0)
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must be at least 1-D, got a 0-d tensor",
                       af_op_table[c->op]->name, af_op_input_name(c, 0));
    if (dim < 0 || dim >= x->ndim)
        return AF_FAIL(AF_ERR_INDEX, "%s: argument 'dim' %lld out of range for a %d-D input",
                       af_op_table[c->op]->name, (long long)dim, x->ndim);
    return AF_OK;
}

static af_status cat_setup(af_op_call *c) {
    if (c->n_in < 1) return AF_FAIL(AF_ERR_VALUE, "cat: argument 'tensors' must hold at least one tensor");
    AF_TRY(af_check_attrs(c, 1, 0));
    for (int i = 0; i < c->n_in; i++)
        if (!c->in[i]) return AF_FAIL(AF_ERR_VALUE, "cat: argument 'tensors' entry %d is None", i);
    AF_TRY(check_dim(c, c->attr.i[0]));
    int dim = (int)c->attr.i[0];
    const af_tensor *x0 = c->in[0];
    int64_t shape[AF_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[dim] = 0;
    for (int i = 0; i < c->n_in; i++) {
        const af_tensor *x = c->in[i];
        int ok = x->ndim == x0->ndim;
        for (int d = 0; ok && d < x0->ndim; d++) ok = d == dim || x->shape[d] == x0->shape[d];
        if (!ok) {
            char s0[96], si[96];
            return AF_FAIL(AF_ERR_VALUE, "cat: argument 'tensors' entry %d has shape %s, which does not match "
                           "entry 0's %s outside dim %d", i, af_shape_str(x->ndim, x->shape, si, sizeof si),
                           af_shape_str(x0->ndim, x0->shape, s0, sizeof s0), dim);
        }
        if (x->dtype != x0->dtype)
            return AF_FAIL(AF_ERR_TYPE, "cat: argument 'tensors' entry %d is %s but entry 0 is %s", i,
                           af_dtype_name(x->dtype), af_dtype_name(x0->dtype));
        shape[dim] += x->shape[dim];
    }
    return af_alloc_out(c, 0, x0->ndim, shape, 0);
}

static af_status cat_forward_cpu(af_op_call *c) {
    int dim = (int)c->attr.i[0];
    row_map r = {0};
    outer_inner(c->out[0], dim, &r.outer, &r.inner);
    r.dst_D = c->out[0]->shape[dim];
    r.dst_step = r.src_step = 1;
    for (int i = 0; i < c->n_in; i++) {
        r.L = r.src_D = c->in[i]->shape[dim];
        move_rows(&r, af_tensor_data(c->in[i]), af_tensor_data(c->out[0]), af_dtype_size(c->in[i]->dtype));
        r.dst_off += r.L;
    }
    return AF_OK;
}

static af_status cat_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (!is_grad_dtype(c->in[0]->dtype)) return AF_OK;
    int dim = (int)c->attr.i[0];
    row_map r = {0};
    outer_inner(c->out[0], dim, &r.outer, &r.inner);
    r.src_D = c->out[0]->shape[dim];
    r.dst_step = r.src_step = 1;
    for (int i = 0; i < c->n_in; i++) {
        r.L = r.dst_D = c->in[i]->shape[dim];
        if (din[i])
            AF_DISPATCH_FLOAT(c->in[0]->dtype, rows_accumulate, &r, af_tensor_data(dout[0]), af_tensor_data(din[i]),
                              af_din_accumulates(c, i));
        r.src_off += r.L;
    }
    return AF_OK;
}

static af_status split_setup(af_op_call *c) {
    AF_TRY(af_check_present(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "split takes one tensor, got %d", c->n_in);
    if (c->attr.n_f != 0 || c->attr.n_i < 2 || c->attr.n_i > 16)
        return AF_FAIL(AF_ERR_VALUE, "split takes integer attributes (dim, size0, ...) with 1 to 15 sizes, got %d integers",
                       c->attr.n_i);
    AF_TRY(check_dim(c, c->attr.i[0]));
    const af_tensor *x = c->in[0];
    int dim = (int)c->attr.i[0];
    int64_t total = 0;
    for (int k = 1; k < c->attr.n_i; k++) {
        int64_t s = c->attr.i[k];
        if (s < 0 || s > x->shape[dim] || total + s > x->shape[dim]) {
            total = -1;
            break;
        }
        total += s;
    }
    if (total != x->shape[dim])
        return AF_FAIL(AF_ERR_VALUE, "split: argument 'split_sizes' must be non-negative and sum to %lld (dim %d of 'input')",
                       (long long)x->shape[dim], dim);
    int64_t shape[AF_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    for (int k = 1; k < c->attr.n_i; k++) {
        shape[dim] = c->attr.i[k];
        AF_TRY(af_alloc_out(c, k - 1, x->ndim, shape, 0));
    }
    return AF_OK;
}

static af_status split_forward_cpu(af_op_call *c) {
    int dim = (int)c->attr.i[0];
    row_map r = {0};
    outer_inner(c->in[0], dim, &r.outer, &r.inner);
    r.src_D = c->in[0]->shape[dim];
    r.dst_step = r.src_step = 1;
    for (int k = 0; k < c->n_out; k++) {
        r.L = r.dst_D = c->out[k]->shape[dim];
        move_rows(&r, af_tensor_data(c->in[0]), af_tensor_data(c->out[k]), af_dtype_size(c->in[0]->dtype));
        r.src_off += r.L;
    }
    return AF_OK;
}

static af_status split_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (!is_grad_dtype(c->in[0]->dtype)) return AF_OK;
    int dim = (int)c->attr.i[0];
    row_map r = {0};
    outer_inner(c->in[0], dim, &r.outer, &r.inner);
    r.dst_D = c->in[0]->shape[dim];
    r.dst_step = r.src_step = 1;
    for (int k = 0; k < c->n_out; k++) {
        r.L = r.src_D = c->out[k]->shape[dim];
        AF_DISPATCH_FLOAT(c->in[0]->dtype, rows_accumulate, &r, af_tensor_data(dout[k]), af_tensor_data(din[0]),
                          af_din_accumulates(c, 0)); /* the slabs tile din[0]: a fresh one is all written */
        r.dst_off += r.L;
    }
    return AF_OK;
}

static af_status slice_setup(af_op_call *c) {
    AF_TRY(af_check_present(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "slice takes one tensor, got %d", c->n_in);
    AF_TRY(af_check_attrs(c, 4, 0));
    AF_TRY(check_dim(c, c->attr.i[0]));
    const af_tensor *x = c->in[0];
    int dim = (int)c->attr.i[0];
    int64_t start = c->attr.i[1], stop = c->attr.i[2], step = c->attr.i[3];
    if (start < 0 || stop < start || stop > x->shape[dim])
        return AF_FAIL(AF_ERR_INDEX, "slice: arguments 'start' %lld and 'stop' %lld must satisfy 0 <= start <= stop <= %lld "
                       "(dim %d of 'input')", (long long)start, (long long)stop, (long long)x->shape[dim], dim);
    if (step < 1) return AF_FAIL(AF_ERR_VALUE, "slice: argument 'step' must be >= 1, got %lld", (long long)step);
    int64_t shape[AF_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = stop == start ? 0 : 1 + (stop - start - 1) / step;
    return af_alloc_out(c, 0, x->ndim, shape, 0);
}

static row_map slice_map(const af_op_call *c) {
    int dim = (int)c->attr.i[0];
    row_map r = {0};
    outer_inner(c->in[0], dim, &r.outer, &r.inner);
    r.L = c->out[0]->shape[dim];
    r.src_D = c->in[0]->shape[dim];
    r.src_off = c->attr.i[1];
    r.src_step = c->attr.i[3];
    r.dst_D = r.L;
    r.dst_step = 1;
    return r;
}

static af_status slice_forward_cpu(af_op_call *c) {
    row_map r = slice_map(c);
    move_rows(&r, af_tensor_data(c->in[0]), af_tensor_data(c->out[0]), af_dtype_size(c->in[0]->dtype));
    return AF_OK;
}

static af_status slice_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    if (!is_grad_dtype(c->in[0]->dtype)) return AF_OK;
    row_map f = slice_map(c), r = f; /* the forward map with source and destination swapped */
    r.dst_D = f.src_D, r.dst_off = f.src_off, r.dst_step = f.src_step;
    r.src_D = f.dst_D, r.src_off = f.dst_off, r.src_step = f.dst_step;
    AF_DISPATCH_FLOAT(c->in[0]->dtype, rows_accumulate, &r, af_tensor_data(dout[0]), af_tensor_data(din[0]), 1);
    return AF_OK;
}

/* ---------------------------------------------------------------- cast */

/* IEEE binary16 from a double, rounding to nearest even: scale to the format's quantum at this
 * magnitude (2^(e-10), or 2^-24 below the normal range), round with nearbyint, and encode. */
static uint16_t half_from_double(double v) {
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    if (isnan(v)) return 0x7e00;
    double a = fabs(v);
    if (isinf(a)) return sign | 0x7c00;
    if (a == 0) return sign;
    int e;
    frexp(a, &e); /* a = m 2^e, m in [0.5, 1): floor(log2 a) = e - 1 */
    int e2 = e - 1 < -14 ? -14 : e - 1;
    double r = nearbyint(ldexp(a, 10 - e2)); /* integer count of quanta 2^(e2-10) */
    double value = ldexp(r, e2 - 10);
    if (value > 65504.0) return sign | 0x7c00;
    if (value < 0x1p-14) return sign | (uint16_t)ldexp(value, 24); /* subnormal (1024 quanta encodes 2^-14) */
    int ev;
    double m = frexp(value, &ev);
    return sign | (uint16_t)((ev - 1 + 15) << 10) | (uint16_t)((m * 2 - 1) * 1024);
}

static double half_to_double(uint16_t h) {
    int field = h >> 10 & 0x1f, mant = h & 0x3ff;
    double v = field == 0 ? ldexp(mant, -24) : field == 31 ? (mant ? NAN : INFINITY) : ldexp(mant + 1024, field - 25);
    return h & 0x8000 ? -v : v;
}

/* bfloat16 = the top 16 bits of a float32; round to nearest even at 8 significant bits. */
static uint16_t bf16_from_double(double v) {
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    if (isnan(v)) return 0x7fc0;
    double a = fabs(v);
    if (isinf(a)) return sign | 0x7f80;
    if (a == 0) return sign;
    int e;
    frexp(a, &e);
    int e2 = e - 1 < -126 ? -126 : e - 1;
    double value = ldexp(nearbyint(ldexp(a, 7 - e2)), e2 - 7);
    if (value > 0x1.fep127) return sign | 0x7f80;
    float f = (float)value; /* exact: at most 8 significant bits, within float32's range */
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return sign | (uint16_t)(bits >> 16);
}

static double bf16_to_double(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* float -> integer: truncate toward zero; NaN and out of range give x86's "integer indefinite" */
static int64_t float_to_i64(double v) { return v >= -0x1p63 && v < 0x1p63 ? (int64_t)v : INT64_MIN; }
static int32_t float_to_i32(double v) { return v > -2147483649.0 && v < 2147483648.0 ? (int32_t)v : INT32_MIN; }

typedef struct cast_value {
    int is_int;
    int64_t i;
    double f;
} cast_value;

static inline cast_value cast_load(af_dtype d, const void *p, int64_t k) {
    cast_value v = {0, 0, 0};
    switch (d) {
    case AF_DTYPE_F32: v.f = ((const float *)p)[k]; break;
    case AF_DTYPE_F64: v.f = ((const double *)p)[k]; break;
    case AF_DTYPE_F16: v.f = half_to_double(((const uint16_t *)p)[k]); break;
    case AF_DTYPE_BF16: v.f = bf16_to_double(((const uint16_t *)p)[k]); break;
    case AF_DTYPE_U8: v.is_int = 1, v.i = ((const uint8_t *)p)[k]; break;
    case AF_DTYPE_I32: v.is_int = 1, v.i = ((const int32_t *)p)[k]; break;
    case AF_DTYPE_I64: v.is_int = 1, v.i = ((const int64_t *)p)[k]; break;
    default: v.is_int = 1, v.i = ((const uint8_t *)p)[k] != 0; break;
    }
    return v;
}

static inline void cast_store(af_dtype d, void *p, int64_t k, cast_value v) {
    /* integer -> narrower integer wraps modulo 2^bits: through uint64 so the narrowing is defined */
    switch (d) {
    case AF_DTYPE_F32: ((float *)p)[k] = v.is_int ? (float)v.i : (float)v.f; break;
    case AF_DTYPE_F64: ((double *)p)[k] = v.is_int ? (double)v.i : v.f; break;
    case AF_DTYPE_F16: ((uint16_t *)p)[k] = half_from_double(v.is_int ? (float)v.i : (float)v.f); break;
    case AF_DTYPE_BF16: ((uint16_t *)p)[k] = bf16_from_double(v.is_int ? (float)v.i : (float)v.f); break;
    case AF_DTYPE_U8: ((uint8_t *)p)[k] = v.is_int ? (uint8_t)(uint64_t)v.i : (uint8_t)(uint32_t)float_to_i32(v.f); break;
    case AF_DTYPE_I32: ((int32_t *)p)[k] = v.is_int ? (int32_t)(uint32_t)(uint64_t)v.i : float_to_i32(v.f); break;
    case AF_DTYPE_I64: ((int64_t *)p)[k] = v.is_int ? v.i : float_to_i64(v.f); break;
    default: ((uint8_t *)p)[k] = v.is_int ? v.i != 0 : v.f != 0 || isnan(v.f); break;
    }
}

static af_status cast_setup(af_op_call *c) {
    AF_TRY(af_check_present(c, 0));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "cast takes one tensor, got %d", c->n_in);
    AF_TRY(af_check_attrs(c, 1, 0));
    int64_t d = c->attr.i[0];
    if (d < 0 || d >= AF_DTYPE_COUNT)
        return AF_FAIL(AF_ERR_TYPE, "cast: argument 'dtype' must be a dtype id 0..%d, got %lld", AF_DTYPE_COUNT - 1,
                       (long long)d);
    AF_TRY(af_alloc_out_dtype(c, 0, c->in[0]->ndim, c->in[0]->shape, (af_dtype)d));
    c->out[0]->memory_format = c->in[0]->memory_format;
    return AF_OK;
}

static af_status cast_forward_cpu(af_op_call *c) {
    af_dtype sd = c->in[0]->dtype, dd = c->out[0]->dtype;
    const void *src = af_tensor_data(c->in[0]);
    void *dst = af_tensor_data(c->out[0]);
    int64_t n = c->in[0]->numel;
    if (sd == dd) { /* also keeps bool bytes as they are */
        memcpy(dst, src, (size_t)n * af_dtype_size(sd));
    } else if (sd == AF_DTYPE_F32 && dd == AF_DTYPE_F64) {
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) ((double *)dst)[i] = ((const float *)src)[i];
    } else if (sd == AF_DTYPE_F64 && dd == AF_DTYPE_F32) {
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = (float)((const double *)src)[i];
    } else if (sd == AF_DTYPE_U8 && dd == AF_DTYPE_F32) { /* images */
        AF_PARALLEL_FOR(n)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = ((const uint8_t *)src)[i];
    } else {
        AF_PARALLEL_FOR(n * 4)
        for (int64_t i = 0; i < n; i++) cast_store(dd, dst, i, cast_load(sd, src, i));
    }
    return AF_OK;
}

static af_status cast_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_dtype sd = c->in[0]->dtype, dd = c->out[0]->dtype;
    if (!is_grad_dtype(sd) || !is_grad_dtype(dd)) return AF_OK; /* no gradient through integers */
    int64_t n = c->in[0]->numel;
    const void *g = af_tensor_data(dout[0]);
    void *dx = af_tensor_data(din[0]);
    if (sd == AF_DTYPE_F32) {
        if (dd == AF_DTYPE_F32) flat_accumulate_f32(g, dx, n, 1);
        else
            for (int64_t i = 0; i < n; i++) ((float *)dx)[i] += (float)((const double *)g)[i];
    } else {
        if (dd == AF_DTYPE_F64) flat_accumulate_f64(g, dx, n, 1);
        else
            for (int64_t i = 0; i < n; i++) ((double *)dx)[i] += ((const float *)g)[i];
    }
    return AF_OK;
}

static const char *const one_input[] = {"input", NULL};
static const char *const cat_inputs[] = {"tensors", NULL};

const af_op_def af_op_def_reshape = {.name = "reshape", .input_names = one_input, .setup = reshape_setup,
                                     .forward_cpu = reshape_forward_cpu, .backward_cpu = reshape_backward_cpu,
                                     .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};
const af_op_def af_op_def_permute = {.name = "permute", .input_names = one_input, .setup = permute_setup,
                                     .forward_cpu = permute_forward_cpu, .backward_cpu = permute_backward_cpu,
                                     .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};
const af_op_def af_op_def_cat = {.name = "cat", .input_names = cat_inputs, .setup = cat_setup,
                                 .forward_cpu = cat_forward_cpu, .backward_cpu = cat_backward_cpu,
                                 .differentiable_inputs = 0xffffffffu, .fresh_grad_inputs = 0xffffffffu};
const af_op_def af_op_def_split = {.name = "split", .input_names = one_input, .setup = split_setup,
                                   .forward_cpu = split_forward_cpu, .backward_cpu = split_backward_cpu,
                                   .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};
const af_op_def af_op_def_slice = {.name = "slice", .input_names = one_input, .setup = slice_setup,
                                   .forward_cpu = slice_forward_cpu, .backward_cpu = slice_backward_cpu,
                                   .differentiable_inputs = 0x1u};
const af_op_def af_op_def_cast = {.name = "cast", .input_names = one_input, .setup = cast_setup,
                                  .forward_cpu = cast_forward_cpu, .backward_cpu = cast_backward_cpu,
                                  .differentiable_inputs = 0x1u};

#else /* ---- kernels, once per scalar_t ---- */

/* dx (n) += dy (n), or = (acc 0) */
static void K(flat_accumulate)(const scalar_t *dy, scalar_t *dx, int64_t n, int acc) {
    if (!acc) {
        memcpy(dx, dy, (size_t)n * sizeof(scalar_t));
        return;
    }
    AF_PARALLEL_FOR(n)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

/* The row_map move with +=: each destination row is touched once (slabs and strided slice rows do
 * not overlap), so the rows can go to any thread. */
static void K(rows_accumulate)(const row_map *r, const scalar_t *src, scalar_t *dst, int acc) {
    AF_PARALLEL_FOR(r->outer * r->L * r->inner)
    for (int64_t t = 0; t < r->outer * r->L; t++) {
        int64_t o = t / r->L, k = t % r->L;
        scalar_t *d = dst + (o * r->dst_D + r->dst_off + k * r->dst_step) * r->inner;
        const scalar_t *s = src + (o * r->src_D + r->src_off + k * r->src_step) * r->inner;
        if (acc)
            for (int64_t j = 0; j < r->inner; j++) d[j] += s[j];
        else
            memcpy(d, s, (size_t)r->inner * sizeof(scalar_t));
    }
}

#endif
