"""`python -m affectfer <command>`.

train: a seed paper's recipe (affectfer.recipes) on a folder or list of faces, or on the synthetic
faces: `train --recipe NAME [--data PATH] [--out DIR] [--set key=value ...] [--tiny]`; `train --list`
lists the recipes, `train --recipe NAME --help-config` their config fields with defaults and sources.
`demo --recipe NAME` runs a recipe at its tiny settings on the synthetic faces.
demo: the hand-assisted FER method end to end on the embedded synthetic faces, in the method's
setting: the expression training faces have no hands (as the ABAW synthetic training set), while
fearful validation faces often have a hand over the face that hides the expression's cues. An
expression ResNet-18 (trained with weighted sampling and RandAugment, then fine-tuned with its first
80% of residual blocks frozen, Adam lr 5e-5, wd 1e-4, as the method does after pretraining), a hand
detector ResNet-18 on Sobel edge maps trained on its own labelled split, and the rule
`if hand and expr != happiness: fear else expr`, scored by macro F1 over the six classes before and
after the rule, per class, with both confusion matrices.
info: what this build has (threads, CUDA, BLAS).
convert-weights: a torch `.pth` (read without torch or pickle code), a VGGFace2 pickle or a
safetensors file to a safetensors file (see affectfer.weights).
predict: per-class probabilities of a trained checkpoint for every image of a folder, as CSV.
eval: a checkpoint's per-class report, macro F1 and accuracy on an image folder (one sub-folder per class).
Both take several --checkpoint (an ensemble recipe's members): the mean of their probabilities.

A checkpoint that predict/eval read carries its model config (affectfer.checkpoint.save(...,
config=...)): "model" (a models.create name), "num_classes", "classes", "image_size", and optionally
"model_kwargs", "mean"/"std" (Normalize), "resize" (resize, then centre-crop to image_size),
"antialias" (false: the resize does not low-pass, as the recipe's training did not), "input"
("rgb" or "sobel"), "output_index" (the logits among a multi-output model's outputs), or "recipe"
with "recipe_config" (the recipe rebuilds the model). Every recipe's checkpoints carry them
(affectfer.recipes._common.save_model).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _build_parser():
    parser = argparse.ArgumentParser(prog="python -m affectfer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train and evaluate the hand-assisted method on the embedded synthetic faces")
    demo.add_argument("--train-size", type=int, default=1200,
                      help="synthetic expression training faces, imbalanced and without hands (default: %(default)s)")
    demo.add_argument("--val-size", type=int, default=360,
                      help="synthetic validation faces, balanced, a hand on half the fearful ones (default: "
                           "%(default)s)")
    demo.add_argument("--image-size", type=int, default=48, help="face side in pixels (default: %(default)s)")
    demo.add_argument("--epochs", type=int, default=6,
                      help="expression model epochs before freezing (default: %(default)s)")
    demo.add_argument("--finetune-epochs", type=int, default=2,
                      help="epochs with the first 80%% of blocks frozen (default: %(default)s)")
    demo.add_argument("--hand-epochs", type=int, default=3, help="hand detector epochs (default: %(default)s)")
    demo.add_argument("--batch-size", type=int, default=32, help="batch size of every stage (default: %(default)s)")
    demo.add_argument("--workers", type=int, default=2, help="loader threads (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the faces and of every random draw (default: %(default)s)")
    demo.add_argument("--out", default="demo-output", help="folder for checkpoints, report and plots")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--recipe", help="run this recipe (see `train --list`) at its tiny settings on the synthetic "
                                       "faces instead of the hand-assisted demo; the other options then do not apply")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="with --recipe: change a config field of the tiny settings (repeatable)")
    train = sub.add_parser("train", help="train a seed paper's recipe (affectfer.recipes)",
                           description="Train and evaluate a recipe: a seed paper's method with its hyper-parameters. "
                                       "Without --data it trains on the embedded synthetic faces.",
                           epilog="Data: an image folder with one sub-folder per class (with train/ and val/ "
                                  "sub-folders, or split by the config's val_fraction), a CSV list "
                                  "'path,label[,targets...]', an ABAW4 MTL annotation file (images in "
                                  "cropped_aligned/), an AffectNet CSV (images in Manually_Annotated_Images/) or an "
                                  "ExpW label.lst (images in image/origin/); those folders are looked up beside the "
                                  "list or one level up. Classes are matched to the recipe's classes by name. "
                                  "`--recipe NAME --help-config` lists every config field, its default and its "
                                  "source.")
    train.add_argument("--recipe", help="the recipe's name (see --list)")
    train.add_argument("--data", help="an image folder, a CSV list, an ABAW4 MTL list, an AffectNet CSV or an ExpW "
                                      "label.lst (default: the synthetic demo faces)")
    train.add_argument("--out", help="folder for checkpoints, config.json, metrics.json and plots")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config field, e.g. --set epochs=5 --set lr=1e-4 (repeatable)")
    train.add_argument("--tiny", action="store_true", help="start from the recipe's tiny settings (one small epoch)")
    train.add_argument("--list", action="store_true", help="list the recipes with their papers and exit")
    train.add_argument("--help-config", action="store_true", help="list the recipe's config fields and exit")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    sub.add_parser("info", help="describe this build")
    convert = sub.add_parser("convert-weights", help="convert pretrained weights (.pth, VGGFace2 .pkl) to safetensors",
                             description="Read the tensors of a weights file without torch and without running pickle "
                                         "code, and write them to a safetensors file.")
    convert.add_argument("input", help="a torch.save file (zip or legacy), a safetensors file, or a VGGFace2 pickle")
    convert.add_argument("output", help="the safetensors file to write")
    convert.add_argument("--format", choices=["torch", "torch-legacy", "safetensors", "vggface2"],
                         help="the input's format (default: recognised from its content; a plain pickle of NumPy "
                              "arrays is read only with --format vggface2)")
    convert.add_argument("--key", help="the checkpoint entry holding the weights (default: 'state_dict', "
                                       "'model_state_dict' or 'model' when the file is a checkpoint dict)")
    convert.add_argument("--rename", help="a rename table of affectfer.weights.RENAME_TABLES (e.g. timm) to apply")
    for name, what in (("predict", "write per-class probabilities for a folder of images to a CSV file"),
                       ("eval", "score a checkpoint on an image folder (one sub-folder per class)")):
        cmd = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        cmd.add_argument("--checkpoint", required=True, action="append",
                         help="a checkpoint whose config names its model (see above); repeat it for an ensemble "
                              "(the members a recipe wrote): their probabilities are averaged (soft voting)")
        if name == "predict":
            cmd.add_argument("--images", required=True, help="a folder searched recursively for .jpg/.jpeg/.png files")
            cmd.add_argument("--out", default="predictions.csv", help="the CSV to write (default: predictions.csv)")
        else:
            cmd.add_argument("--data", required=True, help="an image folder with one sub-folder per class")
        cmd.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: %(default)s)")
        cmd.add_argument("--workers", type=int, default=2, help="loader threads that decode the images (default: "
                                                                "%(default)s)")
    return parser


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "convert-weights":
        return _convert_weights(args)
    if args.command in ("predict", "eval"):
        try:
            return _predict(args) if args.command == "predict" else _eval(args)
        except (OSError, ValueError) as exc:
            print(f"{args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command == "train" or (args.command == "demo" and args.recipe is not None):
        return _train(args)
    return _demo(args)


def _recipe_list() -> str:
    from affectfer import recipes

    lines = []
    for name in recipes.list_recipes():
        try:
            module = recipes.get(name)
        except ImportError:  # a recipe module this build does not have yet
            lines.append(f"{name}\n    (not available in this build)")
            continue
        lines.append(f"{name}\n    {module.PAPER}\n    {module.SUMMARY}")
    return "\n".join(lines)


def _train(args) -> int:
    """`train --recipe NAME ...` and `demo --recipe NAME` (tiny settings on the synthetic faces)."""
    import json

    from affectfer import recipes
    from affectfer.recipes._common import describe_config

    demo = args.command == "demo"
    if not demo and args.list:
        print(_recipe_list())
        return 0
    if args.recipe is None:
        print(f"{args.command}: --recipe NAME is required (recipes: {', '.join(recipes.list_recipes())})", file=sys.stderr)
        return 2
    try:
        module = recipes.get(args.recipe)
    except ValueError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    if not demo and args.help_config:
        print(f"{args.recipe}: {module.PAPER}\n{module.SUMMARY}\n\nconfig fields (--set KEY=VALUE):")
        print(describe_config(module.Config))
        return 0
    progress = not args.no_progress and sys.stderr.isatty()
    out = args.out if not demo or args.out != "demo-output" else os.path.join("demo-output", args.recipe)
    try:
        results = recipes.run(args.recipe, data=None if demo else args.data, out=out, overrides=args.set,
                              tiny=demo or args.tiny, progress=progress)
    except (OSError, ValueError, TypeError) as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_scalars(results), indent=1))
    if out is not None:
        print(f"wrote the run's files to {out}/")
    return 0


def _scalars(results: dict) -> dict:
    """The numbers of a recipe's result (tables and arrays left to metrics.json)."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()
            if isinstance(v, (int, float, str))}


def _load_for_inference(path):
    """(model in eval mode, config, transform) from a checkpoint with a model config."""
    from affectfer import checkpoint
    from affectfer import transforms as T
    from affectfer.recipes._common import INFERENCE_KEYS, inference_model

    config = checkpoint.load(path).config
    missing = [k for k in INFERENCE_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"{path}: the checkpoint's config lacks {missing}; save it with "
                         f"checkpoint.save(model, path, config={{'model': ..., 'num_classes': ..., 'classes': [...], "
                         f"'image_size': ...}})")
    model = inference_model(config)
    checkpoint.load(path, model=model)
    size = int(config["image_size"])
    antialias = bool(config.get("antialias", True))
    if config.get("resize") is not None:  # the recipe's evaluation: resize, then a centre crop
        stages = [T.Resize((int(config["resize"]),) * 2, antialias=antialias), T.CenterCrop(size)]
    else:
        stages = [T.Resize((size, size), antialias=antialias)]
    if config.get("input", "rgb") == "sobel":
        stages.append(T.SobelEdges(out_channels=3))
    stages.append(T.ToTensor())
    if config.get("mean") is not None:
        stages.append(T.Normalize(config["mean"], config["std"]))
    return model.eval(), config, T.Compose(stages)


def _checkpoints(paths):
    """(model, config, transform) of each checkpoint; an ensemble's members must share their classes."""
    members = [_load_for_inference(path) for path in paths]
    classes = list(members[0][1]["classes"])
    for path, (_, config, _) in zip(paths[1:], members[1:]):
        if list(config["classes"]) != classes:
            raise ValueError(f"--checkpoint {path}: its classes {list(config['classes'])} are not those of "
                             f"{paths[0]} {classes}; an ensemble's members must share them")
    return members, classes


def _probabilities(members, dataset, args):
    """(probabilities (N, C), labels): one checkpoint's, or the members' mean (soft voting), each
    member with its own input pipeline."""
    from affectfer.data import Loader
    from affectfer.decision import soft_vote
    from affectfer.train import predict

    each = []
    for model, config, transform in members:
        loader = Loader(dataset, batch_size=args.batch_size, transform=transform, workers=args.workers)
        each.append(predict(model, loader, output_index=int(config.get("output_index", 0))))
    probs = each[0][0] if len(each) == 1 else soft_vote([p for p, _ in each])
    return probs, each[0][1]


def _predict(args) -> int:
    import csv

    from affectfer.data.datasets import Dataset, IMAGE_EXTENSIONS

    members, classes = _checkpoints(args.checkpoint)
    if not os.path.isdir(args.images):
        raise FileNotFoundError(f"--images: '{args.images}' is not a directory")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.images) for f in files
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f"--images: no image files under '{args.images}'")

    class Files(Dataset):
        def __init__(self):
            self.paths, self.labels, self.classes = paths, np.zeros(len(paths), np.int64), classes
            self._finish("predict")

    probs, _ = _probabilities(members, Files(), args)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "prediction"] + classes)
        for path, p in zip(paths, probs):
            writer.writerow([os.path.relpath(path, args.images), classes[int(p.argmax())]] + [f"{v:.6f}" for v in p])
    print(f"predict: {len(paths)} images -> {args.out}")
    return 0


def _eval(args) -> int:
    from affectfer import metrics
    from affectfer.data import ImageFolder

    members, classes = _checkpoints(args.checkpoint)
    data = ImageFolder(args.data)
    if data.classes != sorted(classes) and data.classes != classes:
        raise ValueError(f"--data: its class folders {data.classes} are not the checkpoint's classes {classes}")
    # folders are sorted; map each folder's label to the checkpoint's class index
    remap = np.array([classes.index(c) for c in data.classes])
    probs, labels = _probabilities(members, data, args)
    truth, pred = remap[labels], probs.argmax(1)
    print(metrics.classification_report(truth, pred, classes))
    print(f"macro F1 {metrics.macro_f1(truth, pred, len(classes)):.4f}, accuracy {metrics.accuracy(truth, pred):.4f}")
    return 0


def _convert_weights(args) -> int:
    from affectfer import weights

    try:
        state = weights.convert_weights(args.input, args.output, format=args.format, key=args.key, rename=args.rename)
    # TypeError: a dtype that safetensors files here do not store (int16, int8, uint16...)
    except (weights.WeightsError, weights.ForbiddenGlobalError, OSError, TypeError) as exc:
        print(f"convert-weights: {exc}", file=sys.stderr)
        return 1
    total = sum(a.nbytes for a in state.values())
    print(f"wrote {len(state)} tensors ({total / 2**20:.1f} MiB) to {args.output}")
    return 0


def _info() -> int:
    import affectfer as af

    build = af.info()
    print(f"affectfer {af.__version__}: {af.get_num_threads()} CPU threads, CUDA available: {af.cuda.is_available()}")
    print(f"CPU kernels: {build['cpu_path']}")
    print(f"BLAS: {build['blas']} ({build['blas_core']} kernels; {build['blas_config']})")
    print(f"image decoder: {build['stb']}")
    print(f"ops: {len(af._C.op_names)} ({', '.join(af._C.op_names)})")
    return 0


def _demo(args) -> int:
    """The hand-assisted recipe at the demo's settings (affectfer.recipes.hand_assisted)."""
    import dataclasses

    from affectfer.recipes import hand_assisted

    cfg = dataclasses.replace(hand_assisted.Config.demo(), train_size=args.train_size, val_size=args.val_size,
                              image_size=args.image_size, pretrain_epochs=args.epochs, epochs=args.finetune_epochs,
                              hand_epochs=args.hand_epochs, batch_size=args.batch_size, workers=args.workers,
                              seed=args.seed)
    print("affectfer demo: the hand-assisted recipe on the synthetic faces")
    try:
        hand_assisted.run(cfg, out=args.out, progress=not args.no_progress and sys.stderr.isatty())  # bars in a terminal
    except ValueError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    return 0
