"""Decision rules that combine models (csrc/fer/decision.c)."""
from __future__ import annotations

import numpy as np

from . import _C
from .metrics import _labels


def hand_override(expression, hand, happiness: int, fear: int) -> np.ndarray:
    """The hand-assisted FER rule: where a hand is detected and the expression model did not say
    happiness, answer fear; elsewhere keep the expression. `expression`: predicted class indices (N,);
    `hand`: booleans or 0/1 (N,) from the hand detector; `happiness`, `fear`: those classes' indices."""
    return _C.hand_override(_labels(expression).astype(np.int64), _labels(hand).astype(np.uint8), int(happiness), int(fear))


def soft_vote(probabilities, weights=None) -> np.ndarray:
    """Ensemble soft voting: the (weighted) mean of M models' class probabilities, (M, N, C) -> (N, C).
    Argmax of the result is the ensemble's prediction (bagging and model ensembles of the methods)."""
    if isinstance(probabilities, (list, tuple)):
        probabilities = np.stack([_labels(p) for p in probabilities])
    return _C.soft_vote(np.asarray(probabilities, dtype=np.float32), None if weights is None else np.asarray(weights, dtype=np.float64))
