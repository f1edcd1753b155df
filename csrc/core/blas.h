/* The CBLAS the C core calls, under one set of names for both BLAS builds setup.py can link:
 *
 *   the scipy-openblas32 wheel (pip only, the default)   symbols and declarations carry a `scipy_` prefix
 *                                                        (scipy_cblas_sgemm), so this library can share a
 *                                                        process with NumPy's or SciPy's own OpenBLAS;
 *   the system's OpenBLAS (libopenblas-dev)              unprefixed (cblas_sgemm).
 *
 * setup.py passes the prefix as BLAS_SYMBOL_PREFIX, the macro name NumPy's and SciPy's builds and the
 * wheel's pkg-config file (`-DBLAS_SYMBOL_PREFIX=scipy_`) use; AF_BLAS(cblas_sgemm) then names the
 * right symbol. Enum constants (CblasRowMajor) are not prefixed in either header. */
#ifndef AF_BLAS_H
#define AF_BLAS_H

#include <cblas.h>

#define AF_BLAS_CAT_(a, b) a##b
#define AF_BLAS_CAT(a, b) AF_BLAS_CAT_(a, b)
#ifdef BLAS_SYMBOL_PREFIX
#define AF_BLAS(name) AF_BLAS_CAT(BLAS_SYMBOL_PREFIX, name)
#else
#define AF_BLAS(name) name
#endif

#endif
