/* Decision rules that combine models' outputs.
 *
 * Hand override (hand-assisted FER method): a face partly covered by a hand is far more often fear
 * than any other non-happy expression in the synthetic training data, so the rule is
 *     if hand and expr != happiness: fear else expr.
 * Soft voting (bagging ensembles): the weighted mean of the models' class probabilities. */
#include "fer.h"

af_status af_hand_override(const int64_t *expr, const uint8_t *hand, int64_t n, int64_t happiness, int64_t fear,
                           int64_t *out) {
    if (happiness == fear) return AF_FAIL(AF_ERR_VALUE, "happiness and fear must be different classes, both are %lld", (long long)fear);
    for (int64_t i = 0; i < n; i++) out[i] = (hand[i] && expr[i] != happiness) ? fear : expr[i];
    return AF_OK;
}

/* probs: (M, N, C) float32 rows of each model; weights: (M) or NULL for equal; out: (N, C). */
af_status af_soft_vote(const float *probs, const double *weights, int64_t M, int64_t N, int64_t C, float *out) {
    if (M < 1) return AF_FAIL(AF_ERR_VALUE, "soft voting needs at least one model");
    double total = 0;
    for (int64_t m = 0; m < M; m++) {
        double w = weights ? weights[m] : 1.0;
        if (!(w >= 0)) return AF_FAIL(AF_ERR_VALUE, "ensemble weight %lld is %g; weights must be >= 0", (long long)m, w);
        total += w;
    }
    if (total <= 0) return AF_FAIL(AF_ERR_VALUE, "ensemble weights sum to 0");
    AF_PARALLEL_FOR(M * N * C)
    for (int64_t i = 0; i < N * C; i++) {
        double acc = 0; /* models summed in a fixed order: deterministic */
        for (int64_t m = 0; m < M; m++) acc += (weights ? weights[m] : 1.0) * probs[m * N * C + i];
        out[i] = (float)(acc / total);
    }
    return AF_OK;
}
