"""affectfer.data.Loader: batches from C worker threads.

    loader = Loader(dataset, batch_size=64, transform=T.Compose([...]), shuffle=True, workers=2, seed=0)
    for epoch in range(10):
        loader.set_epoch(epoch)
        for images, labels in tqdm(loader):   # images float32 (N, C, H, W), labels int64 (N,)
            ...

Worker threads in C (csrc/data/loader.c) read and decode the files, run the compiled transform and
write every sample straight into the float32 batch buffer; a bounded queue keeps `prefetch` batches
in flight; the GIL is released while they work. Sample position i of epoch e always draws its
augmentation from Philox stream (seed, e, i), so the batches are bitwise identical whatever
`workers` is; with a sampler sharded over R ranks, i is the position in the whole order (rank r's
k-th sample is position k * R + r), so the ranks together see exactly the samples of one process. Breaking out of a loop, deleting the iterator or the loader, or an error in a worker
(a missing or corrupt file: the exception names it) stops and joins the threads and frees the
buffers.
"""
from __future__ import annotations

import weakref

import numpy as np

from .. import _C
from .samplers import RandomSampler, Sampler, SequentialSampler

from ..io import MAX_PIXELS, read_image  # noqa: F401  (re-exported: the loader's decoder)


def _pipeline(transform, what):
    """The C pipeline of a transform: None, an affectfer.transforms transform (compiled here), or a
    pipeline it compiled. Anything else is refused by the C side, which checks the capsule's name."""
    from ..transforms import Transform

    if isinstance(transform, Transform):
        return transform.compile()
    if transform is not None:
        _C.pipeline_check(transform, what)
    return transform


_MAX_WORKERS, _MAX_PREFETCH = _C.loader_max_workers, _C.loader_max_prefetch  # csrc/data/data.h


def _seed_from_global():
    """A 64-bit seed from the global generator: one reserved Philox stream's first block, so it
    follows affectfer.manual_seed and each call gives a new one."""
    seed, stream = _C.next_stream()
    words = _C.philox((stream & 0xFFFFFFFF, stream >> 32, 0, 0), (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF))
    return words[0] | words[1] << 32


class _Epoch:
    """One pass over the loader: yields the C run's batches; holds the Loader so that
    `for b in Loader(...)` keeps it alive. Dropping it (or close()) joins the worker threads."""

    __slots__ = ("loader", "run", "__weakref__")

    def __init__(self, loader, run):
        self.loader, self.run = loader, run

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.run)

    def __len__(self):
        return len(self.run)

    def close(self) -> None:
        self.run.close()


class Loader:
    """Iterate a dataset in batches.

    dataset: an affectfer.data dataset (ImageFolder, CSVDataset, ABAWDataset, ArrayDataset, PackedDataset) or any
        object with `labels` and either `paths` or `images` (N, H, W, C uint8), and optional `targets`. When it
        has `boxes` ((N, 4) int64 left, top, right, bottom: the face-box readers of affectfer.data.readers), each
        sample is cropped to its box, clamped to the image, before `augment_copies` and `transform`.
    sampler: an affectfer.data sampler (or any sequence of indices); default sequential, or shuffled
        with `seed` when `shuffle=True` (sampler and shuffle=True together are an error, as in torch).
    transform: an affectfer.transforms pipeline ending in ToTensor(+Normalize) with a fixed output
        size; None = ToTensor only (all images must have the same size). When it starts with
        Grayscale (or RandomGrayscale(p=1)), image files are decoded straight to that gray image:
        1-component JPEGs/PNGs (FER2013's) skip the RGB expansion, with the same bytes as decoding to
        RGB and converting.
    augment_copies: a transform (e.g. RandAugment(2, 9)) run before `transform` only on the
        positions the sampler marks as copies (ClassBalancedOversampler).
    workers: C threads; prefetch: batches in flight (default 2 * workers, at most 1024).
    seed: the augmentation and shuffling seed. None (the default) draws one from the global
        generator when the Loader is made, so `affectfer.manual_seed(s)` before it makes the run
        repeatable and two Loaders made one after the other differ; an int fixes it.
    max_pixels: decoding limit per image (default affectfer.io.MAX_PIXELS = 4096 * 4096; >= 1).
    pin_memory: accepted for torch compatibility; without CUDA it changes nothing (batches are in
        ordinary host memory, 64-byte aligned).
    Iteration yields (images, labels) or (images, labels, targets) affectfer Tensors; a batch's image
    buffer is reused for a later batch once nothing refers to it any more, so between epochs the
    Loader keeps up to prefetch + 2 batches of memory. Each `iter()`
    uses the current epoch and then advances it; `set_epoch(e)` picks the epoch explicitly.
    """

    def __init__(self, dataset, batch_size: int = 1, sampler=None, transform=None, augment_copies=None, workers: int = 2,
                 seed: int | None = None, drop_last: bool = False, pin_memory: bool = False, shuffle: bool = False,
                 prefetch: int | None = None, max_pixels: int = MAX_PIXELS):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"'batch_size' must be an int >= 1, got {batch_size!r}")
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= _MAX_WORKERS:
            raise ValueError(f"'workers' must be an int in [1, {_MAX_WORKERS}], got {workers!r}")
        for name, value in (("prefetch", prefetch), ("max_pixels", max_pixels)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"'{name}' must be an int >= 1, got {value!r}")
        if prefetch is not None and prefetch > _MAX_PREFETCH:
            raise ValueError(f"'prefetch' must be at most {_MAX_PREFETCH}, got {prefetch!r}")
        if seed is None:
            seed = _seed_from_global()
        labels = getattr(dataset, "labels", None)
        if labels is None or all(getattr(dataset, a, None) is None for a in ("paths", "images", "pack_file")):
            raise TypeError("'dataset' must have `labels` and `paths`, `images` or `pack_file` (see affectfer.data datasets)")
        n = len(labels)
        if n == 0:
            raise ValueError("'dataset' is empty")
        if sampler is not None and shuffle:
            raise ValueError("'sampler' and shuffle=True are mutually exclusive")
        if sampler is None:
            sampler = RandomSampler(n, seed=seed) if shuffle else SequentialSampler(n)
        self.dataset, self.sampler = dataset, sampler
        self.batch_size, self.drop_last, self.workers = int(batch_size), bool(drop_last), int(workers)
        self.prefetch = int(prefetch) if prefetch is not None else 2 * self.workers
        self.seed, self.pin_memory, self.max_pixels = int(seed), bool(pin_memory), int(max_pixels)
        self.transform, self.augment_copies = transform, augment_copies
        self._transform = _pipeline(transform, "transform")
        self._augment = _pipeline(augment_copies, "augment_copies")
        self.epoch = 0
        self._runs = weakref.WeakSet()  # live iterations, closed with the loader
        # batch image buffers recycled across epochs (first-touch page faults of fresh ones cost as much
        # as augmenting): up to prefetch + 2 batches stay allocated while the Loader lives
        self._buffers = _C.batch_buffers()

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def _order(self, epoch):
        s = self.sampler
        if isinstance(s, Sampler):
            order, flags = s.local_indices(epoch), s.local_copy_flags(epoch)  # this rank's shard
        else:
            order, flags = np.fromiter(iter(s), dtype=np.int64), None
        order = np.ascontiguousarray(order, dtype=np.int64)
        if flags is not None:
            flags = np.ascontiguousarray(flags, dtype=np.uint8)
        return order, flags

    def _positions(self):
        """(stride, offset): a sharded sampler deals positions out round robin, so this rank's i-th
        sample is position i * R + r of the whole order, and draws that position's stream."""
        s = self.sampler
        if isinstance(s, Sampler) and s.num_replicas > 1:
            return s.num_replicas, s.rank
        return 1, 0

    def __len__(self):
        n = self.sampler.local_len() if isinstance(self.sampler, Sampler) else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order, flags = self._order(epoch)
        ds = self.dataset
        paths = getattr(ds, "paths", None)
        # a PackedDataset's PackFile goes where the images go: the workers read its mapping
        pack_file = getattr(ds, "pack_file", None)
        images = None if paths is not None else ds.images if pack_file is None else pack_file
        targets = getattr(ds, "targets", None)
        run = _C.LoaderRun(paths, images, np.asarray(ds.labels, dtype=np.int64), targets, order, flags, self._transform,
                           self._augment if flags is not None else None, self.batch_size, self.drop_last, self.workers,
                           self.prefetch, self.seed, epoch, self.max_pixels, getattr(ds, "boxes", None), *self._positions(),
                           buffers=self._buffers)
        self._runs.add(run)
        return _Epoch(self, run)

    def close(self) -> None:
        """Stop every running iteration of this loader: join their threads, free their buffers."""
        for run in list(self._runs):
            run.close()

    def __repr__(self):
        return (f"Loader({type(self.dataset).__name__} of {len(self.dataset.labels)}, batch_size={self.batch_size}, "
                f"workers={self.workers}, batches={len(self)})")
