/* Samplers and the threaded loader (csrc/data/).
 *
 * Every sampler is a pure function of (seed, epoch) (bagging: of (seed, model)): the same arguments
 * give the same index list on every machine and thread count, because all draws come from Philox
 * streams (core/rng.h). Streams are packed so that the loader's per-sample streams and the
 * samplers' streams never collide for the same seed:
 *   loader sample i of epoch e:  stream = e << 40 | i             (top bit 0; i < 2^40, e < 2^23)
 *   sampler kind k, epoch/model: stream = 1 << 63 | k << 48 | e    (top bit 1) */
#ifndef AF_DATA_H
#define AF_DATA_H

#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"

#define AF_STREAM_SAMPLE(epoch, i) (((uint64_t)(epoch) << 40) | (uint64_t)(i))
#define AF_STREAM_SAMPLER(kind, epoch) ((1ull << 63) | ((uint64_t)(kind) << 48) | ((uint64_t)(epoch) & 0xFFFFFFFFFFFFull))

enum { AF_SAMPLER_SHUFFLE = 1, AF_SAMPLER_WEIGHTED = 2, AF_SAMPLER_OVERSAMPLE = 3, AF_SAMPLER_BAGGING = 4 };

/* Fisher-Yates shuffle of idx[0..n) in place, drawing from r (Durstenfeld's form: for k = n-1 down
 * to 1 swap idx[k] with idx[j], j uniform in [0, k]). n < 2^32. */
void af_shuffle_i64(int64_t *idx, int64_t n, af_rng *r);

/* out[k] = k. */
af_status af_sampler_sequential(int64_t n, int64_t *out);
/* A uniformly random permutation of 0..n-1 from stream (seed, SHUFFLE, epoch). */
af_status af_sampler_shuffled(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out);
/* num_samples independent draws with replacement, P(k) = weights[k] / sum(weights), by exact inverse
 * CDF: u uniform in [0, total), the answer is the first k whose running sum exceeds u (so a zero
 * weight is never drawn). Draw i uses counter i of stream (seed, WEIGHTED, epoch). Weights must be
 * finite, >= 0, with a positive sum. */
af_status af_sampler_weighted(const double *weights, int64_t n, int64_t num_samples, uint64_t seed, uint64_t epoch,
                              int64_t *out);
/* Per-sample weights 1 / n_{labels[k]} (inverse class frequency; every class then gets probability
 * 1/C per draw). Labels in [0, num_classes). */
af_status af_class_inverse_weights(const int64_t *labels, int64_t n, int num_classes, double *out);
/* Class-balanced oversampling (shared spec 7.3): every class present is filled up to the largest
 * class count n_max by copies of its own samples, taken round-robin in index order. The epoch list is
 * the n originals followed by the copies, shuffled with stream (seed, OVERSAMPLE, epoch) when
 * `shuffle`. is_copy[k] = 1 marks a copy (the loader applies the extra augmentation to those only).
 * af_sampler_oversample_size gives the list length (n_max * number of classes present). */
af_status af_sampler_oversample_size(const int64_t *labels, int64_t n, int num_classes, int64_t *size);
af_status af_sampler_oversample(const int64_t *labels, int64_t n, int num_classes, uint64_t seed, uint64_t epoch,
                                int shuffle, int64_t *out, uint8_t *is_copy);
/* Bagging: `m` distinct indices of 0..n-1 (without replacement), the first m of a permutation drawn
 * from stream (seed, BAGGING, model), returned sorted. Independent of the epoch. */
af_status af_sampler_bagging(int64_t n, int64_t m, uint64_t seed, uint64_t model, int64_t *out);

#endif
