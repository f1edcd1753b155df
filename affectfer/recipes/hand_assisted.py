"""Hand-assisted expression recognition (paper 000): an expression model and a hand detector whose
answers a decision rule combines, for faces where a hand hides the expression's cues.

1. Expression model: a ResNet-50, pretrained, then fine-tuned with the stem and the first 80% of its
   residual blocks frozen (Adam, lr 5e-5, weight decay 1e-4), with weighted sampling (the training
   classes are imbalanced).
2. Hand model: a second ResNet-50 on Sobel edge maps (edges show finger outlines, not skin tone),
   predicting "a hand is in the image".
3. Decision: `if hand and expression != happiness: fear else expression`
   (affectfer.decision.hand_override), then post-pruning on the probabilities.
4. Score: macro F1 over the six basic expressions (the ABAW4 LSD criterion).

The paper's ablation rows are cumulative: baseline (the expression model trained end to end),
+pretraining (that model is the pretrained one which the frozen fine-tuning continues), +hand (the
rule), +post-pruning. `ablation(config)` trains once with every component and scores the four rows.

Sources: what we could read of the paper is its abstract, which names the parts (an expression
module, a hand prediction module, a "decision mode" combining their results, and "post-pruning" to
improve the result) but not their exact form. The decision rule above is the form this project
specifies for the decision mode. The post-pruning here is OURS, not the paper's: it prunes the
rule's overrides that the probabilities do not support (an override to fear stands only where the
hand detector's probability is at least `prune_hand` and the expression model's own top probability
is below `prune_confidence`: a confident expression survives a hand); `post_pruning=false` drops it.

On the synthetic faces the setting is the paper's: the expression training faces have no hands,
the hand detector has its own labelled split, and half of the fearful validation faces have a hand
over the mouth and eyes. With `data=` the hand detector needs `hand_data`, an image folder with
`hand/` and `no_hand/` sub-folders.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from ._common import AT_LEAST_0, AT_LEAST_1, UNIT, RecipeConfig, param

PAPER = ("Miao, Wang, Chang, Wu, Wang, \"Hand-Assisted Expression Recognition Method from Synthetic Images at the "
         "Fourth ABAW Challenge\", ECCV Workshops 2022, arXiv 2207.09661")
SUMMARY = ("ResNet-50 expression model (pretrain, then first 80% of residual blocks frozen, Adam 5e-5), ResNet-50 "
           "hand detector on Sobel edges, rule 'hand and not happy -> fear' with post-pruning, weighted sampling, "
           "macro F1 over 6 classes")
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
ROWS = ("baseline", "+pretraining", "+hand", "+post-pruning")
HAND_CLASSES = ("no_hand", "hand")


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    pretraining: bool = param(True, "ablation: the end-to-end model is the pretrained model that a second stage "
                                    "fine-tunes with the first freeze_fraction of residual blocks frozen (paper); "
                                    "False = the baseline row, stage 1 only")
    hand: bool = param(True, "ablation: train the hand detector and apply the rule 'hand and not happiness -> fear' "
                             "(paper)")
    post_pruning: bool = param(True, "ablation: prune the rule's overrides the probabilities do not support (the "
                                     "paper names post-pruning without its form; this form and its thresholds are "
                                     "ours)")
    weighted_sampling: bool = param(True, "ablation: inverse class frequency weighted sampling of the training "
                                          "faces (paper); False = a shuffle")
    randaugment: bool = param(True, "RandAugment(2, 9) without Solarize/Equalize on the expression training faces "
                                    "(our augmentation: the paper does not list one)")
    # expression model
    backbone: str = param("resnet50", "expression model (paper: ResNet-50); any affectfer.models name with "
                                      "residual blocks")
    weights: str = param("", "pretrained weights file for the expression backbone (ImageNet ResNet-50 in the "
                             "paper; empty = random init)")
    image_size: int = param(224, "input side (the ImageNet ResNet-50 input; the paper does not state it)",
                            check=AT_LEAST_1)
    pretrain_epochs: int = param(6, "stage 1 (end-to-end) epochs (not stated in the paper)", check=AT_LEAST_0)
    pretrain_lr: float = param(1e-3, "stage 1 Adam learning rate (not stated in the paper)")
    epochs: int = param(2, "stage 2 epochs with the first freeze_fraction of residual blocks frozen (not stated)",
                        check=AT_LEAST_0)
    lr: float = param(5e-5, "stage 2 Adam learning rate (paper)")
    weight_decay: float = param(1e-4, "Adam weight decay, both stages (paper)", check=AT_LEAST_0)
    freeze_fraction: float = param(0.8, "fraction of residual blocks frozen after pretraining (paper: 80%; "
                                        "int(0.8 * 16) = 12 blocks of ResNet-50)", check=UNIT)
    batch_size: int = param(32, "batch size (not stated in the paper)", check=AT_LEAST_1)
    # hand model
    hand_backbone: str = param("resnet50", "hand detector on Sobel edge maps (paper: ResNet-50)")
    hand_weights: str = param("", "pretrained weights file for the hand detector (empty = random init)")
    hand_epochs: int = param(3, "hand detector epochs (not stated)", check=AT_LEAST_0)
    hand_lr: float = param(1e-3, "hand detector Adam learning rate (not stated)")
    hand_data: str = param("", "with --data: an image folder with hand/ and no_hand/ sub-folders for the hand "
                               "detector (the synthetic faces draw their own labelled split)")
    # decision
    hand_threshold: float = param(0.5, "hand probability from which an image counts as 'hand' (argmax)", check=UNIT)
    prune_hand: float = param(0.8, "post-pruning: an override stands only where p(hand) >= this (ours)", check=UNIT)
    prune_confidence: float = param(0.9, "post-pruning: an override stands only where the expression model's top "
                                         "probability < this (ours)", check=UNIT)
    # data and run
    train_size: int = param(1200, "synthetic faces: expression training faces (imbalanced, no hands)", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces (balanced, hands on half the fearful ones)",
                          check=AT_LEAST_1)
    seed: int = param(0, "seed of every random draw (affectfer.manual_seed, data, samplers)")

    @classmethod
    def tiny(cls):
        """One tiny epoch per stage on the synthetic faces (seconds)."""
        return cls(backbone="resnet18", hand_backbone="resnet18", image_size=32, train_size=48, val_size=24,
                   pretrain_epochs=1, epochs=1, hand_epochs=1, batch_size=16, workers=1)

    @classmethod
    def demo(cls):
        """`make demo`: ResNet-18 at 48 x 48 on 1200 synthetic faces, a few minutes on 2 cores."""
        return cls(backbone="resnet18", hand_backbone="resnet18", image_size=48)


# ------------------------------------------------------------------------------------ components

def expression_transforms(cfg, mean, std):
    """(training, evaluation) pipelines of the expression model."""
    from .. import transforms as T

    size = T.Resize((cfg.image_size, cfg.image_size))
    augment = [T.RandomHorizontalFlip()]
    if cfg.randaugment:
        augment.append(T.RandAugment(num_ops=2, magnitude=9, exclude=("Solarize", "Equalize")))
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose([size] + augment + normalize), T.Compose([size] + normalize)


def hand_transforms(cfg):
    """(training, evaluation) pipelines of the hand detector: Sobel edge maps in three channels."""
    from .. import transforms as T

    size = T.Resize((cfg.image_size, cfg.image_size))
    edges = [T.SobelEdges(out_channels=3), T.ToTensor()]
    return T.Compose([size, T.RandomHorizontalFlip()] + edges), T.Compose([size] + edges)


def build_model(name: str, num_classes: int, weights: str = ""):
    from .. import models

    return models.create(name, num_classes=num_classes, pretrained=weights or None)


def decide(expr_probs, hand_probs, cfg, classes=CLASSES):
    """The method's decision on probabilities: (expression prediction, after the rule, after
    post-pruning). Without `cfg.hand` the three are the expression prediction."""
    from .. import decision

    expr_pred = np.asarray(expr_probs).argmax(1)
    if not cfg.hand or hand_probs is None:
        return expr_pred, expr_pred, expr_pred
    p_hand = np.asarray(hand_probs)[:, 1]
    ruled = decision.hand_override(expr_pred, p_hand >= cfg.hand_threshold, classes.index("happiness"),
                                   classes.index("fear"))
    if not cfg.post_pruning:
        return expr_pred, ruled, ruled
    supported = (p_hand >= cfg.prune_hand) & (np.asarray(expr_probs).max(1) < cfg.prune_confidence)
    return expr_pred, ruled, np.where(supported, ruled, expr_pred)


# -------------------------------------------------------------------------------------------- data

def _hand_data(cfg, data):
    """(training, validation) datasets of the hand detector, labels 0 no hand / 1 hand."""
    from ..data import ArrayDataset
    from ..datasets import synthetic_faces
    from ._common import load_data

    if data is not None:
        hd = load_data(cfg.hand_data, HAND_CLASSES, cfg.val_fraction, cfg.seed)
        return hd.train, hd.val
    # its own labelled split, half with a hand; validated on the expression validation faces' hands
    split = synthetic_faces(max(cfg.train_size // 2, 2), cfg.image_size, seed=cfg.seed + 2, hand_probability=0.5)
    return ArrayDataset(split.images, split.hands.astype(np.int64), classes=list(HAND_CLASSES)), None


def load(cfg, data):
    """The expression data (RecipeData in CLASSES order) for this config."""
    from ._common import load_data, synthetic_data

    if data is None:
        return synthetic_data(CLASSES, cfg.train_size, cfg.val_size, cfg.image_size, seed=cfg.seed,
                              balanced_train=False, train_hands=0, val_hands=None)
    return load_data(data, CLASSES, cfg.val_fraction, cfg.seed)


# --------------------------------------------------------------------------------------------- run

def _train_expression(cfg, data, progress, log, out):
    """Stage 1 (end to end) and, with pretraining, stage 2 (frozen fine-tuning). Returns the model,
    its transforms' normalisation, the validation loader and the stage-1 validation probabilities."""
    from .. import transforms as T
    from ..models import freeze_residual_blocks
    from ..optim import Adam
    from ..train import fit, predict
    from ._common import make_loaders

    source = data.train.images if getattr(data.train, "images", None) is not None else data.train.paths
    mean, std = T.compute_mean_std(source)  # the training set's own statistics
    train_tf, eval_tf = expression_transforms(cfg, mean, std)
    sampler = "weighted" if cfg.weighted_sampling else "shuffle"
    train_loader, val_loader = make_loaders(data, cfg.batch_size, train_tf, eval_tf, sampler=sampler,
                                            workers=cfg.workers, seed=cfg.seed)
    model = build_model(cfg.backbone, len(CLASSES), cfg.weights)
    common = dict(val_loader=val_loader, num_classes=len(CLASSES), progress=progress, log=log, class_names=CLASSES)
    log(f"\n[1/3] expression model ({cfg.backbone}), end to end: Adam lr {cfg.pretrain_lr:g}, wd {cfg.weight_decay:g}")
    history = fit(model, train_loader, Adam(model.parameters(), lr=cfg.pretrain_lr, weight_decay=cfg.weight_decay),
                  cfg.pretrain_epochs, **common)
    stage1 = predict(model, val_loader)[0]
    if cfg.pretraining:
        frozen = freeze_residual_blocks(model, cfg.freeze_fraction)
        log(f"  fine-tuning with the first {frozen} residual blocks frozen (Adam lr {cfg.lr:g}, wd {cfg.weight_decay:g})")
        trainable = [p for p in model.parameters() if p.requires_grad]
        history = fit(model, train_loader, Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay), cfg.epochs,
                      plot_dir=out, **common)
    elif out is not None:
        from ..train import save_plots

        save_plots(history, out, CLASSES)
    return model, (mean, std), val_loader, stage1


def _train_hand(cfg, data, hand_train, hand_val, progress, log):
    """The hand detector, and its hand probabilities on the expression validation faces (with the
    true hands when those faces carry them: the synthetic set)."""
    from ..data import ArrayDataset, Loader
    from ..optim import Adam
    from ..train import fit, predict
    from ._common import RecipeData, make_loaders

    train_tf, eval_tf = hand_transforms(cfg)
    on_expression_faces = hand_val is None
    if on_expression_faces:  # the synthetic validation faces carry their hand labels
        hand_val = ArrayDataset(data.val.images, data.val.hands.astype(np.int64), classes=list(HAND_CLASSES))
    train_loader, val_loader = make_loaders(RecipeData(hand_train, hand_val, HAND_CLASSES), cfg.batch_size, train_tf,
                                            eval_tf, sampler="weighted" if cfg.weighted_sampling else "shuffle",
                                            workers=cfg.workers, seed=cfg.seed)
    log(f"\n[2/3] hand detector ({cfg.hand_backbone} on Sobel edges)")
    model = build_model(cfg.hand_backbone, 2, cfg.hand_weights)
    fit(model, train_loader, Adam(model.parameters(), lr=cfg.hand_lr, weight_decay=cfg.weight_decay), cfg.hand_epochs,
        val_loader=val_loader, num_classes=2, progress=progress, log=log)
    if on_expression_faces:
        probs, truth = predict(model, val_loader)
        return model, probs, truth
    expression_faces = Loader(data.val, batch_size=128, transform=eval_tf, workers=cfg.workers, seed=cfg.seed)
    return model, predict(model, expression_faces)[0], None


def _report(labels, before, after, classes) -> str:
    from .. import metrics

    f1_before = metrics.f1_per_class(labels, before, len(classes))
    f1_after = metrics.f1_per_class(labels, after, len(classes))
    width = max(len(c) for c in classes) + 2
    lines = [f"{'class':<{width}}{'F1 before':>10}{'F1 after':>10}{'gain':>8}"]
    for c, name in enumerate(classes):
        lines.append(f"{name:<{width}}{f1_before[c]:>10.4f}{f1_after[c]:>10.4f}{f1_after[c] - f1_before[c]:>+8.4f}")
    return "\n".join(lines)


def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Train the expression model (and, with `hand`, the hand detector), apply the decision and return
    the macro F1 over the six classes of every stage the switches enable, the final one as
    "macro_f1". `out`: checkpoints (with the config predict/eval read), report.txt, confusion
    matrices, history plots, config.json and metrics.json."""
    import affectfer as af

    from .. import metrics
    from ..train import predict
    from ._common import classification_metrics, write_results

    config.validate()
    if data is not None and config.hand and not config.hand_data:
        raise ValueError("hand_assisted with --data needs --set hand_data=FOLDER (sub-folders hand/ and no_hand/) "
                         "for the hand detector, or --set hand=false")
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    data_ = load(config, data)
    hand_split = _hand_data(config, data) if config.hand else None
    log(f"hand-assisted FER: {len(data_.train)} training faces, {len(data_.val)} validation faces, "
        f"{config.image_size}x{config.image_size}, {af.get_num_threads()} threads")
    if getattr(data_.val, "hands", None) is not None:
        fear = data_.val.labels == CLASSES.index("fear")
        log(f"validation faces with a hand: {int(data_.val.hands.sum())} of {len(data_.val)} "
            f"({int(data_.val.hands[fear].sum())} of them fearful)")
    counts = np.bincount(np.asarray(data_.train.labels), minlength=len(CLASSES))
    log("train class counts: " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)))

    model, (mean, std), val_loader, stage1_probs = _train_expression(config, data_, progress, log, out)
    hand_model = hand_probs = None
    if config.hand:
        hand_model, hand_probs, hand_truth = _train_hand(config, data_, *hand_split, progress, log)

    expr_probs, labels = predict(model, val_loader)
    expr_pred, ruled, final = decide(expr_probs, hand_probs, config)
    C = len(CLASSES)
    results = {"macro_f1": float(metrics.macro_f1(labels, final, C)),
               "accuracy": float(metrics.accuracy(labels, final)),
               "macro_f1_stage1": float(metrics.macro_f1(labels, stage1_probs.argmax(1), C)),
               "macro_f1_expression": float(metrics.macro_f1(labels, expr_pred, C))}
    results["f1_per_class"] = classification_metrics(labels, final, CLASSES)["f1_per_class"]
    if config.hand:
        results["macro_f1_rule"] = float(metrics.macro_f1(labels, ruled, C))
        hand_pred = (hand_probs[:, 1] >= config.hand_threshold).astype(np.int64)
        if hand_truth is not None:
            results["hand_accuracy"] = float(metrics.accuracy(hand_truth, hand_pred))
        changed = ruled != expr_pred
        results["rule_changed"] = int(changed.sum())
        results["rule_corrected"] = int((changed & (ruled == labels)).sum())
        results["rule_broken"] = int((changed & (expr_pred == labels)).sum())
        results["pruned"] = int((ruled != final).sum())
        log("\n[3/3] decision rule: if hand and expression != happiness: fear"
            + (" (post-pruned)" if config.post_pruning else ""))
        if "hand_accuracy" in results:
            log(f"hand detector accuracy: {results['hand_accuracy']:.4f}")
        log(metrics.classification_report(labels, ruled, CLASSES))
        log(f"\nthe rule changed {results['rule_changed']} predictions: {results['rule_corrected']} corrected, "
            f"{results['rule_broken']} broken")
        log(_report(labels, expr_pred, ruled, CLASSES))
        log(metrics.confusion_table(labels, expr_pred, CLASSES, title="\nconfusion matrix, expression model:"))
        log(metrics.confusion_table(labels, ruled, CLASSES, title="\nconfusion matrix, with the hand rule:"))
        log(f"macro F1 over 6 classes: expression model {results['macro_f1_expression']:.4f} -> with the hand rule "
            f"{results['macro_f1_rule']:.4f}")
        if config.post_pruning:
            log(f"post-pruning kept {results['rule_changed'] - results['pruned']} of the rule's "
                f"{results['rule_changed']} changes: macro F1 {results['macro_f1']:.4f}")
    else:
        log(f"macro F1 over 6 classes: {results['macro_f1']:.4f}")
    if out is not None:
        _write(out, config, model, hand_model, mean, std, labels, expr_pred, ruled, final, results)
        log(f"\nwrote checkpoints and report.txt to {out}/ in {time.perf_counter() - started:.0f} s")
    results["seconds"] = time.perf_counter() - started
    write_results(out, config, results)
    return results


def _write(out, cfg, model, hand_model, mean, std, labels, expr_pred, ruled, final, results):
    from .. import metrics
    from ._common import save_model

    os.makedirs(out, exist_ok=True)
    common = {"image_size": cfg.image_size}
    save_model(out, f"expression_{cfg.backbone}", model,
               dict(common, model=cfg.backbone, num_classes=len(CLASSES), classes=list(CLASSES),
                    mean=[float(v) for v in mean], std=[float(v) for v in std]))
    if hand_model is not None:
        save_model(out, f"hand_{cfg.hand_backbone}", hand_model,
                   dict(common, model=cfg.hand_backbone, num_classes=2, classes=["no hand", "hand"], input="sobel"))
    # before = the expression model, after = with the hand rule, pruned = the final decision (post-pruning)
    stages = [("before", expr_pred, "expression model")]
    if cfg.hand:
        stages.append(("after", ruled, "with the hand rule"))
        if cfg.post_pruning:
            stages.append(("pruned", final, "with the hand rule, post-pruned"))
    with open(os.path.join(out, "report.txt"), "w") as f:
        f.write(metrics.classification_report(labels, final, CLASSES) + "\n")
        f.write(_report(labels, expr_pred, final, CLASSES) + "\n")
        f.write(f"macro F1 expression model {results['macro_f1_expression']:.4f}, final {results['macro_f1']:.4f}\n")
        for _, pred, title in stages:
            f.write(metrics.confusion_table(labels, pred, CLASSES, title=f"\nconfusion matrix, {title}:") + "\n")
    try:
        from .. import plots
    except ImportError:
        return
    try:
        for name, pred, title in stages:
            name = f"confusion_{name}.png"
            plots.confusion_matrix(metrics.confusion_matrix(labels, pred, len(CLASSES)), CLASSES,
                                   os.path.join(out, name),
                                   title=f"{title}, macro F1 {metrics.macro_f1(labels, pred, len(CLASSES)):.3f}")
    except ImportError:  # matplotlib is optional
        pass


def ablation(config: Config | None = None, data=None, out=None, progress=True, log=print) -> list:
    """The paper's four cumulative rows from one training with every component on:
    [(row, macro F1)] for baseline, +pretraining, +hand, +post-pruning."""
    cfg = dataclasses.replace(config or Config(), pretraining=True, hand=True, post_pruning=True)
    r = run(cfg, data=data, out=out, progress=progress, log=log)
    rows = list(zip(ROWS, (r["macro_f1_stage1"], r["macro_f1_expression"], r["macro_f1_rule"], r["macro_f1"])))
    if log:
        log("\n".join(f"{name:<15}{value:.4f}" for name, value in rows))
    return rows
