#include "tape.h"

#include <stdlib.h>
#include <string.h>

#include <math.h>

static _Thread_local int grad_mode_disabled;
static _Thread_local int anomaly_mode;
static atomic_ullong node_counter;

int af_grad_enabled(void) { return !grad_mode_disabled; }

int af_set_grad_enabled(int enabled) {
    int previous = !grad_mode_disabled;
    grad_mode_disabled = !enabled;
    return previous;
}

int af_set_anomaly_mode(int enabled) {
    int previous = anomaly_mode;
    anomaly_mode = enabled;
    return previous;
}

static af_status check_finite(const af_op_call *c) {
    for (int k = 0; k < c->n_out; k++) {
        const af_tensor *t = c->out[k];
        int64_t bad = -1;
        if (t->dtype == AF_DTYPE_F32) {
            const float *p = af_tensor_data(t);
            for (int64_t i = 0; i < t->numel && bad < 0; i++) if (!isfinite(p[i])) bad = i;
        } else if (t->dtype == AF_DTYPE_F64) {
            const double *p = af_tensor_data(t);
            for (int64_t i = 0; i < t->numel && bad < 0; i++) if (!isfinite(p[i])) bad = i;
        }
        if (bad >= 0)
            return AF_FAIL(AF_ERR_FLOAT, "%s produced a NaN or infinity in output %d at flat index %lld "
                           "(detect_anomaly is on)", af_op_table[c->op]->name, k, (long long)bad);
    }
    return AF_OK;
}

void af_node_retain(af_node *n) { atomic_fetch_add(&n->refcount, 1); }

static void node_free_state(af_node *n) {
    af_op_call_release(&n->call);
    for (int k = 0; k < AF_MAX_OUT; k++) {
        af_tensor_release(n->dout[k]);
        n->dout[k] = NULL;
    }
    n->freed = 1;
}

void af_node_release(af_node *n) {
    if (!n || atomic_fetch_sub(&n->refcount, 1) != 1) return;
    node_free_state(n);
    free(n);
}

static void release_outputs(af_op_call *c) {
    for (int k = 0; k < c->n_out; k++) {
        af_tensor_release(c->out[k]);
        c->out[k] = NULL;
    }
    for (int k = 0; k < c->n_saved; k++) {
        af_tensor_release(c->saved[k]);
        c->saved[k] = NULL;
    }
    c->n_out = c->n_saved = 0;
}

static void grad_fn_release_hook(struct af_node *n) { af_node_release(n); }

af_status af_call(af_op_call *c) {
    af_status st = af_op_forward(c);
    if (st == AF_OK && anomaly_mode) st = check_finite(c);
    if (st != AF_OK) {
        release_outputs(c);
        return st;
    }
    const af_op_def *def = af_op_table[c->op];
    uint32_t needs = 0;
    if (af_grad_enabled() && def->differentiable_inputs)
        for (int i = 0; i < c->n_in; i++)
            if (c->in[i] && c->in[i]->requires_grad && (def->differentiable_inputs >> i & 1u))
                needs |= 1u << i;
    if (!needs) {
        for (int k = 0; k < c->n_saved; k++) {
            af_tensor_release(c->saved[k]);
            c->saved[k] = NULL;
        }
        c->n_saved = 0;
        return AF_OK;
    }

    af_node *n = calloc(1, sizeof *n);
    if (!n) {
        release_outputs(c);
        return AF_FAIL(AF_ERR_OOM, "out of memory recording the autograd graph");
    }
    af_grad_fn_release = grad_fn_release_hook;
    atomic_init(&n->refcount, 0);
    n->seq = atomic_fetch_add(&node_counter, 1);
    n->needs_grad = needs;
    n->call = *c; /* takes over saved; inputs and output aliases are retained below */
    for (int i = 0; i < c->n_in; i++) af_tensor_retain(c->in[i]);
    for (int k = 0; k < c->n_out; k++) {
        st = af_tensor_alias(c->out[k], &n->call.out[k]);
        if (st != AF_OK) {
            for (int j = k; j < c->n_out; j++) n->call.out[j] = NULL;
            af_node_retain(n);
            af_node_release(n);
            for (int j = 0; j < c->n_saved; j++) c->saved[j] = NULL; /* now owned (and freed) by n */
            c->n_saved = 0;
            release_outputs(c);
            return st;
        }
    }
    af_node_retain(n); /* held across the loop: freed below if no output keeps it (all integer) */
    for (int k = 0; k < c->n_out; k++) {
        /* integer outputs (max's indices) carry no gradient, as in torch */
        if (c->out[k]->dtype != AF_DTYPE_F32 && c->out[k]->dtype != AF_DTYPE_F64) continue;
        c->out[k]->grad_fn = n;
        c->out[k]->grad_fn_output = k;
        c->out[k]->requires_grad = 1;
        af_node_retain(n);
    }
    for (int k = 0; k < c->n_saved; k++) c->saved[k] = NULL;
    c->n_saved = 0;
    af_node_release(n);
    return AF_OK;
}

/* Nodes reachable from `start`, in decreasing creation order. */
static af_status collect_tape(af_node *start, af_node ***tape_out, size_t *count_out) {
    size_t cap = 64, count = 0, stack_len = 0, stack_cap = 64;
    af_node **tape = malloc(cap * sizeof *tape), **stack = malloc(stack_cap * sizeof *stack);
    /* a visited mark per node for this walk: a small open-addressing set of pointers */
    size_t set_cap = 256, set_len = 0;
    af_node **set = calloc(set_cap, sizeof *set);
    af_status st = AF_OK;
    if (!tape || !stack || !set) AF_CHECK_FAIL(AF_ERR_OOM, "out of memory walking the graph");
    stack[stack_len++] = start;
    while (stack_len) {
        af_node *n = stack[--stack_len];
        size_t h = ((uintptr_t)n >> 4) & (set_cap - 1);
        while (set[h] && set[h] != n) h = (h + 1) & (set_cap - 1);
        if (set[h]) continue;
        set[h] = n;
        if (++set_len * 2 > set_cap) { /* grow and rehash */
            size_t new_cap = set_cap * 2;
            af_node **grown = calloc(new_cap, sizeof *grown);
            if (!grown) AF_CHECK_FAIL(AF_ERR_OOM, "out of memory walking the graph");
            for (size_t k = 0; k < set_cap; k++) {
                if (!set[k]) continue;
                size_t g = ((uintptr_t)set[k] >> 4) & (new_cap - 1);
                while (grown[g]) g = (g + 1) & (new_cap - 1);
                grown[g] = set[k];
            }
            free(set);
            set = grown;
            set_cap = new_cap;
        }
        if (count == cap) {
            af_node **grown = realloc(tape, (cap *= 2) * sizeof *tape);
            if (!grown) AF_CHECK_FAIL(AF_ERR_OOM, "out of memory walking the graph");
            tape = grown;
        }
        af_node_retain(n); /* freeing one node's state may drop the last other reference */
        tape[count++] = n;
        for (int i = 0; i < n->call.n_in; i++) {
            af_tensor *in = n->call.in[i];
            if (!in || !(n->needs_grad >> i & 1u) || !in->grad_fn) continue;
            if (stack_len == stack_cap) {
                af_node **grown = realloc(stack, (stack_cap *= 2) * sizeof *stack);
                if (!grown) AF_CHECK_FAIL(AF_ERR_OOM, "out of memory walking the graph");
                stack = grown;
            }
            stack[stack_len++] = in->grad_fn;
        }
    }
    for (size_t a = 1; a < count; a++) { /* insertion sort by seq, descending: usually near-sorted */
        af_node *n = tape[a];
        size_t b = a;
        while (b > 0 && tape[b - 1]->seq < n->seq) {
            tape[b] = tape[b - 1];
            b--;
        }
        tape[b] = n;
    }
    free(stack);
    free(set);
    *tape_out = tape;
    *count_out = count;
    return AF_OK;
fail:
    for (size_t k = 0; k < count; k++) af_node_release(tape[k]);
    free(tape);
    free(stack);
    free(set);
    return st;
}

static af_status ensure_zero_grad(af_tensor **slot, const af_tensor *like) {
    if (*slot) return AF_OK;
    return af_tensor_zeros_like(like, slot);
}

af_status af_backward(af_tensor *root, af_tensor *grad, int retain_graph) {
    if (!root->requires_grad)
        return AF_FAIL(AF_ERR_RUNTIME,
                       "backward() on a tensor that does not require grad: no input of the "
                       "computation had requires_grad=True (or it ran under no_grad)");
    if (grad && (!af_tensor_same_shape(grad, root) || grad->dtype != root->dtype))
        return AF_FAIL(AF_ERR_VALUE, "backward(gradient): gradient must have the shape and dtype of the tensor");
    if (!grad && root->numel != 1)
        return AF_FAIL(AF_ERR_VALUE,
                       "backward() without a gradient needs a one-element tensor (a loss); pass "
                       "gradient= for a tensor with %lld elements", (long long)root->numel);
    if (!root->grad_fn) { /* a leaf: d root / d root = 1 */
        af_tensor *seed = NULL;
        if (grad) {
            AF_TRY(af_tensor_clone(grad, &seed));
        } else {
            AF_TRY(af_tensor_new(root->dtype, root->device, root->ndim, root->shape, &seed));
            if (root->dtype == AF_DTYPE_F32) *(float *)af_tensor_data(seed) = 1.0f;
            else *(double *)af_tensor_data(seed) = 1.0;
        }
        if (!root->grad) {
            root->grad = seed;
            return AF_OK;
        }
        af_status st = af_tensor_accumulate(root->grad, seed);
        af_tensor_release(seed);
        return st;
    }

    af_node **tape = NULL;
    size_t count = 0;
    af_status st = AF_OK;
    AF_TRY(collect_tape(root->grad_fn, &tape, &count));
    for (size_t k = 0; k < count; k++)
        if (tape[k]->freed)
            AF_CHECK_FAIL(AF_ERR_RUNTIME,
                          "trying to backward through the graph a second time: its saved tensors "
                          "were freed by the first backward; pass retain_graph=True the first time");

    af_node *top = root->grad_fn;
    af_tensor **seed_slot = &top->dout[root->grad_fn_output];
    AF_CHECK(ensure_zero_grad(seed_slot, root));
    if (grad) {
        AF_CHECK(af_tensor_accumulate(*seed_slot, grad));
    } else if (root->dtype == AF_DTYPE_F32) {
        *(float *)af_tensor_data(*seed_slot) += 1.0f;
    } else {
        *(double *)af_tensor_data(*seed_slot) += 1.0;
    }

    for (size_t k = 0; k < count; k++) {
        af_node *n = tape[k];
        af_tensor *din[AF_MAX_IN] = {0};
        for (int j = 0; j < n->call.n_out; j++) AF_CHECK(ensure_zero_grad(&n->dout[j], n->call.out[j]));
        for (int i = 0; i < n->call.n_in; i++) {
            af_tensor *in = n->call.in[i];
            if (!(n->needs_grad >> i & 1u)) continue;
            if (in->grad_fn) {
                af_node *producer = in->grad_fn;
                AF_CHECK(ensure_zero_grad(&producer->dout[in->grad_fn_output], in));
                din[i] = producer->dout[in->grad_fn_output];
            } else {
                AF_CHECK(ensure_zero_grad(&in->grad, in));
                din[i] = in->grad;
            }
        }
        AF_CHECK(af_op_backward(&n->call, n->dout, din));
        if (retain_graph) {
            for (int j = 0; j < AF_MAX_OUT; j++) {
                af_tensor_release(n->dout[j]);
                n->dout[j] = NULL;
            }
        } else {
            node_free_state(n);
        }
        if (af_interrupted()) AF_CHECK_FAIL(AF_ERR_INTERRUPT, "backward interrupted");
    }
fail:
    for (size_t k = 0; k < count; k++) {
        for (int j = 0; j < AF_MAX_OUT; j++) {
            af_tensor_release(tape[k]->dout[j]);
            tape[k]->dout[j] = NULL;
        }
        af_node_release(tape[k]);
    }
    free(tape);
    return st;
}
