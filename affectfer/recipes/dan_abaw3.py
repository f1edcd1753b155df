"""DAN for the third ABAW challenge's expression track (paper 004, IXLab, SeoulTech; arXiv 2203.13235):
an ensemble of DANs ("Distract Your Attention", multi-head cross attention), each trained on its own
random subset of the training faces (drawn without replacement), combined by soft voting.

Sources: the published version (CVPR Workshops 2022, "Classification of Facial Expression In-the-Wild
based on Ensemble of Multi-head Cross Attention Networks") is the expression track alone (macro F1
0.346 on the validation set); its first arXiv version ("Facial Expression Recognition based on
Multi-head Cross Attention Network", 2203.13235v1) also estimated valence/arousal with the extended
DAN (mean CCC 0.44): the VA head below is that version's, and `va_head=false` gives the published
expression-only model. What we could read of either is the abstract; the components listed here are
the method's, the values neither abstract gives come from DAN's released code (below) or are marked
"not stated".

- Model: DAN (affectfer.models.dan: ResNet-18 features, 4 cross-attention heads, fc + BN) with an
  8-class head (ABAW3: the 7 basic expressions and "other"), and a valence/arousal head
  tanh(BN(FC)) on the fused attention feature.
- Losses: the softmax focal loss on the expression (gamma 2), DAN's affinity loss (learnable class
  centres) and partition loss, and 1 - CCC for valence and for arousal (Aff-Wild2's -5 marks a
  frame without VA and is skipped).
- Bagging: `members` models, each on its own `bag_fraction` subset (affectfer.data.BaggingSampler),
  whose softmax probabilities are averaged (SoftVotingEnsemble).
- Score: the ABAW3 expression criterion, macro F1 over the 8 classes.

Training defaults follow DAN's released AffectNet script (github.com/yaoing/DAN `affectnet.py`):
Adam lr 1e-4 without weight decay (centres included), ExponentialLR gamma 0.6 per
epoch, inverse class frequency sampling, flips, RandomAffine(20, translate 0.2, scale 0.8-1) with
p 0.7, ImageNet normalisation, RandomErasing. The synthetic faces carry valence/arousal; with a
user's data the first two target columns (a CSV list's third and fourth) are valence and arousal,
and data without target columns trains the expression losses only.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import nn
from ._common import AT_LEAST_0, AT_LEAST_1, SHARE, RecipeConfig, IMAGENET_MEAN, IMAGENET_STD, param

PAPER = ("Jeong, Hong, Kim, Jeong, Jung, Kim, \"Classification of Facial Expression In-the-Wild based on Ensemble of "
         "Multi-head Cross Attention Networks\", CVPR Workshops 2022 (ABAW3), arXiv 2203.13235; DAN: Wen, Lin, Wang, "
         "Xu, \"Distract Your Attention\", arXiv 2109.07270")
SUMMARY = ("DAN (4 cross-attention heads) with an 8-class head and a tanh(BN(FC)) VA head; focal + affinity + "
           "partition + CCC losses; bagging with soft voting; macro F1 over 8 classes")
CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")  # ABAW3 order


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    focal: bool = param(True, "ablation: softmax focal loss on the expression (paper); False = cross-entropy")
    affinity: bool = param(True, "ablation: DAN's affinity loss with learnable class centres (DAN)")
    partition: bool = param(True, "ablation: DAN's partition loss over the attention heads (DAN)")
    va_head: bool = param(True, "ablation: the valence/arousal head tanh(BN(FC)) trained with 1 - CCC (the paper's "
                                "first arXiv version; False = the published expression-only model)")
    bagging: bool = param(True, "ablation: `members` models, each on its own random subset (without "
                                "replacement), soft voting (paper); False = one model on every training face")
    weighted_sampling: bool = param(True, "ablation: inverse class frequency sampling (DAN's ImbalancedDatasetSampler)"
                                          " when bagging is off; a bag is visited in a shuffled order")
    # model and losses
    num_head: int = param(4, "cross-attention heads (DAN: 4)", check=AT_LEAST_1)
    focal_gamma: float = param(2.0, "focal loss gamma (Lin et al.'s default 2)", check=AT_LEAST_0)
    focal_detach_modulator: bool = param(False, "True: (1 - p_t)^gamma is a constant in backward, as the focal loss "
                                                "in the same lab's released ABAW4 code (networks/loss.py) computes "
                                                "it; False: the textbook gradient (Lin et al.)")
    va_weight: float = param(1.0, "weight of the VA CCC terms (not stated: 1)")
    # optimisation (DAN affectnet.py)
    lr: float = param(1e-4, "Adam learning rate, model and centres (DAN affectnet.py)")
    weight_decay: float = param(0.0, "Adam weight decay (DAN affectnet.py: 0)", check=AT_LEAST_0)
    gamma: float = param(0.6, "ExponentialLR factor per epoch (DAN affectnet.py)")
    epochs: int = param(10, "epochs per member (DAN README's AffectNet run: 10)", check=AT_LEAST_1)
    batch_size: int = param(256, "batch size (DAN: 256)", check=AT_LEAST_1)
    image_size: int = param(224, "input side (DAN: 224)", check=AT_LEAST_1)
    # bagging
    members: int = param(5, "models in the ensemble (not stated: 5)", check=AT_LEAST_1)
    bag_fraction: float = param(0.8, "fraction of the training faces in each member's subset (not stated: 0.8)",
                                check=SHARE)
    # data and run
    train_size: int = param(1200, "synthetic faces: training faces (imbalanced; no neutral/other)", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces", check=AT_LEAST_1)
    seed: int = param(0, "seed of every random draw")

    @classmethod
    def tiny(cls):
        """Two members of one tiny epoch each on the synthetic faces (DAN with 2 heads at 32 x 32)."""
        return cls(image_size=32, train_size=32, val_size=16, batch_size=16, epochs=1, members=2, bag_fraction=0.5,
                   num_head=2, workers=1)


# ------------------------------------------------------------------------------------ components

class DANWithVA(nn.Module):
    """DAN plus a valence/arousal head on its fused attention feature (the sum over heads that its
    classifier reads): forward -> (logits, va (B, 2), feature map, heads)."""

    def __init__(self, num_classes: int = len(CLASSES), num_head: int = 4):
        super().__init__()
        from ..models import ValenceArousalHead, dan

        self.dan = dan(num_classes=num_classes, num_head=num_head)
        self.va = ValenceArousalHead(512, bn=True, activation="tanh")

    def forward(self, x):
        logits, fmap, heads = self.dan(x)
        return logits, self.va(heads.sum(dim=1)), fmap, heads


def build_model(cfg):
    from ..models import dan

    return DANWithVA(len(CLASSES), cfg.num_head) if cfg.va_head else dan(num_classes=len(CLASSES), num_head=cfg.num_head)


def inference_model(cfg, saved=None):
    """A member's architecture for its checkpoint (predict/eval): DAN, with the VA head if it had one."""
    return build_model(cfg)


class Loss:
    """The recipe's loss over the model's outputs: a dict of named terms (train.fit logs each)."""

    def __init__(self, cfg):
        from ..losses import AffinityLoss, MultiTaskLoss, PartitionLoss

        self.cfg = cfg
        focal = {"gamma": cfg.focal_gamma, "detach_modulator": cfg.focal_detach_modulator}
        self.expression = MultiTaskLoss({"expression": "focal" if cfg.focal else "ce"},
                                        options={"expression": focal} if cfg.focal else None)
        self.va = MultiTaskLoss({"va": "ccc"}, weights={"va": cfg.va_weight}) if cfg.va_head else None
        self.affinity = AffinityLoss(len(CLASSES), 512) if cfg.affinity else None
        self.partition = PartitionLoss() if cfg.partition else None

    def parameters(self):
        """The affinity loss's centres: trained by the model's optimizer, as DAN does."""
        return list(self.affinity.parameters()) if self.affinity is not None else []

    def __call__(self, outputs, labels, targets=None):
        if self.va is not None:
            logits, va, fmap, heads = outputs
        else:
            logits, fmap, heads = outputs
        terms = self.expression((logits,), labels)
        if self.va is not None and targets is not None:  # data without VA columns trains the expression only
            terms.update(self.va((va,), np.ascontiguousarray(np.asarray(targets)[:, :2])))
        if self.affinity is not None:
            terms["affinity"] = self.affinity(fmap, labels)
        if self.partition is not None:
            terms["partition"] = self.partition(heads)
        return terms


def transforms(cfg):
    """(training, evaluation) pipelines of DAN's AffectNet script."""
    from .. import transforms as T

    size = T.Resize((cfg.image_size, cfg.image_size))
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([size, T.RandomHorizontalFlip(),
                       T.RandomApply([T.RandomAffine(20, translate=(0.2, 0.2), scale=(0.8, 1.0))], p=0.7),
                       T.ToTensor(), normalize, T.RandomErasing()])
    return train, T.Compose([size, T.ToTensor(), normalize])


# --------------------------------------------------------------------------------------------- run

def _train_one(cfg, data, sampler, val_loader, train_tf, progress, log, plot_dir=None):
    from ..data import Loader
    from ..optim import Adam
    from ..optim.lr_scheduler import ExponentialLR
    from ..train import fit

    model = build_model(cfg)
    loss = Loss(cfg)
    loader = Loader(data.train, batch_size=min(cfg.batch_size, len(sampler)), sampler=sampler, transform=train_tf,
                    workers=cfg.workers, seed=cfg.seed, drop_last=True)
    optimizer = Adam(list(model.parameters()) + loss.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    fit(model, loader, optimizer, cfg.epochs, loss_fn=loss, val_loader=val_loader, num_classes=len(CLASSES),
        scheduler=ExponentialLR(optimizer, gamma=cfg.gamma), progress=progress, log=log, plot_dir=plot_dir,
        class_names=CLASSES)
    return model


def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Train the member(s) and return the ensemble's macro F1 over the 8 classes ("macro_f1", the
    ABAW3 criterion), accuracy, each member's macro F1 and, with the VA head and VA targets, the
    mean CCC of the members' averaged valence/arousal."""
    import affectfer as af

    from .. import metrics
    from ..train import predict_outputs
    from ._common import (bagging, classification_metrics, ensemble_probabilities, load_data, make_loaders,
                          make_sampler, save_model, synthetic_data, write_results)

    config.validate()
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    if data is None:
        data_ = synthetic_data(CLASSES, config.train_size, config.val_size, config.image_size, seed=config.seed,
                               targets=("va",))
    else:
        data_ = load_data(data, CLASSES, config.val_fraction, config.seed)
    train_tf, eval_tf = transforms(config)
    _, val_loader = make_loaders(data_, config.batch_size, train_tf, eval_tf, workers=config.workers, seed=config.seed)
    n = len(data_.train)

    def member(k, sampler):
        log(f"\nmember {k + 1}/{config.members}: {len(sampler)} of {n} training faces")
        return _train_one(config, data_, sampler, val_loader, train_tf, progress, log)

    if config.bagging:
        ensemble = bagging(config.members, config.bag_fraction, n, config.seed, member)
        models_ = list(ensemble.members)
    else:
        sampler = make_sampler("weighted" if config.weighted_sampling else "shuffle", data_.train.labels, len(CLASSES),
                               config.seed)
        models_ = [_train_one(config, data_, sampler, val_loader, train_tf, progress, log, plot_dir=out)]
        from ..models import SoftVotingEnsemble

        ensemble = SoftVotingEnsemble(models_)
    probs, labels = ensemble_probabilities(ensemble, val_loader)
    results = classification_metrics(labels, probs.argmax(1), CLASSES)
    member_outputs = [predict_outputs(m, val_loader) for m in models_]
    results["member_macro_f1"] = [float(metrics.macro_f1(labels, o[0][0].argmax(1), len(CLASSES)))
                                  for o in member_outputs]
    targets = member_outputs[0][1]
    if config.va_head and len(targets) > 1:
        va = np.mean([o[0][1] for o in member_outputs], axis=0)
        results["va_ccc"] = float(metrics.abaw_va_score(targets[1][:, :2], va))
    log(f"ensemble of {len(models_)}: macro F1 over 8 classes {results['macro_f1']:.4f} (members "
        + ", ".join(f"{v:.4f}" for v in results["member_macro_f1"]) + ")"
        + (f", VA CCC {results['va_ccc']:.4f}" if "va_ccc" in results else ""))
    if out is not None:
        for k, m in enumerate(models_):
            save_model(out, f"dan_abaw3_member{k}", m,
                       {"model": "dan", "classes": list(CLASSES), "num_classes": len(CLASSES),
                        "image_size": config.image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
                       recipe_config=config)
    results["seconds"] = time.perf_counter() - started
    write_results(out, config, results)
    return results
