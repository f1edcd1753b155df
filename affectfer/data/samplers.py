"""Samplers: the order in which a Loader visits a dataset, one epoch at a time.

Every sampler is a pure function of (seed, epoch) computed in C (csrc/data/sampler.c) from Philox
streams: `sampler.indices(epoch)` gives the same list on every machine, whatever the number of loader
workers. `set_epoch(e)` selects the epoch that iteration (`iter(sampler)`, the Loader) uses.

Data-parallel training: `sampler.shard(num_replicas, rank)` makes iteration and the Loader visit
only this rank's share of that list, positions rank, rank + R, rank + 2R, ... (torch's
DistributedSampler deals them out the same way). The order is padded by repeating its beginning
up to a multiple of R (or cut down to one with drop_last=True), so every rank gets as many samples
and the shards interleaved position by position are exactly the single-process order: global
batch b of size R * B holds the same samples as rank-local batches b of size B together.
`indices(epoch)` stays the whole single-process order; `local_indices(epoch)` is the shard.
"""
from __future__ import annotations

import numpy as np

from .. import _C


class Sampler:
    """Base class: subclasses implement `indices(epoch) -> int64 array` and `__len__` (the whole,
    single-process order); sharding by rank is the base class's."""

    epoch = 0
    num_replicas, rank, drop_last = 1, 0, False

    def shard(self, num_replicas: int | None = None, rank: int | None = None, drop_last: bool = False):
        """Visit only rank `rank`'s share of every epoch (default: affectfer.distributed's world size
        and rank). Returns self."""
        from .. import distributed

        num_replicas = distributed.get_world_size() if num_replicas is None else num_replicas
        rank = distributed.get_rank() if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"'num_replicas' must be an int >= 1, got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"'rank' must be an int in [0, {num_replicas}), got {rank!r}")
        if drop_last and len(self) < num_replicas:
            raise ValueError(f"drop_last=True leaves nothing of {len(self)} samples for each of {num_replicas} ranks")
        self.num_replicas, self.rank, self.drop_last = int(num_replicas), int(rank), bool(drop_last)
        return self

    def _take_shard(self, values):
        if values is None or self.num_replicas == 1:
            return values
        total = self.num_replicas * self.local_len()
        padded = values[:total] if total <= len(values) else np.resize(values, total)
        return np.ascontiguousarray(padded[self.rank::self.num_replicas])

    def local_indices(self, epoch: int) -> np.ndarray:
        """This rank's share of indices(epoch) (all of it when not sharded)."""
        return self._take_shard(self.indices(epoch))

    def local_copy_flags(self, epoch: int):
        return self._take_shard(self.copy_flags(epoch))

    def local_len(self) -> int:
        n, r = len(self), self.num_replicas
        return n // r if self.drop_last else -(-n // r)

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def copy_flags(self, epoch: int):
        """Per position: True where the loader must apply the extra augmentation (None = never)."""
        return None

    def __iter__(self):
        return iter(self.local_indices(self.epoch).tolist())


def _check_n(n, what="num_samples") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"'{what}' must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"'{what}' must be >= 0, got {n}")
    return int(n)


class SequentialSampler(Sampler):
    """0, 1, ..., n-1 every epoch."""

    def __init__(self, num_samples: int):
        self.num_samples = _check_n(num_samples)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return _C.sampler_sequential(self.num_samples)

    def __len__(self):
        return self.num_samples


class RandomSampler(Sampler):
    """A fresh uniformly random permutation per epoch (Fisher-Yates on Philox stream (seed, epoch))."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = _check_n(num_samples)
        self.seed = int(seed)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return _C.sampler_shuffled(self.num_samples, self.seed, int(epoch))

    def __len__(self):
        return self.num_samples


def class_inverse_weights(labels, num_classes: int | None = None) -> np.ndarray:
    """Per-sample weights 1 / n_{label}: with them every class is drawn with probability 1/C."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 1
    return _C.class_inverse_weights(labels, int(num_classes))


class WeightedRandomSampler(Sampler):
    """`num_samples` independent draws with replacement, P(k) = weights[k] / sum(weights), like
    torch.utils.data.WeightedRandomSampler(replacement=True) (exact inverse-CDF sampling in float64;
    the streams differ from torch's). `weights` are per SAMPLE; `from_labels` builds inverse class
    frequency weights."""

    def __init__(self, weights, num_samples: int | None = None, seed: int = 0):
        self.weights = np.ascontiguousarray(weights, dtype=np.float64)
        if self.weights.ndim != 1 or self.weights.size == 0:
            raise ValueError(f"'weights' must be a non-empty 1-D sequence, got shape {self.weights.shape}")
        if not np.all(np.isfinite(self.weights)) or np.any(self.weights < 0) or self.weights.sum() <= 0:
            raise ValueError("'weights' must be finite, >= 0 and not all zero")
        self.num_samples = len(self.weights) if num_samples is None else _check_n(num_samples)
        self.seed = int(seed)

    @classmethod
    def from_labels(cls, labels, num_classes: int | None = None, num_samples: int | None = None, seed: int = 0):
        """Inverse class frequency weights (balanced classes in expectation)."""
        return cls(class_inverse_weights(labels, num_classes), num_samples, seed)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return _C.sampler_weighted(self.weights, self.num_samples, self.seed, int(epoch))

    def __len__(self):
        return self.num_samples


class ClassBalancedOversampler(Sampler):
    """Fills every class up to the largest class with copies of its own samples (round-robin in index
    order). An epoch visits the originals plus the copies
    (n_max * number of classes present), shuffled per epoch unless `shuffle=False`.

    `copy_flags(epoch)` marks the copies: a Loader given `augment_copies=` (e.g. RandAugment(2, 9))
    runs that extra augmentation on the copies only, before the common transform. Each copy is
    re-augmented every epoch from its sample's stream (online oversampling)."""

    def __init__(self, labels, num_classes: int | None = None, shuffle: bool = True, seed: int = 0):
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or self.labels.size == 0:
            raise ValueError("'labels' must be a non-empty 1-D sequence")
        self.num_classes = int(self.labels.max()) + 1 if num_classes is None else int(num_classes)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self._size = len(self._pairs(0)[0])

    def _pairs(self, epoch):
        return _C.sampler_oversample(self.labels, self.num_classes, self.seed, int(epoch), self.shuffle)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return self._pairs(epoch)[0]

    def copy_flags(self, epoch: int = 0) -> np.ndarray:
        return self._pairs(epoch)[1]

    def pairs(self, epoch: int = 0):
        """(indices, is_copy) for one epoch."""
        return self._pairs(epoch)

    def __len__(self):
        return self._size


class BaggingSampler(Sampler):
    """The subset of model `model` in a bagging ensemble: round(fraction * n) distinct samples
    (without replacement), a pure function of (seed, model) and the same every epoch; each epoch
    visits it in a fresh order (or sorted when `shuffle=False`)."""

    def __init__(self, num_samples: int, fraction: float = 0.2, model: int = 0, seed: int = 0, shuffle: bool = True):
        n = _check_n(num_samples)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"'fraction' must be in (0, 1], got {fraction}")
        if model < 0:
            raise ValueError(f"'model' must be >= 0, got {model}")
        if n == 0:
            raise ValueError("bagging needs a non-empty dataset")
        self.num_samples, self.fraction, self.model, self.seed, self.shuffle = n, float(fraction), int(model), int(seed), bool(shuffle)
        self.size = max(1, int(round(fraction * n)))
        self.subset = _C.sampler_bagging(n, self.size, self.seed, self.model)

    def indices(self, epoch: int = 0) -> np.ndarray:
        if not self.shuffle:
            return self.subset.copy()
        # the epoch order of the subset uses its own stream: seed mixed with the model index
        order = _C.sampler_shuffled(self.size, (self.seed * 1000003 + self.model) & (2**64 - 1), int(epoch))
        return self.subset[order]

    def __len__(self):
        return self.size


class DistributedSampler(RandomSampler):
    """torch.utils.data.distributed.DistributedSampler: this rank's shard of a shuffled (or, with
    shuffle=False, sequential) order of `dataset` (a dataset or its length), a pure function of
    (seed, epoch) on every rank. num_replicas and rank default to affectfer.distributed's."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        super().__init__(dataset if isinstance(dataset, (int, np.integer)) else len(dataset), seed)
        self.shuffle = bool(shuffle)
        self.shard(num_replicas, rank, drop_last)

    def indices(self, epoch: int = 0) -> np.ndarray:
        return super().indices(epoch) if self.shuffle else _C.sampler_sequential(self.num_samples)
