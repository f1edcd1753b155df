"""`python -m affectfer <command>`.

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

A checkpoint that predict/eval read carries its model config (affectfer.checkpoint.save(...,
config=...)): "model" (a models.create name), "num_classes", "classes", "image_size", and optionally
"mean"/"std" (Normalize), "input" ("rgb" or "sobel") and "model_kwargs". The demo writes them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _build_parser():
    parser = argparse.ArgumentParser(prog="python -m affectfer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train and evaluate the hand-assisted method on the embedded synthetic faces")
    demo.add_argument("--train-size", type=int, default=1200)
    demo.add_argument("--val-size", type=int, default=360)
    demo.add_argument("--image-size", type=int, default=48)
    demo.add_argument("--epochs", type=int, default=6, help="expression model epochs before freezing")
    demo.add_argument("--finetune-epochs", type=int, default=2, help="epochs with the first 80%% of blocks frozen")
    demo.add_argument("--hand-epochs", type=int, default=3)
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="demo-output", help="folder for checkpoints, report and plots")
    demo.add_argument("--no-progress", action="store_true")
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
        cmd.add_argument("--checkpoint", required=True, help="a checkpoint whose config names its model (see above)")
        if name == "predict":
            cmd.add_argument("--images", required=True, help="a folder searched recursively for .jpg/.jpeg/.png files")
            cmd.add_argument("--out", default="predictions.csv", help="the CSV to write (default: predictions.csv)")
        else:
            cmd.add_argument("--data", required=True, help="an image folder with one sub-folder per class")
        cmd.add_argument("--batch-size", type=int, default=64)
        cmd.add_argument("--workers", type=int, default=2)
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
    return _demo(args)


_CONFIG_KEYS = ("model", "num_classes", "classes", "image_size")


def _load_for_inference(path):
    """(model in eval mode, config, transform) from a checkpoint with a model config."""
    from affectfer import checkpoint, models
    from affectfer import transforms as T

    config = checkpoint.load(path).config
    missing = [k for k in _CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"{path}: the checkpoint's config lacks {missing}; save it with "
                         f"checkpoint.save(model, path, config={{'model': ..., 'num_classes': ..., 'classes': [...], "
                         f"'image_size': ...}})")
    model = models.create(config["model"], num_classes=int(config["num_classes"]), **config.get("model_kwargs", {}))
    checkpoint.load(path, model=model)
    stages = [T.Resize((int(config["image_size"]), int(config["image_size"])))]
    if config.get("input", "rgb") == "sobel":
        stages.append(T.SobelEdges(out_channels=3))
    stages.append(T.ToTensor())
    if config.get("mean") is not None:
        stages.append(T.Normalize(config["mean"], config["std"]))
    return model.eval(), config, T.Compose(stages)


def _probabilities(model, dataset, transform, args):
    from affectfer.data import Loader
    from affectfer.train import predict

    loader = Loader(dataset, batch_size=args.batch_size, transform=transform, workers=args.workers)
    return predict(model, loader)


def _predict(args) -> int:
    import csv

    from affectfer.data.datasets import Dataset, IMAGE_EXTENSIONS

    model, config, transform = _load_for_inference(args.checkpoint)
    if not os.path.isdir(args.images):
        raise FileNotFoundError(f"--images: '{args.images}' is not a directory")
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(args.images) for f in files
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f"--images: no image files under '{args.images}'")

    class Files(Dataset):
        def __init__(self):
            self.paths, self.labels, self.classes = paths, np.zeros(len(paths), np.int64), list(config["classes"])
            self._finish("predict")

    probs, _ = _probabilities(model, Files(), transform, args)
    classes = list(config["classes"])
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

    model, config, transform = _load_for_inference(args.checkpoint)
    data = ImageFolder(args.data)
    classes = list(config["classes"])
    if data.classes != sorted(classes) and data.classes != classes:
        raise ValueError(f"--data: its class folders {data.classes} are not the checkpoint's classes {classes}")
    # folders are sorted; map each folder's label to the checkpoint's class index
    remap = np.array([classes.index(c) for c in data.classes])
    probs, labels = _probabilities(model, data, transform, args)
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


def _per_class_gain(labels, before, after, classes) -> str:
    from affectfer import metrics

    f1_before = metrics.f1_per_class(labels, before, len(classes))
    f1_after = metrics.f1_per_class(labels, after, len(classes))
    width = max(len(c) for c in classes) + 2
    lines = [f"{'class':<{width}}{'F1 before':>10}{'F1 after':>10}{'gain':>8}"]
    for c, name in enumerate(classes):
        lines.append(f"{name:<{width}}{f1_before[c]:>10.4f}{f1_after[c]:>10.4f}{f1_after[c] - f1_before[c]:>+8.4f}")
    return "\n".join(lines)


def _demo(args) -> int:
    import affectfer as af
    from affectfer import checkpoint, decision, metrics
    from affectfer import transforms as T
    from affectfer.data import ArrayDataset, Loader, WeightedRandomSampler
    from affectfer.datasets import CLASSES, synthetic_faces
    from affectfer.models import freeze_residual_blocks, resnet18
    from affectfer.optim import Adam
    from affectfer.train import fit, predict

    os.makedirs(args.out, exist_ok=True)
    af.manual_seed(args.seed)
    progress = not args.no_progress and sys.stderr.isatty()  # bars in a terminal, not in logs
    started = time.perf_counter()
    print(f"affectfer demo: hand-assisted FER on synthetic faces ({args.train_size} train, {args.val_size} val, "
          f"{args.image_size}x{args.image_size}, {af.get_num_threads()} threads)")
    # the method's setting: no hands in the expression training set; the hand detector gets its own
    # labelled split; validation faces have hands over the face (half of the fear faces, a few others)
    train = synthetic_faces(args.train_size, args.image_size, seed=args.seed, balanced=False, hand_probability=0)
    hand_split = synthetic_faces(args.train_size // 2, args.image_size, seed=args.seed + 2, hand_probability=0.5)
    val = synthetic_faces(args.val_size, args.image_size, seed=args.seed + 1, balanced=True)
    print(f"validation faces with a hand: {int(val.hands.sum())} of {len(val)} "
          f"({int(val.hands[val.labels == CLASSES.index('fear')].sum())} of them fearful)")
    counts = np.bincount(train.labels, minlength=len(CLASSES))
    print("train class counts: " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)))

    mean, std = T.compute_mean_std(train.images)  # the training set's own statistics, as one seed team did
    normalize = T.Normalize(mean, std)
    augment = T.Compose([T.RandomHorizontalFlip(), T.RandAugment(num_ops=2, magnitude=9, exclude=("Solarize", "Equalize")),
                         T.ToTensor(), normalize])
    plain = T.Compose([T.ToTensor(), normalize])

    def loaders(images, labels, train_transform, eval_transform, val_images, val_labels):
        sampler = WeightedRandomSampler.from_labels(labels, seed=args.seed)  # inverse class frequency
        train_loader = Loader(ArrayDataset(images, labels), batch_size=args.batch_size, sampler=sampler,
                              transform=train_transform, workers=args.workers, seed=args.seed, drop_last=True)
        val_loader = Loader(ArrayDataset(val_images, val_labels), batch_size=128, transform=eval_transform,
                            workers=args.workers, seed=args.seed)
        return train_loader, val_loader

    # 1. expression model: weighted sampling + RandAugment, then the method's frozen fine-tuning
    print("\n[1/3] expression model (ResNet-18)")
    train_loader, val_loader = loaders(train.images, train.labels, augment, plain, val.images, val.labels)
    expr_model = resnet18(num_classes=len(CLASSES))
    fit(expr_model, train_loader, Adam(expr_model.parameters(), lr=1e-3, weight_decay=1e-4), args.epochs,
        val_loader=val_loader, num_classes=len(CLASSES), progress=progress)
    frozen = freeze_residual_blocks(expr_model, 0.8)
    print(f"  fine-tuning with the first {frozen} residual blocks frozen (Adam lr 5e-5, wd 1e-4)")
    trainable = [p for p in expr_model.parameters() if p.requires_grad]
    fit(expr_model, train_loader, Adam(trainable, lr=5e-5, weight_decay=1e-4), args.finetune_epochs,
        val_loader=val_loader, num_classes=len(CLASSES), progress=progress)

    # 2. hand detector on Sobel edge maps
    print("\n[2/3] hand detector (ResNet-18 on Sobel edges)")
    edges_augment = T.Compose([T.RandomHorizontalFlip(), T.SobelEdges(out_channels=3), T.ToTensor()])
    edges_plain = T.Compose([T.SobelEdges(out_channels=3), T.ToTensor()])
    hand_train, hand_val = loaders(hand_split.images, hand_split.hands.astype(np.int64), edges_augment, edges_plain,
                                   val.images, val.hands.astype(np.int64))
    hand_model = resnet18(num_classes=2)
    fit(hand_model, hand_train, Adam(hand_model.parameters(), lr=1e-3, weight_decay=1e-4), args.hand_epochs,
        val_loader=hand_val, num_classes=2, progress=progress)

    # 3. the decision rule
    print("\n[3/3] decision rule: if hand and expression != happiness: fear")
    expr_probs, labels = predict(expr_model, val_loader)
    hand_probs, hand_true = predict(hand_model, hand_val)
    expr_pred = expr_probs.argmax(1)
    hand_pred = hand_probs.argmax(1)
    combined = decision.hand_override(expr_pred, hand_pred, CLASSES.index("happiness"), CLASSES.index("fear"))
    f1_expr = metrics.macro_f1(labels, expr_pred, len(CLASSES))
    f1_rule = metrics.macro_f1(labels, combined, len(CLASSES))
    print(f"hand detector accuracy: {metrics.accuracy(hand_true, hand_pred):.4f}")
    print(metrics.classification_report(labels, combined, CLASSES))
    changed = combined != expr_pred
    fixed, broken = int((changed & (combined == labels)).sum()), int((changed & (expr_pred == labels)).sum())
    print(f"\nthe rule changed {int(changed.sum())} predictions: {fixed} corrected, {broken} broken")
    per_class = _per_class_gain(labels, expr_pred, combined, CLASSES)
    print(per_class)
    print(f"macro F1 over 6 classes: expression model {f1_expr:.4f} -> with the hand rule {f1_rule:.4f}")

    common = {"model": "resnet18", "image_size": args.image_size}
    checkpoint.save(expr_model, os.path.join(args.out, "expression_resnet18.safetensors"),
                    config=dict(common, num_classes=len(CLASSES), classes=list(CLASSES), mean=[float(v) for v in mean],
                                std=[float(v) for v in std]))
    checkpoint.save(hand_model, os.path.join(args.out, "hand_resnet18.safetensors"),
                    config=dict(common, num_classes=2, classes=["no hand", "hand"], input="sobel"))
    report = os.path.join(args.out, "report.txt")
    with open(report, "w") as f:
        f.write(metrics.classification_report(labels, combined, CLASSES) + "\n")
        f.write(per_class + "\n")
        f.write(f"macro F1 expression model {f1_expr:.4f}, with hand rule {f1_rule:.4f}\n")
    try:
        from affectfer import plots

        plots.confusion_matrix(metrics.confusion_matrix(labels, expr_pred, len(CLASSES)), CLASSES,
                               os.path.join(args.out, "confusion_before.png"),
                               title=f"expression model, macro F1 {f1_expr:.3f}")
        plots.confusion_matrix(metrics.confusion_matrix(labels, combined, len(CLASSES)), CLASSES,
                               os.path.join(args.out, "confusion_after.png"), title=f"with the hand rule, macro F1 {f1_rule:.3f}")
    except ImportError:
        pass
    print(f"\nwrote checkpoints and {report} to {args.out}/ in {time.perf_counter() - started:.0f} s")
    return 0
