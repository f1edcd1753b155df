"""What two or more recipes share: config fields with their sources, `--set key=value` overrides,
the data (a user's folder or list, or the synthetic demo faces) in the recipe's class order, loaders
with the recipe's transforms and sampler, bagging with soft voting, and the files a run writes."""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing

import numpy as np

from ..data.readers import canonical_class

# ImageNet channel statistics (torchvision's pretrained-model preprocessing), the normalisation of
# every seed method that starts from ImageNet or ImageNet-style weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



# ---------------------------------------------------------------------------------------- configs

def param(default, help: str):
    """A Config field with its documentation (and source) attached: `train --help-config` prints it."""
    return dataclasses.field(default=default, metadata={"help": help})


def _field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def _convert(text: str, kind, key: str):
    """`text` as a value of annotation `kind` (bool, int, float, str, tuples, X | None)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "") and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        errors = []
        for a in rest:
            try:
                return _convert(text, a, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if len(errors) == 1 else f"{key}={text!r}: not one of {rest}")
    if origin is tuple or kind is tuple:
        items = [t for t in (s.strip() for s in text.strip("()[] ").split(",")) if t]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(t, args[0], key) for t in items)
        if args and len(items) != len(args):
            raise ValueError(f"{key}={text!r}: expected {len(args)} comma-separated values")
        return tuple(_convert(t, a, key) for t, a in zip(items, args)) if args else tuple(items)
    if kind is bool:
        value = text.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}={text!r}: expected a boolean (true/false, yes/no, 1/0)")
    if kind is int:
        try:
            return int(text.strip())
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = None
            if value is not None and value.is_integer():
                return int(value)
            raise ValueError(f"{key}={text!r}: expected an integer") from None
    if kind is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(f"{key}={text!r}: expected a number") from None
    if kind is str:
        return text
    raise TypeError(f"{key}: fields of type {kind} cannot be set from text")


def _check_value(value, kind, key: str):
    """A value given as a Python object (recipes.config(name, key=value)): converted when it is text,
    checked otherwise."""
    if isinstance(value, str) and kind is not str:
        return _convert(value, kind, key)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _check_value(value, a, key)
                except (TypeError, ValueError):
                    continue
        raise ValueError(f"{key}={value!r}: expected one of {args}")
    if origin is tuple or kind is tuple:
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{key}={value!r}: expected a sequence")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(v, args[0], key) for v in value)
        if args and len(value) != len(args):
            raise ValueError(f"{key}={value!r}: expected {len(args)} values")
        return tuple(_check_value(v, a, key) for v, a in zip(value, args)) if args else tuple(value)
    if kind is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError(f"{key}={value!r}: expected a boolean")
    if kind is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        raise ValueError(f"{key}={value!r}: expected an integer")
    if kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{key}={value!r}: expected a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key}={value!r}: expected a string")
    return value


def parse_overrides(overrides) -> dict:
    """"key=value" strings (one, or an iterable of them) or a mapping -> a dict (values still text for
    strings). ValueError naming the item without '='."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    result = {}
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        result[key.strip()] = value
    return result


def apply_overrides(config, overrides):
    """A copy of the dataclass `config` with `overrides` ("key=value" strings or a mapping) applied;
    text is converted to each field's type. ValueError for an unknown key (the known ones are listed)
    or a value of the wrong type."""
    items = parse_overrides(overrides)
    if not items:
        return config
    kinds = _field_types(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in items.items():
        if key not in names:
            raise ValueError(f"unknown config key {key!r} for {type(config).__module__.rsplit('.', 1)[-1]}; "
                             f"keys: {', '.join(names)}")
        changes[key] = _check_value(value, kinds[key], key)
    new = dataclasses.replace(config, **changes)
    validate = getattr(new, "validate", None)
    if validate is not None:
        validate()
    return new


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) if typing.get_origin(kind) is None else str(kind).replace("typing.", "")


def describe_config(config_cls) -> str:
    """One block per field: name, type, default, and its help (what it is and where it comes from)."""
    kinds = _field_types(config_cls)
    instance = config_cls()
    lines = []
    for f in dataclasses.fields(config_cls):
        default = getattr(instance, f.name)
        lines.append(f"  {f.name} ({_type_name(kinds[f.name])}, default {default!r})")
        help_text = f.metadata.get("help")
        if help_text:
            lines.append(f"      {help_text}")
    return "\n".join(lines)


def config_dict(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


# ------------------------------------------------------------------------------------------- data

@dataclasses.dataclass
class RecipeData:
    """A recipe's data: training and validation datasets whose labels index `classes`."""
    train: object
    val: object
    classes: tuple


def align_classes(dataset, classes):
    """`dataset` with its labels re-indexed into `classes` (the recipe's fixed order).

    Named classes (image folders sort theirs alphabetically) are matched by name, case-insensitive,
    with the common spellings (happy, sad, angry...) mapped; numeric class names ('0', '1', ..., a
    CSV list without names) are taken as indices into `classes` already. A class of the dataset the
    recipe does not have is a ValueError naming it. Returns a shallow copy (files are not reread)."""
    classes = tuple(classes)
    names = [str(c) for c in getattr(dataset, "classes", None) or []]
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if names and all(n.isdigit() for n in names):
        if len(names) > len(classes) or (labels.size and labels.max() >= len(classes)):
            raise ValueError(f"the data has {len(names)} numbered classes; this recipe has {len(classes)}: {classes}")
        remap = np.arange(len(names), dtype=np.int64)
    else:
        wanted = {canonical_class(c): i for i, c in enumerate(classes)}
        unknown = [n for n in names if canonical_class(n) not in wanted]
        if unknown:
            raise ValueError(f"the data's classes {unknown} are not among this recipe's classes {list(classes)}")
        remap = np.array([wanted[canonical_class(n)] for n in names], dtype=np.int64)
    new = np.where(labels >= 0, remap[np.clip(labels, 0, None)] if remap.size else labels, labels)
    return dataset.subset(np.arange(len(labels)), labels=new, classes=classes)


def split(dataset, val_fraction: float, seed: int = 0):
    """(train, val): a stratified split, `val_fraction` of every class to validation, drawn with `seed`."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = np.asarray(dataset.labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        val.extend(members[:int(round(val_fraction * len(members)))].tolist())
    is_val = np.zeros(len(labels), bool)
    is_val[val] = True
    if is_val.all() or not is_val.any():
        raise ValueError(f"val_fraction {val_fraction} of {len(labels)} samples leaves an empty split")
    return dataset.subset(np.flatnonzero(~is_val)), dataset.subset(np.flatnonzero(is_val))


def _read(source):
    """A dataset from a path (image folder or CSV/TSV list) or a dataset object as it is."""
    from ..data import CSVDataset, ImageFolder

    if not isinstance(source, (str, os.PathLike)):
        if getattr(source, "labels", None) is None:
            raise TypeError(f"data must be a path or a dataset with labels, got {type(source).__name__}")
        return source
    path = os.fspath(source)
    if os.path.isdir(path):
        return ImageFolder(path)
    if os.path.isfile(path):
        return CSVDataset(path)
    raise FileNotFoundError(f"data: '{path}' is neither an image folder nor a list file")


def _train_val_folders(path):
    for val_name in ("val", "validation", "valid", "test"):
        if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, val_name)):
            return os.path.join(path, "train"), os.path.join(path, val_name)
    return None


def load_data(data, classes, val_fraction: float = 0.2, seed: int = 0) -> RecipeData:
    """The user's data in the recipe's class order: a path (an image folder with train/ and val/
    sub-folders, or one image folder or list file split by `val_fraction`), a (train, val) pair or a
    dict with "train" and "val" (paths or datasets), or one dataset (split)."""
    if isinstance(data, dict):
        missing = {"train", "val"} - set(data)
        if missing:
            raise ValueError(f"data dict needs 'train' and 'val', missing {sorted(missing)}")
        train, val = _read(data["train"]), _read(data["val"])
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be a (train, val) pair, got {len(data)} items")
        train, val = _read(data[0]), _read(data[1])
    else:
        folders = _train_val_folders(os.fspath(data)) if isinstance(data, (str, os.PathLike)) and os.path.isdir(data) else None
        if folders is not None:
            train, val = _read(folders[0]), _read(folders[1])
        else:
            train, val = split(_read(data), val_fraction, seed)
    return RecipeData(align_classes(train, classes), align_classes(val, classes), tuple(classes))


# the synthetic faces' per-face targets, by name: (attribute, columns)
_SYNTHETIC_TARGETS = {"va": ("valence_arousal", 2), "aus": ("aus", 12), "landmarks": ("landmarks", 136),
                      "hands": ("hands", 1)}


def synthetic_data(classes, train_size: int, val_size: int, image_size: int, seed: int = 0, targets=(),
                   balanced_train: bool = False, train_hands=None, val_hands=None) -> RecipeData:
    """The embedded synthetic faces (affectfer.datasets.synthetic_faces) as a RecipeData in the
    recipe's class order. Their six classes must all be in `classes`; classes they do not draw
    (neutral, contempt, other) stay empty. `targets` names the extra per-face targets to attach, in
    order, as float32 columns: "va" (valence, arousal), "aus" (12 AUs), "landmarks" (68 x 2,
    flattened), "hands". `train_hands`/`val_hands` are synthetic_faces' hand_probability per split."""
    from ..data import ArrayDataset
    from ..datasets import CLASSES, synthetic_faces

    unknown = [n for n in targets if n not in _SYNTHETIC_TARGETS]
    if unknown:
        raise ValueError(f"unknown synthetic targets {unknown}; known: {sorted(_SYNTHETIC_TARGETS)}")
    wanted = {canonical_class(c): i for i, c in enumerate(classes)}
    missing = [c for c in CLASSES if c not in wanted]
    if missing:
        raise ValueError(f"the synthetic faces' classes {missing} are not among the recipe's classes {list(classes)}")
    remap = np.array([wanted[c] for c in CLASSES], dtype=np.int64)

    def make(n, s, balanced, hands):
        faces = synthetic_faces(n, image_size, seed=s, balanced=balanced, hand_probability=hands)
        columns = [np.asarray(getattr(faces, _SYNTHETIC_TARGETS[t][0]), np.float32).reshape(len(faces), -1)
                   for t in targets]
        ds = ArrayDataset(faces.images, remap[faces.labels], np.concatenate(columns, 1) if columns else None,
                          classes=list(classes))
        ds.hands = faces.hands
        return ds

    return RecipeData(make(train_size, seed, balanced_train, train_hands), make(val_size, seed + 1, True, val_hands),
                      tuple(classes))


def class_counts(labels, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels[labels >= 0], minlength=num_classes)[:num_classes]


# ---------------------------------------------------------------------------------------- loaders

SAMPLERS = ("shuffle", "weighted", "oversample", "sequential")


def make_sampler(kind: str, labels, num_classes: int, seed: int = 0):
    """"shuffle" (a permutation per epoch), "weighted" (inverse class frequency draws with
    replacement, torch's WeightedRandomSampler), "oversample" (every class filled up to the largest,
    HUST-ANT's class-balanced oversampling) or "sequential"."""
    from ..data import ClassBalancedOversampler, RandomSampler, SequentialSampler, WeightedRandomSampler

    if kind == "shuffle":
        return RandomSampler(len(labels), seed=seed)
    if kind == "weighted":
        return WeightedRandomSampler.from_labels(labels, num_classes=num_classes, seed=seed)
    if kind == "oversample":
        return ClassBalancedOversampler(labels, num_classes=num_classes, seed=seed)
    if kind == "sequential":
        return SequentialSampler(len(labels))
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")


def make_loaders(data: RecipeData, batch_size: int, train_transform, eval_transform, sampler="shuffle",
                 workers: int = 2, seed: int = 0, eval_batch_size: int = 128, augment_copies=None):
    """(train loader, validation loader). `sampler` is a kind for make_sampler or a sampler object;
    the training loader drops its last partial batch (BatchNorm needs more than one sample)."""
    from ..data import Loader

    if isinstance(sampler, str):
        sampler = make_sampler(sampler, data.train.labels, len(data.classes), seed)
    train = Loader(data.train, batch_size=min(batch_size, len(sampler)), sampler=sampler, transform=train_transform,
                   augment_copies=augment_copies, workers=workers, seed=seed, drop_last=True)
    val = Loader(data.val, batch_size=eval_batch_size, transform=eval_transform, workers=workers, seed=seed)
    return train, val


# --------------------------------------------------------------------------- bagging, soft voting

def bagging(num_members: int, fraction: float, num_samples: int, seed: int, train_member, output_index: int = 0):
    """A bagging ensemble: member k is `train_member(k, sampler)` trained on the sampler's subset
    (round(fraction * num_samples) distinct samples, affectfer.data.BaggingSampler(model=k)); the
    members' softmax probabilities are averaged (SoftVotingEnsemble). Returns the ensemble."""
    from ..data import BaggingSampler
    from ..models import SoftVotingEnsemble

    if num_members < 1:
        raise ValueError(f"bagging needs num_members >= 1, got {num_members}")
    members = [train_member(k, BaggingSampler(num_samples, fraction=fraction, model=k, seed=seed))
               for k in range(num_members)]
    return SoftVotingEnsemble(members, output_index=output_index)


def ensemble_probabilities(ensemble, loader):
    """(probabilities (N, C), labels (N,)) of a SoftVotingEnsemble over a loader (its output is
    already probabilities, so train.predict's softmax must not be applied again)."""
    from ..train import predict_outputs

    outputs, targets = predict_outputs(ensemble, loader)
    return outputs[0], targets[0]


# ---------------------------------------------------------------------------------------- results

def classification_metrics(labels, pred, classes) -> dict:
    """macro F1 over every class of the recipe (absent classes count 0, the ABAW rule), accuracy and
    the per-class F1."""
    from .. import metrics

    C = len(classes)
    return {"macro_f1": float(metrics.macro_f1(labels, pred, C)), "accuracy": float(metrics.accuracy(labels, pred)),
            "f1_per_class": {c: float(v) for c, v in zip(classes, metrics.f1_per_class(labels, pred, C))}}


def save_model(out, name: str, model, config: dict) -> str:
    """`out/<name>.safetensors` with the model config predict/eval read (affectfer.cli)."""
    from .. import checkpoint

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name + ".safetensors")
    checkpoint.save(model, path, config=config)
    return path


def write_results(out, config, results: dict) -> None:
    """config.json and metrics.json in `out` (nothing when out is None)."""
    if out is None:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_dict(config), f, indent=1)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(results, f, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
