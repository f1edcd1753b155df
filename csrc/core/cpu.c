#include "cpu.h"

#include "blas.h"

#ifndef AF_BLAS_NAME
#define AF_BLAS_NAME "OpenBLAS"
#endif
#ifndef AF_STB_NAME
#define AF_STB_NAME "stb_image"
#endif

/* The same cpuid tests, in the same order, as the resolver GCC emits for the clones in cpu.h. */
const char *af_cpu_path(void) {
#ifdef AF_CPU_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2)";
    return "x86-64 baseline (SSE2)";
#elif defined(AF_PORTABLE)
    return "baseline";
#else
    return "native (-march=native)";
#endif
}

const char *af_stb_name(void) { return AF_STB_NAME; }
const char *af_blas_name(void) { return AF_BLAS_NAME; }
const char *af_blas_config(void) { return AF_BLAS(openblas_get_config)(); }
const char *af_blas_corename(void) { return AF_BLAS(openblas_get_corename)(); }
