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


def ccc(x, y) -> float:
    """Lin's concordance correlation coefficient with population moments (ABAW's valence/arousal metric)."""
    return _C.ccc(_labels(x).astype(np.float64).ravel(), _labels(y).astype(np.float64).ravel())


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
