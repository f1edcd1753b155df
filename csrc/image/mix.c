/* Mixup / MixAugment batch mixing and the Beta sampler behind lambda. See mix.h. */
#include <math.h>
#include <string.h>

#include "../core/cpu.h"
#include "../core/parallel.h"
#include "mix.h"

/* A standard normal from two uniforms (Box-Muller, one of the pair used). */
static double normal(af_rng *r) {
    double u1 = 1.0 - af_rng_uniform(r), u2 = af_rng_uniform(r); /* u1 in (0, 1] */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double af_rng_log_gamma(af_rng *r, double alpha) {
    if (alpha < 1.0) {
        /* Gamma(alpha) = Gamma(alpha + 1) * U^(1/alpha) (Marsaglia & Tsang, section 6) */
        double u = 1.0 - af_rng_uniform(r); /* (0, 1] */
        return af_rng_log_gamma(r, alpha + 1.0) + log(u) / alpha;
    }
    /* Marsaglia-Tsang squeeze/rejection for alpha >= 1: d = alpha - 1/3, c = 1/sqrt(9d);
     * accept d*v, v = (1 + c x)^3, x ~ N(0,1), when log U < x^2/2 + d - d v + d log v. */
    double d = alpha - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = normal(r), v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        double u = af_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return log(d * v); /* the paper's cheap squeeze */
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return log(d * v);
    }
}

double af_rng_beta(af_rng *r, double a, double b) {
    double lg1 = af_rng_log_gamma(r, a), lg2 = af_rng_log_gamma(r, b);
    return 1.0 / (1.0 + exp(lg2 - lg1));
}

af_status af_mix_params(uint64_t seed, uint64_t stream, double alpha, int64_t N, double *lambda, int64_t *perm) {
    if (!isfinite(alpha)) return AF_FAIL(AF_ERR_VALUE, "mix: 'alpha' must be finite, got %g", alpha);
    if (N < 1 || N > 0xFFFFFFFFll) return AF_FAIL(AF_ERR_VALUE, "mix: batch size must be in [1, 2^32), got %lld", (long long)N);
    af_rng r = af_rng_make(seed, stream, 0);
    *lambda = alpha > 0.0 ? af_rng_beta(&r, alpha, alpha) : 1.0;
    af_rng rp = af_rng_make(seed, stream, 1ull << 32);
    for (int64_t i = 0; i < N; i++) perm[i] = i;
    for (int64_t k = N - 1; k > 0; k--) { /* Fisher-Yates (Durstenfeld) */
        int64_t j = af_rng_below(&rp, (uint32_t)(k + 1));
        int64_t t = perm[k];
        perm[k] = perm[j];
        perm[j] = t;
    }
    return AF_OK;
}

/* x, out, x_perm: (N, D) */
AF_CPU_DISPATCH
af_status af_mix_batch(const float *x, const int64_t *perm, int64_t N, int64_t D, float lambda, float *out,
                       float *x_perm) {
    for (int64_t i = 0; i < N; i++)
        if (perm[i] < 0 || perm[i] >= N)
            return AF_FAIL(AF_ERR_VALUE, "mix: perm[%lld] = %lld is outside [0, %lld)", (long long)i, (long long)perm[i], (long long)N);
    const float a = lambda, b = (float)(1.0 - (double)lambda);
    AF_PARALLEL_FOR(N * D)
    for (int64_t i = 0; i < N; i++) {
        const float *xi = x + i * D, *xj = x + perm[i] * D;
        float *oi = out + i * D;
        for (int64_t k = 0; k < D; k++) oi[k] = a * xi[k] + b * xj[k];
        if (x_perm) memcpy(x_perm + i * D, xj, (size_t)D * sizeof(float));
    }
    return AF_OK;
}
