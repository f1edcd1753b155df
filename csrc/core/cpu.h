/* Runtime CPU dispatch for the portable build, and what this build runs on.
 *
 * A wheel cannot be compiled with -march=native: it must run on any x86-64 CPU. The hot loops
 * (elementwise maps, reductions, batch norm, pooling, im2col, the image kernels) are therefore
 * compiled three times with GCC's function multiversioning, `target_clones`: for x86-64-v4 (AVX-512
 * F/BW/DQ/VL), x86-64-v3 (AVX2, FMA, BMI) and the x86-64 baseline (SSE2). The dynamic loader picks one
 * clone per function when _C loads (an ifunc resolver reading cpuid), as NumPy's dispatch does
 * (https://numpy.org/doc/stable/reference/simd/how-it-works.html). OpenMP regions inside such a
 * function are cloned with it, so a parallel loop runs the same instruction set as its caller.
 *
 * The clones round identically: the build passes -ffp-contract=off (no a*b+c turned into an FMA by
 * the compiler, explicit fmaf() stays the one correctly rounded operation) and no -ffast-math (no
 * reassociated sums), so vectorising changes only how many elements one instruction handles, never
 * a result. A native build (-march=native) compiles one version and AF_CPU_DISPATCH is empty;
 * aarch64 has NEON in its baseline, so it needs no clones either. */
#ifndef AF_CPU_H
#define AF_CPU_H

/* AF_NO_CPU_CLONES (CFLAGS=-DAF_NO_CPU_CLONES) builds one version only, e.g. to compare a clone's
 * results with a build for that instruction set alone (-march=x86-64-v3). */
#if defined(AF_PORTABLE) && !defined(AF_NO_CPU_CLONES) && defined(__x86_64__) && defined(__GNUC__) && \
    !defined(__clang__) && !defined(__CUDACC__) && defined(__ELF__)
#define AF_CPU_CLONES 1
#define AF_CPU_DISPATCH __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AF_CPU_DISPATCH
#endif

/* The instruction set the dispatched kernels run with on this CPU: "x86-64-v4 (AVX-512)",
 * "x86-64-v3 (AVX2)", "x86-64 baseline (SSE2)", or "native (-march=native)" / "baseline" for builds
 * without clones. */
const char *af_cpu_path(void);
/* The BLAS linked in (setup.py's AF_BLAS_NAME), its build configuration and the kernel family it
 * chose for this CPU (OpenBLAS's DYNAMIC_ARCH choice, which OPENBLAS_CORETYPE overrides). */
const char *af_blas_name(void);
/* The stb_image version decode.c was compiled with (setup.py reads it from the header's first line). */
const char *af_stb_name(void);
const char *af_blas_config(void);
const char *af_blas_corename(void);

#endif
