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
from ..models.presets import preprocessing

# the models package's ImageNet preset (torchvision's pretrained-model preprocessing): the
# normalisation of every seed method that starts from ImageNet or ImageNet-style weights
IMAGENET_MEAN, IMAGENET_STD = preprocessing("imagenet").mean, preprocessing("imagenet").std



# ---------------------------------------------------------------------------------------- configs

@dataclasses.dataclass(frozen=True)
class Check:
    """A condition on a config value, named by `text` ("must be <text>"): `check(name, value)` raises
    ValueError naming the field and the value. None (an optional field left unset) passes."""
    test: typing.Callable
    text: str

    def __call__(self, name: str, value):
        if value is not None and not self.test(value):
            raise ValueError(f"{name} must be {self.text}, got {value!r}")


AT_LEAST_1 = Check(lambda v: v >= 1, ">= 1")  # sizes, counts, steps
AT_LEAST_0 = Check(lambda v: v >= 0, ">= 0")  # epochs (0 = evaluate only), rates, decays
ABOVE_0 = Check(lambda v: v > 0, "> 0")  # distribution parameters
UNIT = Check(lambda v: 0.0 <= v <= 1.0, "in [0, 1]")  # probabilities, thresholds, fractions
SHARE = Check(lambda v: 0.0 < v <= 1.0, "in (0, 1]")  # a non-empty share of the data
SPLIT = Check(lambda v: 0.0 < v < 1.0, "in (0, 1)")  # a split that leaves both sides non-empty


def one_of(*choices) -> Check:
    """The value is one of `choices`."""
    return Check(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def param(default, help: str, check: Check | None = None):
    """A Config field with its documentation (and source) attached, and optionally the Check its
    value must pass (RecipeConfig.validate runs it): `train --help-config` prints both."""
    metadata = {"help": help}
    if check is not None:
        metadata["check"] = check
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class RecipeConfig:
    """Base of every recipe's Config dataclass: the run settings every recipe shares, and
    `validate()`, which runs each field's Check. A recipe with conditions between fields overrides
    validate() and calls super().validate() first."""

    val_fraction: float = param(0.2, "with --data and no train/val folders: the stratified validation share",
                                check=SPLIT)
    workers: int = param(2, "loader threads", check=AT_LEAST_1)

    def validate(self):
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            if check is not None:
                check(f.name, getattr(self, f.name))


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
    """One block per field: name, type, default, and its help (what it is and where it comes from);
    the recipe's own fields first, the run settings shared by every recipe last."""
    kinds = _field_types(config_cls)
    instance = config_cls()
    lines = []
    shared = {f.name for f in dataclasses.fields(RecipeConfig)}
    fields = dataclasses.fields(config_cls)
    for f in [f for f in fields if f.name not in shared] + [f for f in fields if f.name in shared]:
        default = getattr(instance, f.name)
        check = f.metadata.get("check")
        rule = f"; must be {check.text}" if check is not None else ""
        lines.append(f"  {f.name} ({_type_name(kinds[f.name])}, default {default!r}{rule})")
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
    recipe does not have is a ValueError naming it when samples carry it (a reader's fixed class list
    may name classes the data never uses). Returns a shallow copy (files are not reread)."""
    classes = tuple(classes)
    names = [str(c) for c in getattr(dataset, "classes", None) or []]
    labels = np.asarray(dataset.labels, dtype=np.int64)
    if names and all(n.isdigit() for n in names):
        if len(names) > len(classes) or (labels.size and labels.max() >= len(classes)):
            raise ValueError(f"the data has {len(names)} numbered classes; this recipe has {len(classes)}: {classes}")
        remap = np.arange(len(names), dtype=np.int64)
    else:
        wanted = {canonical_class(c): i for i, c in enumerate(classes)}
        used = set(labels[labels >= 0].tolist())
        unknown = [n for k, n in enumerate(names) if canonical_class(n) not in wanted and k in used]
        if unknown:
            raise ValueError(f"the data's classes {unknown} are not among this recipe's classes {list(classes)}")
        # a class the data lists (a reader's fixed order) but never uses needs no place in the recipe's
        remap = np.array([wanted.get(canonical_class(n), -1) for n in names], dtype=np.int64)
    new = np.where(labels >= 0, remap[np.clip(labels, 0, None)] if remap.size else labels, labels)
    return dataset.subset(np.arange(len(labels)), labels=new, classes=classes)


def split(dataset, val_fraction: float, seed: int = 0):
    """(train, val): a stratified split, `val_fraction` of every class to validation, drawn with `seed`."""
    SPLIT("val_fraction", val_fraction)
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


# where each reader's images lie beside its list file, in the datasets' released layouts: ExpW
# data/label/label.lst with data/image/origin/, AffectNet Manually_Annotated_file_lists/*.csv with
# Manually_Annotated_Images/, the ABAW4 MTL annotation file with cropped_aligned/
_IMAGE_FOLDERS = {"expw": ("image/origin", "origin", "image"), "affectnet": ("Manually_Annotated_Images",),
                  "abaw_mtl": ("cropped_aligned",)}


def list_format(path) -> str:
    """What the list file `path` is, from its first line: "abaw_mtl" (the ABAW4 MTL header
    image,valence,arousal,expression,AU1..), "affectnet" (AffectNet's header, or its 9 columns with 136
    ';'-separated landmark numbers), "expw" (ExpW's 8 space-separated fields) or "csv" (path,label[,...])."""
    import csv

    with open(path, newline="") as f:
        first = f.readline().strip()
    cells = [c.strip() for c in next(csv.reader([first]), [])] if first else []
    lowered = [c.lower() for c in cells]
    if lowered[:4] == ["image", "valence", "arousal", "expression"]:
        return "abaw_mtl"
    if lowered[:1] == ["subdirectory_filepath"] or (len(cells) == 9 and cells[5].count(";") == 135):
        return "affectnet"
    if "," not in first and len(first.split()) == 8:
        return "expw"
    return "csv"


def _image_root(list_file, kind) -> str:
    """The images' folder of a reader's list file: its released layout's folder beside the list file
    or one level up (see _IMAGE_FOLDERS), else the list file's own folder."""
    here = os.path.dirname(os.path.abspath(list_file))
    for base in (here, os.path.dirname(here)):
        for name in _IMAGE_FOLDERS[kind]:
            if os.path.isdir(os.path.join(base, name)):
                return os.path.join(base, name)
    return here


def _read(source, classes=()):
    """A dataset from a path (an image folder, an ABAW4 MTL list, an AffectNet CSV, an ExpW label.lst
    or a CSV/TSV list; see list_format) or a dataset object as it is. AffectNet keeps contempt only
    when the recipe has it."""
    from ..data import CSVDataset, ImageFolder
    from ..data.readers import ABAWMTLDataset, AffectNetDataset, ExpWDataset

    if not isinstance(source, (str, os.PathLike)):
        if getattr(source, "labels", None) is None:
            raise TypeError(f"data must be a path or a dataset with labels, got {type(source).__name__}")
        return source
    path = os.fspath(source)
    if os.path.isdir(path):
        return ImageFolder(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data: '{path}' is neither an image folder nor a list file")
    kind = list_format(path)
    if kind == "csv":
        return CSVDataset(path)
    root = _image_root(path, kind)
    if kind == "abaw_mtl":
        return ABAWMTLDataset(path, root)
    if kind == "affectnet":
        with_contempt = "contempt" in {canonical_class(c) for c in classes}
        return AffectNetDataset(path, root, num_classes=8 if with_contempt else 7)
    return ExpWDataset(path, root)


def _train_val_folders(path):
    for val_name in ("val", "validation", "valid", "test"):
        if os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, val_name)):
            return os.path.join(path, "train"), os.path.join(path, val_name)
    return None


def load_data(data, classes, val_fraction: float = 0.2, seed: int = 0) -> RecipeData:
    """The user's data in the recipe's class order: a path (an image folder with train/ and val/
    sub-folders, or one image folder or list file split by `val_fraction`), a (train, val) pair or a
    dict with "train" and "val" (paths or datasets), or one dataset (split). A list file is an ABAW4
    MTL annotation file, an AffectNet CSV, an ExpW label.lst (each read by affectfer.data.readers,
    images from the dataset's usual folder beside it) or a CSV/TSV list `path,label[,targets...]`."""
    if isinstance(data, dict):
        missing = {"train", "val"} - set(data)
        if missing:
            raise ValueError(f"data dict needs 'train' and 'val', missing {sorted(missing)}")
        train, val = _read(data["train"], classes), _read(data["val"], classes)
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"data must be a (train, val) pair, got {len(data)} items")
        train, val = _read(data[0], classes), _read(data[1], classes)
    else:
        folders = _train_val_folders(os.fspath(data)) if isinstance(data, (str, os.PathLike)) and os.path.isdir(data) else None
        if folders is not None:
            train, val = _read(folders[0], classes), _read(folders[1], classes)
        else:
            train, val = split(_read(data, classes), val_fraction, seed)
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

    AT_LEAST_1("num_members", num_members)
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


# what a checkpoint's config must hold for `python -m affectfer predict` / `eval` (affectfer.cli)
INFERENCE_KEYS = ("model", "num_classes", "classes", "image_size")


def save_model(out, name: str, model, config: dict, recipe_config=None) -> str:
    """`out/<name>.safetensors` with the model config predict/eval read: "model" (a models.create
    name), "num_classes", "classes", "image_size", and optionally "model_kwargs" (create's keyword
    arguments), "mean"/"std", "resize" (a square resize before a centre crop to image_size),
    "antialias" (False: a plain bilinear resize), "input" ("rgb" or "sobel") and "output_index"
    (the logits among several outputs). A model that no create call builds passes the run's Config
    as `recipe_config`: the checkpoint then names the recipe, whose `inference_model(cfg,
    saved_config)` rebuilds it (see inference_model)."""
    from .. import checkpoint

    if recipe_config is not None:
        config = dict(config, recipe=type(recipe_config).__module__.rsplit(".", 1)[-1],
                      recipe_config=config_dict(recipe_config))
    missing = [k for k in INFERENCE_KEYS if k not in config]
    if missing:
        raise ValueError(f"save_model: the checkpoint config lacks {missing}, which predict/eval need")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name + ".safetensors")
    checkpoint.save(model, path, config=config)
    return path


def inference_model(config: dict):
    """The (untrained) model a checkpoint config of save_model describes, ready for its weights: the
    recipe's own `inference_model(Config, config)` when the config names a recipe, otherwise
    models.create(config["model"], num_classes, **model_kwargs)."""
    from .. import models
    from . import get

    if "recipe" in config:
        module = get(config["recipe"])
        if not callable(getattr(module, "inference_model", None)):
            raise ValueError(f"recipe {config['recipe']!r} does not rebuild models from checkpoints")
        return module.inference_model(apply_overrides(module.Config(), config.get("recipe_config") or {}), config)
    return models.create(config["model"], num_classes=int(config["num_classes"]), **config.get("model_kwargs", {}))


def write_results(out, config, results: dict) -> None:
    """config.json and metrics.json in `out` (nothing when out is None)."""
    if out is None:
        return
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config_dict(config), f, indent=1)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(results, f, indent=1, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
