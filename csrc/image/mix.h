/* Batch mixers: Mixup (Zhang et al., arXiv 1710.09412) and the pairing MixAugment uses (Psaroudakis
 * & Kollias, arXiv 2205.04442), on float32 batches. One lambda and one pairing per batch, drawn from
 * a Philox stream, so a run is repeatable. */
#ifndef AF_MIX_H
#define AF_MIX_H

#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"

/* log of a Gamma(alpha, 1) draw, alpha > 0 (Marsaglia & Tsang, "A simple method for generating
 * gamma variables", ACM TOMS 2000; alpha < 1 through Gamma(alpha) = Gamma(alpha + 1) U^(1/alpha),
 * kept in log space so alpha = 0.1 never underflows to 0). */
double af_rng_log_gamma(af_rng *r, double alpha);
/* Beta(a, b) = G1 / (G1 + G2) = 1 / (1 + exp(log G2 - log G1)). */
double af_rng_beta(af_rng *r, double a, double b);

/* The parameters of one mixed batch from stream (seed, stream): lambda ~ Beta(alpha, alpha) from
 * counters [0, 2^32) (lambda = 1 when alpha <= 0, i.e. no mixing), perm a uniformly random
 * permutation of 0..N-1 (Fisher-Yates) from counters [2^32, ...). */
af_status af_mix_params(uint64_t seed, uint64_t stream, double alpha, int64_t N, double *lambda, int64_t *perm);

/* x, out: (N, D) float32 (D = C*H*W); out[i] = lambda x[i] + (1 - lambda) x[perm[i]] in float32
 * (the two products rounded, then the sum, no FMA). out must not overlap x. When x_perm is not NULL
 * it also receives x[perm[i]] (MixAugment's permuted real batch). */
af_status af_mix_batch(const float *x, const int64_t *perm, int64_t N, int64_t D, float lambda, float *out,
                       float *x_perm);

#endif
