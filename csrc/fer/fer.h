/* Metrics and decision rules of facial expression recognition (csrc/fer/). */
#ifndef AF_FER_H
#define AF_FER_H

#include <stdint.h>

#include "../core/parallel.h"
#include "../core/status.h"

/* cm: (C, C) int64, rows = truth, columns = prediction; samples whose truth is ignore_label skipped. */
af_status af_confusion_matrix(const int64_t *y_true, const int64_t *y_pred, int64_t n, int num_classes,
                              int64_t ignore_label, int64_t *cm);
void af_scores_from_confusion(const int64_t *cm, int C, double *f1, double *precision, double *recall);
/* Multi-label (AU) counts: for each of the L labels, counts[l*4 + 0..3] = TP, FP, FN, TN over the
 * samples whose truth is not ignore_label; a prediction is positive when score >= threshold. */
af_status af_multilabel_counts(const int64_t *truth, const double *score, int64_t n, int L, double threshold,
                               int64_t ignore_label, int64_t *counts);
af_status af_ccc(const double *x, const double *y, int64_t n, double *out);
af_status af_hand_override(const int64_t *expr, const uint8_t *hand, int64_t n, int64_t happiness, int64_t fear,
                           int64_t *out);
af_status af_soft_vote(const float *probs, const double *weights, int64_t M, int64_t N, int64_t C, float *out);

#endif
