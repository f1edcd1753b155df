/* The op contract.
 *
 * Every op is one `af_op_def` in csrc/ops/<op>.c, listed once in op_list.h. A call carries its
 * tensors and scalar attributes in an `af_op_call`:
 *
 *   setup(c)         device-neutral: checks c->in and c->attr (naming the argument in the error),
 *                    allocates c->out[0..n_out) and any c->saved tensors backward will need.
 *   forward_cpu(c)   fills c->out (and c->saved) from c->in.
 *   backward_cpu(c, dout, din)
 *                    for every i with din[i] != NULL, ACCUMULATES (+=) dLoss/d in[i] into din[i],
 *                    or, where bit i of c->din_fresh is set, WRITES it there (din[i] holds no
 *                    values yet; only for inputs the op lists in fresh_grad_inputs).
 *                    dout[j] is dLoss/d out[j] (never NULL: zero-filled when no gradient arrived).
 *                    c->in are the forward inputs, c->out aliases of the outputs, c->saved as
 *                    setup/forward left them. NULL exactly when differentiable_inputs is 0.
 *
 * Why fresh gradients: the first gradient to reach a tensor would otherwise go into a zero-filled
 * buffer, which costs a memset and a read of the zeros per gradient (2-3% of a ViT-B/16 training
 * step, all of it memory traffic); PyTorch likewise writes a tensor's first gradient. An op that
 * does not list an input in fresh_grad_inputs (or a device whose kernels do not) gets that buffer
 * zero-filled by af_op_backward, so the accumulate contract above stays the default.
 *
 * The CUDA twins live in csrc/ops/<op>.cu, with the same signatures, and register themselves there:
 *     AF_OP_CUDA_KERNELS(conv2d) = {.forward = conv2d_forward_cuda, .backward = conv2d_backward_cuda};
 * defines `af_op_cuda_conv2d`, which csrc/ops/cuda_table.c collects into af_op_cuda_table (builds with
 * AF_HAVE_CUDA only). Adding a .cu therefore edits no .c file.
 *
 * Kernels assume setup's checks passed. Attribute meaning is documented per op, next to its def. */
#ifndef AF_OPS_H
#define AF_OPS_H

#include "../core/cpu.h"
#include "../core/parallel.h"
#include "../core/rng.h"
#include "../core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AF_MAX_IN 32
#define AF_MAX_OUT 32
#define AF_MAX_SAVED 4
#define AF_MAX_ATTR_I 16
#define AF_MAX_ATTR_F 8

/* Loss reduction codes (integer attribute 0 of the losses), exported as affectfer._C.reductions. */
enum { AF_REDUCTION_NONE = 0, AF_REDUCTION_MEAN = 1, AF_REDUCTION_SUM = 2 };

typedef struct af_attrs {
    int64_t i[AF_MAX_ATTR_I];
    double f[AF_MAX_ATTR_F];
    int n_i, n_f;
} af_attrs;

typedef struct af_op_call {
    int op; /* AF_OP_* id */
    int n_in, n_out, n_saved;
    af_tensor *in[AF_MAX_IN]; /* NULL marks an absent optional input (e.g. conv2d without bias) */
    af_tensor *out[AF_MAX_OUT];
    af_tensor *saved[AF_MAX_SAVED];
    af_attrs attr;
    uint32_t din_fresh; /* during backward only: bit i = din[i] is uninitialised, write it (see above) */
} af_op_call;

typedef af_status (*af_setup_fn)(af_op_call *c);
typedef af_status (*af_forward_fn)(af_op_call *c);
typedef af_status (*af_backward_fn)(const af_op_call *c, af_tensor *const *dout, af_tensor *const *din);

typedef struct af_op_def {
    const char *name;
    const char *const *input_names; /* argument names, for error messages; NULL-terminated */
    af_setup_fn setup;
    af_forward_fn forward_cpu;
    af_backward_fn backward_cpu;
    /* Inputs whose gradient backward can compute: bit i set = in[i] is differentiable. Indices
     * (class labels), masks and running statistics are not. */
    uint32_t differentiable_inputs;
    /* Inputs whose gradient backward_cpu writes outright into a fresh din[i] (c->din_fresh), every
     * element of it. */
    uint32_t fresh_grad_inputs;
} af_op_def;

/* ids: AF_OP_ADD, AF_OP_CONV2D, ... and the table, generated from op_list.h */
typedef enum af_op_id {
#define AF_OP(name, NAME) AF_OP_##NAME,
#include "op_list.h"
#undef AF_OP
    AF_OP_COUNT
} af_op_id;

#define AF_OP(name, NAME) extern const af_op_def af_op_def_##name;
#include "op_list.h"
#undef AF_OP

extern const af_op_def *const af_op_table[AF_OP_COUNT];

/* One device's kernels for one op (forward required, backward NULL when not differentiable). */
typedef struct af_op_kernels {
    af_forward_fn forward;
    af_backward_fn backward;
    uint32_t fresh_grad_inputs; /* as in af_op_def, for this device's backward */
} af_op_kernels;

/* Defines af_op_cuda_<name>; nvcc compiles .cu files as C++, where the name needs C linkage. */
#ifdef __cplusplus
#define AF_OP_CUDA_KERNELS(name) extern "C" const af_op_kernels af_op_cuda_##name
#else
#define AF_OP_CUDA_KERNELS(name) const af_op_kernels af_op_cuda_##name
#endif

#ifdef AF_HAVE_CUDA
/* af_op_cuda_table[op] = &af_op_cuda_<name>, or NULL when no .cu defines it (csrc/ops/cuda_table.c) */
extern const af_op_kernels *const af_op_cuda_table[AF_OP_COUNT];
#endif

/* Checks the invariants of af_op_table (and af_op_cuda_table): see dispatch.c. _C's import runs it. */
af_status af_op_table_check(void);

/* Runs setup + forward on the inputs' device, without autograd (csrc/autograd/tape.c records). */
af_status af_op_forward(af_op_call *c);
/* How many tensor inputs op takes at most: the names it declares (AF_MAX_IN for a list op). */
int af_op_max_inputs(int op);
/* Runs backward on the inputs' device. Fresh buffers (c->din_fresh) of inputs the device's kernel
 * does not write outright are zero-filled first; c->din_fresh is 0 again on return. */
af_status af_op_backward(af_op_call *c, af_tensor *const *dout, af_tensor *const *din);
/* Tests: fresh gradient buffers are filled with NaN before the kernel writes them, so an element it
 * leaves unwritten shows. Returns the previous setting; process-wide. */
int af_set_fresh_grad_poison(int enabled);
/* How a backward kernel stores one gradient element: dst += value, or dst = value in a fresh buffer
 * (accumulate = 0). */
#define AF_GRAD_STORE(dst, accumulate, value) ((dst) = (accumulate) ? (dst) + (value) : (value))
/* bit i of c->din_fresh clear: din[i] already holds gradient to add to */
static inline int af_din_accumulates(const af_op_call *c, int i) { return !(c->din_fresh >> i & 1u); }
/* For a path that only adds to din[i] after all (a broadcast operand, an empty product, a kernel
 * without a write mode): a fresh din[i] is zero-filled and bit i of *fresh (a copy of c->din_fresh)
 * cleared. */
af_status af_din_from_zeros(af_tensor *const *din, int i, uint32_t *fresh);
void af_op_call_release(af_op_call *c); /* drops every tensor reference the call holds */
/* dst += src through the add_ op on their device (csrc/ops/fill.c): same dtype and shape. */
af_status af_tensor_accumulate(af_tensor *dst, const af_tensor *src);
/* The sum over the ranks of a process group, in place in t (a buffer of its own, waiting at most
 * `timeout` seconds); the op all_reduce calls it. csrc/dist sets it while a group is formed (the
 * ops never depend on the collectives' layer); NULL: a single process, whose sum is t itself. */
extern af_status (*af_sum_over_ranks)(af_tensor *t, double timeout);

/* ---- helpers for setup functions: each fails with a message naming op and argument ---- */
const char *af_op_input_name(const af_op_call *c, int i);
af_status af_check_present(const af_op_call *c, int i);
af_status af_check_float(const af_op_call *c, int i);              /* f32 or f64 */
af_status af_check_dtype(const af_op_call *c, int i, af_dtype dtype);
af_status af_check_same_dtype(const af_op_call *c, int i, int j);
af_status af_check_ndim(const af_op_call *c, int i, int ndim);
af_status af_check_same_device(const af_op_call *c);
af_status af_check_attrs(const af_op_call *c, int n_i, int n_f);
/* x viewed as (outer, D, inner) around dim: the product of the dims before it, its size (1 for a
 * 0-D x), the product of the dims after it. The layout of ops along one dim (softmax, max, gather). */
typedef struct af_dim_split {
    int64_t outer, D, inner;
} af_dim_split;

static inline af_dim_split af_split_at_dim(const af_tensor *x, int dim) {
    af_dim_split s = {1, 1, 1};
    for (int d = 0; d < x->ndim; d++) {
        if (d < dim) s.outer *= x->shape[d];
        else if (d == dim) s.D = x->shape[d];
        else s.inner *= x->shape[d];
    }
    return s;
}

/* Allocate out[k] with the given shape and the dtype/device of in[like]. */
af_status af_alloc_out(af_op_call *c, int k, int ndim, const int64_t *shape, int like);
af_status af_alloc_out_dtype(af_op_call *c, int k, int ndim, const int64_t *shape, af_dtype dtype);
af_status af_alloc_saved(af_op_call *c, int k, int ndim, const int64_t *shape, af_dtype dtype);

/* Self-including files instantiate their scalar kernels once per float type: after including
 * instantiate_float.h, a file's templated section sees `scalar_t` and names functions with K(name)
 * (e.g. K(unary_forward) -> unary_forward_f32). AF_DISPATCH_FLOAT calls the right instance. */
#define AF_DISPATCH_FLOAT(dtype, fn, ...) \
    ((dtype) == AF_DTYPE_F32 ? fn##_f32(__VA_ARGS__) : fn##_f64(__VA_ARGS__))

/* GEMM on row-major matrices, C = alpha op(A) @ op(B) + beta C, bitwise independent of the thread
 * count (csrc/ops/gemm.c). In templated kernels AF_GEMM / AF_GEMM_BATCHED name the scalar_t instance. */
void af_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);
void af_gemm_f64(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, double alpha,
                 const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                 double *C, int64_t ldc);

/* `count` same-shaped products; operand X of product b starts at
 * X + (b / inner) * x_outer + (b % inner) * x_inner (inner = 1: plain strides x_outer). */
typedef struct af_gemm_batch {
    int64_t count, inner;
    int64_t a_outer, a_inner, b_outer, b_inner, c_outer, c_inner;
} af_gemm_batch;
void af_gemm_batched_f32(const af_gemm_batch *bt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);
void af_gemm_batched_f64(const af_gemm_batch *bt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                         double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                         double *C, int64_t ldc);

#ifdef __cplusplus
}
#endif

#endif
