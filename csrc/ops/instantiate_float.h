/* Compiles a file's kernel section twice: once with scalar_t = float, once with double.
 *
 * Usage at the top of csrc/ops/<op>.c:
 *     #ifndef AF_FLOAT_PASS
 *     #include "ops.h"
 *     ... types and constants the kernels use ...
 *     #define AF_TEMPLATE_FILE "<op>.c"
 *     #include "instantiate_float.h"
 *     ... setup, dispatch, af_op_def (not templated) ...
 *     #else
 *     ... kernels written with scalar_t and K(name) ...
 *     #endif
 * K(unary_forward) becomes unary_forward_f32 / unary_forward_f64, and AF_DISPATCH_FLOAT(dtype,
 * unary_forward, args...) calls the right one. float64 exists so every backward can be checked
 * against central finite differences with the very same code that runs in float32. Inside the
 * kernel section <tgmath.h> makes exp/sqrt/fabs pick the scalar_t overload. */
#include <tgmath.h>

#define AF_FLOAT_PASS 1
#define scalar_t float
#define K(name) name##_f32
#define AF_GEMM af_gemm_f32
#define AF_GEMM_BATCHED af_gemm_batched_f32
#include AF_TEMPLATE_FILE
#undef AF_GEMM
#undef AF_GEMM_BATCHED
#undef K
#undef scalar_t
#undef AF_FLOAT_PASS

#define AF_FLOAT_PASS 2
#define scalar_t double
#define K(name) name##_f64
#define AF_GEMM af_gemm_f64
#define AF_GEMM_BATCHED af_gemm_batched_f64
#include AF_TEMPLATE_FILE
#undef AF_GEMM
#undef AF_GEMM_BATCHED
#undef K
#undef scalar_t
#undef AF_FLOAT_PASS
