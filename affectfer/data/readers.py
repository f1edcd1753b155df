"""Readers for the annotation files of the public expression datasets, dataset concatenation, and
label remapping between their class orders.

    from affectfer.data import readers
    mtl = readers.ABAWMTLDataset("training_set_annotations.txt", "cropped_aligned")
    affectnet = readers.AffectNetDataset("training.csv", "Manually_Annotated_Images")      # cropped to the face box
    expw = readers.ExpWDataset("label/label.lst", "image/origin")
    both = readers.ConcatDataset([readers.remap_labels(expw, "expw", "affectnet", missing="drop"), affectnet])

Every reader is an affectfer.data Dataset: `labels` (the expression class, -1 where it is not
annotated), float32 `targets` with the regression and multi-label targets in a documented column
layout (invalid entries keep the dataset's own marker, so a batch carries its masks), `boxes` where
the file gives a face box (each sample is cropped to it before the transforms), and boolean masks.
Malformed lines raise ValueError naming the file and the line.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from ..metrics import EXPRESSIONS_8
from .datasets import FULL_IMAGE, Dataset, _parse_int, check_boxes

VA_INVALID = -5.0  # Aff-Wild2 / ABAW: valence and arousal of an unannotated frame
AU_INVALID = -1.0  # Aff-Wild2 / ABAW: an unannotated action unit (and expression label)
ABAW_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
AFFECTNET_VA_INVALID = -2.0  # AffectNet: valence/arousal of the "No-Face" images


def _read_lines(path, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: annotation file '{path}' not found")
    with open(path, newline="") as f:
        return f.read().splitlines()


def _number(text, where, name):
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} {text.strip()!r} is not a number") from None


def _image_path(image_root, name, where, check_files, missing, counter):
    """The image's path under image_root; None when it is absent and missing == "skip"."""
    path = name if os.path.isabs(name) else os.path.join(image_root, name)
    if check_files and not os.path.isfile(path):
        if missing == "error":
            raise FileNotFoundError(f"{where}: image '{path}' not found")
        counter[0] += 1
        return None
    return path


def _check_options(what, image_root, missing):
    if missing not in ("skip", "error"):
        raise ValueError(f"{what}: missing must be 'skip' or 'error', got {missing!r}")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"{what}: image root '{image_root}' is not a directory")


# ---- ABAW4 multi-task learning (s-Aff-Wild2) ----

class ABAWMTLDataset(Dataset):
    """The ABAW4 multi-task learning list file (Kollias, "ABAW: Learning from Synthetic Data & Multi-Task
    Learning Challenges", arXiv 2207.01138, section 3): a header line
    `image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26`, then one
    frame per line, the image path relative to `image_root` (`<video>/<frame>.jpg`). -5 marks an
    unannotated valence or arousal, -1 an unannotated expression or action unit.

    labels: the expression, 0-7 in ABAW's order (neutral, anger, disgust, fear, happiness, sadness,
        surprise, other), -1 when unannotated.
    targets: float32 (N, 14): valence, arousal, then the 12 AUs (0/1), invalid entries as in the file.
    Views: `expression` (N,) int64, `va` (N, 2) float32, `au` (N, 12) int64, and the masks
    `expression_mask` (N,), `va_mask` (N, 2), `au_mask` (N, 12), True where annotated (`mtl_targets`
    gives the same split for a loader batch). Frames with no annotation at all are left out
    (`num_unannotated`); frames whose image is absent are skipped and counted in `num_missing`
    (missing="error": FileNotFoundError)."""

    target_names = ["valence", "arousal", *ABAW_AUS]

    def __init__(self, list_file: str, image_root: str, missing: str = "skip", check_files: bool = True):
        _check_options("ABAWMTLDataset", image_root, missing)
        lines = _read_lines(list_file, "ABAWMTLDataset")
        expected = ["image", "valence", "arousal", "expression", *ABAW_AUS]
        header = [c.strip() for c in lines[0].split(",")] if lines else []
        if [c.lower() for c in header] != [c.lower() for c in expected]:
            raise ValueError(f"{list_file}:1: expected the header {','.join(expected)!r}, got {lines[0] if lines else ''!r}")
        self.image_root, self.classes = image_root, list(EXPRESSIONS_8)
        self.num_missing, self.num_unannotated = 0, 0
        missing_count = [0]
        paths, labels, targets = [], [], []
        for number, text in enumerate(lines[1:], start=2):
            if not text.strip():
                continue
            where = f"{list_file}:{number}"
            fields = text.split(",")
            if len(fields) != len(expected):
                raise ValueError(f"{where}: {len(fields)} columns, the header has {len(expected)}: {text!r}")
            va = [_number(fields[k], where, name) for k, name in ((1, "valence"), (2, "arousal"))]
            for v, name in zip(va, ("valence", "arousal")):
                if v != VA_INVALID and not -1.0 <= v <= 1.0:
                    raise ValueError(f"{where}: {name} {v} is outside [-1, 1] (and is not the invalid marker -5)")
            label = _parse_int(fields[3], where)
            if not -1 <= label < len(self.classes):
                raise ValueError(f"{where}: expression {label} is outside [0, {len(self.classes)}) (or -1 for none)")
            aus = []
            for name, value in zip(ABAW_AUS, fields[4:]):
                v = _number(value, where, name)
                if v not in (0.0, 1.0, AU_INVALID):
                    raise ValueError(f"{where}: {name} is {value.strip()!r}; it must be 0, 1 or -1 (not annotated)")
                aus.append(v)
            if label == -1 and all(v == VA_INVALID for v in va) and all(v == AU_INVALID for v in aus):
                self.num_unannotated += 1
                continue
            path = _image_path(image_root, fields[0].strip(), where, check_files, missing, missing_count)
            if path is None:
                continue
            paths.append(path)
            labels.append(label)
            targets.append(va + aus)
        self.num_missing = missing_count[0]
        if not paths:
            raise ValueError(f"ABAWMTLDataset: '{list_file}' has no annotated frames with images "
                             f"({self.num_missing} missing images, {self.num_unannotated} unannotated frames)")
        self.paths, self.labels, self.targets = paths, labels, np.asarray(targets, dtype=np.float32)
        self._finish("ABAWMTLDataset")

    expression = property(lambda self: self.labels)
    va = property(lambda self: self.targets[:, :2])
    au = property(lambda self: self.targets[:, 2:].astype(np.int64))
    expression_mask = property(lambda self: self.labels != -1)
    va_mask = property(lambda self: self.targets[:, :2] != VA_INVALID)
    au_mask = property(lambda self: self.targets[:, 2:] != AU_INVALID)


def mtl_targets(labels, targets) -> dict:
    """A batch of ABAWMTLDataset (labels (B,), targets (B, 14), affectfer Tensors or arrays) split into
    NumPy arrays: expression, va, au and their masks, as in the dataset's views."""
    labels, targets = np.asarray(labels), np.asarray(targets)
    if targets.ndim != 2 or targets.shape[1] != 2 + len(ABAW_AUS) or labels.shape != targets.shape[:1]:
        raise ValueError(f"mtl_targets: expected labels (B,) and targets (B, 14), got {labels.shape} and {targets.shape}")
    va, au = targets[:, :2], targets[:, 2:]
    return {"expression": labels.astype(np.int64), "va": va, "au": au.astype(np.int64), "expression_mask": labels != -1,
            "va_mask": va != VA_INVALID, "au_mask": au != AU_INVALID}


# ---- AffectNet ----

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                     "expression", "valence", "arousal")


class AffectNetDataset(Dataset):
    """AffectNet's annotation CSV (Mollahosseini et al., "AffectNet: A Database for Facial Expression,
    Valence, and Arousal Computing in the Wild", IEEE TAC 2017; the columns of its training.csv /
    validation.csv): subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks
    ("x1;y1;...;x68;y68"), expression, valence, arousal. A header row is optional (the released
    validation.csv has none); without one the columns are in that order.

    Expression codes: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt,
    8 none, 9 uncertain, 10 no-face. `num_classes=8` (default) keeps 0-7, 7 also drops contempt, as
    most papers do; the other rows are left out (`num_dropped`), unless `keep_unlabeled=True` keeps
    them with label -1. Valence/arousal are in [-1, 1], -2 for the no-face images.

    labels: the expression. targets: float32 (N, 138): valence, arousal, then the 68 landmarks as
    x1, y1, ..., x68, y68 (`landmarks` gives them as (N, 68, 2)); with `crop=True` (default) every
    image is cropped to its face box (`boxes`, from face_x/y/width/height) and the landmarks are moved
    into the crop's coordinates, otherwise both stay in the full image's pixels. `va_mask` (N,) is True
    where valence/arousal are annotated."""

    def __init__(self, csv_file: str, image_root: str, num_classes: int = 8, crop: bool = True,
                 keep_unlabeled: bool = False, missing: str = "skip", check_files: bool = True):
        _check_options("AffectNetDataset", image_root, missing)
        if num_classes not in (7, 8):
            raise ValueError(f"AffectNetDataset: num_classes must be 7 or 8 (with contempt), got {num_classes!r}")
        if not os.path.isfile(csv_file):
            raise FileNotFoundError(f"AffectNetDataset: annotation file '{csv_file}' not found")
        with open(csv_file, newline="") as f:
            rows = [(n + 1, r) for n, r in enumerate(csv.reader(f)) if r and any(c.strip() for c in r)]
        if rows and rows[0][1][0].strip() == AFFECTNET_COLUMNS[0]:
            header = [c.strip() for c in rows[0][1]]
            if header != list(AFFECTNET_COLUMNS):
                raise ValueError(f"{csv_file}:{rows[0][0]}: expected the header {','.join(AFFECTNET_COLUMNS)!r}, "
                                 f"got {','.join(header)!r}")
            rows = rows[1:]
        self.image_root, self.classes = image_root, list(ORDERS["affectnet"][:num_classes])
        self.num_dropped = 0
        missing_count = [0]
        paths, labels, targets, boxes, lines = [], [], [], [], []
        for number, r in rows:
            where = f"{csv_file}:{number}"
            if len(r) != len(AFFECTNET_COLUMNS):
                raise ValueError(f"{where}: {len(r)} columns, expected {len(AFFECTNET_COLUMNS)} "
                                 f"({','.join(AFFECTNET_COLUMNS)})")
            label = _parse_int(r[6], where)
            if not 0 <= label <= 10:
                raise ValueError(f"{where}: expression {label} is outside AffectNet's codes 0-10")
            if label >= num_classes:
                if not keep_unlabeled:
                    self.num_dropped += 1
                    continue
                label = -1
            x, y, w, h = (_number(r[k], where, AFFECTNET_COLUMNS[k]) for k in range(1, 5))
            points = [p for p in r[5].replace(",", ";").split(";") if p.strip()]
            if len(points) != 136:
                raise ValueError(f"{where}: facial_landmarks holds {len(points)} numbers, expected 136 (68 x, y pairs)")
            landmarks = [_number(p, where, "a landmark") for p in points]
            va = [_number(r[k], where, AFFECTNET_COLUMNS[k]) for k in (7, 8)]
            for v, name in zip(va, ("valence", "arousal")):
                if v != AFFECTNET_VA_INVALID and not -1.0 <= v <= 1.0:
                    raise ValueError(f"{where}: {name} {v} is outside [-1, 1] (and is not the invalid marker -2)")
            path = _image_path(image_root, r[0].strip(), where, check_files, missing, missing_count)
            if path is None:
                continue
            paths.append(path)
            labels.append(label)
            targets.append(va + landmarks)
            boxes.append([x, y, x + w, y + h])
            lines.append(number)
        self.num_missing = missing_count[0]
        if not paths:
            raise ValueError(f"AffectNetDataset: '{csv_file}' has no usable rows ({self.num_dropped} outside the "
                             f"{num_classes} classes, {self.num_missing} missing images)")
        self.paths, self.labels = paths, labels
        self.targets = np.asarray(targets, dtype=np.float32)
        face_boxes = check_boxes(boxes, lambda k: f"{csv_file}:{lines[k]}")
        if crop:
            self.boxes = face_boxes
            self.targets[:, 2::2] -= face_boxes[:, :1]
            self.targets[:, 3::2] -= face_boxes[:, 1:2]
        self.face_boxes = face_boxes
        self.target_names = ["valence", "arousal"] + [f"{a}{k}" for k in range(1, 69) for a in ("x", "y")]
        self._finish("AffectNetDataset")

    per_sample = Dataset.per_sample + ("face_boxes",)
    va = property(lambda self: self.targets[:, :2])
    va_mask = property(lambda self: (self.targets[:, :2] != AFFECTNET_VA_INVALID).all(1))
    landmarks = property(lambda self: self.targets[:, 2:].reshape(-1, 68, 2))


# ---- ExpW ----

class ExpWDataset(Dataset):
    """ExpW's `label.lst` (Zhang et al., "From Facial Expression Recognition to Interpersonal Relation
    Prediction", IJCV 2018; the dataset's README): one face per line, space-separated,
    `image_name face_id_in_image face_box_top face_box_left face_box_right face_box_bottom
    face_box_cofidence expression_label`, images in `image_root` (the `origin` folder). An image with
    several faces has several lines: each face is its own sample, cropped to its box (rows
    [top, bottom), columns [left, right), `boxes`) unless `crop=False`.

    Labels 0-6: angry, disgust, fear, happy, sad, surprise, neutral. `face_ids` and `confidence` (the
    detector's score) are kept per sample; `min_confidence` leaves out faces below it (`num_dropped`)."""

    per_sample = Dataset.per_sample + ("face_ids", "confidence", "face_boxes")

    def __init__(self, label_file: str, image_root: str, crop: bool = True, min_confidence: float | None = None,
                 missing: str = "skip", check_files: bool = True):
        _check_options("ExpWDataset", image_root, missing)
        lines = _read_lines(label_file, "ExpWDataset")
        self.image_root, self.classes = image_root, list(ORDERS["expw"])
        self.num_dropped = 0
        missing_count = [0]
        paths, labels, boxes, face_ids, confidence, numbers = [], [], [], [], [], []
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            where = f"{label_file}:{number}"
            fields = text.split()
            if len(fields) != 8:
                raise ValueError(f"{where}: {len(fields)} fields, expected 8 (image_name face_id_in_image face_box_top "
                                 f"face_box_left face_box_right face_box_bottom face_box_cofidence expression_label): "
                                 f"{text!r}")
            face_id = _parse_int(fields[1], where)
            top, left, right, bottom = (_number(fields[k], where, name) for k, name in
                                        ((2, "face_box_top"), (3, "face_box_left"), (4, "face_box_right"),
                                         (5, "face_box_bottom")))
            score = _number(fields[6], where, "face_box_cofidence")
            label = _parse_int(fields[7], where)
            if not 0 <= label < len(self.classes):
                raise ValueError(f"{where}: expression_label {label} is outside [0, {len(self.classes)})")
            if min_confidence is not None and score < min_confidence:
                self.num_dropped += 1
                continue
            path = _image_path(image_root, fields[0], where, check_files, missing, missing_count)
            if path is None:
                continue
            paths.append(path)
            labels.append(label)
            boxes.append([left, top, right, bottom])
            face_ids.append(face_id)
            confidence.append(score)
            numbers.append(number)
        self.num_missing = missing_count[0]
        if not paths:
            raise ValueError(f"ExpWDataset: '{label_file}' has no usable faces ({self.num_dropped} below "
                             f"min_confidence, {self.num_missing} missing images)")
        self.paths, self.labels = paths, labels
        self.face_boxes = check_boxes(boxes, lambda k: f"{label_file}:{numbers[k]}")
        self.boxes = self.face_boxes if crop else None
        self.face_ids = np.asarray(face_ids, dtype=np.int64)
        self.confidence = np.asarray(confidence, dtype=np.float32)
        self._finish("ExpWDataset")


# ---- class orders and remapping ----

# Each dataset's expression classes in its label order, with its own class names. Sources:
# - "abaw" (Aff-Wild2, ABAW expression and multi-task challenges): Kollias, arXiv 2207.01138 section 3 and
#   the challenge's annotation headers (Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other);
# - "affectnet": Mollahosseini et al., IEEE TAC 2017, Table 4, and the dataset's README (codes 0-7; 8-10 are
#   none, uncertain and no-face);
# - "expw": the ExpW README (Zhang et al., IJCV 2018): "0 angry 1 disgust 2 fear 3 happy 4 sad 5 surprise
#   6 neutral";
# - "fer2013": Goodfellow et al., arXiv 1307.0414, and fer2013.csv of the Kaggle challenge ("0=Angry,
#   1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral"). An image folder of FER2013 has the sorted
#   folder names instead: pass its `classes` as the order.
ORDERS = {
    "abaw": ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"),
    "affectnet": ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"),
    "expw": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    "fer2013": ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
}
ORDERS["affwild2"] = ORDERS["abaw"]

# The datasets name one emotion differently; matching goes through one name per emotion.
_SYNONYMS = {"angry": "anger", "happy": "happiness", "sad": "sadness", "surprised": "surprise",
             "disgusted": "disgust", "fearful": "fear", "scared": "fear", "neutrality": "neutral",
             "others": "other"}


def canonical_class(name) -> str:
    """The one spelling of an emotion name that matching uses (lower case; happy -> happiness, ...)."""
    key = str(name).strip().lower()
    return _SYNONYMS.get(key, key)


def _order(order, what) -> list:
    if isinstance(order, str):
        if order.lower() not in ORDERS:
            raise ValueError(f"remap: unknown {what} order {order!r}; use one of {sorted(ORDERS)} or a list of class names")
        return list(ORDERS[order.lower()])
    names = [str(c) for c in order]
    canon = [canonical_class(c) for c in names]
    if len(set(canon)) != len(canon):
        raise ValueError(f"remap: the {what} order {names} names an emotion twice")
    return names


def remap_table(from_order, to_order, missing="drop") -> np.ndarray:
    """int64 table t with t[k] = the position in `to_order` of class k of `from_order` (orders: a name in
    ORDERS or a list of class names; angry/anger, happy/happiness, sad/sadness name the same emotion).
    A class `to_order` lacks maps to `missing`: "drop" (-1 in the table) or a class index of `to_order`
    (e.g. ABAW's "other")."""
    source, target = _order(from_order, "from"), _order(to_order, "to")
    if missing != "drop":
        if isinstance(missing, bool) or not isinstance(missing, (int, np.integer)) or not 0 <= missing < len(target):
            raise ValueError(f"remap: missing must be 'drop' or a class index in [0, {len(target)}), got {missing!r}")
    position = {canonical_class(c): k for k, c in enumerate(target)}
    return np.array([position.get(canonical_class(c), -1 if missing == "drop" else int(missing)) for c in source],
                    dtype=np.int64)


def remap_labels(dataset, from_order, to_order, missing="drop"):
    """`dataset` with its labels moved from `from_order` to `to_order` (see remap_table) and `classes`
    set to `to_order`'s names. Samples of a class mapped to "drop" are left out; unannotated samples
    (label -1) stay. Returns a new dataset (paths, images, targets, boxes... subset alike)."""
    table = remap_table(from_order, to_order, missing)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if labels.size and labels.max() >= len(table):
        raise ValueError(f"remap_labels: label {int(labels.max())} is outside the from order's {len(table)} classes")
    new = np.where(labels >= 0, table[np.maximum(labels, 0)], -1)
    keep = np.flatnonzero((labels < 0) | (new >= 0))
    if keep.size == 0:
        raise ValueError("remap_labels: every sample belongs to a dropped class")
    return dataset.subset(keep, labels=new[keep], classes=_order(to_order, "to"))


class ConcatDataset(Dataset):
    """Datasets one after the other (torch.utils.data.ConcatDataset's indexing): sample i of the
    concatenation is sample i - offsets[k] of datasets[k]. Their classes must agree (bring them to one
    order first with remap_labels); their targets must have the same width, or all be absent. They
    must all be file lists (paths) or all in-memory arrays of one image shape; packs are not
    concatenated (concatenate the sources, then pack). Face boxes are kept; a dataset without boxes
    contributes whole images. `locate(i)` names the dataset and index a sample came from (subsets, e.g.
    after remap_labels, keep that record)."""

    per_sample = Dataset.per_sample + ("source_dataset", "source_index")

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: no datasets given")
        first = self.datasets[0]
        self.classes = list(first.classes)
        for k, ds in enumerate(self.datasets):
            if getattr(ds, "pack_file", None) is not None:
                raise TypeError(f"ConcatDataset: dataset {k} is a pack; concatenate the source datasets and pack the result")
            if [canonical_class(c) for c in ds.classes] != [canonical_class(c) for c in self.classes]:
                raise ValueError(f"ConcatDataset: dataset {k} has classes {list(ds.classes)}, dataset 0 has "
                                 f"{self.classes}; bring them to one order with remap_labels")
        with_paths = [getattr(ds, "paths", None) is not None for ds in self.datasets]
        if all(with_paths):
            self.paths = [p for ds in self.datasets for p in ds.paths]
        elif not any(with_paths):
            shapes = {ds.images.shape[1:] for ds in self.datasets}
            if len(shapes) != 1:
                raise ValueError(f"ConcatDataset: in-memory datasets have different image shapes {sorted(shapes)}")
            self.images = np.concatenate([ds.images for ds in self.datasets])
        else:
            raise TypeError("ConcatDataset: mixes file datasets (paths) with in-memory ones (images); the loader reads "
                            "one kind")
        widths = {None if ds.targets is None else ds.targets.shape[1] for ds in self.datasets}
        if len(widths) != 1:
            raise ValueError(f"ConcatDataset: the datasets' targets differ in width ({sorted(widths, key=str)}; None = no "
                             f"targets)")
        if widths != {None}:
            self.targets = np.concatenate([ds.targets for ds in self.datasets])
        if any(getattr(ds, "boxes", None) is not None for ds in self.datasets):
            whole = np.array([0, 0, FULL_IMAGE, FULL_IMAGE], dtype=np.int64)
            self.boxes = np.concatenate([ds.boxes if getattr(ds, "boxes", None) is not None
                                         else np.tile(whole, (len(ds), 1)) for ds in self.datasets])
        self.labels = np.concatenate([np.asarray(ds.labels, dtype=np.int64) for ds in self.datasets])
        self.offsets = np.cumsum([0] + [len(ds) for ds in self.datasets])
        self.source_dataset = np.repeat(np.arange(len(self.datasets)), np.diff(self.offsets))
        self.source_index = np.concatenate([np.arange(len(ds)) for ds in self.datasets])
        self._finish("ConcatDataset")

    def locate(self, i: int):
        """(dataset number, index inside it) of sample i."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        return int(self.source_dataset[i]), int(self.source_index[i])
