/* A differentiable sum over the ranks of a process group (affectfer.distributed), the building
 * block of SyncBatchNorm: its per-channel sums go through it in forward, and their gradients come
 * back through it in backward.
 *
 *   in    = (x,) float32/float64, any shape, the same shape on every rank
 *   floats = (timeout,): seconds to wait for the other ranks before failing, > 0
 *   out   = y = x_0 + x_1 + ... + x_{R-1} (rank r contributes x_r), the shape of x
 *
 * Backward: the total loss is the sum of the ranks' losses L_q, and every y_q depends on every
 * x_r with dy_q/dx_r = I, so dL/dx_r = sum_q dL_q/dy_q: the incoming gradients are summed over the
 * ranks too (the rule of torch.distributed.nn.functional.all_reduce). Ranks must call it in the
 * same order, as every collective. In a single process (no group initialised) y = x.
 *
 * The sum is the process group's (af_sum_over_ranks, set by csrc/dist): a blocking all-reduce whose
 * wait gives up after `timeout`, and fails at once with the watchdog's verdict when a peer is dead. */
#include <string.h>

#include "ops.h"

static af_status all_reduce_setup(af_op_call *c) {
    const char *op = af_op_table[c->op]->name;
    AF_TRY(af_check_attrs(c, 0, 1));
    if (c->n_in != 1) return AF_FAIL(AF_ERR_VALUE, "%s takes 1 input, got %d", op, c->n_in);
    AF_TRY(af_check_float(c, 0));
    if (!(c->attr.f[0] > 0))
        return AF_FAIL(AF_ERR_VALUE, "%s: argument 'timeout' must be a positive number of seconds, got %g", op,
                       c->attr.f[0]);
    return af_alloc_out(c, 0, c->in[0]->ndim, c->in[0]->shape, 0);
}

af_status (*af_sum_over_ranks)(af_tensor *t, double timeout);

/* A buffer that a failed collective may still be writing into is leaked, not freed. */
static af_status all_reduce_forward_cpu(af_op_call *c) {
    memcpy(af_tensor_data(c->out[0]), af_tensor_data(c->in[0]), af_tensor_nbytes(c->in[0]));
    af_status st = af_sum_over_ranks ? af_sum_over_ranks(c->out[0], c->attr.f[0]) : AF_OK;
    if (st != AF_OK) af_tensor_retain(c->out[0]);
    return st;
}

static af_status all_reduce_backward_cpu(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din) {
    af_tensor *sum = NULL;
    AF_TRY(af_tensor_clone(dout[0], &sum));
    af_status st = af_sum_over_ranks ? af_sum_over_ranks(sum, c->attr.f[0]) : AF_OK;
    if (st != AF_OK) return st;
    st = af_tensor_accumulate(din[0], sum);
    af_tensor_release(sum);
    return st;
}

static const char *const all_reduce_inputs[] = {"input", NULL};

const af_op_def af_op_def_all_reduce = {.name = "all_reduce", .input_names = all_reduce_inputs,
                                        .setup = all_reduce_setup, .forward_cpu = all_reduce_forward_cpu,
                                        .backward_cpu = all_reduce_backward_cpu, .differentiable_inputs = 0x1u};
