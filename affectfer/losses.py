"""The seed methods' losses beside cross-entropy (C ops in csrc/ops/loss_misc.c, each with its
backward), the modules that hold their state, and class weights.

- `binary_cross_entropy_with_logits`: action units (multi-label), torch semantics with pos_weight.
- `focal_loss`: softmax focal loss (Lin et al., ICCV 2017) for DAN's ABAW3 expression head.
- `ccc_loss`: 1 - concordance correlation coefficient for valence/arousal, with a validity mask.
- `affinity_loss` / `AffinityLoss` and `partition_loss` / `PartitionLoss`: DAN's auxiliary losses
  (Wen et al., "Distract Your Attention", 2023), as its released code computes them.

`class_weights` turns per-class sample counts into the class weights the seed methods pass to a
weighted cross-entropy (`nn.functional.cross_entropy(..., weight=...)`). For a mean-reduced
weighted cross-entropy only the ratios between the weights matter, so `inverse`, `balanced` and
`max_over_count` train identically; `one_minus_frequency` does not (it is not proportional to 1/n_c).
"""
from __future__ import annotations

import sys

import numpy as np

from . import _C
from .nn.functional import _reduction
from .nn.module import Module, Parameter
from .tensor import _call, randn, tensor

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


def _as_tensor_like(value, like, name):
    if value is None or isinstance(value, _C.TensorBase):
        return value
    try:
        return tensor(np.asarray(value, dtype=like.dtype))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a tensor or a sequence of numbers, got {type(value).__name__}") from e


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None, reduction: str = "mean"):
    """torch.nn.functional.binary_cross_entropy_with_logits: per element
    w [(1 - t) x - (1 + (p - 1) t) log sigmoid(x)], computed stably. `weight` has the input's shape
    or one value per last-dim column; `pos_weight` one value per last-dim column (for AUs, the
    ratio of negatives to positives per AU). `mean` divides by the number of elements."""
    weight = _as_tensor_like(weight, input, "weight")
    pos_weight = _as_tensor_like(pos_weight, input, "pos_weight")
    return _call("bce_with_logits", [input, target, weight, pos_weight], (_reduction(reduction),))


def focal_loss(input, target, gamma: float = 2.0, alpha=None, reduction: str = "mean",
               detach_modulator: bool = False):
    """Softmax focal loss FL_i = -a_y (1 - p_y)^gamma log p_y over logits (N, C) and class indices
    (Lin et al., ICCV 2017, multi-class form). `alpha`: one weight per class, or None for 1. The
    mean divides by N, not by the alpha sum. gamma = 0 and alpha = None give plain cross-entropy.
    `detach_modulator=True` treats (1 - p_y)^gamma as a constant in backward, as the public FER
    implementations do (they compute p_y from a detached tensor): same value, another gradient."""
    alpha = _as_tensor_like(alpha, input, "alpha")
    return _call("focal_loss", [input, target, alpha], (_reduction(reduction), int(bool(detach_modulator))),
                 (float(gamma),))


def ccc_loss(input, target, mask=None, unbiased: bool = False, eps: float = 1e-8):
    """1 - Lin's concordance correlation coefficient of two (N,) series:
    1 - 2 s_xy / (s_x^2 + s_y^2 + (m_x - m_y)^2 + eps), with population moments (the ABAW metric)
    or, with `unbiased=True`, the N - 1 moments some released code uses. `mask` (bool/uint8, (N,))
    keeps only annotated pairs (e.g. `target != -5` for Aff-Wild2); with no valid pair the loss is 0
    and sends no gradient. For valence and arousal call it once per dimension."""
    return _call("ccc_loss", [input, target, mask], (int(bool(unbiased)),), (float(eps),))


def affinity_loss(features, target, centers):
    """DAN's affinity loss: (1/B) sum_i |x_i - c_{y_i}|^2 / S, S = sum over feature dims of the
    unbiased variance of the class centres (K, D) across classes; each term clamped to [1e-12, 1e12]
    as the reference code does. `features`: (B, D), or (B, D, h, w) averaged over space first."""
    if features.ndim == 4:
        features = features.mean(dim=(2, 3))
    return _call("affinity_loss", [features, target, centers])


def partition_loss(heads, eps: float = sys.float_info.epsilon, paper_form: bool = False):
    """DAN's partition loss over attention heads (B, k, d), which the reference code log-softmaxes
    over the head axis first (do that before calling): log(1 + k / (V + eps)) with V the mean over
    (B, d) of the unbiased variance across heads (the released code); `paper_form=True` averages
    log(1 + k / (v + eps)) instead (the paper's formula). One head gives 0."""
    return _call("partition_loss", [heads], (int(bool(paper_form)),), (float(eps),))


class AffinityLoss(Module):
    """The affinity loss with its learnable class centres (num_classes, feat_dim), initialised
    N(0, 1) like the reference. Add its parameters to the optimizer with the model's."""

    def __init__(self, num_classes: int = 8, feat_dim: int = 512):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"AffinityLoss needs num_classes >= 2 (centre variance across classes), got {num_classes}")
        self.centers = Parameter(randn(num_classes, feat_dim))

    def forward(self, features, target):
        return affinity_loss(features, target, self.centers)


class PartitionLoss(Module):
    def __init__(self, eps: float = sys.float_info.epsilon, paper_form: bool = False):
        super().__init__()
        self.eps, self.paper_form = eps, paper_form

    def forward(self, heads):
        return partition_loss(heads, self.eps, self.paper_form)
