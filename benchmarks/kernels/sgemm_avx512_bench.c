/* GFLOP/s of gemm_avx512.c's single-tile SGEMM alone (no gemm.c tiling, no threads), at 1024-ish
 * sizes and at the GEMM shapes of ResNet-50's convolutions, timed by the thread's CPU clock. Compare
 * with fma_peak.c's ceiling.
 *
 *     gcc -O3 -march=native -ffp-contract=off -Icsrc -Icsrc/ops benchmarks/kernels/sgemm_avx512_bench.c \
 *         csrc/ops/gemm_avx512.c -o /tmp/sgemm_bench && /tmp/sgemm_bench */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "gemm_avx512.h"

/* the two functions of core/alloc.c the kernel uses, so it links without the rest of the core */
void *af_alloc_host(size_t nbytes) { return aligned_alloc(64, (nbytes + 63) / 64 * 64); }
void af_free_host(void *p) { free(p); }

static double thread_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void run(const char *what, int ta, int tb, int64_t M, int64_t N, int64_t K, int reps) {
    float *A = af_alloc_host((size_t)(M * K) * sizeof(float)), *B = af_alloc_host((size_t)(K * N) * sizeof(float));
    float *C = af_alloc_host((size_t)(M * N) * sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)(i % 13) / 13.0f;
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)(i % 11) / 11.0f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = thread_seconds();
        af_sgemm_avx512(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
        t = thread_seconds() - t;
        if (t < best) best = t;
    }
    printf("%-34s ta=%d tb=%d M=%4lld N=%5lld K=%5lld  %6.1f GFLOP/s\n", what, ta, tb, (long long)M, (long long)N,
           (long long)K, 2.0 * M * N * K / best / 1e9);
    af_free_host(A);
    af_free_host(B);
    af_free_host(C);
}

int main(void) {
    run("one 256-row tile, K = 1024", 0, 0, 256, 1024, 1024, 10);
    run("one tile, K = one 256 block", 0, 0, 256, 1024, 256, 20);
    run("forward 3x3 64->64, 28x28 image", 0, 0, 64, 784, 576, 20);
    run("forward 3x3 128->128, 14x14 image", 0, 0, 128, 196, 1152, 20);
    run("dx 3x3 64->64 (W^T dY), one image", 1, 0, 576, 784, 64, 20);
    run("dW 1x1 64->64, 28x28, 2 images", 0, 1, 64, 64, 1568, 20);
    run("dW 3x3 256->256, 7x7, 16 images", 0, 1, 256, 576, 784, 10);
    return 0;
}
