"""Loss helpers shared by the recipes.

`class_weights` turns per-class sample counts into the class weights the seed methods pass to a
weighted cross-entropy (`nn.functional.cross_entropy(..., weight=...)`). For a mean-reduced
weighted cross-entropy only the ratios between the weights matter, so `inverse`, `balanced` and
`max_over_count` train identically; `one_minus_frequency` does not (it is not proportional to 1/n_c).
"""
from __future__ import annotations

import numpy as np

_KINDS = ("inverse", "balanced", "one_minus_frequency", "max_over_count")


def class_weights(counts, kind: str = "inverse", normalize: bool = False) -> np.ndarray:
    """Class weights (float32) from per-class counts n_c, with N = sum n_c and C classes:

    - ``inverse``: w_c = 1 / n_c;
    - ``balanced``: w_c = N / (C n_c), scikit-learn's ``compute_class_weight("balanced")``;
    - ``one_minus_frequency``: w_c = 1 - n_c / N (the IXLab ABAW4 code's weights);
    - ``max_over_count``: w_c = max_k n_k / n_c (the SE-ResNet-50 ABAW 2020 method, Deng et al.).

    ``normalize=True`` rescales the weights to sum to C (mean 1). A class with no sample would get an
    infinite weight under the inverse kinds, so zero counts raise.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence of per-class counts, got shape {n.shape}")
    if not np.all(np.isfinite(n)) or (n < 0).any():
        raise ValueError(f"counts must be finite and >= 0, got {n.tolist()}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind != "one_minus_frequency" and (n == 0).any():
        raise ValueError(f"class {int(np.argmax(n == 0))} has no sample: '{kind}' weights would be infinite")
    total, C = n.sum(), n.size
    if total == 0:
        raise ValueError("counts are all zero")
    if kind == "inverse":
        w = 1.0 / n
    elif kind == "balanced":
        w = total / (C * n)
    elif kind == "one_minus_frequency":
        w = 1.0 - n / total
    else:
        w = n.max() / n
    if normalize:
        w = w * (C / w.sum())
    return w.astype(np.float32)
