"""Batch mixers and their losses: Mixup (Zhang et al. 2018) and MixAugment (Psaroudakis & Kollias,
CVPRW 2022, arXiv 2205.04442).

    mix = MixAugment(alpha=0.1)
    batch = mix(images, labels)                      # one lambda ~ Beta(alpha, alpha), one pairing
    loss = mixaugment_loss(model(batch.mixed), model(images), model(batch.permuted), batch)

The pixel work runs in C (csrc/image/mix.c); lambda and the pairing come from a Philox stream
reserved from the global seed (`affectfer.manual_seed`), so a run is repeatable.

Beta sampling: lambda = G1 / (G1 + G2) with G ~ Gamma(alpha, 1) drawn by Marsaglia-Tsang
(alpha < 1 via Gamma(alpha + 1) * U^(1/alpha), in log space so alpha = 0.1 never gives 0/0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _C
from ..nn import functional as _F
from ..tensor import Tensor
from ..tensor import from_numpy as _from_numpy


@dataclass
class MixedBatch:
    """One mixed batch: `mixed[i] = lam * images[i] + (1 - lam) * images[perm[i]]`; `labels_a` = the
    labels, `labels_b` = labels[perm]; `permuted` = images[perm] (MixAugment's second real batch,
    None for Mixup)."""
    mixed: Tensor
    labels_a: Tensor
    labels_b: Tensor
    lam: float
    perm: np.ndarray
    permuted: Tensor | None = None

    def soft_targets(self, num_classes: int, dtype="float32") -> Tensor:
        """lam * onehot(labels_a) + (1 - lam) * onehot(labels_b), (N, num_classes) of `dtype` (the
        logits' dtype): the probability targets for cross_entropy."""
        a, b = np.asarray(self.labels_a), np.asarray(self.labels_b)
        if a.size and (a.min() < 0 or max(a.max(), b.max()) >= num_classes):
            raise ValueError(f"labels must be in [0, {num_classes})")
        t = np.zeros((len(a), num_classes), dtype=np.float64)
        rows = np.arange(len(a))
        t[rows, a] += self.lam
        t[rows, b] += 1.0 - self.lam
        t = t.astype(np.dtype(dtype))
        return _from_numpy(t)


def _as_tensor(x, dtype, what):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _C.TensorBase):
        return x
    a = np.ascontiguousarray(x, dtype=dtype)
    return _from_numpy(a)


class Mixup:
    """Mixup(alpha): lambda ~ Beta(alpha, alpha) once per batch (alpha <= 0: lambda = 1, no mixing),
    pairing by a uniformly random permutation of the batch. Call with float32 images (N, ...) and
    int labels (N,); returns a MixedBatch."""

    _keep_permuted = False

    def __init__(self, alpha: float = 1.0):
        alpha = float(alpha)
        if not np.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha}")
        self.alpha = alpha

    def params(self, n: int):
        """(lambda, perm) for a batch of n, from a fresh stream of the global RNG."""
        seed, stream = _C.next_stream()
        return _C.mix_params(seed, stream, self.alpha, int(n))

    def __call__(self, images, labels, lam: float | None = None, perm=None) -> MixedBatch:
        x = _as_tensor(images, np.float32, "images")
        if x.dtype != "float32" or x.ndim < 1:
            raise TypeError(f"images must be float32 (N, ...), got {x.dtype} with {x.ndim} dims")
        y = np.asarray(labels)
        if y.ndim != 1 or len(y) != x.shape[0]:
            raise ValueError(f"labels must be ({x.shape[0]},), got {y.shape}")
        if lam is None or perm is None:
            drawn_lam, drawn_perm = self.params(x.shape[0])
            lam = drawn_lam if lam is None else lam
            perm = drawn_perm if perm is None else perm
        perm = np.ascontiguousarray(perm, dtype=np.int64)
        mixed, permuted = _C.mix_batch(x, perm, float(lam), self._keep_permuted)
        y = np.ascontiguousarray(y, dtype=np.int64)
        return MixedBatch(mixed, _from_numpy(y.copy()), _from_numpy(y[perm].copy()), float(lam), perm, permuted)

    def __repr__(self):
        return f"{type(self).__name__}(alpha={self.alpha})"


class MixAugment(Mixup):
    """MixAugment(alpha=0.1): Mixup's virtual batch plus the real batch and the permuted real batch,
    all contributing to the loss (`mixaugment_loss`). Default = variant A (the paper's abstract):
    alpha 0.1, three forward passes."""

    _keep_permuted = True

    def __init__(self, alpha: float = 0.1):
        super().__init__(alpha)


def _ce(logits, target, weight=None, label_smoothing=0.0):
    return _F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)


def mixup_loss(logits, batch: MixedBatch, weight=None, label_smoothing: float = 0.0, soft: bool = False):
    """lam * CE(logits, labels_a) + (1 - lam) * CE(logits, labels_b) (the reference code's form).
    soft=True: CE against batch.soft_targets() instead (equal without class weights; with weights
    PyTorch's cross_entropy normalises the two forms differently: index targets divide by
    the summed weights of the targets, probability targets by N)."""
    if soft:
        return _ce(logits, batch.soft_targets(logits.shape[1], logits.dtype), weight, label_smoothing)
    return (_ce(logits, batch.labels_a, weight, label_smoothing) * batch.lam
            + _ce(logits, batch.labels_b, weight, label_smoothing) * (1.0 - batch.lam))


def mixaugment_loss(logits_mixed, logits_real, logits_permuted, batch: MixedBatch, weight=None,
                    label_smoothing: float = 0.0, variant: str = "A"):
    """MixAugment's objective (Psaroudakis & Kollias 2022).

    variant "A" (default; the paper's abstract): virtual and both real batches count,
        L = lam CE(f(x~), y) + (1 - lam) CE(f(x~), y_pi) + CE(f(x), y) + CE(f(x_pi), y_pi).
    variant "B" (a published ABAW recipe): L = 0.5 (lam CE_ls(f(x~), y) + (1 - lam) CE_ls(f(x~), y_pi)
        + CE_0(f(x), y)), label smoothing on the virtual terms only; `logits_permuted` is unused
        (pass None).
    """
    virtual = mixup_loss(logits_mixed, batch, weight, label_smoothing)
    if variant == "A":
        return (virtual + _ce(logits_real, batch.labels_a, weight, label_smoothing)
                + _ce(logits_permuted, batch.labels_b, weight, label_smoothing))
    if variant == "B":
        return (virtual + _ce(logits_real, batch.labels_a, weight, 0.0)) * 0.5
    raise ValueError(f"variant must be 'A' or 'B', got {variant!r}")
