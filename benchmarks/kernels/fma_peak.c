/* Float32 FMA peak of one core: 16 independent zmm FMA chains (enough to cover a 4-cycle latency
 * on two pipes), timed by the thread's CPU clock. The ceiling to judge gemm_avx512.c against.
 *
 *     gcc -O2 -mavx512f benchmarks/kernels/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *
 * Zen 4 (AMD family 0x19, model 0x11 and up) executes a 512-bit FMA as two 256-bit halves, one zmm
 * FMA per cycle: 32 flops/cycle, about 117 GFLOP/s at 3.7 GHz. Zen 5 and Intel server cores with
 * two 512-bit FMA units reach twice that per cycle. */
#include <stdio.h>
#include <time.h>

static double thread_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
    long n = 50000000;
    const long iterations = n;
    double t = thread_seconds();
    __asm__ volatile(
        "1:\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm0\n vfmadd231ps %%zmm30, %%zmm31, %%zmm1\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm2\n vfmadd231ps %%zmm30, %%zmm31, %%zmm3\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm4\n vfmadd231ps %%zmm30, %%zmm31, %%zmm5\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm6\n vfmadd231ps %%zmm30, %%zmm31, %%zmm7\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm8\n vfmadd231ps %%zmm30, %%zmm31, %%zmm9\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm10\n vfmadd231ps %%zmm30, %%zmm31, %%zmm11\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm12\n vfmadd231ps %%zmm30, %%zmm31, %%zmm13\n"
        "vfmadd231ps %%zmm30, %%zmm31, %%zmm14\n vfmadd231ps %%zmm30, %%zmm31, %%zmm15\n"
        "dec %0\n jnz 1b\n"
        : "+r"(n)
        :
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    t = thread_seconds() - t;
    printf("float32 FMA peak, one thread: %.1f GFLOP/s\n", 2.0 * 16 * 16 * iterations / t / 1e9);
    return 0;
}
