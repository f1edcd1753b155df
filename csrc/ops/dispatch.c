/* The op table (generated from op_list.h), device dispatch, and the checks setup functions share. */
#include <stdatomic.h>

#include "ops.h"

const af_op_def *const af_op_table[AF_OP_COUNT] = {
#define AF_OP(name, NAME) [AF_OP_##NAME] = &af_op_def_##name,
#include "op_list.h"
#undef AF_OP
};

/* Compile-time count check: every line of op_list.h produced exactly one table entry. */
#define AF_OP(name, NAME) +1
_Static_assert(0
#include "op_list.h"
               == AF_OP_COUNT, "op_list.h and the op table disagree");
#undef AF_OP

static af_op_kernels device_kernels(int op, af_device dev);

/* The table's invariants, checked once when _C is imported (the defs live in separate files, out of
 * reach of a static assert): every op has setup and a CPU forward, and differentiable_inputs says
 * whether it is differentiable: a non-zero mask needs a backward, a zero mask must have none; fresh
 * gradients are written only for differentiable inputs. */
static af_status check_kernels(const af_op_def *def, const char *device, af_op_kernels k) {
    if (!k.forward) return AF_FAIL(AF_ERR_INTERNAL, "op table: %s has no %s forward", def->name, device);
    if (def->differentiable_inputs && !k.backward)
        return AF_FAIL(AF_ERR_INTERNAL, "op table: %s declares differentiable inputs (mask 0x%x) but has no %s backward",
                       def->name, (unsigned)def->differentiable_inputs, device);
    if (!def->differentiable_inputs && k.backward)
        return AF_FAIL(AF_ERR_INTERNAL, "op table: %s has a %s backward but declares no differentiable input",
                       def->name, device);
    if (k.fresh_grad_inputs & ~def->differentiable_inputs)
        return AF_FAIL(AF_ERR_INTERNAL,
                       "op table: %s writes fresh %s gradients (mask 0x%x) of inputs it does not differentiate",
                       def->name, device, (unsigned)k.fresh_grad_inputs);
    return AF_OK;
}

af_status af_op_table_check(void) {
    for (int op = 0; op < AF_OP_COUNT; op++) {
        const af_op_def *def = af_op_table[op];
        if (!def->name || !def->setup) return AF_FAIL(AF_ERR_INTERNAL, "op table: op %d lacks a name or setup", op);
        AF_TRY(check_kernels(def, "CPU", device_kernels(op, AF_CPU)));
#ifdef AF_HAVE_CUDA
        if (af_op_cuda_table[op]) AF_TRY(check_kernels(def, "CUDA", *af_op_cuda_table[op]));
#endif
    }
    return AF_OK;
}

static af_device call_device(const af_op_call *c) {
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i]) return c->in[i]->device;
    return AF_CPU;
}

/* The kernels of op on dev; NULL members where that device has none. */
static af_op_kernels device_kernels(int op, af_device dev) {
    const af_op_def *def = af_op_table[op];
    af_op_kernels none = {NULL, NULL};
    if (dev.type == AF_DEVICE_CUDA) {
#ifdef AF_HAVE_CUDA
        if (af_op_cuda_table[op]) return *af_op_cuda_table[op];
#endif
        return none;
    }
    return (af_op_kernels){
        .forward = def->forward_cpu, .backward = def->backward_cpu, .fresh_grad_inputs = def->fresh_grad_inputs};
}

/* An op takes at most the inputs it names; only a list op (cat: every input differentiable, one
 * name for all) takes up to AF_MAX_IN. */
int af_op_max_inputs(int op) {
    const af_op_def *def = af_op_table[op];
    if (def->differentiable_inputs == 0xffffffffu) return AF_MAX_IN;
    int named = 0;
    while (def->input_names && def->input_names[named]) named++;
    return named;
}

af_status af_op_forward(af_op_call *c) {
    const af_op_def *def = af_op_table[c->op];
    int max_inputs = af_op_max_inputs(c->op); /* without this check, relu(x, y) would ignore y */
    if (c->n_in > max_inputs)
        return AF_FAIL(AF_ERR_VALUE, "%s takes at most %d tensor input%s, got %d", def->name, max_inputs,
                       max_inputs == 1 ? "" : "s", c->n_in);
    AF_TRY(af_check_same_device(c));
    /* before setup, so a missing kernel never costs an allocation (on a device, possibly large) */
    af_device dev = call_device(c);
    af_op_kernels k = device_kernels(c->op, dev);
    if (!k.forward)
        return AF_FAIL(AF_ERR_DEVICE, "%s has no %s kernel: move the inputs to the CPU with .to('cpu')", def->name,
                       dev.type == AF_DEVICE_CUDA ? "CUDA" : "CPU");
    AF_TRY(def->setup(c));
    return k.forward(c);
}

static atomic_int fresh_grad_poison;

int af_set_fresh_grad_poison(int enabled) { return atomic_exchange(&fresh_grad_poison, enabled != 0); }

af_status af_op_backward(af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    const af_op_def *def = af_op_table[c->op];
    af_op_kernels k = device_kernels(c->op, call_device(c));
    af_status st = AF_OK;
    if (!k.backward) st = AF_FAIL(AF_ERR_RUNTIME, "%s has no backward on this device", def->name);
    const int poison = atomic_load_explicit(&fresh_grad_poison, memory_order_relaxed);
    for (int i = 0; st == AF_OK && i < c->n_in; i++) {
        if (!(k.fresh_grad_inputs >> i & 1u)) st = af_din_from_zeros(din, i, &c->din_fresh);
        else if (poison && c->din_fresh >> i & 1u && din[i]) st = af_tensor_fill_bytes(din[i], 0xFF); /* NaN */
    }
    if (st == AF_OK) st = k.backward(c, dout, din);
    c->din_fresh = 0;
    return st;
}

af_status af_din_from_zeros(af_tensor *const *din, int i, uint32_t *fresh) {
    if (!(*fresh >> i & 1u) || !din[i]) return AF_OK;
    AF_TRY(af_tensor_fill_zero(din[i]));
    *fresh &= ~(1u << i);
    return AF_OK;
}

void af_op_call_release(af_op_call *c) {
    for (int i = 0; i < c->n_in; i++) af_tensor_release(c->in[i]);
    for (int i = 0; i < c->n_out; i++) af_tensor_release(c->out[i]);
    for (int i = 0; i < c->n_saved; i++) af_tensor_release(c->saved[i]);
    c->n_in = c->n_out = c->n_saved = 0;
}

const char *af_op_input_name(const af_op_call *c, int i) {
    const char *const *names = af_op_table[c->op]->input_names;
    for (int k = 0; names && names[k]; k++)
        if (k == i) return names[k];
    return "input";
}

af_status af_check_present(const af_op_call *c, int i) {
    if (i >= c->n_in || !c->in[i])
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' is required", af_op_table[c->op]->name,
                       af_op_input_name(c, i));
    return AF_OK;
}

af_status af_check_float(const af_op_call *c, int i) {
    AF_TRY(af_check_present(c, i));
    af_dtype d = c->in[i]->dtype;
    if (d != AF_DTYPE_F32 && d != AF_DTYPE_F64)
        return AF_FAIL(AF_ERR_TYPE, "%s: argument '%s' must be float32 or float64, got %s",
                       af_op_table[c->op]->name, af_op_input_name(c, i), af_dtype_name(d));
    return AF_OK;
}

af_status af_check_dtype(const af_op_call *c, int i, af_dtype dtype) {
    AF_TRY(af_check_present(c, i));
    if (c->in[i]->dtype != dtype)
        return AF_FAIL(AF_ERR_TYPE, "%s: argument '%s' must be %s, got %s", af_op_table[c->op]->name,
                       af_op_input_name(c, i), af_dtype_name(dtype), af_dtype_name(c->in[i]->dtype));
    return AF_OK;
}

af_status af_check_same_dtype(const af_op_call *c, int i, int j) {
    if (c->in[i]->dtype != c->in[j]->dtype)
        return AF_FAIL(AF_ERR_TYPE, "%s: '%s' is %s but '%s' is %s; convert one with .to()",
                       af_op_table[c->op]->name, af_op_input_name(c, i), af_dtype_name(c->in[i]->dtype),
                       af_op_input_name(c, j), af_dtype_name(c->in[j]->dtype));
    return AF_OK;
}

af_status af_check_ndim(const af_op_call *c, int i, int ndim) {
    AF_TRY(af_check_present(c, i));
    if (c->in[i]->ndim != ndim) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "%s: argument '%s' must be %d-D, got shape %s",
                       af_op_table[c->op]->name, af_op_input_name(c, i), ndim,
                       af_shape_str(c->in[i]->ndim, c->in[i]->shape, buf, sizeof buf));
    }
    return AF_OK;
}

af_status af_check_same_device(const af_op_call *c) {
    af_device dev = call_device(c);
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i] && !af_device_equal(c->in[i]->device, dev))
            return AF_FAIL(AF_ERR_DEVICE, "%s: argument '%s' is on another device than the others",
                           af_op_table[c->op]->name, af_op_input_name(c, i));
    return AF_OK;
}

af_status af_check_attrs(const af_op_call *c, int n_i, int n_f) {
    if (c->attr.n_i != n_i || c->attr.n_f != n_f)
        return AF_FAIL(AF_ERR_VALUE, "%s takes %d integer and %d float attributes, got %d and %d",
                       af_op_table[c->op]->name, n_i, n_f, c->attr.n_i, c->attr.n_f);
    return AF_OK;
}

af_status af_alloc_out_dtype(af_op_call *c, int k, int ndim, const int64_t *shape, af_dtype dtype) {
    AF_TRY(af_tensor_new(dtype, call_device(c), ndim, shape, &c->out[k]));
    if (c->n_out <= k) c->n_out = k + 1;
    return AF_OK;
}

af_status af_alloc_out(af_op_call *c, int k, int ndim, const int64_t *shape, int like) {
    return af_alloc_out_dtype(c, k, ndim, shape, c->in[like]->dtype);
}

af_status af_alloc_saved(af_op_call *c, int k, int ndim, const int64_t *shape, af_dtype dtype) {
    AF_TRY(af_tensor_new(dtype, call_device(c), ndim, shape, &c->saved[k]));
    if (c->n_saved <= k) c->n_saved = k + 1;
    return AF_OK;
}
