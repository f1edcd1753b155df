#include "parallel.h"

#include "blas.h"

int af_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* OpenBLAS itself always runs on one thread: its multithreaded GEMM changes the last bits with the
 * thread count, so csrc/ops/gemm.c parallelises over shape-determined tiles with OpenMP instead. */
void af_set_num_threads(int n) {
    if (n < 1) n = 1;
    if (n > AF_MAX_THREADS) n = AF_MAX_THREADS;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    AF_BLAS(openblas_set_num_threads)(1);
}
