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
    return parser


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "info":
        return _info()
    if args.command == "convert-weights":
        return _convert_weights(args)
    return _demo(args)


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

    print(f"affectfer {af.__version__}: {af.get_num_threads()} CPU threads, CUDA available: {af.cuda.is_available()}")
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

    checkpoint.save(expr_model, os.path.join(args.out, "expression_resnet18.safetensors"), config={"classes": CLASSES})
    checkpoint.save(hand_model, os.path.join(args.out, "hand_resnet18.safetensors"), config={"classes": ["no hand", "hand"]})
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
