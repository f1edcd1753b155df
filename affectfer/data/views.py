"""Two-view samples: the same image through two pipelines in one sample.

The IXLab multi-task network (Jeong et al., arXiv 2207.10025) feeds its emotion branch an augmented
view and its landmark branch a view that keeps the geometry (only normalised), so the landmark
targets stay valid while the emotion input is flipped, warped and erased.

    views = TwoViewDataset(dataset, emotion_tf, landmark_tf)
    a, b, label, targets = views[0]                     # NumPy views, for notebooks and tests
    loader = TwoViewLoader(views, batch_size=32, shuffle=True, seed=0)
    for x, labels, targets in loader:                   # x: (N, Ca + Cb, H, W), view a's channels first
        ...

TwoViewLoader runs two C Loaders over one sampler: both visit the same samples in the same order
(samplers are pure functions of (seed, epoch)), each with its own transform and its own augmentation
seed, and the batches are concatenated on the channel axis so that a training loop and
`affectfer.train.fit` see one image tensor (affectfer.models.MultiTaskIXL splits it again). Each
image is read and decoded once per view.
"""
from __future__ import annotations

from ..tensor import cat
from .loader import Loader, _seed_from_global
from .samplers import RandomSampler

# view b's augmentation seed is view a's xor this constant, so that the two pipelines do not share
# a Philox stream unless asked (one flip decision would otherwise drive both views)
_VIEW_B_SEED = 0x9E3779B97F4A7C15


def _check_transform(t, name):
    from ..transforms import Transform

    if not isinstance(t, Transform):
        raise TypeError(f"{name} must be an affectfer.transforms transform, got {type(t).__name__}")
    return t


class TwoViewDataset:
    """`dataset` seen through `transform_a` and `transform_b` (affectfer.transforms pipelines ending
    in ToTensor). Keeps the dataset's labels, targets and classes. `ds[i]` gives
    (view_a, view_b, label[, targets]) as float32 NumPy arrays (C, H, W)."""

    def __init__(self, dataset, transform_a, transform_b):
        if getattr(dataset, "labels", None) is None:
            raise TypeError(f"dataset must be an affectfer.data dataset (with labels), got {type(dataset).__name__}")
        self.dataset = dataset
        self.transform_a = _check_transform(transform_a, "transform_a")
        self.transform_b = _check_transform(transform_b, "transform_b")

    labels = property(lambda self: self.dataset.labels)
    targets = property(lambda self: getattr(self.dataset, "targets", None))
    classes = property(lambda self: getattr(self.dataset, "classes", None))

    def __len__(self):
        return len(self.dataset.labels)

    def __getitem__(self, i):
        image, label, *rest = self.dataset[i]
        return (self.transform_a(image), self.transform_b(image), label, *rest)


class TwoViewLoader:
    """Batches of a TwoViewDataset: yields (views, labels[, targets]) with views = the two views
    concatenated on the channel axis (N, Ca + Cb, H, W); both views must have the same height and
    width. `sampler`, `shuffle`, `seed`, `batch_size`, `drop_last`, `workers` as in
    affectfer.data.Loader; `seed` (None: drawn from the global generator) seeds view a, view b gets
    a seed derived from it, unless `shared_randomness=True`: then both views draw from the same
    Philox stream per sample, so random stages at the same place in both pipelines draw the same
    parameters (IXLab jitters the colours of the image once, before making its two views: put the
    same ColorJitter first in both pipelines)."""

    def __init__(self, views: TwoViewDataset, batch_size: int = 1, sampler=None, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False, workers: int = 2, shared_randomness: bool = False,
                 **loader_kwargs):
        if not isinstance(views, TwoViewDataset):
            raise TypeError(f"views must be a TwoViewDataset, got {type(views).__name__}")
        if sampler is not None and shuffle:
            raise ValueError("'sampler' and shuffle=True are mutually exclusive")
        seed = _seed_from_global() if seed is None else int(seed)
        if shuffle:
            sampler = RandomSampler(len(views), seed=seed)  # one sampler: one order for both views
        common = dict(batch_size=batch_size, sampler=sampler, drop_last=drop_last, workers=workers, **loader_kwargs)
        self.views = views
        self.loader_a = Loader(views.dataset, transform=views.transform_a, seed=seed, **common)
        seed_b = seed if shared_randomness else seed ^ _VIEW_B_SEED
        self.loader_b = Loader(views.dataset, transform=views.transform_b, seed=seed_b, **common)
        self.batch_size, self.drop_last, self.seed = self.loader_a.batch_size, self.loader_a.drop_last, seed
        self.sampler = self.loader_a.sampler

    @property
    def dataset(self):
        return self.views

    def set_epoch(self, epoch: int) -> None:
        self.loader_a.set_epoch(epoch)
        self.loader_b.set_epoch(epoch)

    def __len__(self):
        return len(self.loader_a)

    def __iter__(self):
        for a, b in zip(self.loader_a, self.loader_b):
            if tuple(a[0].shape[2:]) != tuple(b[0].shape[2:]):
                raise ValueError(f"the two views must have the same height and width to be stacked, got "
                                 f"{tuple(a[0].shape)} and {tuple(b[0].shape)}")
            yield (cat([a[0], b[0]], dim=1), *a[1:])

    def close(self) -> None:
        self.loader_a.close()
        self.loader_b.close()

    def __repr__(self):
        return f"TwoViewLoader({type(self.views.dataset).__name__} of {len(self.views)}, batch_size={self.batch_size})"
