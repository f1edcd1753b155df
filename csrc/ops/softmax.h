/* softmax's geometry, shared by softmax.c and a CUDA twin: x viewed as (outer, D, inner) around the
 * softmax dim, which is af_split_at_dim (ops.h), the view every op along one dim shares (max,
 * argmax, index_select too). Plain C (nvcc compiles it as C++), no OpenMP, no CBLAS. */
#ifndef AF_OPS_SOFTMAX_H
#define AF_OPS_SOFTMAX_H

#include "ops.h"

#endif
