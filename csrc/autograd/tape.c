#include "tape.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>


static _Thread_local int grad_mode_disabled;
static _Thread_local int anomaly_mode;
static atomic_ullong node_counter;
static atomic_long live_nodes;
static pthread_mutex_t backward_lock = PTHREAD_MUTEX_INITIALIZER;

long af_live_nodes(void) { return atomic_load(&live_nodes); }

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

/* Anomaly mode: the nonfinite_index op runs on the outputs' device; only its one int64 comes back. */
static af_status check_finite(const af_op_call *c) {
    for (int k = 0; k < c->n_out; k++) {
        af_op_call find = {.op = AF_OP_NONFINITE_INDEX, .n_in = 1, .in = {c->out[k]}};
        AF_TRY(af_op_forward(&find));
        int64_t bad = -1;
        af_status st = af_tensor_read(find.out[0], &bad);
        af_tensor_release(find.out[0]);
        AF_TRY(st);
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
    atomic_fetch_sub(&live_nodes, 1);
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
    if (c->n_out == 0) /* an in-place op: it wrote its inputs */
        for (int i = 0; i < c->n_in; i++)
            if (c->in[i]) af_tensor_bump_version(c->in[i]);
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

    af_node *n = calloc(1, sizeof *n + (size_t)(c->n_in + c->n_out) * sizeof n->version[0]);
    if (!n) {
        release_outputs(c);
        return AF_FAIL(AF_ERR_OOM, "out of memory recording the autograd graph");
    }
    af_grad_fn_release = grad_fn_release_hook;
    atomic_fetch_add(&live_nodes, 1);
    atomic_init(&n->refcount, 0);
    for (int i = 0; i < c->n_in; i++) n->version[i] = c->in[i] ? af_tensor_version(c->in[i]) : 0;
    for (int k = 0; k < c->n_out; k++) n->version[c->n_in + k] = af_tensor_version(c->out[k]);
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

/* The buffer a node's backward puts in[i]'s gradient into: the producer's output-gradient slot, or
 * the leaf's .grad (its arena slot when it has one). One that did not exist yet is made without
 * zero-filling it, and *fresh says so: the op writes it (or af_op_backward zero-fills it first). */
static af_status grad_buffer(af_tensor *in, af_tensor **buffer, int *fresh) {
    af_tensor **slot = in->grad_fn ? &in->grad_fn->dout[in->grad_fn_output] : &in->grad;
    *fresh = !*slot;
    if (!*slot) {
        if (!in->grad_fn && in->grad_slot) {
            af_tensor_retain(in->grad_slot);
            *slot = in->grad_slot;
        } else {
            AF_TRY(af_tensor_empty_like(in, slot));
        }
    }
    *buffer = *slot;
    return AF_OK;
}

/* d root / d root: a copy of the caller's gradient, or ones made by the fill_ op on root's device. */
static af_status make_seed(const af_tensor *root, const af_tensor *grad, af_tensor **seed) {
    if (grad) return af_tensor_clone(grad, seed);
    AF_TRY(af_tensor_empty_like(root, seed));
    af_op_call fill = {.op = AF_OP_FILL_, .n_in = 1, .in = {*seed}, .attr = {.f = {1.0}, .n_f = 1}};
    af_status st = af_op_forward(&fill);
    if (st != AF_OK) {
        af_tensor_release(*seed);
        *seed = NULL;
    }
    return st;
}

/* *slot += g, or *slot = g (retained) when the slot is empty. */
static af_status deposit(af_tensor **slot, af_tensor *g) {
    if (*slot) return af_tensor_accumulate(*slot, g);
    af_tensor_retain(g);
    *slot = g;
    return AF_OK;
}

/* A leaf in a gradient arena accumulates into its slot there, so the optimizer finds every
 * gradient in one flat buffer (csrc/core/arena.h). */
af_status af_ensure_leaf_grad(af_tensor *leaf) {
    if (leaf->grad) return AF_OK;
    if (!leaf->grad_slot) return af_tensor_zeros_like(leaf, &leaf->grad);
    AF_TRY(af_tensor_fill_zero(leaf->grad_slot));
    af_tensor_retain(leaf->grad_slot);
    leaf->grad = leaf->grad_slot;
    return AF_OK;
}

/* The tensors n was recorded with still hold the values it saw. */
static af_status check_versions(const af_node *n) {
    const af_op_call *c = &n->call;
    for (int k = 0; k < c->n_in + c->n_out; k++) {
        const af_tensor *t = k < c->n_in ? c->in[k] : c->out[k - c->n_in];
        if (!t || af_tensor_version(t) == n->version[k]) continue;
        char shape[96];
        return AF_FAIL(AF_ERR_RUNTIME,
                       "one of the variables needed for gradient computation has been modified by an "
                       "inplace operation: %s %s '%s' of %s is at version %lu; expected version %lu instead",
                       af_dtype_name(t->dtype), af_shape_str(t->ndim, t->shape, shape, sizeof shape),
                       k < c->n_in ? af_op_input_name(c, k) : "output", af_op_table[c->op]->name,
                       af_tensor_version(t), n->version[k]);
    }
    return AF_OK;
}

static af_grad_hooks grad_hooks;

void af_set_grad_hooks(const af_grad_hooks *hooks) {
    pthread_mutex_lock(&backward_lock); /* never swapped under a running backward */
    grad_hooks = hooks ? *hooks : (af_grad_hooks){0};
    pthread_mutex_unlock(&backward_lock);
}

/* For the gradient-ready hook: fire[t * AF_MAX_IN + i] is set when node t of the tape is the last
 * one to accumulate into its leaf input i (the first such slot when a node uses a leaf twice).
 * One pass from the end of the tape with an open-addressing set of the leaves already seen. */
static af_status plan_grad_ready(af_node **tape, size_t count, unsigned char **fire_out) {
    size_t slots = 0;
    for (size_t t = 0; t < count; t++) slots += (size_t)tape[t]->call.n_in;
    size_t cap = 16;
    while (cap < 2 * slots + 2) cap *= 2;
    unsigned char *fire = calloc(count * AF_MAX_IN, 1);
    const af_tensor **seen = calloc(cap, sizeof *seen);
    if (!fire || !seen) {
        free(fire);
        free(seen);
        return AF_FAIL(AF_ERR_OOM, "out of memory planning gradient hooks");
    }
    for (size_t t = count; t-- > 0;) {
        const af_node *n = tape[t];
        for (int i = 0; i < n->call.n_in; i++) {
            const af_tensor *in = n->call.in[i];
            if (!(n->needs_grad >> i & 1u) || in->grad_fn) continue;
            size_t h = ((uintptr_t)in >> 4) & (cap - 1);
            while (seen[h] && seen[h] != in) h = (h + 1) & (cap - 1);
            if (seen[h]) continue; /* a later node (or an earlier slot of this one) owns it */
            seen[h] = in;
            fire[t * AF_MAX_IN + i] = 1;
        }
    }
    free(seen);
    *fire_out = fire;
    return AF_OK;
}

static af_status backward_locked(af_tensor *root, af_tensor *grad, int retain_graph, const af_grad_hooks *hooks);

af_status af_backward(af_tensor *root, af_tensor *grad, int retain_graph) {
    pthread_mutex_lock(&backward_lock);
    af_grad_hooks hooks = grad_hooks;
    af_status st = backward_locked(root, grad, retain_graph, &hooks);
    pthread_mutex_unlock(&backward_lock);
    if (st == AF_OK && hooks.done) st = hooks.done(hooks.ctx);
    return st;
}

static af_status backward_locked(af_tensor *root, af_tensor *grad, int retain_graph, const af_grad_hooks *hooks) {
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
    af_tensor *seed = NULL;
    AF_TRY(make_seed(root, grad, &seed));
    if (!root->grad_fn) { /* a leaf: d root / d root = 1 */
        af_status st = root->grad_slot ? af_ensure_leaf_grad(root) : AF_OK;
        if (st == AF_OK) st = deposit(&root->grad, seed);
        af_tensor_release(seed);
        return st;
    }

    af_node **tape = NULL;
    unsigned char *fire = NULL;
    size_t count = 0;
    af_status st = collect_tape(root->grad_fn, &tape, &count);
    if (st != AF_OK) {
        af_tensor_release(seed);
        return st;
    }
    if (hooks->ready) AF_CHECK(plan_grad_ready(tape, count, &fire));
    for (size_t k = 0; k < count; k++) {
        if (tape[k]->freed)
            AF_CHECK_FAIL(AF_ERR_RUNTIME,
                          "trying to backward through the graph a second time: its saved tensors "
                          "were freed by the first backward; pass retain_graph=True the first time");
        AF_CHECK(check_versions(tape[k]));
    }

    AF_CHECK(deposit(&root->grad_fn->dout[root->grad_fn_output], seed));

    for (size_t k = 0; k < count; k++) {
        af_node *n = tape[k];
        af_tensor *din[AF_MAX_IN] = {0};
        uint32_t fresh = 0;
        for (int j = 0; j < n->call.n_out; j++) AF_CHECK(ensure_zero_grad(&n->dout[j], n->call.out[j]));
        for (int i = 0; i < n->call.n_in; i++) {
            if (!(n->needs_grad >> i & 1u)) continue;
            int made = 0;
            AF_CHECK(grad_buffer(n->call.in[i], &din[i], &made));
            /* an input passed twice (x * x): both terms add up in one buffer */
            for (int prev = 0; prev < i; prev++)
                if (din[prev] == din[i] && fresh >> prev & 1u) {
                    AF_CHECK(af_tensor_fill_zero(din[i]));
                    fresh &= ~(1u << prev);
                }
            fresh |= (uint32_t)made << i;
        }
        n->call.din_fresh = fresh;
        AF_CHECK(af_op_backward(&n->call, n->dout, din));
        if (fire)
            for (int i = 0; i < n->call.n_in; i++)
                if (fire[k * AF_MAX_IN + i]) AF_CHECK(hooks->ready(n->call.in[i], hooks->ctx));
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
    free(fire);
    af_tensor_release(seed);
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
