/* Threading policy for CPU kernels: OpenMP loops over independent output elements.
 *
 * Determinism rule: a reduction is never split across threads. Each thread owns whole outputs
 * (a channel, a row, an image) and reduces in a fixed order, so results are bitwise identical for
 * any thread count. AF_PARALLEL_FOR only goes parallel when the loop is big enough to pay for the
 * fork (`work` is a rough count of scalar operations). */
#ifndef AF_PARALLEL_H
#define AF_PARALLEL_H

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#define AF_PRAGMA(x) _Pragma(#x)
#define AF_PARALLEL_FOR(work) AF_PRAGMA(omp parallel for schedule(static) if ((work) > 32768))
#else
#define AF_PARALLEL_FOR(work)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* More threads than this is a mistake, not a machine: libgomp crashes creating 10^5 threads. */
#define AF_MAX_THREADS 1024

int af_get_num_threads(void);
/* Threads for our OpenMP loops (the BLAS stays single-threaded), clamped to [1, AF_MAX_THREADS];
 * the Python binding rejects values outside that range. */
void af_set_num_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
