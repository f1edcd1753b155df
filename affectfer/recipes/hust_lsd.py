"""HUST-ANT's learning-from-synthetic-data method (paper 002, ABAW4 LSD track): four answers to four
problems the paper names.

1. Single (hard) labels -> label smoothing 0.2 in the training cross-entropy (validation and model
   selection use the plain CE).
2. Imbalanced classes -> every minority class is topped up to the largest class's count with
   RandAugment(2 ops, magnitude 9, Solarize and Equalize excluded) copies of its own images
   (affectfer.data.ClassBalancedOversampler + the Loader's augment_copies; the copies are drawn
   afresh every epoch where the authors wrote them once to JPEG files).
3. Fine-tuning limitations -> the deviation module (affectfer.models.DeviationModule): a frozen
   "identity" copy and a trainable "face" copy of the fine-tuned extractor, the feature is their
   difference (+1e-6 in training), both in eval mode (BatchNorm statistics frozen), a new linear
   classifier; class weights [1, 3, 5, 1, 1, 1] with label smoothing 0.2, Adam lr 1e-6, 10 epochs.
4. Choice of architecture -> a soft-voting ensemble (summed softmax probabilities) of ViT-B/16,
   ResNet-50, EfficientNet-B0 and GoogLeNet.

Stage 1 fine-tunes each backbone (a new 6-way head; Adam lr 1e-5, 20 epochs, batch 64, best
validation loss), stage 2 turns it into a deviation module, stage 3 votes. Hyper-parameters follow
the authors' code (github.com/sylyoung/ABAW4-HUST-ANT: LSD/synthetic.py, LSD/DLN.py,
LSD/data_aug.py, LSD/test_pred.py): inputs resized to 224 and normalised with the training set's
statistics (mean (0.4734, 0.3544, 0.3267), std (0.1891, 0.1597, 0.1504)), seed 42.
Choices where the code is a snapshot: `train_all` (the committed flag freezes the backbone in
stage 1; the experiments' setting is not recorded: default True, fine-tuning, which the deviation
module's motivation implies); `identity_init` (the submitted "7xx" models' identity copy is the plain
pretrained network, the "8xx" ones the stage-1 model: default "pretrained", the code's default
ensemble). The released data_aug.py runs stock RandAugment with all 14 ops; the paper excludes
Solarize and Equalize (`randaugment_exclude`).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import nn, train
from ._common import AT_LEAST_0, AT_LEAST_1, UNIT, RecipeConfig, one_of, param

PAPER = ("Li, Xu, Wu, Wu, Yin, Cao, Ding, \"Facial Affect Analysis: Learning from Synthetic Data & Multi-Task "
         "Learning Challenges\", ECCV Workshops 2022, arXiv 2207.09748")
SUMMARY = ("label smoothing 0.2, RandAugment(2, 9) oversampling of minority classes (no Solarize/Equalize), "
           "deviation module (frozen identity twin, trainable face twin, feature = difference), soft-voting "
           "ensemble of ViT-B/16, ResNet-50, EfficientNet-B0, GoogLeNet")
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    label_smoothing: bool = param(True, "ablation: label smoothing in the training CE of both stages (paper, code: "
                                        "0.2); validation always uses the plain CE")
    oversampling: bool = param(True, "ablation: RandAugment copies of every minority class up to the largest class "
                                     "(paper; code: LSD/data_aug.py); False = a plain shuffle")
    deviation: bool = param(True, "ablation: stage 2, the deviation module on the fine-tuned extractor (paper; "
                                  "code: LSD/DLN.py); False = the stage-1 models vote")
    ensemble: bool = param(True, "ablation: soft voting over every backbone (paper); False = backbones[0] alone")
    train_all: bool = param(True, "stage 1 fine-tunes the whole backbone; False = only the new head (the committed "
                                  "snapshot's train_all=False)")
    # the components' parameters
    smoothing: float = param(0.2, "label smoothing factor (code)", check=UNIT)
    randaugment_ops: int = param(2, "RandAugment num_ops (paper, code)", check=AT_LEAST_1)
    randaugment_magnitude: int = param(9, "RandAugment magnitude, of 31 bins (paper, code: torchvision)")
    randaugment_exclude: tuple[str, ...] = param(("Solarize", "Equalize"), "RandAugment ops left out (paper; the "
                                                                           "released code keeps all 14: set to none)")
    deviation_weights: tuple[float, ...] = param((1.0, 3.0, 5.0, 1.0, 1.0, 1.0), "stage-2 CE class weights, anger.."
                                                                                "surprise (code: DLN.py)")
    identity_init: str = param("pretrained", "stage-2 identity copy: 'pretrained' (the backbone's initial weights, "
                                             "the code's 7xx models) or 'stage1' (the fine-tuned model, 8xx)",
                               check=one_of("pretrained", "stage1"))
    backbones: tuple[str, ...] = param(("vit_b_16", "resnet50", "efficientnet_b0", "googlenet"),
                                       "ensemble members, affectfer.models names (paper, code)")
    weights: tuple[str, ...] = param((), "pretrained weights files, one per backbone (code: torchvision ImageNet; "
                                         "empty = random init)")
    # training
    image_size: int = param(224, "input side (code: Resize([224, 224]))", check=AT_LEAST_1)
    mean: tuple[float, float, float] = param((0.4734, 0.3544, 0.3267), "Normalize mean: the training set's (code)")
    std: tuple[float, float, float] = param((0.1891, 0.1597, 0.1504), "Normalize std: the training set's (code)")
    epochs: int = param(20, "stage-1 epochs (code: synthetic.py)", check=AT_LEAST_0)
    lr: float = param(1e-5, "stage-1 Adam learning rate (code)")
    deviation_epochs: int = param(10, "stage-2 epochs (code: DLN.py)", check=AT_LEAST_0)
    deviation_lr: float = param(1e-6, "stage-2 Adam learning rate (code)")
    batch_size: int = param(64, "batch size, both stages (code)", check=AT_LEAST_1)
    # data and run
    train_size: int = param(1200, "synthetic faces: training faces (imbalanced, as the LSD set is)", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces (balanced)", check=AT_LEAST_1)
    seed: int = param(42, "seed of every random draw (code: 42)")

    @classmethod
    def tiny(cls):
        """One tiny epoch per stage for two small backbones on the synthetic faces (seconds)."""
        return cls(backbones=("resnet18", "efficientnet_b0"), image_size=32, epochs=1, deviation_epochs=1,
                   batch_size=16, train_size=36, val_size=12, workers=1)

    def validate(self):
        super().validate()
        if not self.backbones:
            raise ValueError("backbones must name at least one model")
        if self.weights and len(self.weights) != len(self.backbones):
            raise ValueError(f"weights must be empty or one file per backbone ({len(self.backbones)}), "
                             f"got {len(self.weights)}")
        if len(self.deviation_weights) != len(CLASSES):
            raise ValueError(f"deviation_weights needs {len(CLASSES)} values, got {len(self.deviation_weights)}")


# ------------------------------------------------------------------------------------ components

def transform(cfg):
    """The training = evaluation pipeline (the code trains on its evaluation transform; augmentation
    comes from the oversampling copies): resize, ToTensor, the training-set normalisation."""
    from .. import transforms as T

    # plain bilinear: the code resizes float tensors with torchvision 0.12, which does not antialias them
    return T.Compose([T.Resize((cfg.image_size, cfg.image_size), antialias=False), T.ToTensor(),
                      T.Normalize(cfg.mean, cfg.std)])


def randaugment(cfg):
    from .. import transforms as T

    return T.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude, exclude=cfg.randaugment_exclude)


def loaders(cfg, data):
    """(training, validation) loaders: oversampled with RandAugment copies, or shuffled."""
    from ._common import make_loaders

    tf = transform(cfg)
    if cfg.oversampling:
        return make_loaders(data, cfg.batch_size, tf, tf, sampler="oversample", workers=cfg.workers, seed=cfg.seed,
                            augment_copies=randaugment(cfg))
    return make_loaders(data, cfg.batch_size, tf, tf, sampler="shuffle", workers=cfg.workers, seed=cfg.seed)


def loss_fn(cfg, model, weight=None):
    """CE (with `weight`), label-smoothed while `model` trains when the switch is on; the plain CE
    otherwise (validation loss = model selection, as the code does)."""
    from ..nn import functional as F
    from ..tensor import tensor

    smoothing = cfg.smoothing if cfg.label_smoothing else 0.0
    w = None if weight is None else np.asarray(weight, np.float32)

    def loss(logits, labels, *rest):
        wt = None if w is None else tensor(w.astype(logits.dtype))
        return F.cross_entropy(logits, labels, weight=wt, label_smoothing=smoothing if model.training else 0.0)

    return loss


def build_backbone(name: str, num_classes: int, weights: str = "", image_size: int = 224):
    """An affectfer.models classifier with a `num_classes` head (GoogLeNet with transform_input, as
    torchvision's pretrained one; a ViT built for `image_size`)."""
    from .. import models

    kwargs = {"transform_input": True} if name == "googlenet" else {}
    if name.startswith("vit_"):
        kwargs["image_size"] = image_size
    return models.create(name, num_classes=num_classes, pretrained=weights or None, **kwargs)


class PooledFeatures(nn.Module):
    """A classifier as a feature extractor: forward = model.forward_features (B, D), the classifier
    removed (the code's Sequential(children()[:-1]))."""

    def __init__(self, model):
        super().__init__()
        from ..models.multitask import feature_dim

        self.num_features = feature_dim(model)
        model.reset_classifier(0)
        if getattr(model, "transform_input", False):
            # rebuilding GoogLeNet from its children (the code) drops transform_input
            model.transform_input = False
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def deviation_module(cfg, name: str, stage1, weights: str = ""):
    """Stage 2's model: a DeviationModule whose face copy is the fine-tuned `stage1` extractor and
    whose identity copy is the pretrained backbone (identity_init="pretrained") or stage1 itself."""
    from ..models import DeviationModule

    face = PooledFeatures(stage1)
    module = DeviationModule(face, len(CLASSES), face.num_features, eps_train=1e-6, face_bn_mode="eval")
    if cfg.identity_init == "pretrained":
        fresh = PooledFeatures(build_backbone(name, len(CLASSES), weights, cfg.image_size))
        module.identity.load_state_dict(fresh.state_dict())
    return module


def inference_model(cfg, saved):
    """Member `saved["model"]`'s architecture for its checkpoint (predict/eval): the backbone, inside
    its deviation module when the run had one; the checkpoint holds every weight, both twins too."""
    model = build_backbone(saved["model"], len(CLASSES), image_size=cfg.image_size)
    if not saved.get("deviation"):
        return model
    return deviation_module(dataclasses.replace(cfg, identity_init="stage1"), saved["model"], model)


def _fit(cfg, model, params, lr, epochs, loaders_, weight, progress, log):
    from ..optim import Adam

    train_loader, val_loader = loaders_
    return train.fit(model, train_loader, Adam(params, lr=lr), epochs, loss_fn=loss_fn(cfg, model, weight),
                     val_loader=val_loader, num_classes=len(CLASSES), metric="val_loss", progress=progress, log=log)


def train_backbone(cfg, k: int, loaders_, progress=True, log=print):
    """Stages 1 and 2 for backbone k: (the member, its stage-1 model's validation probabilities)."""
    import affectfer as af

    name = cfg.backbones[k]
    weights = cfg.weights[k] if cfg.weights else ""
    af.manual_seed(cfg.seed + k)
    model = build_backbone(name, len(CLASSES), weights, cfg.image_size)
    if not cfg.train_all:
        model.requires_grad_(False)
        model.get_classifier().requires_grad_(True)
    log(f"\n{name}: stage 1, {'fine-tuning' if cfg.train_all else 'the head only'} (Adam lr {cfg.lr:g})")
    _fit(cfg, model, [p for p in model.parameters() if p.requires_grad], cfg.lr, cfg.epochs, loaders_, None,
         progress, log)
    stage1 = train.predict(model, loaders_[1])[0]
    if not cfg.deviation:
        return model, stage1
    model.requires_grad_(True)
    member = deviation_module(cfg, name, model, weights)
    log(f"{name}: stage 2, deviation module (Adam lr {cfg.deviation_lr:g}, class weights {list(cfg.deviation_weights)})")
    _fit(cfg, member, [p for p in member.parameters() if p.requires_grad], cfg.deviation_lr, cfg.deviation_epochs,
         loaders_, cfg.deviation_weights, progress, log)
    return member, stage1


def load(cfg, data):
    from ._common import load_data, synthetic_data

    if data is None:
        return synthetic_data(CLASSES, cfg.train_size, cfg.val_size, cfg.image_size, seed=cfg.seed,
                              balanced_train=False)
    return load_data(data, CLASSES, cfg.val_fraction, cfg.seed)


# --------------------------------------------------------------------------------------------- run

def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Train every backbone (stage 1, then stage 2 with `deviation`), vote, and return the ensemble's
    macro F1 over the six classes ("macro_f1"), accuracy, per-class F1, and each member's macro F1
    after stage 1 and as a member."""
    import affectfer as af

    from .. import metrics
    from ..models import SoftVotingEnsemble
    from ._common import class_counts, classification_metrics, ensemble_probabilities, save_model, write_results

    config.validate()
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    d = load(config, data)
    loaders_ = loaders(config, d)
    counts = class_counts(d.train.labels, len(CLASSES))
    log(f"HUST-ANT LSD: {len(d.train)} training faces ({', '.join(f'{c} {n}' for c, n in zip(CLASSES, counts))}), "
        f"{len(loaders_[0].sampler)} per epoch with the oversampling copies" if config.oversampling else
        f"HUST-ANT LSD: {len(d.train)} training faces, {len(d.val)} validation faces")
    names = config.backbones if config.ensemble else config.backbones[:1]
    members, results = [], {"stage1_macro_f1": {}, "members_macro_f1": {}}
    for k, name in enumerate(names):
        member, stage1 = train_backbone(config, k, loaders_, progress, log)
        members.append(member)
        labels = np.asarray(d.val.labels)
        results["stage1_macro_f1"][name] = float(metrics.macro_f1(labels, stage1.argmax(1), len(CLASSES)))
        probs = train.predict(member, loaders_[1])[0]
        results["members_macro_f1"][name] = float(metrics.macro_f1(labels, probs.argmax(1), len(CLASSES)))
    ensemble = SoftVotingEnsemble(members)
    probs, labels = ensemble_probabilities(ensemble, loaders_[1])
    pred = probs.argmax(1)
    results.update(classification_metrics(labels, pred, CLASSES))
    log(metrics.classification_report(labels, pred, CLASSES))
    log("members' macro F1: " + ", ".join(f"{n} {v:.4f}" for n, v in results["members_macro_f1"].items())
        + f"; ensemble {results['macro_f1']:.4f}")
    if out is not None:
        for name, member in zip(names, members):
            save_model(out, f"{'deviation' if config.deviation else 'stage1'}_{name}", member,
                       {"model": name, "deviation": config.deviation, "num_classes": len(CLASSES),
                        "classes": list(CLASSES), "image_size": config.image_size, "mean": list(config.mean),
                        "std": list(config.std), "antialias": False}, recipe_config=config)
    results["seconds"] = time.perf_counter() - started
    write_results(out, config, results)
    return results
