/* FER metrics: confusion matrix, per-class F1 / precision / recall, accuracy, concordance
 * correlation coefficient. Semantics: scikit-learn's f1_score with
 * zero_division=0 and labels=range(C): a class absent from both truth and prediction scores 0, and
 * macro F1 averages over ALL task classes, as the ABAW criteria do: Kollias, ABAW 2022 challenge
 * paper, arXiv 2207.01138). */
#include "fer.h"

#include <string.h>

af_status af_confusion_matrix(const int64_t *y_true, const int64_t *y_pred, int64_t n, int num_classes,
                              int64_t ignore_label, int64_t *cm) {
    if (num_classes < 1) return AF_FAIL(AF_ERR_VALUE, "num_classes must be >= 1, got %d", num_classes);
    memset(cm, 0, sizeof *cm * (size_t)num_classes * (size_t)num_classes);
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] == ignore_label) continue; /* unannotated frames (-1) never count */
        if (y_true[i] < 0 || y_true[i] >= num_classes)
            return AF_FAIL(AF_ERR_VALUE, "y_true[%lld] = %lld is not a class in [0, %d)", (long long)i,
                           (long long)y_true[i], num_classes);
        if (y_pred[i] < 0 || y_pred[i] >= num_classes)
            return AF_FAIL(AF_ERR_VALUE, "y_pred[%lld] = %lld is not a class in [0, %d)", (long long)i,
                           (long long)y_pred[i], num_classes);
        cm[y_true[i] * num_classes + y_pred[i]]++;
    }
    return AF_OK;
}

/* cm rows = truth, columns = prediction. F1_c = 2TP / (2TP + FP + FN), 0 when the denominator is 0. */
void af_scores_from_confusion(const int64_t *cm, int C, double *f1, double *precision, double *recall) {
    for (int c = 0; c < C; c++) {
        int64_t tp = cm[c * C + c], fp = 0, fn = 0;
        for (int k = 0; k < C; k++) {
            if (k == c) continue;
            fp += cm[k * C + c];
            fn += cm[c * C + k];
        }
        f1[c] = (2 * tp + fp + fn) ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
        precision[c] = (tp + fp) ? (double)tp / (double)(tp + fp) : 0.0;
        recall[c] = (tp + fn) ? (double)tp / (double)(tp + fn) : 0.0;
    }
}

/* truth: (n, L) in {0, 1, ignore_label}; score: (n, L). A frame's label that is unannotated (-1 in
 * Aff-Wild2's AU files) is skipped for that label alone, as the ABAW evaluation does. */
af_status af_multilabel_counts(const int64_t *truth, const double *score, int64_t n, int L, double threshold,
                               int64_t ignore_label, int64_t *counts) {
    if (L < 1) return AF_FAIL(AF_ERR_VALUE, "multi-label metrics need at least one label, got %d", L);
    memset(counts, 0, sizeof *counts * 4 * (size_t)L);
    for (int64_t i = 0; i < n; i++) {
        for (int l = 0; l < L; l++) {
            int64_t t = truth[i * L + l];
            if (t == ignore_label) continue;
            if (t != 0 && t != 1)
                return AF_FAIL(AF_ERR_VALUE, "y_true[%lld, %d] = %lld: multi-label truth must be 0, 1 or %lld",
                               (long long)i, l, (long long)t, (long long)ignore_label);
            int positive = score[i * L + l] >= threshold;
            counts[l * 4 + (t ? (positive ? 0 : 2) : (positive ? 1 : 3))]++;
        }
    }
    return AF_OK;
}

/* Lin's concordance correlation coefficient with population moments (the ABAW scripts' numpy
 * var/std): 2 cov(x,y) / (var x + var y + (mean x - mean y)^2). Two passes for accuracy. */
af_status af_ccc(const double *x, const double *y, int64_t n, double *out) {
    if (n < 1) return AF_FAIL(AF_ERR_VALUE, "CCC needs at least one pair, got 0");
    double mx = 0, my = 0;
    for (int64_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double vx = 0, vy = 0, cov = 0;
    for (int64_t i = 0; i < n; i++) {
        vx += (x[i] - mx) * (x[i] - mx);
        vy += (y[i] - my) * (y[i] - my);
        cov += (x[i] - mx) * (y[i] - my);
    }
    vx /= (double)n;
    vy /= (double)n;
    cov /= (double)n;
    double denom = vx + vy + (mx - my) * (mx - my);
    if (denom == 0) return AF_FAIL(AF_ERR_VALUE, "CCC is undefined: both series are the same constant");
    *out = 2 * cov / denom;
    return AF_OK;
}
