/* The CUDA kernel table, generated from op_list.h; compiled in only when AF_HAVE_CUDA is defined.
 *
 * csrc/ops/<op>.cu registers its kernels by defining `AF_OP_CUDA_KERNELS(<op>) = {...}` (ops.h). Every
 * op gets a weak, hidden reference to its af_op_cuda_<op> here: the linker binds it to the .cu's
 * definition when there is one and to NULL when there is none, so adding a .cu edits no other file
 * and an op without one fails at dispatch with "has no CUDA kernel". Weak references are a GCC/Clang
 * feature of ELF and Mach-O objects, which every CUDA build here produces. This file depends on
 * nothing but op_list.h, so tests/ops/test_nvcc_headers.py links it alone with a scratch .cu. */
#include "ops.h"

#ifdef AF_HAVE_CUDA

#define AF_OP(name, NAME) extern const af_op_kernels af_op_cuda_##name __attribute__((weak, visibility("hidden")));
#include "op_list.h"
#undef AF_OP

const af_op_kernels *const af_op_cuda_table[AF_OP_COUNT] = {
#define AF_OP(name, NAME) [AF_OP_##NAME] = &af_op_cuda_##name,
#include "op_list.h"
#undef AF_OP
};

#endif
