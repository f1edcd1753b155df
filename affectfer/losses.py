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
    - ``max_over_count``: w_c = max_k n_k / n_c (the SE-ResNet-50 ABAW 2020 method, Cafarelli et al.,
      arXiv 2101.09231).

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
               detach_modulator: bool = False, ignore_index: int = -100):
    """Softmax focal loss FL_i = -a_y (1 - p_y)^gamma log p_y over logits (N, C) and class indices
    (Lin et al., ICCV 2017, multi-class form). `alpha`: one weight per class, or None for 1. The
    mean divides by the number of samples whose target is not `ignore_index` (not by the alpha sum).
    gamma = 0 and alpha = None give plain cross-entropy.
    `detach_modulator=True` treats (1 - p_y)^gamma as a constant in backward, as the public FER
    implementations do (they compute p_y from a detached tensor): same value, another gradient."""
    alpha = _as_tensor_like(alpha, input, "alpha")
    return _call("focal_loss", [input, target, alpha],
                 (_reduction(reduction), int(bool(detach_modulator)), int(ignore_index)), (float(gamma),))


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


class MultiTaskLoss:
    """A weighted sum of per-task losses, each computed only on the samples whose label is valid.

    `tasks`: name -> kind, in the order of the model's outputs and of the batch's targets. Kinds:
      - "ccc": sum over the columns of (B, K) predictions of 1 - CCC (valence/arousal); entries equal
        to `invalid` (Aff-Wild2: -5) are skipped per column;
      - "ce": cross-entropy on (B, C) logits and class indices; `invalid` (-1) samples are ignored;
      - "focal": the softmax focal loss on the valid samples;
      - "bce": BCE-with-logits on (B, K) logits and 0/1 targets, averaged over the valid entries
        (`invalid` -1 per AU);
      - "mse": mean squared error over every element (landmarks).
    `weights`: name -> factor (default 1). `options`: name -> keyword arguments of that loss
    (e.g. {"expr": {"weight": class_weights, "label_smoothing": 0.2}, "au": {"pos_weight": pw},
    "va": {"unbiased": True}}). `invalid`: name -> the invalid-label value, defaults -5 for "ccc"
    and -1 for "ce", "focal" and "bce".

    Calling it returns a dict name -> weighted loss (train.fit sums and logs the terms). A batch with
    no valid label for a task gives 0 for that task.
    """

    _DEFAULT_INVALID = {"ccc": -5.0, "ce": -1, "focal": -1, "bce": -1, "mse": None}

    def __init__(self, tasks: dict, weights: dict | None = None, options: dict | None = None,
                 invalid: dict | None = None):
        for name, kind in tasks.items():
            if kind not in self._DEFAULT_INVALID:
                raise ValueError(f"task {name!r}: kind must be one of {sorted(self._DEFAULT_INVALID)}, got {kind!r}")
        for given, what in ((weights, "weights"), (options, "options"), (invalid, "invalid")):
            unknown = set(given or {}) - set(tasks)
            if unknown:
                raise ValueError(f"{what} names tasks that do not exist: {sorted(unknown)}")
        self.tasks = dict(tasks)
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in tasks}
        self.options = {name: dict((options or {}).get(name, {})) for name in tasks}
        self.invalid = {name: (invalid or {}).get(name, self._DEFAULT_INVALID[kind]) for name, kind in tasks.items()}

    def __call__(self, outputs, *targets) -> dict:
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        if len(outputs) < len(self.tasks) or len(targets) < len(self.tasks):
            raise ValueError(f"MultiTaskLoss over {list(self.tasks)} needs {len(self.tasks)} outputs and targets, "
                             f"got {len(outputs)} and {len(targets)}")
        return {name: self._term(name, kind, out, target) * self.weights[name]
                for (name, kind), out, target in zip(self.tasks.items(), outputs, targets)}

    def _term(self, name, kind, out, target):
        opts, bad = self.options[name], self.invalid[name]
        labels = np.asarray(target)
        if kind == "ccc":
            if out.ndim != 2 or labels.shape != tuple(out.shape):
                raise ValueError(f"task {name!r}: predictions {tuple(out.shape)} and targets {labels.shape} must be (B, K)")
            total = None
            for k in range(out.shape[1]):
                mask = tensor(labels[:, k] != bad)
                t = tensor(np.ascontiguousarray(labels[:, k]).astype(out.dtype))
                term = ccc_loss(out[:, k], t, mask, **opts)
                total = term if total is None else total + term
            return total
        if kind in ("ce", "focal"):
            y = tensor(labels.astype(np.int64))
            if not (labels != bad).any():
                return (out * 0.0).sum()
            if kind == "ce":
                from .nn.functional import cross_entropy

                return cross_entropy(out, y, ignore_index=int(bad), **opts)
            return focal_loss(out, y, ignore_index=int(bad), **opts)
        if kind == "bce":
            valid = labels != bad
            count = int(valid.sum())
            if count == 0:
                return (out * 0.0).sum()
            y = tensor(np.where(valid, labels, 0).astype(out.dtype))
            w = valid.astype(out.dtype)
            if "weight" in opts:
                w = w * np.broadcast_to(np.asarray(opts["weight"], dtype=out.dtype), w.shape)
            rest = {k: v for k, v in opts.items() if k != "weight"}
            return binary_cross_entropy_with_logits(out, y, tensor(w), reduction="sum", **rest) * (1.0 / count)
        from .nn.functional import mse_loss

        return mse_loss(out, target if isinstance(target, _C.TensorBase) else tensor(labels.astype(out.dtype)), **opts)

