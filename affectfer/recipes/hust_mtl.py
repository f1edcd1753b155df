"""HUST-ANT's multi-task method (paper 002, ABAW4 multi-task-learning track): SMM-EmotionNet with one
loss per task, each computed only on the annotated frames.

1. Model: affectfer.models.SMMEmotionNet, Inception-v3 features up to Mixed_6e, 17 AU attention
   maps and ROI embeddings, one transformer encoder layer over them, AU logits per embedding, and
   expression / valence-arousal heads averaged over the 17 embeddings.
2. Losses (affectfer.losses.MultiTaskLoss, summed with weight 1):
   VA   = (1 - CCC_valence) + (1 - CCC_arousal), CCC with the N - 1 moments their CCCLoss uses;
   EXPR = CE with class weights w_c = n_other / n_c (8 classes);
   AU   = BCE-with-logits with pos_weight_j = #negatives_j / #positives_j (12 AUs).
   Frames whose label is invalid (Aff-Wild2 markers: -5 for VA, -1 for the expression and each AU)
   are left out of that task's term.
3. Training: SGD momentum 0.9, lr 1e-3, weight decay 0, cosine annealing per step (T_max 1e4),
   batch 16, at most 5 epochs, early stopping with patience 3 on the validation ABAW MTL score
   (CCC_V + CCC_A) / 2 + mean F1 over the 8 expressions + mean F1 over the 12 AUs, which also
   selects the weights. Augmentation: resize to 1.02 x 299, random crop 299, ColorJitter(0.4, 0.4,
   0.4, 0.1) with p 0.8, horizontal flip, ImageNet normalisation.

Source: the authors' code, github.com/sylyoung/ABAW4-HUST-ANT (MTL/train_SMM_EmotionNet.py,
MTL/SMM_EmotionNet.py, MTL/base_models.py, MTL/data_utils.py). Their loop draws one batch per task
from three task datasets each step; this recipe trains on one list whose frames carry all three
labels with the invalid markers (the ABAW4 MTL annotation file's form, affectfer's
ABAWMTLDataset) and masks each term. For a mean-reduced CE only the ratios of the class weights
matter, so with no "other" frame (the synthetic faces draw none) w_c = n_max / n_c is used, the
same ratios.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import nn, train
from ..data.readers import ABAW_AUS, AU_INVALID, VA_INVALID
from ._common import AT_LEAST_0, AT_LEAST_1, UNIT, Check, RecipeConfig, IMAGENET_MEAN, IMAGENET_STD, param

PAPER = ("Li, Xu, Wu, Wu, Yin, Cao, Ding, \"Facial Affect Analysis: Learning from Synthetic Data & Multi-Task "
         "Learning Challenges\", ECCV Workshops 2022, arXiv 2207.09748")
SUMMARY = ("SMM-EmotionNet (Inception-v3 to Mixed_6e, 17 AU attention maps + ROI embeddings, one transformer "
           "encoder layer, AU/EXPR/VA heads), CCC + weighted CE + weighted BCE with ABAW invalid masks, SGD + "
           "cosine, selection and early stopping on the ABAW MTL score")
CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")
NUM_AUS = len(ABAW_AUS)


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    transformer: bool = param(True, "ablation: the transformer encoder layer relating the 17 AU embeddings (code); "
                                    "False = the AU head reads the embeddings directly")
    ccc_loss: bool = param(True, "ablation: VA loss 1 - CCC per dimension (code); False = the MSE on the "
                                 "annotated frames")
    expr_class_weights: bool = param(True, "ablation: EXPR CE class weights n_other / n_c (code); False = unweighted")
    au_pos_weight: bool = param(True, "ablation: AU BCE pos_weight #neg / #pos per AU (code); False = unweighted")
    augment: bool = param(True, "ablation: random crop, ColorJitter (p 0.8) and flip (code); False = resize only")
    early_stopping: bool = param(True, "ablation: stop after `patience` validations without a better MTL score "
                                       "(code: EarlyStopping patience 3)")
    # model
    backbone: str = param("inception_v3", "feature extractor: 'inception_v3' (Mixed_6e, code) or any "
                                          "affectfer.models classifier (its last spatial map)")
    weights: str = param("", "pretrained weights file for a backbone given by name (code: ImageNet Inception-v3; "
                             "empty = random init)")
    dim: int = param(16, "AU embedding width (code: AU_metric_dim)", check=AT_LEAST_1)
    heads: int = param(8, "attention heads of the encoder layer (code)", check=AT_LEAST_1)
    dropout: float = param(0.3, "positional-encoding dropout (code)", check=UNIT)
    ccc_unbiased: bool = param(True, "CCC with N - 1 moments (code's CCCLoss); False = population moments")
    # training
    image_size: int = param(299, "input side (code)", check=AT_LEAST_1)
    epochs: int = param(5, "maximum epochs (code: max_epochs 5)", check=AT_LEAST_0)
    patience: int = param(3, "early-stopping patience in validations (code)", check=AT_LEAST_1)
    batch_size: int = param(16, "batch size (code)", check=AT_LEAST_1)
    lr: float = param(1e-3, "SGD learning rate (code)")
    momentum: float = param(0.9, "SGD momentum (code)", check=UNIT)
    weight_decay: float = param(0.0, "SGD weight decay (code)", check=AT_LEAST_0)
    t_max: int = param(10000, "cosine annealing period in steps (code: T_max 1e4, stepped per step)", check=AT_LEAST_1)
    # data and run
    train_size: int = param(1200, "synthetic faces: training faces", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces", check=AT_LEAST_1)
    missing: float = param(0.1, "synthetic faces: share of each task's labels marked invalid (-5 / -1), as frames "
                                "of the ABAW MTL set miss some annotations",
                           check=Check(lambda v: 0.0 <= v < 1.0, "in [0, 1)"))
    seed: int = param(0, "seed of every random draw")

    @classmethod
    def tiny(cls):
        """One tiny epoch on the synthetic faces with a ResNet-18 map (seconds)."""
        return cls(backbone="resnet18", image_size=64, epochs=1, batch_size=16, train_size=48, val_size=24,
                   workers=1)


# -------------------------------------------------------------------------------------------- data

def load(cfg, data):
    """RecipeData in CLASSES order whose targets are (valence, arousal, 12 AUs) per frame, with
    `missing` of each task's synthetic labels replaced by the invalid markers."""
    from ._common import load_data, synthetic_data

    if data is not None:
        d = load_data(data, CLASSES, cfg.val_fraction, cfg.seed)
        for ds in (d.train, d.val):
            t = getattr(ds, "targets", None)
            if t is None or t.shape[1] != 2 + NUM_AUS:
                raise ValueError(f"hust_mtl needs {2 + NUM_AUS} target columns per frame (valence, arousal, 12 AUs); "
                                 f"got {None if t is None else t.shape[1]}")
        return d
    d = synthetic_data(CLASSES, cfg.train_size, cfg.val_size, cfg.image_size, seed=cfg.seed, targets=("va", "aus"))
    rng = np.random.default_rng(cfg.seed + 7)
    for ds in (d.train, d.val):
        n = len(ds)
        ds.labels = np.where(rng.random(n) < cfg.missing, -1, ds.labels)
        ds.targets[rng.random(n) < cfg.missing, :2] = VA_INVALID
        ds.targets[:, 2:][rng.random((n, NUM_AUS)) < cfg.missing] = AU_INVALID
    return d


def expression_weights(labels, num_classes: int = len(CLASSES)) -> np.ndarray:
    """w_c = n_other / n_c over the annotated frames (n_max / n_c, the same ratios, when no frame is
    "other"); 1 for a class without frames (never a target, so its weight is unused)."""
    y = np.asarray(labels)
    n = np.bincount(y[y >= 0], minlength=num_classes)[:num_classes].astype(np.float64)
    ref = n[-1] if n[-1] > 0 else n.max()
    return np.where(n > 0, ref / np.maximum(n, 1), 1.0).astype(np.float32)


def au_pos_weights(aus) -> np.ndarray:
    """pos_weight_j = #negatives_j / #positives_j over the annotated entries (1 for an AU with no
    positive or no negative, where the ratio is undefined)."""
    a = np.asarray(aus)
    pos = ((a == 1)).sum(0).astype(np.float64)
    neg = ((a == 0)).sum(0).astype(np.float64)
    return np.where((pos > 0) & (neg > 0), neg / np.maximum(pos, 1), 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------ components

def transforms(cfg):
    """(training, evaluation) pipelines."""
    from .. import transforms as T

    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluation = T.Compose([T.Resize((cfg.image_size, cfg.image_size))] + normalize)
    if not cfg.augment:
        return evaluation, evaluation
    big = int(1.02 * cfg.image_size)
    training = T.Compose([T.Resize((big, big)), T.RandomCrop(cfg.image_size),
                          T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomHorizontalFlip()]
                         + normalize)
    return training, evaluation


def build_model(cfg):
    from ..models import SMMEmotionNet, create, feature_map, inception_v3_mixed_6e

    weights = cfg.weights or None
    backbone = (inception_v3_mixed_6e(weights) if cfg.backbone == "inception_v3"
                else feature_map(create(cfg.backbone, pretrained=weights)))
    return SMMEmotionNet(NUM_AUS, len(CLASSES), dim=cfg.dim, heads=cfg.heads, backbone=backbone,
                         encoder_layer=None if cfg.transformer else nn.Identity(), dropout=cfg.dropout)


def inference_model(cfg, saved=None):
    """The trained model's architecture for its checkpoint (predict/eval); the checkpoint holds every
    weight, so no pretrained file is read."""
    return build_model(dataclasses.replace(cfg, weights=""))


def loss_fn(cfg, train_labels, train_targets):
    """loss(outputs, labels, targets) -> {"va", "expr", "au"}: MultiTaskLoss with the recipe's
    weights from the training annotations; the masked MSE for VA without `ccc_loss`."""
    from ..data.readers import mtl_targets
    from ..losses import MultiTaskLoss
    from ..nn import functional as F
    from ..tensor import tensor

    options = {"va": {"unbiased": cfg.ccc_unbiased}}
    if cfg.expr_class_weights:
        options["expr"] = {"weight": tensor(expression_weights(train_labels))}
    if cfg.au_pos_weight:
        options["au"] = {"pos_weight": au_pos_weights(np.asarray(train_targets)[:, 2:])}
    if cfg.ccc_loss:
        mtl = MultiTaskLoss({"va": "ccc", "expr": "ce", "au": "bce"}, options=options)
    else:
        mtl = MultiTaskLoss({"expr": "ce", "au": "bce"}, options={k: v for k, v in options.items() if k != "va"})

    def loss(outputs, labels, targets):
        t = mtl_targets(labels, targets)
        va_t, expr_t, au_t = t["va"], t["expression"], t["au"]
        va, expr, au = outputs
        if cfg.ccc_loss:
            return mtl((va, expr, au), va_t, expr_t, au_t)
        terms = mtl((expr, au), expr_t, au_t)
        valid = np.flatnonzero(t["va_mask"].all(1))
        if valid.size == 0:
            terms["va"] = (va * 0.0).sum()
        else:
            idx = tensor(valid.astype(np.int64))
            terms["va"] = F.mse_loss(va.index_select(0, idx), tensor(np.ascontiguousarray(va_t[valid]).astype(va.dtype)))
        return terms

    return loss


def scores(outputs, labels, targets) -> dict:
    """The ABAW MTL score (affectfer.metrics.abaw_mtl_score, train.fit's "abaw_mtl" selection
    metric) and its three parts over the annotated frames."""
    from .. import metrics
    from ..data.readers import mtl_targets

    va, expr, au = outputs[:3]
    t = mtl_targets(labels, targets)
    expr_pred, au_prob = np.asarray(expr).argmax(1), 1.0 / (1.0 + np.exp(-np.asarray(au, np.float64)))
    return {"abaw_mtl": float(metrics.abaw_mtl_score(t["va"], va, t["expression"], expr_pred, t["au"], au_prob,
                                                     num_expressions=len(CLASSES))),
            "va_ccc": float(metrics.abaw_va_score(t["va"], va)),
            "expr_macro_f1": float(metrics.macro_f1(t["expression"], expr_pred, len(CLASSES))),
            "au_macro_f1": float(metrics.au_macro_f1(t["au"], au_prob))}


# --------------------------------------------------------------------------------------------- run

def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Train SMM-EmotionNet and return its validation ABAW MTL score ("abaw_mtl") and parts
    (VA CCC, expression macro F1 over 8 classes, AU mean F1)."""
    import affectfer as af

    from ..optim import SGD
    from ..optim.lr_scheduler import CosineAnnealingLR
    from ._common import make_loaders, save_model, write_results

    config.validate()
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    d = load(config, data)
    train_tf, eval_tf = transforms(config)
    train_loader, val_loader = make_loaders(d, config.batch_size, train_tf, eval_tf, workers=config.workers,
                                            seed=config.seed)
    model = build_model(config)
    log(f"HUST-ANT MTL: SMM-EmotionNet on {config.backbone}, {len(d.train)} training frames, {len(d.val)} validation "
        f"frames")
    optimizer = SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    history = train.fit(model, train_loader, optimizer, config.epochs,
                        loss_fn=loss_fn(config, d.train.labels, d.train.targets), val_loader=val_loader,
                        num_classes=len(CLASSES), scheduler=CosineAnnealingLR(optimizer, config.t_max),
                        scheduler_interval="step", metric="abaw_mtl",
                        patience=config.patience if config.early_stopping else None, progress=progress, log=log,
                        output_index=1)
    outputs, targets = train.predict_outputs(model, val_loader)
    results = scores(outputs, *targets)
    results["stopped_early"] = bool(history.stopped_early)
    results["history_terms"] = sorted(history.components)
    log(f"ABAW MTL score {results['abaw_mtl']:.4f} = VA CCC {results['va_ccc']:.4f} + EXPR F1 "
        f"{results['expr_macro_f1']:.4f} + AU F1 {results['au_macro_f1']:.4f}")
    if out is not None:
        save_model(out, "smm_emotionnet", model,
                   {"model": "smm_emotionnet", "backbone": config.backbone, "num_classes": len(CLASSES),
                    "classes": list(CLASSES), "image_size": config.image_size, "mean": list(IMAGENET_MEAN),
                    "std": list(IMAGENET_STD), "output_index": 1},  # outputs (va, expression logits, AU logits)
                   recipe_config=config)
    results["seconds"] = time.perf_counter() - started
    write_results(out, config, results)
    return results
