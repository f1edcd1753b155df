/* Samplers: index lists for one epoch as pure functions of (seed, epoch). See data.h for the
 * stream layout and each sampler's contract. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

void af_shuffle_i64(int64_t *idx, int64_t n, af_rng *r) {
    for (int64_t k = n - 1; k > 0; k--) {
        int64_t j = af_rng_below(r, (uint32_t)(k + 1));
        int64_t t = idx[k];
        idx[k] = idx[j];
        idx[j] = t;
    }
}

static af_status check_n(int64_t n, const char *who) {
    if (n < 0) return AF_FAIL(AF_ERR_VALUE, "%s: the number of samples must be >= 0, got %lld", who, (long long)n);
    if (n > 0xFFFFFFFFll)
        return AF_FAIL(AF_ERR_VALUE, "%s: at most 2^32 - 1 samples are supported, got %lld", who, (long long)n);
    return AF_OK;
}

af_status af_sampler_sequential(int64_t n, int64_t *out) {
    AF_TRY(check_n(n, "sequential sampler"));
    for (int64_t k = 0; k < n; k++) out[k] = k;
    return AF_OK;
}

af_status af_sampler_shuffled(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out) {
    AF_TRY(check_n(n, "shuffled sampler"));
    for (int64_t k = 0; k < n; k++) out[k] = k;
    af_rng r = af_rng_make(seed, AF_STREAM_SAMPLER(AF_SAMPLER_SHUFFLE, epoch), 0);
    af_shuffle_i64(out, n, &r);
    return AF_OK;
}

af_status af_sampler_weighted(const double *weights, int64_t n, int64_t num_samples, uint64_t seed, uint64_t epoch,
                              int64_t *out) {
    AF_TRY(check_n(n, "weighted sampler"));
    if (n == 0) return AF_FAIL(AF_ERR_VALUE, "weighted sampler: 'weights' is empty");
    if (num_samples < 0)
        return AF_FAIL(AF_ERR_VALUE, "weighted sampler: 'num_samples' must be >= 0, got %lld", (long long)num_samples);
    double *cum = malloc((size_t)n * sizeof(double));
    if (!cum) return AF_FAIL(AF_ERR_OOM, "weighted sampler: out of memory for %lld weights", (long long)n);
    double total = 0.0;
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(weights[k]) || weights[k] < 0.0) {
            free(cum);
            return AF_FAIL(AF_ERR_VALUE, "weighted sampler: 'weights' must be finite and >= 0, weights[%lld] = %g",
                           (long long)k, weights[k]);
        }
        total += weights[k];
        cum[k] = total;
    }
    if (!(total > 0.0) || !isfinite(total)) {
        free(cum);
        return AF_FAIL(AF_ERR_VALUE, "weighted sampler: 'weights' must have a positive finite sum, got %g", total);
    }
    uint64_t stream = AF_STREAM_SAMPLER(AF_SAMPLER_WEIGHTED, epoch);
    for (int64_t i = 0; i < num_samples; i++) {
        af_rng r = af_rng_make(seed, stream, (uint64_t)i);
        double u = af_rng_uniform(&r) * total;
        /* first k with cum[k] > u; u < total = cum[n-1] so it exists (the clamp guards rounding) */
        int64_t lo = 0, hi = n - 1;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (cum[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        while (lo > 0 && weights[lo] == 0.0) lo--; /* unreachable unless u rounded up to total */
        out[i] = lo;
    }
    free(cum);
    return AF_OK;
}

static af_status count_classes(const int64_t *labels, int64_t n, int num_classes, int64_t *counts, const char *who) {
    if (num_classes < 1) return AF_FAIL(AF_ERR_VALUE, "%s: 'num_classes' must be >= 1, got %d", who, num_classes);
    memset(counts, 0, (size_t)num_classes * sizeof(int64_t));
    for (int64_t k = 0; k < n; k++) {
        if (labels[k] < 0 || labels[k] >= num_classes)
            return AF_FAIL(AF_ERR_VALUE, "%s: labels[%lld] = %lld is outside [0, %d)", who, (long long)k,
                           (long long)labels[k], num_classes);
        counts[labels[k]]++;
    }
    return AF_OK;
}

af_status af_class_inverse_weights(const int64_t *labels, int64_t n, int num_classes, double *out) {
    AF_TRY(check_n(n, "class weights"));
    int64_t *counts = malloc((size_t)(num_classes > 0 ? num_classes : 1) * sizeof(int64_t));
    if (!counts) return AF_FAIL(AF_ERR_OOM, "class weights: out of memory");
    af_status st = count_classes(labels, n, num_classes, counts, "class weights");
    if (st == AF_OK)
        for (int64_t k = 0; k < n; k++) out[k] = 1.0 / (double)counts[labels[k]];
    free(counts);
    return st;
}

af_status af_sampler_oversample_size(const int64_t *labels, int64_t n, int num_classes, int64_t *size) {
    AF_TRY(check_n(n, "oversampling sampler"));
    int64_t *counts = malloc((size_t)(num_classes > 0 ? num_classes : 1) * sizeof(int64_t));
    if (!counts) return AF_FAIL(AF_ERR_OOM, "oversampling sampler: out of memory");
    af_status st = count_classes(labels, n, num_classes, counts, "oversampling sampler");
    if (st == AF_OK) {
        int64_t n_max = 0, present = 0;
        for (int c = 0; c < num_classes; c++) {
            if (counts[c] > n_max) n_max = counts[c];
            present += counts[c] > 0;
        }
        *size = n_max * present;
        if (*size > 0xFFFFFFFFll) st = AF_FAIL(AF_ERR_VALUE, "oversampling sampler: %lld samples after oversampling is too many", (long long)*size);
    }
    free(counts);
    return st;
}

af_status af_sampler_oversample(const int64_t *labels, int64_t n, int num_classes, uint64_t seed, uint64_t epoch,
                                int shuffle, int64_t *out, uint8_t *is_copy) {
    af_status st;
    int64_t size;
    AF_TRY(af_sampler_oversample_size(labels, n, num_classes, &size));
    int64_t *counts = calloc((size_t)num_classes, sizeof(int64_t)), *start = calloc((size_t)num_classes + 1, sizeof(int64_t));
    int64_t *members = malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t)); /* indices grouped by class, in index order */
    int64_t *pair = NULL;
    if (!counts || !start || !members) AF_CHECK_FAIL(AF_ERR_OOM, "oversampling sampler: out of memory");
    for (int64_t k = 0; k < n; k++) counts[labels[k]]++;
    int64_t n_max = 0;
    for (int c = 0; c < num_classes; c++) {
        start[c + 1] = start[c] + counts[c];
        if (counts[c] > n_max) n_max = counts[c];
    }
    {
        int64_t *fill = calloc((size_t)num_classes, sizeof(int64_t));
        if (!fill) AF_CHECK_FAIL(AF_ERR_OOM, "oversampling sampler: out of memory");
        for (int64_t k = 0; k < n; k++) members[start[labels[k]] + fill[labels[k]]++] = k;
        free(fill);
    }
    /* originals, then each class's copies round-robin over its members (HUST-ANT's data_aug order) */
    int64_t pos = 0;
    for (int64_t k = 0; k < n; k++, pos++) {
        out[pos] = k;
        is_copy[pos] = 0;
    }
    for (int c = 0; c < num_classes; c++) {
        if (counts[c] == 0) continue;
        for (int64_t k = 0; k < n_max - counts[c]; k++, pos++) {
            out[pos] = members[start[c] + k % counts[c]];
            is_copy[pos] = 1;
        }
    }
    if (shuffle && size > 1) {
        /* shuffle a permutation of positions, then gather, so (index, is_copy) pairs move together */
        pair = malloc((size_t)size * sizeof(int64_t));
        int64_t *tmp_idx = malloc((size_t)size * sizeof(int64_t));
        uint8_t *tmp_copy = malloc((size_t)size);
        if (!pair || !tmp_idx || !tmp_copy) {
            free(tmp_idx);
            free(tmp_copy);
            AF_CHECK_FAIL(AF_ERR_OOM, "oversampling sampler: out of memory");
        }
        for (int64_t k = 0; k < size; k++) pair[k] = k;
        af_rng r = af_rng_make(seed, AF_STREAM_SAMPLER(AF_SAMPLER_OVERSAMPLE, epoch), 0);
        af_shuffle_i64(pair, size, &r);
        memcpy(tmp_idx, out, (size_t)size * sizeof(int64_t));
        memcpy(tmp_copy, is_copy, (size_t)size);
        for (int64_t k = 0; k < size; k++) {
            out[k] = tmp_idx[pair[k]];
            is_copy[k] = tmp_copy[pair[k]];
        }
        free(tmp_idx);
        free(tmp_copy);
    }
    st = AF_OK;
fail:
    free(counts);
    free(start);
    free(members);
    free(pair);
    return st;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

af_status af_sampler_bagging(int64_t n, int64_t m, uint64_t seed, uint64_t model, int64_t *out) {
    AF_TRY(check_n(n, "bagging sampler"));
    if (m < 1 || m > n)
        return AF_FAIL(AF_ERR_VALUE, "bagging sampler: subset size must be in [1, %lld], got %lld", (long long)n, (long long)m);
    int64_t *perm = malloc((size_t)n * sizeof(int64_t));
    if (!perm) return AF_FAIL(AF_ERR_OOM, "bagging sampler: out of memory for %lld samples", (long long)n);
    for (int64_t k = 0; k < n; k++) perm[k] = k;
    /* the first m steps of a forward Fisher-Yates: a uniformly random m-subset */
    af_rng r = af_rng_make(seed, AF_STREAM_SAMPLER(AF_SAMPLER_BAGGING, model), 0);
    for (int64_t k = 0; k < m; k++) {
        int64_t j = k + af_rng_below(&r, (uint32_t)(n - k));
        int64_t t = perm[k];
        perm[k] = perm[j];
        perm[j] = t;
    }
    memcpy(out, perm, (size_t)m * sizeof(int64_t));
    free(perm);
    qsort(out, (size_t)m, sizeof(int64_t), cmp_i64);
    return AF_OK;
}
