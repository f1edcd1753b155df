"""Packs: a dataset decoded once into one memory-mapped file.

    from affectfer.data import ImageFolder, Loader, PackedDataset, pack
    pack(ImageFolder("RAF-DB/train"), "raf_train.afpack", max_side=256)   # once
    ds = PackedDataset("raf_train.afpack")                                 # every run
    loader = Loader(ds, batch_size=64, transform=..., shuffle=True)

Decoding a JPEG costs more than every augmentation of a face crop together, and a plain loader pays
it every epoch. A pack holds the decoded uint8 HWC pixels (optionally shrunk so that the shorter side
is at most `max_side`), the labels, the float32 targets and the class names; the loader's workers read
samples straight from the read-only mapping: no decode, and no copy before the first transform (a
pipeline whose first stage works in place, a flip say, copies the image first).

Without `max_side` a pack holds exactly the pixels the decoder gives, so its batches are bitwise
identical to those read from the original files (same transform, same seed).

Writing is atomic: samples go to `<path>.<pid>.tmp`, the table and header are written last, the file
is fsynced and renamed onto `path`; an interrupted pack leaves `path` absent or as it was. Packing
the same samples gives the same bytes. The format is in docs/pack-format.md; a damaged or hostile
file raises ValueError (OSError when it cannot be read) naming it.
"""
from __future__ import annotations

import os

import numpy as np

from .. import _C
from ..io import MAX_PIXELS
from .datasets import Dataset

PACK_VERSION = _C.PACK_VERSION


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _target_names(dataset, num_targets: int) -> list:
    """Column names of the dataset's targets where it knows them (a CSV header, ABAW's header)."""
    columns = getattr(dataset, "columns", None)
    if columns is not None and len(columns) == num_targets + 2:
        return [str(c) for c in columns[2:]]
    if getattr(dataset, "task", None) in ("va", "au") and len(dataset.classes) == num_targets:
        return [str(c) for c in dataset.classes]
    names = getattr(dataset, "target_names", None)
    if names is not None and len(names) == num_targets:
        return [str(c) for c in names]
    return [""] * num_targets


class _PackImages:
    def __init__(self, pack_file):
        self.pack_file = pack_file

    def __getitem__(self, i):
        return self.pack_file.image(i)


def pack(dataset, path, max_side: int | None = None, workers: int | None = None, chunk_size: int = 256,
         progress: bool = True, max_pixels: int = MAX_PIXELS) -> str:
    """Write `dataset` (ImageFolder, CSVDataset, ABAWDataset, ArrayDataset, PackedDataset: anything with
    `labels`, `classes`, `paths` or `images`, and optional `targets`) into the pack file `path`;
    returns `path`. Samples keep the dataset's order.

    max_side: shrink images whose shorter side is longer than this (antialiased bilinear, torchvision's
        Resize(max_side)); smaller images are kept as they are. None keeps every image as decoded.
    workers: decoding threads (default: the CPUs this process may use). The bytes written never
        depend on it.
    chunk_size: samples handed to C per call (the progress bar advances per chunk).
    """
    path = os.fspath(path)
    labels = getattr(dataset, "labels", None)
    paths = getattr(dataset, "paths", None)
    images = getattr(dataset, "images", None)
    source_pack = getattr(dataset, "pack_file", None)
    if source_pack is not None:  # re-packing a pack (to shrink it): its images are views of the mapping
        images = _PackImages(source_pack)
    if labels is None or (paths is None and images is None):
        raise TypeError(f"pack: 'dataset' must have `labels` and `paths`, `images` or `pack_file` (an affectfer.data "
                        f"dataset), got {type(dataset).__name__}")
    if getattr(dataset, "boxes", None) is not None:  # the pack writer decodes whole files; it has no crop step
        raise ValueError(f"pack: {type(dataset).__name__} has face boxes, which pack() does not apply; pack the "
                         f"cropped faces (e.g. an ArrayDataset of ds[i] images) or train from the files")
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, np.integer))
                                 or not 1 <= max_side <= 65536):
        raise ValueError(f"pack: 'max_side' must be an int in [1, 65536] or None, got {max_side!r}")
    workers = _default_workers() if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= 256:
        raise ValueError(f"pack: 'workers' must be an int in [1, 256], got {workers!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"pack: 'chunk_size' must be an int >= 1, got {chunk_size!r}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    n = len(labels)
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        targets = np.ascontiguousarray(targets, dtype=np.float32)
        if targets.ndim != 2 or len(targets) != n:
            raise ValueError(f"pack: targets must be (N, T) with N = {n}, got {targets.shape}")
    num_targets = 0 if targets is None else targets.shape[1]
    classes = [str(c) for c in (getattr(dataset, "classes", None) or [])]
    writer = _C.PackWriter(path, n, classes, _target_names(dataset, num_targets), int(max_side or 0))
    from tqdm.auto import tqdm
    try:
        with tqdm(total=n, unit="img", desc=f"pack {os.path.basename(path)}", disable=not progress) as bar:
            for a in range(0, n, chunk_size):
                b = min(n, a + chunk_size)
                chunk_paths = list(paths[a:b]) if paths is not None else None
                chunk_images = None if paths is not None else [images[i] for i in range(a, b)]
                writer.add(chunk_paths, chunk_images, labels[a:b], None if targets is None else targets[a:b],
                           int(workers), int(max_pixels))
                bar.update(b - a)
        writer.finish()
    finally:
        writer.abort()  # after finish() a no-op; otherwise removes the temporary file
    return path


class PackedDataset(Dataset):
    """A pack written by `pack()`, memory-mapped read-only. Behaves like the other datasets: `len`,
    `labels` (int64), `targets` (float32 (N, T) or None), `classes`, `target_names`, and `ds[i]` gives
    `(image, label[, targets])` with `image` a read-only uint8 (H, W, C) view of the mapping. `shapes`
    is the uint32 (N, 3) table of (H, W, C). The header, table and every offset are checked on
    opening; verify_crc=True also checks every image's CRC-32 (reads the whole file)."""

    def __init__(self, path, verify_crc: bool = False):
        self.path = os.fspath(path)
        self.pack_file = _C.PackFile(self.path, bool(verify_crc))
        f = self.pack_file
        self.labels = f.labels()
        self.targets = f.targets()
        self.shapes = f.shapes()
        self.classes = list(f.classes)
        self.target_names = list(f.target_names)
        self.max_side = f.max_side or None

    def __getitem__(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        i %= n
        image = self.pack_file.image(i)
        if self.targets is None:
            return image, int(self.labels[i])
        return image, int(self.labels[i]), self.targets[i]

    def verify(self) -> None:
        """Check every image's CRC-32; ValueError naming the file and the first corrupt sample."""
        self.pack_file.verify()

    def __repr__(self):
        return (f"PackedDataset('{self.path}', {len(self)} samples, {len(self.classes)} classes, "
                f"{0 if self.targets is None else self.targets.shape[1]} targets)")
