/* Elementwise ops: binary arithmetic with NumPy/PyTorch broadcasting, and unary maps.
 *
 * Binary (add, sub, mul, div, maximum): in = (a, b), same float dtype, shapes broadcast right-aligned
 * (a dim of 1 stretches); out has the broadcast shape. Backward reduces the gradient over the
 * broadcast dims back to each input's shape. maximum propagates NaN and, like torch.maximum, sends
 * the gradient to the larger input and half of it to each on a tie.
 *
 * where: in = (condition bool/uint8, input, other), the three broadcast together; out = input where
 * condition is non-zero, else other (torch.where). The gradient goes to the side that was picked.
 *
 * Unary, one entry per map, y = f(x) (x float32/float64, y same shape):
 *   neg  -x                      exp   e^x                 log  ln x            sqrt  x^(1/2)
 *   relu max(x, 0) (grad 0 at 0) sigmoid 1/(1+e^-x)        tanh                 silu  x*sigmoid(x)
 *   gelu x*Phi(x) with the exact erf (attr i[0] = 0) or the tanh approximation (i[0] = 1),
 *        both as torch.nn.functional.gelu(approximate='none' | 'tanh') documents
 *   scale x*f[0]     add_scalar x + f[0]     pow_scalar x^f[0]
 *   abs  |x| (grad sign(x), 0 at 0)            log_sigmoid  log(1/(1+e^-x)) = min(x,0) - log1p(e^-|x|)
 *   hardsigmoid relu6(x+3)/6 and hardswish x*relu6(x+3)/6 (Howard et al. 2019, arXiv 1905.02244),
 *        with torch's one-sided gradients at the kinks: hardsigmoid 1/6 and hardswish x/3 + 1/2
 *        strictly inside (-3, 3); hardswish 0 at -3 and 1 at 3
 *   softplus log1p(e^(beta x))/beta, floats (beta, threshold): x itself where beta*x > threshold
 *        (torch.nn.functional.softplus)
 *   clamp ints (has_min, has_max), floats (min, max): min(max(x, min), max) with each bound optional;
 *        the gradient passes strictly between the bounds (torch.clamp with number bounds gives 0
 *        at a bound)
 * Attributes: gelu has 1 integer; scale/add_scalar/pow_scalar 1 float; softplus 2 floats; clamp 2
 * integers and 2 floats; the rest none. */
#ifndef AF_FLOAT_PASS
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "elementwise.h"
#include "vexp.h"

#define AF_TEMPLATE_FILE "elementwise.c"
#include "instantiate_float.h"

static af_status binary_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    AF_TRY(af_check_float(c, 0));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_same_dtype(c, 0, 1));
    const af_tensor *a = c->in[0], *b = c->in[1];
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[AF_MAX_DIMS];
    for (int k = 0; k < nd; k++) {
        int ka = k - (nd - a->ndim), kb = k - (nd - b->ndim);
        int64_t da = ka >= 0 ? a->shape[ka] : 1, db = kb >= 0 ? b->shape[kb] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            return AF_FAIL(AF_ERR_VALUE, "%s: shapes %s and %s cannot be broadcast together (dim %d: %lld vs %lld)",
                           af_op_table[c->op]->name, af_shape_str(a->ndim, a->shape, sa, sizeof sa),
                           af_shape_str(b->ndim, b->shape, sb, sizeof sb), k, (long long)da, (long long)db);
        }
        shape[k] = da == 1 ? db : da;
    }
    return af_alloc_out(c, 0, nd, shape, 0);
}

/* Merges neighbouring dims that both operands walk contiguously (stride[d] == stride[d+1] *
 * shape[d+1], broadcast dims included: 0 == 0 * shape), and drops dims of size 1, keeping the plan
 * right-aligned in 5 dims. Squeeze-excitation's (N, C, H, W) * (N, C, 1, 1) becomes (N C) rows of
 * H W with a broadcast inner stride, so the kernels run long inner loops instead of W-long ones.
 * The element order (row-major over the output) is unchanged. */
static void broadcast_coalesce(broadcast *bc) {
    int64_t shape[AF_MAX_DIMS], sa[AF_MAX_DIMS], sb[AF_MAX_DIMS];
    int k = 0; /* dims kept so far, innermost first */
    for (int d = AF_MAX_DIMS - 1; d >= 0; d--) {
        if (bc->shape[d] == 1) continue;
        if (k > 0 && bc->stride_a[d] == sa[k - 1] * shape[k - 1] && bc->stride_b[d] == sb[k - 1] * shape[k - 1]) {
            shape[k - 1] *= bc->shape[d];
            continue;
        }
        shape[k] = bc->shape[d];
        sa[k] = bc->stride_a[d];
        sb[k] = bc->stride_b[d];
        k++;
    }
    for (int d = 0; d < AF_MAX_DIMS; d++) {
        int j = AF_MAX_DIMS - 1 - d; /* dim d of the plan is kept dim j, innermost first */
        bc->shape[d] = j < k ? shape[j] : 1;
        bc->stride_a[d] = j < k ? sa[j] : 0;
        bc->stride_b[d] = j < k ? sb[j] : 0;
    }
}

static af_status binary_forward_cpu(af_op_call *c) {
    broadcast bc;
    broadcast_make(c->in[0], c->in[1], &bc);
    broadcast_coalesce(&bc);
    AF_DISPATCH_FLOAT(c->in[0]->dtype, binary_forward, c->op, &bc, af_tensor_data(c->in[0]),
                      af_tensor_data(c->in[1]), af_tensor_data(c->out[0]), c->out[0]->numel);
    return AF_OK;
}

static af_status binary_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    broadcast bc;
    broadcast_make(c->in[0], c->in[1], &bc);
    broadcast_coalesce(&bc);
    uint32_t fresh = c->din_fresh;
    for (int side = 0; side < 2; side++) {
        if (!din[side]) continue;
        if (!bc.same) AF_TRY(af_din_from_zeros(din, side, &fresh)); /* several terms per element */
        AF_DISPATCH_FLOAT(c->in[0]->dtype, binary_backward, c->op, side, &bc, af_tensor_data(c->in[0]),
                          af_tensor_data(c->in[1]), af_tensor_data(dout[0]), af_tensor_data(din[side]),
                          c->out[0]->numel, !(fresh >> side & 1u));
    }
    return AF_OK;
}

/* ---- where(condition, input, other) ---- */

static af_status where_setup(af_op_call *c) {
    AF_TRY(af_check_attrs(c, 0, 0));
    if (c->n_in != 3) return AF_FAIL(AF_ERR_VALUE, "where takes 3 tensors (condition, input, other), got %d", c->n_in);
    AF_TRY(af_check_present(c, 0));
    if (c->in[0]->dtype != AF_DTYPE_BOOL && c->in[0]->dtype != AF_DTYPE_U8)
        return AF_FAIL(AF_ERR_TYPE, "where: argument 'condition' must be bool or uint8, got %s",
                       af_dtype_name(c->in[0]->dtype));
    AF_TRY(af_check_float(c, 1));
    AF_TRY(af_check_float(c, 2));
    AF_TRY(af_check_same_dtype(c, 1, 2));
    int nd = 0;
    for (int i = 0; i < 3; i++) nd = c->in[i]->ndim > nd ? c->in[i]->ndim : nd;
    int64_t shape[AF_MAX_DIMS];
    for (int k = 0; k < nd; k++) {
        shape[k] = 1;
        for (int i = 0; i < 3; i++) {
            const af_tensor *t = c->in[i];
            int ki = k - (nd - t->ndim);
            int64_t d = ki >= 0 ? t->shape[ki] : 1;
            if (d != 1 && shape[k] != 1 && d != shape[k]) {
                char b0[96], b1[96], b2[96];
                return AF_FAIL(AF_ERR_VALUE, "where: shapes %s (condition), %s (input) and %s (other) cannot be "
                               "broadcast together (dim %d)",
                               af_shape_str(c->in[0]->ndim, c->in[0]->shape, b0, sizeof b0),
                               af_shape_str(c->in[1]->ndim, c->in[1]->shape, b1, sizeof b1),
                               af_shape_str(c->in[2]->ndim, c->in[2]->shape, b2, sizeof b2), k);
            }
            if (d != 1) shape[k] = d;
        }
    }
    return af_alloc_out(c, 0, nd, shape, 1);
}

static af_status where_forward_cpu(af_op_call *c) {
    where_plan p;
    where_plan_make(c, &p);
    AF_DISPATCH_FLOAT(c->in[1]->dtype, where_forward, &p, af_tensor_data(c->in[0]), af_tensor_data(c->in[1]),
                      af_tensor_data(c->in[2]), af_tensor_data(c->out[0]), c->out[0]->numel);
    return AF_OK;
}

static af_status where_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    where_plan p;
    where_plan_make(c, &p);
    for (int side = 1; side <= 2; side++)
        if (din[side])
            AF_DISPATCH_FLOAT(c->in[1]->dtype, where_backward, &p, side, c->in[side]->numel == c->out[0]->numel,
                              af_tensor_data(c->in[0]), af_tensor_data(dout[0]), af_tensor_data(din[side]),
                              c->out[0]->numel);
    return AF_OK;
}

static af_status unary_setup(af_op_call *c) {
    int n_i = c->op == AF_OP_GELU ? 1 : c->op == AF_OP_CLAMP ? 2 : 0;
    int n_f = (c->op == AF_OP_SCALE || c->op == AF_OP_ADD_SCALAR || c->op == AF_OP_POW_SCALAR) ? 1
              : (c->op == AF_OP_SOFTPLUS || c->op == AF_OP_CLAMP) ? 2 : 0;
    AF_TRY(af_check_attrs(c, n_i, n_f));
    AF_TRY(af_check_float(c, 0));
    if (c->op == AF_OP_CLAMP) {
        if ((c->attr.i[0] != 0 && c->attr.i[0] != 1) || (c->attr.i[1] != 0 && c->attr.i[1] != 1))
            return AF_FAIL(AF_ERR_VALUE, "clamp: attributes (has_min, has_max) must be 0 or 1, got (%lld, %lld)",
                           (long long)c->attr.i[0], (long long)c->attr.i[1]);
        if (!c->attr.i[0] && !c->attr.i[1])
            return AF_FAIL(AF_ERR_VALUE, "clamp: at least one of 'min' or 'max' must not be None");
    }
    if (c->op == AF_OP_SOFTPLUS && !(c->attr.f[0] != 0 && isfinite(c->attr.f[0])))
        return AF_FAIL(AF_ERR_VALUE, "softplus: argument 'beta' must be finite and non-zero, got %g", c->attr.f[0]);
    return af_alloc_out(c, 0, c->in[0]->ndim, c->in[0]->shape, 0);
}

static af_status unary_forward_cpu(af_op_call *c) {
    AF_DISPATCH_FLOAT(c->in[0]->dtype, unary_forward, c->op, &c->attr, af_tensor_data(c->in[0]),
                      af_tensor_data(c->out[0]), c->in[0]->numel);
    return AF_OK;
}

static af_status unary_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    AF_DISPATCH_FLOAT(c->in[0]->dtype, unary_backward, c->op, &c->attr, af_tensor_data(c->in[0]),
                      af_tensor_data(c->out[0]), af_tensor_data(dout[0]), af_tensor_data(din[0]),
                      c->in[0]->numel, af_din_accumulates(c, 0));
    return AF_OK;
}

static const char *const binary_inputs[] = {"input", "other", NULL};
static const char *const unary_inputs[] = {"input", NULL};
static const char *const where_inputs[] = {"condition", "input", "other", NULL};

#define BINARY_OP(op)                                                                                         \
    const af_op_def af_op_def_##op = {.name = #op, .input_names = binary_inputs, .setup = binary_setup,       \
                                      .forward_cpu = binary_forward_cpu, .backward_cpu = binary_backward_cpu, \
                                      .differentiable_inputs = 0x3u, .fresh_grad_inputs = 0x3u};
#define UNARY_OP(op)                                                                                          \
    const af_op_def af_op_def_##op = {.name = #op, .input_names = unary_inputs, .setup = unary_setup,         \
                                      .forward_cpu = unary_forward_cpu, .backward_cpu = unary_backward_cpu,   \
                                      .differentiable_inputs = 0x1u, .fresh_grad_inputs = 0x1u};
BINARY_OP(add)
BINARY_OP(sub)
BINARY_OP(mul)
BINARY_OP(div)
BINARY_OP(maximum)
UNARY_OP(neg)
UNARY_OP(exp)
UNARY_OP(log)
UNARY_OP(sqrt)
UNARY_OP(relu)
UNARY_OP(gelu)
UNARY_OP(silu)
UNARY_OP(sigmoid)
UNARY_OP(tanh)
UNARY_OP(scale)
UNARY_OP(add_scalar)
UNARY_OP(pow_scalar)
UNARY_OP(abs)
UNARY_OP(clamp)
UNARY_OP(softplus)
UNARY_OP(log_sigmoid)
UNARY_OP(hardswish)
UNARY_OP(hardsigmoid)
const af_op_def af_op_def_where = {.name = "where", .input_names = where_inputs, .setup = where_setup,
                                   .forward_cpu = where_forward_cpu, .backward_cpu = where_backward_cpu,
                                   .differentiable_inputs = 0x6u};

#else /* ---- kernels, once per scalar_t ---- */

static inline scalar_t K(binary_apply)(int op, scalar_t a, scalar_t b) {
    switch (op) {
    case AF_OP_ADD: return a + b;
    case AF_OP_SUB: return a - b;
    case AF_OP_MUL: return a * b;
    case AF_OP_MAXIMUM: return (a > b || a != a) ? a : b;
    default: return a / b;
    }
}

/* d out / d a (side 0) or d out / d b (side 1), times the incoming gradient g */
static inline scalar_t K(binary_grad)(int op, int side, scalar_t a, scalar_t b, scalar_t g) {
    switch (op) {
    case AF_OP_ADD: return g;
    case AF_OP_SUB: return side ? -g : g;
    case AF_OP_MUL: return side ? g * a : g * b;
    case AF_OP_MAXIMUM: {
        scalar_t mine = side ? b : a, theirs = side ? a : b;
        return mine > theirs ? g : mine == theirs ? g / 2 : 0;
    }
    default: return side ? -g * a / (b * b) : g / b;
    }
}

/* for i in [0, n): body, split across threads (elementwise: any split gives the same bits) */
#define BINARY_SAME_LOOP(body)                                                                               \
    do {                                                                                                     \
        AF_PARALLEL_FOR(n)                                                                                   \
        for (int64_t i = 0; i < n; i++) body;                                                                \
    } while (0)
/* grad[i] += term, or = term in a fresh buffer: two loops, each vectorised on its own */
#define BINARY_GRAD_LOOP(term)                                                                               \
    do {                                                                                                     \
        if (acc) BINARY_SAME_LOOP(grad[i] += (term));                                                        \
        else BINARY_SAME_LOOP(grad[i] = (term));                                                             \
    } while (0)

/* One output row of m values from rows of a and b whose inner strides are 0 or 1 (what coalescing
 * leaves: 0 for a broadcast operand, 1 otherwise), with the op a compile-time constant where the
 * caller passes one, so that each case is a plain loop the compiler vectorises. */
#define BINARY_ROW(OP)                                                                                       \
    do {                                                                                                     \
        if (ia == 1 && ib == 1)                                                                              \
            for (int64_t j = 0; j < m; j++) ro[j] = K(binary_apply)(OP, ra[j], rb[j]);                       \
        else if (ia == 1 && ib == 0) {                                                                       \
            const scalar_t bv = rb[0];                                                                       \
            for (int64_t j = 0; j < m; j++) ro[j] = K(binary_apply)(OP, ra[j], bv);                          \
        } else if (ia == 0 && ib == 1) {                                                                     \
            const scalar_t av = ra[0];                                                                       \
            for (int64_t j = 0; j < m; j++) ro[j] = K(binary_apply)(OP, av, rb[j]);                          \
        } else                                                                                               \
            for (int64_t j = 0; j < m; j++) ro[j] = K(binary_apply)(OP, ra[j * ia], rb[j * ib]);             \
    } while (0)

/* out: (broadcast shape), a, b: their own shapes read through bc's (coalesced) strides */
AF_CPU_DISPATCH
static void K(binary_forward)(int op, const broadcast *bc, const scalar_t *a, const scalar_t *b,
                              scalar_t *out, int64_t n) {
    if (bc->same) {
        switch (op) { /* one loop per op: a switch inside the loop keeps it scalar (same bits) */
        case AF_OP_ADD: BINARY_SAME_LOOP(out[i] = a[i] + b[i]); return;
        case AF_OP_SUB: BINARY_SAME_LOOP(out[i] = a[i] - b[i]); return;
        case AF_OP_MUL: BINARY_SAME_LOOP(out[i] = a[i] * b[i]); return;
        default: BINARY_SAME_LOOP(out[i] = K(binary_apply)(op, a[i], b[i])); return;
        }
    }
    const int64_t *s = bc->shape, *sa = bc->stride_a, *sb = bc->stride_b;
    const int64_t rows = s[0] * s[1] * s[2] * s[3], m = s[4], ia = sa[4], ib = sb[4];
    AF_PARALLEL_FOR(n)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i3 = r % s[3], i2 = r / s[3] % s[2], i1 = r / (s[3] * s[2]) % s[1], i0 = r / (s[3] * s[2] * s[1]);
        const scalar_t *ra = a + i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3];
        const scalar_t *rb = b + i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3];
        scalar_t *ro = out + r * m;
        switch (op) {
        case AF_OP_ADD: BINARY_ROW(AF_OP_ADD); break;
        case AF_OP_SUB: BINARY_ROW(AF_OP_SUB); break;
        case AF_OP_MUL: BINARY_ROW(AF_OP_MUL); break;
        case AF_OP_DIV: BINARY_ROW(AF_OP_DIV); break;
        default: BINARY_ROW(op); break;
        }
    }
}

/* grad row (m values, inner stride ig: 1, or 0 when the side is broadcast along the row) += the
 * row's terms coef * dout[j] * o[j * io] (o == NULL: coef * dout[j]), the hot cases of binary_grad
 * (add, sub, mul) written out so they vectorise; same bits as binary_grad for a full row. A
 * broadcast row sums its terms in 16 fixed lanes, then the lanes in order: the same order for every
 * thread count and every vector width of the dispatch clones. */
static inline void K(binary_grad_row)(scalar_t *g, int64_t ig, const scalar_t *d, const scalar_t *o, int64_t io,
                                      scalar_t coef, int64_t m) {
    if (ig == 1) {
        if (!o)
            for (int64_t j = 0; j < m; j++) g[j] += coef * d[j];
        else if (io == 1)
            for (int64_t j = 0; j < m; j++) g[j] += d[j] * o[j];
        else {
            const scalar_t ov = o[0];
            for (int64_t j = 0; j < m; j++) g[j] += d[j] * ov;
        }
        return;
    }
    scalar_t lane[16] = {0};
    int64_t j = 0;
    if (!o)
        for (; j + 16 <= m; j += 16)
            for (int l = 0; l < 16; l++) lane[l] += d[j + l];
    else if (io == 1)
        for (; j + 16 <= m; j += 16)
            for (int l = 0; l < 16; l++) lane[l] += d[j + l] * o[j + l];
    else
        for (; j + 16 <= m; j += 16)
            for (int l = 0; l < 16; l++) lane[l] += d[j + l] * o[0];
    for (int l = 0; j + l < m; l++) lane[l] += o ? d[j + l] * o[(j + l) * io] : d[j + l];
    scalar_t t = 0;
    for (int l = 0; l < 16; l++) t += lane[l];
    g[0] += coef * t;
}

/* grad (of side's input) += reduce over broadcast dims of d out * d out/d side. The outer dims
 * split into those the side keeps (its stride is not 0) and those it is broadcast over: threads
 * share out the kept index combinations, and each gradient element is summed by one thread over
 * the broadcast combinations in row-major order, so the result never depends on the thread count. */
AF_CPU_DISPATCH
static void K(binary_backward)(int op, int side, const broadcast *bc, const scalar_t *a,
                               const scalar_t *b, const scalar_t *dout, scalar_t *grad, int64_t n, int acc) {
    if (bc->same) {
        switch (op) { /* as in the forward: the hot ops get a loop of their own (same bits as binary_grad) */
        case AF_OP_ADD: BINARY_GRAD_LOOP(dout[i]); return;
        case AF_OP_SUB:
            if (side) BINARY_GRAD_LOOP(-dout[i]);
            else BINARY_GRAD_LOOP(dout[i]);
            return;
        case AF_OP_MUL:
            if (side) BINARY_GRAD_LOOP(dout[i] * a[i]);
            else BINARY_GRAD_LOOP(dout[i] * b[i]);
            return;
        default: BINARY_GRAD_LOOP(K(binary_grad)(op, side, a[i], b[i], dout[i])); return;
        }
    }
    const int64_t *s = bc->shape, *sa = bc->stride_a, *sb = bc->stride_b;
    const int64_t *sg = side ? sb : sa;
    const int64_t m = s[4], ia = sa[4], ib = sb[4], ig = sg[4];
    int64_t row_stride[4]; /* of the output's rows (dims 0-3 of the plan) */
    row_stride[3] = 1;
    for (int d = 2; d >= 0; d--) row_stride[d] = row_stride[d + 1] * s[d + 1];
    int kept[4], red[4], nk = 0, nr = 0;
    int64_t n_kept = 1, n_red = 1;
    for (int d = 0; d < 4; d++) {
        if (s[d] == 1) continue;
        if (sg[d]) {
            kept[nk++] = d;
            n_kept *= s[d];
        } else {
            red[nr++] = d;
            n_red *= s[d];
        }
    }
    /* the hot ops through binary_grad_row: the factor of the term and the operand it reads */
    const int fast = (op == AF_OP_ADD || op == AF_OP_SUB || op == AF_OP_MUL) && (ig == 0 || ig == 1) &&
                     (side ? ia : ib) <= 1;
    const scalar_t coef = op == AF_OP_SUB && side ? (scalar_t)-1 : (scalar_t)1;
    AF_PARALLEL_FOR(n)
    for (int64_t kk = 0; kk < n_kept; kk++) {
        int64_t oa0 = 0, ob0 = 0, og0 = 0, r0 = 0, rest = kk;
        for (int q = nk - 1; q >= 0; q--) {
            const int d = kept[q];
            const int64_t i = rest % s[d];
            rest /= s[d];
            oa0 += i * sa[d], ob0 += i * sb[d], og0 += i * sg[d], r0 += i * row_stride[d];
        }
        for (int64_t rr = 0; rr < n_red; rr++) {
            int64_t oa = oa0, ob = ob0, r = r0;
            rest = rr;
            for (int q = nr - 1; q >= 0; q--) {
                const int d = red[q];
                const int64_t i = rest % s[d];
                rest /= s[d];
                oa += i * sa[d], ob += i * sb[d], r += i * row_stride[d];
            }
            const scalar_t *rd = dout + r * m;
            if (fast) {
                const scalar_t *o = op == AF_OP_MUL ? (side ? a + oa : b + ob) : NULL;
                K(binary_grad_row)(grad + og0, ig, rd, o, side ? ia : ib, coef, m);
            } else
                for (int64_t j = 0; j < m; j++)
                    grad[og0 + j * ig] += K(binary_grad)(op, side, a[oa + j * ia], b[ob + j * ib], rd[j]);
        }
    }
}

/* out (plan shape) = cond ? x : y, each operand read through its plan strides */
AF_CPU_DISPATCH
static void K(where_forward)(const where_plan *p, const uint8_t *cond, const scalar_t *x, const scalar_t *y,
                             scalar_t *out, int64_t n) {
    const int64_t *s = p->shape, *sc = p->stride[0], *sx = p->stride[1], *sy = p->stride[2];
    int64_t rows = s[0] * s[1] * s[2] * s[3];
    AF_PARALLEL_FOR(n)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i3 = r % s[3], i2 = r / s[3] % s[2], i1 = r / (s[3] * s[2]) % s[1], i0 = r / (s[3] * s[2] * s[1]);
        const uint8_t *rc = cond + i0 * sc[0] + i1 * sc[1] + i2 * sc[2] + i3 * sc[3];
        const scalar_t *rx = x + i0 * sx[0] + i1 * sx[1] + i2 * sx[2] + i3 * sx[3];
        const scalar_t *ry = y + i0 * sy[0] + i1 * sy[1] + i2 * sy[2] + i3 * sy[3];
        scalar_t *ro = out + r * s[4];
        for (int64_t j = 0; j < s[4]; j++) ro[j] = rc[j * sc[4]] ? rx[j * sx[4]] : ry[j * sy[4]];
    }
}

/* grad (input's shape for side 1, other's for side 2) += dout where that side was picked, summed
 * over its broadcast dims. Parallel only when the side has the full shape (each element written
 * once); otherwise serial, so the summation order never depends on the thread count. */
static void K(where_backward)(const where_plan *p, int side, int full, const uint8_t *cond, const scalar_t *dout,
                              scalar_t *grad, int64_t n) {
    const int64_t *s = p->shape, *sc = p->stride[0], *sg = p->stride[side];
    uint8_t pick = side == 1;
    int64_t rows = s[0] * s[1] * s[2] * s[3];
    AF_PARALLEL_FOR(full ? n : 0)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i3 = r % s[3], i2 = r / s[3] % s[2], i1 = r / (s[3] * s[2]) % s[1], i0 = r / (s[3] * s[2] * s[1]);
        const uint8_t *rc = cond + i0 * sc[0] + i1 * sc[1] + i2 * sc[2] + i3 * sc[3];
        scalar_t *rg = grad + i0 * sg[0] + i1 * sg[1] + i2 * sg[2] + i3 * sg[3];
        const scalar_t *rd = dout + r * s[4];
        for (int64_t j = 0; j < s[4]; j++)
            if ((rc[j * sc[4]] != 0) == pick) rg[j * sg[4]] += rd[j];
    }
}

#include "sigmoid.inc"

#if AF_FLOAT_PASS == 1
/* 1 + erf(z) with z = x / sqrt 2, in float32 without libm, so the exact GELU's loops vectorise; *e
 * gets e^-z^2 = e^(-x^2 / 2), which the derivative reuses. x^2 / 2 is split as a + b with a exact
 * (x's leading 12 bits squared) and e^-b from three Taylor terms (|b| < 0.02 wherever e^-a is not
 * 0): a rounded x^2 would cost e^-z^2 up to 2^-24 x^2 / 2 of relative error, 150 ulp at x = -12. |z| <= 1: 1 + z P(z^2); beyond, erfc(|z|) = e^-z^2 Q(1/|z|) and 1 + erf(z) is
 * 2 - erfc(z) (z > 1) or erfc(-z) (z < -1), the latter with no cancellation, so GELU keeps its
 * relative accuracy for negative x. P (degree 5 in z^2, relative error 5e-8 on [0, 1]) and Q (degree
 * 11 in 1/|z|, 5e-8 on |z| in [1, 10]; beyond 10, e^-z^2 is 0 in float) are least-squares fits in
 * float64 to math.erf / math.erfc, rounded to float. */
static inline float gelu_one_plus_erf_f32(float x, float *e) {
    const float z = x * 0.70710678118654752f, a = fabsf(z), t = z * z;
    float p = -5.625399062409997e-04f;
    p = p * t + 4.916026722639799e-03f;
    p = p * t - 2.670995518565178e-02f;
    p = p * t + 1.128013059496880e-01f;
    p = p * t - 3.761231899261475e-01f;
    p = p * t + 1.128379106521606e+00f;
    const float u = 1.0f / (a < 1.0f ? 1.0f : a > 10.0f ? 10.0f : a);
    float q = -2.552629448473453e-03f;
    q = q * u - 3.520593419671059e-02f;
    q = q * u + 3.001236915588379e-01f;
    q = q * u - 9.547650814056396e-01f;
    q = q * u + 1.686763525009155e+00f;
    q = q * u - 1.808843493461609e+00f;
    q = q * u + 1.099055171012878e+00f;
    q = q * u - 1.620696932077408e-01f;
    q = q * u - 2.567586600780487e-01f;
    q = q * u - 2.488261321559548e-03f;
    q = q * u + 5.643282532691956e-01f;
    q = q * u - 3.324490080558462e-06f;
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= 0xFFFFF000u;
    float xh, xl;
    memcpy(&xh, &bits, sizeof xh);
    xl = x - xh;
    const float hi = 0.5f * xh * xh; /* exact: 12 significant bits squared */
    float b = xh * xl + 0.5f * xl * xl;
    b = fabsf(x) < 64.0f ? b : 0.0f; /* inf - inf is NaN; e^-hi is 0 out there anyway */
    *e = af_expf(-hi) * (1.0f - b * (1.0f - b * (0.5f - b * (1.0f / 6.0f))));
    const float erfc_a = *e * q;
    return a <= 1.0f ? 1.0f + z * p : z > 0 ? 2.0f - erfc_a : erfc_a;
}

/* exact GELU x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) and its derivative Phi(x) + x phi(x) */
static inline float gelu_erf_f32(float x) {
    float e;
    return 0.5f * x * gelu_one_plus_erf_f32(x, &e);
}
static inline float gelu_erf_derivative_f32(float x) {
    float e; /* e^-x^2/2, so phi(x) = e / sqrt(2 pi) */
    const float c = gelu_one_plus_erf_f32(x, &e);
    return 0.5f * c + x * (e * 0.39894228040143268f);
}
#endif

static inline scalar_t K(gelu_tanh_inner)(scalar_t x) {
    const scalar_t k = (scalar_t)0.7978845608028654; /* sqrt(2/pi) */
    return k * (x + (scalar_t)0.044715 * x * x * x);
}

static inline scalar_t K(unary_apply)(int op, const af_attrs *attr, scalar_t x) {
    switch (op) {
    case AF_OP_NEG: return -x;
    case AF_OP_EXP: return K(vexp)(x);
    case AF_OP_LOG: return log(x);
    case AF_OP_SQRT: return sqrt(x);
    case AF_OP_RELU: return x > 0 ? x : 0;
    case AF_OP_SIGMOID: return K(sigmoid_of)(x);
    case AF_OP_TANH: return tanh(x);
    case AF_OP_SILU: return x * K(sigmoid_of)(x);
    case AF_OP_GELU:
        if (attr->i[0]) return (scalar_t)0.5 * x * (1 + tanh(K(gelu_tanh_inner)(x)));
        return (scalar_t)0.5 * x * (1 + erf(x * (scalar_t)0.7071067811865476));
    case AF_OP_SCALE: return x * (scalar_t)attr->f[0];
    case AF_OP_ADD_SCALAR: return x + (scalar_t)attr->f[0];
    case AF_OP_ABS: return fabs(x);
    case AF_OP_CLAMP: {
        /* comparisons written so NaN passes through, as in torch.clamp */
        if (attr->i[0] && x < (scalar_t)attr->f[0]) x = (scalar_t)attr->f[0];
        if (attr->i[1] && x > (scalar_t)attr->f[1]) x = (scalar_t)attr->f[1];
        return x;
    }
    case AF_OP_SOFTPLUS: {
        scalar_t beta = (scalar_t)attr->f[0];
        return x * beta > (scalar_t)attr->f[1] ? x : log1p(exp(x * beta)) / beta;
    }
    case AF_OP_LOG_SIGMOID: return (x < 0 ? x : 0) - log1p(exp(-fabs(x)));
    case AF_OP_HARDSIGMOID: return x <= -3 ? 0 : x >= 3 ? 1 : x / 6 + (scalar_t)0.5;
    case AF_OP_HARDSWISH: return x <= -3 ? 0 : x >= 3 ? x : x * (x + 3) / 6;
    default: return pow(x, (scalar_t)attr->f[0]);
    }
}

/* d y / d x, from x and y = f(x) (whichever is cheaper) */
static inline scalar_t K(unary_derivative)(int op, const af_attrs *attr, scalar_t x, scalar_t y) {
    switch (op) {
    case AF_OP_NEG: return -1;
    case AF_OP_EXP: return y;
    case AF_OP_LOG: return 1 / x;
    case AF_OP_SQRT: return (scalar_t)0.5 / y;
    case AF_OP_RELU: return x > 0 ? 1 : 0;
    case AF_OP_SIGMOID: return y * (1 - y);
    case AF_OP_TANH: return 1 - y * y;
    case AF_OP_SILU: return K(silu_derivative)(x);
    case AF_OP_GELU:
        if (attr->i[0]) {
            scalar_t t = tanh(K(gelu_tanh_inner)(x));
            scalar_t dinner = (scalar_t)0.7978845608028654 * (1 + 3 * (scalar_t)0.044715 * x * x);
            return (scalar_t)0.5 * (1 + t) + (scalar_t)0.5 * x * (1 - t * t) * dinner;
        } else {
            scalar_t cdf = (scalar_t)0.5 * (1 + erf(x * (scalar_t)0.7071067811865476));
            scalar_t pdf = K(vexp)((scalar_t)-0.5 * x * x) * (scalar_t)0.3989422804014327; /* 1/sqrt(2 pi) */
            return cdf + x * pdf;
        }
    case AF_OP_SCALE: return (scalar_t)attr->f[0];
    case AF_OP_ADD_SCALAR: return 1;
    case AF_OP_ABS: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case AF_OP_CLAMP: {
        /* strict, so lo > hi (hi everywhere) passes no gradient either */
        int in_lo = !attr->i[0] || x > (scalar_t)attr->f[0];
        int in_hi = !attr->i[1] || x < (scalar_t)attr->f[1];
        return in_lo && in_hi ? 1 : 0;
    }
    case AF_OP_SOFTPLUS: {
        scalar_t bx = x * (scalar_t)attr->f[0];
        if (bx > (scalar_t)attr->f[1]) return 1;
        return K(sigmoid_of)(bx);
    }
    case AF_OP_LOG_SIGMOID: return K(sigmoid_of)(-x);
    case AF_OP_HARDSIGMOID: return x > -3 && x < 3 ? (scalar_t)1 / 6 : 0;
    case AF_OP_HARDSWISH: return x <= -3 ? 0 : x < 3 ? x / 3 + (scalar_t)0.5 : 1;
    default: {
        scalar_t p = (scalar_t)attr->f[0];
        return p == 0 ? 0 : p * pow(x, p - 1);
    }
    }
}

/* One loop per hot map, without the per-element switch, so the compiler vectorises it (relu, and
 * the exp family through af_expf in float32); `expr` reads xi = x[i] (and yi = y[i], gi = dy[i] in
 * the backward). */
#define UNARY_MAP(expr)                                                          \
    do {                                                                         \
        AF_PARALLEL_FOR(n * 4)                                                   \
        for (int64_t i = 0; i < n; i++) {                                        \
            const scalar_t xi = x[i];                                            \
            y[i] = (expr);                                                       \
        }                                                                        \
    } while (0)
#define UNARY_GRAD_LOOP(STORE, expr)                                             \
    do {                                                                         \
        AF_PARALLEL_FOR(n * 4)                                                   \
        for (int64_t i = 0; i < n; i++) {                                        \
            const scalar_t xi = x[i], yi = y[i], gi = dy[i];                     \
            (void)xi, (void)yi;                                                  \
            dx[i] STORE(expr);                                                   \
        }                                                                        \
    } while (0)
/* dx += or = (a fresh buffer): two loops, each vectorised on its own */
#define UNARY_GRAD(expr)                                                         \
    do {                                                                         \
        if (acc) UNARY_GRAD_LOOP(+=, expr);                                      \
        else UNARY_GRAD_LOOP(=, expr);                                           \
    } while (0)

/* x, y: (n) */
AF_CPU_DISPATCH
static void K(unary_forward)(int op, const af_attrs *attr, const scalar_t *x, scalar_t *y, int64_t n) {
    switch (op) {
    case AF_OP_RELU: UNARY_MAP(xi > 0 ? xi : 0); return;
    case AF_OP_EXP: UNARY_MAP(K(vexp)(xi)); return;
    case AF_OP_SIGMOID: UNARY_MAP(K(sigmoid_of)(xi)); return;
    case AF_OP_SILU: UNARY_MAP(xi * K(sigmoid_of)(xi)); return;
    case AF_OP_HARDSWISH: UNARY_MAP(xi <= -3 ? 0 : xi >= 3 ? xi : xi * (xi + 3) / 6); return;
#if AF_FLOAT_PASS == 1
    case AF_OP_GELU:
        if (attr->i[0]) break;
        UNARY_MAP(gelu_erf_f32(xi));
        return;
#endif
    case AF_OP_HARDSIGMOID: UNARY_MAP(xi <= -3 ? 0 : xi >= 3 ? 1 : xi / 6 + (scalar_t)0.5); return;
    default: break;
    }
    AF_PARALLEL_FOR(n * 8)
    for (int64_t i = 0; i < n; i++) y[i] = K(unary_apply)(op, attr, x[i]);
}

AF_CPU_DISPATCH
static void K(unary_backward)(int op, const af_attrs *attr, const scalar_t *x, const scalar_t *y,
                              const scalar_t *dy, scalar_t *dx, int64_t n, int acc) {
    switch (op) { /* dy * 0 kept where the derivative is 0, so an infinite dy still gives NaN */
    case AF_OP_RELU: UNARY_GRAD(gi * (xi > 0 ? (scalar_t)1 : (scalar_t)0)); return;
    case AF_OP_EXP: UNARY_GRAD(gi * yi); return;
    case AF_OP_SIGMOID: UNARY_GRAD(gi * (yi * (1 - yi))); return;
    case AF_OP_TANH: UNARY_GRAD(gi * (1 - yi * yi)); return;
    case AF_OP_SILU: {
        /* the sigmoid is recomputed, not read back from y = x s: y / x loses it where x is 0 */
        UNARY_GRAD(gi * K(silu_derivative)(xi));
        return;
    }
#if AF_FLOAT_PASS == 1
    case AF_OP_GELU:
        if (attr->i[0]) break;
        UNARY_GRAD(gi * gelu_erf_derivative_f32(xi));
        return;
#endif
    case AF_OP_HARDSWISH:
        UNARY_GRAD(gi * (xi <= -3 ? (scalar_t)0 : xi < 3 ? xi / 3 + (scalar_t)0.5 : (scalar_t)1));
        return;
    default: break;
    }
    AF_PARALLEL_FOR(n * 8)
    for (int64_t i = 0; i < n; i++) AF_GRAD_STORE(dx[i], acc, dy[i] * K(unary_derivative)(op, attr, x[i], y[i]));
}

#undef BINARY_SAME_LOOP
#undef BINARY_GRAD_LOOP
#undef BINARY_ROW

#undef UNARY_MAP
#undef UNARY_GRAD
#undef UNARY_GRAD_LOOP

#endif
