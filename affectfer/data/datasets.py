"""Datasets: where the images and labels are.

A dataset here is a description the C loader can read without calling back into Python: either a
list of image files (`paths`) or one uint8 array of images (`images`, N x H x W x C), with int64
`labels` (N,) and optional float32 `targets` (N, T) (valence/arousal, AUs, landmarks...). Indexing a
dataset (`ds[i]`) gives `(image, label)` or `(image, label, targets)` with image a uint8 HWC NumPy
array, for notebooks and tests; training goes through `affectfer.data.Loader`.

A dataset may also carry `boxes`, int64 (N, 4) face boxes (left, top, right, bottom) in pixels: each
sample is then cropped to rows [top, bottom) and columns [left, right) of its image, clamped to the
image, before any transform, by the loader's workers and by `ds[i]` alike (`crop_to_box`).
"""
from __future__ import annotations

import copy
import csv
import os

import numpy as np

from ..io import read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # the formats the decoder has (affectfer.io)


# The loader crops with the same rule in C (csrc/data/loader.c); a box edge this large reaches past any image
# (the decoder caps each side far below it), so (0, 0, FULL_IMAGE, FULL_IMAGE) keeps the whole image.
FULL_IMAGE = 2 ** 31 - 1


def crop_to_box(image: np.ndarray, box, name: str = "image") -> np.ndarray:
    """image[top:bottom, left:right] for box (left, top, right, bottom), clamped to the image; a box left
    empty by the clamp is a ValueError naming `name` (a file) and the box."""
    H, W = image.shape[:2]
    left, top, right, bottom = (int(v) for v in box)
    l, t, r, b = max(left, 0), max(top, 0), min(right, W), min(bottom, H)
    if r <= l or b <= t:
        raise ValueError(f"{name}: face box (left {left}, top {top}, right {right}, bottom {bottom}) is empty inside "
                         f"the {W}x{H} (WxH) image")
    return image[t:b, l:r]


def check_boxes(boxes, where) -> np.ndarray:
    """(N, 4) numbers (left, top, right, bottom) -> int64, rounded to the nearest pixel; a box with
    right <= left or bottom <= top is a ValueError naming `where(k)` (the file and line of box k)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(boxes).all():
        k = int(np.flatnonzero(~np.isfinite(boxes).all(1))[0])
        raise ValueError(f"{where(k)}: face box {boxes[k].tolist()} is not finite")
    boxes = np.rint(boxes).astype(np.int64)
    bad = np.flatnonzero((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]))
    if bad.size:
        k = int(bad[0])
        left, top, right, bottom = boxes[k].tolist()
        raise ValueError(f"{where(k)}: degenerate face box (left {left}, top {top}, right {right}, bottom {bottom}): "
                         f"it needs right > left and bottom > top")
    return boxes


class Dataset:
    paths: list | None = None
    images: np.ndarray | None = None
    labels: np.ndarray
    targets: np.ndarray | None = None
    boxes: np.ndarray | None = None
    classes: list
    # attributes holding one entry per sample, kept in step by subset(); subclasses add theirs
    per_sample = ("paths", "images", "labels", "targets", "boxes")

    def __len__(self):
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        i %= n
        if self.images is not None:
            image = self.images[i]
        else:
            image = read_image(self.paths[i])
        if self.boxes is not None:
            image = crop_to_box(image, self.boxes[i], self.paths[i] if self.paths is not None else f"sample {i}")
        if self.targets is None:
            return image, int(self.labels[i])
        return image, int(self.labels[i]), self.targets[i]

    def subset(self, index, labels=None, classes=None):
        """A shallow copy holding samples `index` (in that order) of every per-sample attribute, with
        `labels` and `classes` replaced when given (label remapping, affectfer.data.readers)."""
        if getattr(self, "pack_file", None) is not None:  # the loader reads a pack's samples by their position in it
            raise TypeError(f"subset: {type(self).__name__} is a pack; subset or remap the source dataset, then pack it")
        index = np.asarray(index, dtype=np.int64)
        out = copy.copy(self)
        for name in self.per_sample:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, np.ndarray):
                setattr(out, name, np.ascontiguousarray(value[index]))
            else:
                setattr(out, name, [value[k] for k in index])
        if labels is not None:
            out.labels = np.asarray(labels, dtype=np.int64)
        if classes is not None:
            out.classes = list(classes)
        out._finish(type(self).__name__)
        return out

    def _finish(self, what: str):
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int64)
        if len(self.labels) == 0:
            raise ValueError(f"{what}: the dataset is empty")
        if self.targets is not None:
            self.targets = np.ascontiguousarray(self.targets, dtype=np.float32)
            if self.targets.ndim != 2 or len(self.targets) != len(self.labels):
                raise ValueError(f"{what}: targets must be (N, T) with N = {len(self.labels)}, got {self.targets.shape}")
        if self.boxes is not None:
            self.boxes = np.ascontiguousarray(self.boxes, dtype=np.int64)
            if self.boxes.shape != (len(self.labels), 4):
                raise ValueError(f"{what}: boxes must be (N, 4) with N = {len(self.labels)}, got {self.boxes.shape}")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageFolder(Dataset):
    """`root/<class>/<image>`: one sub-folder per class; classes are the sorted folder names (label =
    position in that list), images of each class sorted by file name, like torchvision's ImageFolder.
    Files with other extensions than .jpg/.jpeg/.png are ignored; hidden folders too."""

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: '{root}' is not a directory")
        self.root = root
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise ValueError(f"ImageFolder: '{root}' has no class sub-folders")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        paths, labels = [], []
        for label, c in enumerate(self.classes):
            folder = os.path.join(root, c)
            for dirpath, dirnames, filenames in sorted(os.walk(folder, followlinks=True)):
                dirnames.sort()
                for f in sorted(filenames):
                    if _is_image(f):
                        paths.append(os.path.join(dirpath, f))
                        labels.append(label)
        if not paths:
            raise ValueError(f"ImageFolder: no images ({', '.join(IMAGE_EXTENSIONS)}) under '{root}'")
        self.paths, self.labels = paths, labels
        self._finish("ImageFolder")


def _parse_int(text: str, where: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"{where}: label {text.strip()!r} is not an integer") from None
        if v != int(v):
            raise ValueError(f"{where}: label {text.strip()!r} is not an integer") from None
        return int(v)


class CSVDataset(Dataset):
    """A list file with rows `path,label[,t1,t2,...]`: comma-separated, or tab-separated for `.tsv`
    files (or `delimiter=`). The extra columns become float32 `targets`. A header row is detected when
    the first row's label field is not a number (or say `header=True/False`). Relative paths are
    relative to `root` (default: the list file's folder). Labels must be integers in
    [0, num_classes); `num_classes` defaults to max label + 1 and `classes` to the header-less names
    '0', '1', .... `check_files=True` (default) fails at once on a missing image.

    `box_columns`: four header names holding a face box per row, (left, top, right, bottom) with
    `box_format="xyxy"` or (x, y, width, height) with "xywh"; each image is then cropped to its box
    before the transforms (see `crop_to_box`), and those columns are left out of `targets`."""

    def __init__(self, list_file: str, root: str | None = None, delimiter: str | None = None, header: bool | None = None,
                 num_classes: int | None = None, classes=None, check_files: bool = True, box_columns=None,
                 box_format: str = "xyxy"):
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"CSVDataset: list file '{list_file}' not found")
        if delimiter is None:
            delimiter = "\t" if list_file.lower().endswith(".tsv") else ","
        root = os.path.dirname(os.path.abspath(list_file)) if root is None else root
        with open(list_file, newline="") as f:
            rows = [(n + 1, r) for n, r in enumerate(csv.reader(f, delimiter=delimiter)) if r and any(c.strip() for c in r)]
        if rows and header is None:
            first = rows[0][1]
            try:
                float(first[1]) if len(first) > 1 else None
                header = len(first) < 2
            except ValueError:
                header = True
        self.columns = [c.strip() for c in rows[0][1]] if (rows and header) else None
        if header:
            rows = rows[1:]
        if not rows:
            raise ValueError(f"CSVDataset: '{list_file}' has no samples")
        width = len(rows[0][1])
        box_index = _box_columns(list_file, self.columns, box_columns, box_format)
        target_index = [k for k in range(2, width) if k not in box_index]
        paths, labels, targets, boxes = [], [], [], []
        for line, r in rows:
            where = f"{list_file}:{line}"
            if len(r) < 2:
                raise ValueError(f"{where}: expected 'path{delimiter}label[{delimiter}targets...]', got {delimiter.join(r)!r}")
            if len(r) != width:
                raise ValueError(f"{where}: {len(r)} columns, the first row has {width}")
            path = r[0].strip()
            path = path if os.path.isabs(path) else os.path.join(root, path)
            if check_files and not os.path.isfile(path):
                raise FileNotFoundError(f"{where}: image '{path}' not found")
            paths.append(path)
            labels.append(_parse_int(r[1], where))
            try:
                targets.append([float(r[k]) for k in target_index])
                boxes.append([float(r[k]) for k in box_index])
            except ValueError:
                raise ValueError(f"{where}: target and box columns must be numbers, got {r[2:]}") from None
        labels = np.asarray(labels, dtype=np.int64)
        if classes is not None:
            num_classes = len(classes)
        if num_classes is None:
            num_classes = int(labels.max()) + 1
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{list_file}:{rows[k][0]}: label {labels[k]} is outside [0, {num_classes})")
        self.root, self.paths, self.labels = root, paths, labels
        self.targets = np.asarray(targets, dtype=np.float32) if target_index else None
        if box_index:
            boxes = np.asarray(boxes, dtype=np.float64)
            if box_format == "xywh":
                boxes[:, 2:] += boxes[:, :2]
            self.boxes = check_boxes(boxes, lambda k: f"{list_file}:{rows[k][0]}")
        self.target_names = [self.columns[k] for k in target_index] if self.columns else None
        self.classes = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
        self._finish("CSVDataset")


def _box_columns(list_file, columns, names, box_format) -> list:
    """Positions of the four box columns `names` in the header `columns` ([] when names is None)."""
    if box_format not in ("xyxy", "xywh"):
        raise ValueError(f"CSVDataset: box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    if names is None:
        return []
    names = [str(n) for n in names]
    if len(names) != 4:
        order = "left, top, right, bottom" if box_format == "xyxy" else "x, y, width, height"
        raise ValueError(f"CSVDataset: box_columns must name 4 columns ({order}), got {names}")
    if columns is None:
        raise ValueError(f"CSVDataset: box_columns {names} need a header row in '{list_file}'")
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValueError(f"CSVDataset: box columns {missing} are not in the header of '{list_file}' ({columns})")
    index = [columns.index(n) for n in names]
    if min(index) < 2:
        raise ValueError(f"CSVDataset: box_columns {names} include the path or label column")
    return index


class ABAWDataset(Dataset):
    """Aff-Wild2 / ABAW annotation files: one text file per video (`<video>.txt`), a header line with the
    class names (expression) or column names (valence,arousal / AU names), then one line per frame;
    line k after the header belongs to frame k (1-based), stored at `<image_root>/<video>/<k:05d>.jpg`.

    task "expr": one integer label per line, -1 = unannotated (skipped). "va": float columns, -5 in
    any column = unannotated; "au": 0/1 columns, -1 in any column = unannotated; both become float32
    `targets` and labels are -1. Frames whose image file is absent (the face was not detected) are
    skipped and counted in `num_missing` unless `missing="error"`."""

    per_sample = Dataset.per_sample + ("videos",)

    def __init__(self, annotations, image_root: str, task: str = "expr", missing: str = "skip"):
        if task not in ("expr", "va", "au"):
            raise ValueError(f"ABAWDataset: task must be 'expr', 'va' or 'au', got {task!r}")
        if missing not in ("skip", "error"):
            raise ValueError(f"ABAWDataset: missing must be 'skip' or 'error', got {missing!r}")
        if isinstance(annotations, (str, os.PathLike)):
            if os.path.isdir(annotations):
                files = sorted(os.path.join(annotations, f) for f in os.listdir(annotations) if f.endswith(".txt"))
                if not files:
                    raise ValueError(f"ABAWDataset: no .txt annotation files in '{annotations}'")
            elif os.path.isfile(annotations):
                files = [annotations]
            else:
                raise FileNotFoundError(f"ABAWDataset: '{annotations}' is neither an annotation file nor a folder")
        else:
            files = list(annotations)
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"ABAWDataset: image root '{image_root}' is not a directory")
        self.image_root, self.task = image_root, task
        self.classes, self.num_missing = None, 0
        paths, labels, targets, videos = [], [], [], []
        for ann in files:
            if not os.path.isfile(ann):
                raise FileNotFoundError(f"ABAWDataset: annotation file '{ann}' not found")
            video = os.path.splitext(os.path.basename(ann))[0]
            with open(ann) as f:
                lines = f.read().splitlines()
            if not lines:
                raise ValueError(f"{ann}: empty annotation file (expected a header line)")
            names = [c.strip() for c in lines[0].split(",")]
            if self.classes is None:
                self.classes = names
            elif names != self.classes:
                raise ValueError(f"{ann}: header {names} differs from the first file's {self.classes}")
            for frame, text in enumerate(lines[1:], start=1):
                if not text.strip():
                    continue
                where = f"{ann}:{frame + 1}"
                fields = text.split(",")
                if task == "expr":
                    if len(fields) != 1:
                        raise ValueError(f"{where}: expected one label, got {text!r}")
                    label = _parse_int(fields[0], where)
                    if label == -1:
                        continue
                    if not 0 <= label < len(names):
                        raise ValueError(f"{where}: label {label} is outside [0, {len(names)}) ({len(names)} classes in the header)")
                    row = None
                else:
                    if len(fields) != len(names):
                        raise ValueError(f"{where}: {len(fields)} values, the header has {len(names)}")
                    try:
                        row = [float(v) for v in fields]
                    except ValueError:
                        raise ValueError(f"{where}: values must be numbers, got {text!r}") from None
                    if (task == "va" and any(v == -5 for v in row)) or (task == "au" and any(v == -1 for v in row)):
                        continue
                    label = -1
                path = os.path.join(image_root, video, f"{frame:05d}.jpg")
                if not os.path.isfile(path):
                    if missing == "error":
                        raise FileNotFoundError(f"{where}: frame image '{path}' not found")
                    self.num_missing += 1
                    continue
                paths.append(path)
                labels.append(label)
                videos.append(video)
                if row is not None:
                    targets.append(row)
        if not paths:
            raise ValueError(f"ABAWDataset: no annotated frames with images found ({self.num_missing} missing images)")
        self.paths, self.labels, self.videos = paths, labels, videos
        self.targets = np.asarray(targets, dtype=np.float32) if task != "expr" else None
        self._finish("ABAWDataset")


class ArrayDataset(Dataset):
    """Images already in memory: `images` uint8 (N, H, W, C) with C in {1, 3} (or (N, H, W) gray),
    `labels` (N,) integers, optional `targets` (N, T). The arrays are used without copying when they
    are already C-contiguous uint8."""

    def __init__(self, images, labels, targets=None, classes=None):
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"ArrayDataset: images must be uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[3] not in (1, 3):
            raise ValueError(f"ArrayDataset: images must be (N, H, W, C) with C in (1, 3), got {images.shape}")
        if images.shape[1] < 1 or images.shape[2] < 1:
            raise ValueError(f"ArrayDataset: images must not be empty (H and W >= 1), got {images.shape}")
        self.images = np.ascontiguousarray(images)
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"ArrayDataset: labels must be ({len(images)},), got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"ArrayDataset: labels must be integers, got {labels.dtype}")
        self.labels, self.targets = labels, targets
        self._finish("ArrayDataset")
        n_cls = len(classes) if classes is not None else int(self.labels.max()) + 1
        if self.labels.min() < -1 or self.labels.max() >= n_cls:
            raise ValueError(f"ArrayDataset: labels must be in [0, {n_cls}) (or -1 for none)")
        self.classes = list(classes) if classes is not None else [str(c) for c in range(n_cls)]
