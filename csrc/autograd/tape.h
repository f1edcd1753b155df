/* Reverse-mode automatic differentiation.
 *
 * While grad mode is on, every op call whose differentiable inputs include a tensor with
 * requires_grad records a node: the call itself (inputs retained, outputs kept as aliases so no
 * reference cycle forms, saved tensors) and a sequence number. Outputs point back at their node
 * (grad_fn), inputs point at theirs, so the nodes form a DAG owned by the tensors that hang off it:
 * dropping the loss frees the graph.
 *
 * backward(root) collects the nodes reachable from root and walks them in decreasing sequence
 * number - creation order is a topological order, so this reversed list is our tape. Each node's
 * backward accumulates (+=) into its inputs' gradient buffers: a producer node's output gradient
 * for intermediates, `tensor->grad` for leaves. The first gradient to reach a buffer is written,
 * not added to zeros: the buffer is made uninitialised and the op told so (af_op_call.din_fresh).
 * After a node has run, its saved tensors are freed (unless retain_graph), and a second backward
 * through it raises. The tape never reads tensor
 * data: seeds come from the fill_ op, accumulation from add_, the anomaly check from
 * nonfinite_index, each on the tensors' own device.
 *
 * In-place writes: every op without outputs writes its inputs (fill_, copy_, sgd_step, ...), and
 * af_call bumps the storage version of each of its inputs. A node records the versions of its
 * inputs and outputs when it is created; backward refuses (RuntimeError, with torch's message) to
 * run a node whose tensors changed since, rather than silently use the new values. The check is
 * conservative: it covers every input, also those a backward formula does not read. Writes that
 * bypass the ops (NumPy writing into memory shared through from_numpy) cannot be seen.
 *
 * Threads: forward calls may run concurrently. backward holds one process-wide lock for its whole
 * walk, so backwards through one graph, or through graphs that share leaves, run one after another
 * and every gradient update lands (PyTorch instead locks per node; one lock is simpler and a
 * training step has one backward at a time anyway). Freeing a graph is iterative (tensor.c), so a
 * graph of any depth is released without deep recursion. */
#ifndef AF_TAPE_H
#define AF_TAPE_H

#include "../ops/ops.h"

typedef struct af_node {
    atomic_long refcount;
    uint64_t seq;
    af_op_call call;
    af_tensor *dout[AF_MAX_OUT]; /* gradient w.r.t. each output, only during backward */
    uint32_t needs_grad;         /* bit i: in[i] wants a gradient */
    int freed;                   /* saved state released by an earlier backward */
    /* storage versions at creation: in[0..n_in) then out[0..n_out) */
    unsigned long version[];
} af_node;

int af_grad_enabled(void);
int af_set_grad_enabled(int enabled); /* returns the previous mode; per thread */
/* Anomaly mode: af_call fails with AF_ERR_FLOAT, naming the op, when an output has a NaN/Inf. */
int af_set_anomaly_mode(int enabled);

/* Runs op c->op on c->in / c->attr. On success the caller owns c->out[0..n_out); with autograd the
 * outputs carry grad_fn. On failure nothing is left allocated in c except the caller's inputs. */
af_status af_call(af_op_call *c);

/* d root / d leaves, seeded with `grad` (NULL = ones, root must then have one element). */
af_status af_backward(af_tensor *root, af_tensor *grad, int retain_graph);

/* Gradient hooks (data-parallel training, csrc/dist/reducer.c). During backward, ready(leaf, ctx)
 * runs once for each leaf right after the last node of the tape that accumulates into it, i.e. as
 * soon as that leaf's .grad is final for this backward, so its all-reduce can start while the rest
 * of backward computes; done(ctx) runs when a backward has succeeded, outside the backward lock
 * (PyTorch's DDP uses the same two points: gradient accumulation hooks and the end-of-backward
 * callback). A failure of either becomes backward's failure. One set per process; NULL removes it. */
typedef struct af_grad_hooks {
    af_status (*ready)(af_tensor *leaf, void *ctx);
    af_status (*done)(void *ctx);
    void *ctx;
} af_grad_hooks;
void af_set_grad_hooks(const af_grad_hooks *hooks);
/* Gives a leaf a zero .grad if it has none (its gradient-arena slot when it has one), as backward
 * does before accumulating into it. */
af_status af_ensure_leaf_grad(af_tensor *leaf);

void af_node_retain(af_node *n);
void af_node_release(af_node *n);
/* Nodes alive in the process (tests check that graphs are freed). */
long af_live_nodes(void);

#endif
