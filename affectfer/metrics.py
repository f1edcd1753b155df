"""Expression-recognition metrics, computed in C (csrc/fer/metrics.c).

F1 follows scikit-learn's f1_score(labels=range(num_classes), zero_division=0): a class absent from
both truth and prediction scores 0 and still counts in the macro mean, as every ABAW criterion
does. Pass `drop_absent=True` for scikit-learn's default (average only over labels present).
Truth labels equal to `ignore_label` (-1: unannotated frames) are skipped everywhere.
"""
from __future__ import annotations

import numpy as np

from . import _C

EXPRESSIONS_6 = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
EXPRESSIONS_7 = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
EXPRESSIONS_8 = EXPRESSIONS_7 + ("other",)


def _labels(x):
    if isinstance(x, _C.TensorBase):
        x = x.numpy()
    return np.asarray(x)


def confusion_matrix(y_true, y_pred, num_classes: int, ignore_label: int = -1) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; rows are the truth, columns the prediction."""
    return _C.confusion_matrix(_labels(y_true), _labels(y_pred), int(num_classes), int(ignore_label))


def f1_per_class(y_true, y_pred, num_classes: int, ignore_label: int = -1) -> np.ndarray:
    return _C.scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes, ignore_label))[0]


def macro_f1(y_true, y_pred, num_classes: int, ignore_label: int = -1, drop_absent: bool = False) -> float:
    cm = confusion_matrix(y_true, y_pred, num_classes, ignore_label)
    f1 = _C.scores_from_confusion(cm)[0]
    if drop_absent:
        present = (cm.sum(0) + cm.sum(1)) > 0
        return float(f1[present].mean()) if present.any() else 0.0
    return float(f1.mean())


def accuracy(y_true, y_pred, ignore_label: int = -1) -> float:
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has {p.shape}")
    keep = t != ignore_label
    if not keep.any():
        raise ValueError("accuracy of an empty set: every label is ignore_label")
    return float((t[keep] == p[keep]).mean())


def abaw_expression_score(y_true, y_pred, num_classes: int = 7, ignore_label: int = -1) -> float:
    """ABAW 1-2 expression criterion 0.67 * macro F1 + 0.33 * accuracy (the SE-ResNet-50 method's
    metric). For ABAW 3+ and the synthetic-data track the criterion is macro_f1 alone."""
    return 0.67 * macro_f1(y_true, y_pred, num_classes, ignore_label) + 0.33 * accuracy(y_true, y_pred, ignore_label)


def ccc(x, y, mask=None) -> float:
    """Lin's concordance correlation coefficient with population moments (ABAW's valence/arousal metric):
    2 cov(x, y) / (var x + var y + (mean x - mean y)^2). `mask` (bool, same length) keeps only the
    pairs where it is True, e.g. `mask=truth != VA_INVALID` for unannotated Aff-Wild2 frames."""
    x = _labels(x).astype(np.float64).ravel()
    y = _labels(y).astype(np.float64).ravel()
    if mask is not None:
        mask = _labels(mask).astype(bool).ravel()
        if mask.shape != x.shape or x.shape != y.shape:
            raise ValueError(f"ccc: x has {x.size} values, y {y.size} and mask {mask.size}; they must match")
        x, y = x[mask], y[mask]
    return _C.ccc(x, y)


# ---- action units (multi-label) and the ABAW criteria built on them ----
AUS_12 = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
VA_INVALID = -5.0  # Aff-Wild2's value for an unannotated valence/arousal frame


def _au_counts(y_true, y_score, threshold, ignore_label):
    t = _labels(y_true).astype(np.int64)
    s = _labels(y_score).astype(np.float64)
    if t.ndim != 2:
        raise ValueError(f"y_true must be (N, num_aus) 0/1 labels, got shape {t.shape}")
    return _C.multilabel_counts(t, s, float(threshold), int(ignore_label))  # (L, 4): TP, FP, FN, TN


def au_f1_per_class(y_true, y_score, threshold: float = 0.5, ignore_label: int = -1) -> np.ndarray:
    """Per-AU F1 (scikit-learn's binary f1_score per column, zero_division=0). `y_score` holds
    probabilities (sigmoid outputs): an AU is predicted active when its score >= threshold (ABAW
    uses 0.5). Truth entries equal to `ignore_label` (-1: unannotated) are skipped per AU."""
    tp, fp, fn, _ = _au_counts(y_true, y_score, threshold, ignore_label).T
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)


def au_macro_f1(y_true, y_score, threshold: float = 0.5, ignore_label: int = -1) -> float:
    """Mean per-AU F1 over every AU column (ABAW 3+ AU criterion with the 12 AUs of AUS_12)."""
    return float(au_f1_per_class(y_true, y_score, threshold, ignore_label).mean())


def abaw_au_score(y_true, y_score, threshold: float = 0.5, ignore_label: int = -1, edition: int = 3) -> float:
    """ABAW AU criterion. Editions 1-2 (Kollias et al. 2020, arXiv 2001.11409): 0.5 * mean F1 +
    0.5 * mean per-AU accuracy. Edition 3 onwards (arXiv 2202.10659): mean F1 over the AUs."""
    counts = _au_counts(y_true, y_score, threshold, ignore_label)
    tp, fp, fn, tn = counts.T
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0).mean()
    if edition >= 3:
        return float(f1)
    total = counts.sum(1)
    if (total == 0).any():
        raise ValueError("an AU has no annotated frame: its accuracy is undefined")
    return float(0.5 * f1 + 0.5 * ((tp + tn) / total).mean())


def abaw_va_score(va_true, va_pred, invalid: float = VA_INVALID) -> float:
    """(CCC_valence + CCC_arousal) / 2 over (N, 2) arrays, skipping frames whose truth is `invalid`
    (-5 in Aff-Wild2), each dimension on its own."""
    t, p = _labels(va_true).astype(np.float64), _labels(va_pred).astype(np.float64)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"va_true and va_pred must both be (N, 2) [valence, arousal]; got {t.shape} and {p.shape}")
    return 0.5 * sum(ccc(p[:, k], t[:, k], mask=t[:, k] != invalid) for k in range(2))


def abaw_mtl_score(va_true, va_pred, expr_true, expr_pred, au_true, au_score, num_expressions: int = 8,
                   threshold: float = 0.5) -> float:
    """ABAW 3/4 multi-task criterion (Kollias, arXiv 2207.01138):
    P_MTL = (CCC_V + CCC_A) / 2 + macro F1 over the `num_expressions` classes + mean F1 over the AUs.
    Invalid labels are skipped per task: -5 for valence/arousal, -1 for the expression and each AU."""
    return (abaw_va_score(va_true, va_pred) + macro_f1(expr_true, expr_pred, num_expressions)
            + au_macro_f1(au_true, au_score, threshold))


def confusion_table(y_true, y_pred, class_names, ignore_label: int = -1, title: str = "") -> str:
    """The confusion matrix as a printable table: one row per true class, one column per predicted
    class (columns headed by the first 5 letters of the class names), counts."""
    C = len(class_names)
    cm = confusion_matrix(y_true, y_pred, C, ignore_label)
    width = max(12, max(len(n) for n in class_names) + 2)
    cell = max(6, len(str(int(cm.max(initial=0)))) + 1)
    lines = [title] if title else []
    lines.append(f"{'true / pred':<{width}}" + "".join(f"{n[:5]:>{cell}}" for n in class_names))
    for c, name in enumerate(class_names):
        lines.append(f"{name:<{width}}" + "".join(f"{int(v):>{cell}d}" for v in cm[c]))
    return "\n".join(lines)


def classification_report(y_true, y_pred, class_names, ignore_label: int = -1) -> str:
    """Per-class precision / recall / F1 / support, macro F1 and accuracy, as a printable table."""
    C = len(class_names)
    cm = confusion_matrix(y_true, y_pred, C, ignore_label)
    f1, precision, recall = _C.scores_from_confusion(cm)
    width = max(12, max(len(n) for n in class_names) + 2)
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for c, name in enumerate(class_names):
        lines.append(f"{name:<{width}}{precision[c]:>10.4f}{recall[c]:>10.4f}{f1[c]:>10.4f}{int(cm[c].sum()):>10d}")
    total = int(cm.sum())
    acc = float(np.trace(cm) / total) if total else float("nan")
    lines.append(f"{'macro F1':<{width}}{'':>20}{f1.mean():>10.4f}{total:>10d}")
    lines.append(f"{'accuracy':<{width}}{'':>20}{acc:>10.4f}{total:>10d}")
    return "\n".join(lines)
