"""Ensemble of multi-task networks (paper 001, IXLab, ABAW4 learning-from-synthetic-data track).

1. Model: affectfer.models.MultiTaskIXL, an emotion branch (DAN heads on a ResNet-50 map) and an
   appearance branch (a second ResNet-50) joined by shared fully connected layers; the emotion vector
   gives the 6 expression logits, the appearance vector 68 facial landmarks.
2. Two views of every face (affectfer.data.TwoViewLoader): the emotion view is flipped, warped
   (RandomAffine(20 deg, translate 0.2, scale 0.8-1) with p 0.7) and erased (RandomErasing), the
   landmark view keeps its geometry so that the landmark targets stay valid; ColorJitter(0.5, 0.5,
   0.5, 0.5) is drawn once per face and applied to both views (the authors jitter before splitting).
3. Loss: MixAugment variant A on the emotion view (lambda ~ Beta(0.1, 0.1), three forward passes:
   mixed, real, permuted real; affectfer.data.mixaugment_loss) with the class-weighted CE
   (w_c = 1 - n_c / N), DAN's affinity and partition losses on each pass, and the landmark MSE.
4. Ensemble: `members` models, each trained on its own 20% subsample of the training set (bagging,
   affectfer.data.BaggingSampler), combined by soft voting (mean softmax, SoftVotingEnsemble).

Hyper-parameters are those of the authors' code (github.com/Yeonggi-hong/ECCV2022-ABAW-competition,
mtl_finetuning_mixaug.py): Adam lr 1e-4, weight decay 0, ExponentialLR(0.6) per epoch, 12 epochs,
batch 128, seed 17, selection of each member on the validation macro F1.

Where the code and this recipe differ (each is a documented choice):
- the flips, warps and erasing are drawn per face (the code draws them once per batch: it applies
  torchvision's transforms to the whole batch tensor);
- the landmark branch runs once per step on the landmark view (the code runs the full model for
  each of the three passes; the landmark output and loss are the same, only the shared BatchNorm's
  running statistics are updated once instead of three times);
- the affinity loss takes each pass's own features (the code's mixed-model branch adds the mixed
  features' term twice and never the permuted pass's, a copy slip);
- the code's ensemble (test.py) sums the raw logits; `soft_voting=False` reproduces that.
Landmark units: the authors read raw coordinates from text files (units not documented); here they
are pixels of the image_size x image_size face divided by image_size (`normalize_landmarks`).
With --data, the list file's 136 target columns are the 68 (x, y) pairs in those pixels.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from .. import nn
from ._common import ABOVE_0, AT_LEAST_0, AT_LEAST_1, SHARE, RecipeConfig, IMAGENET_MEAN, IMAGENET_STD, param

PAPER = ("Jeong, Hong, Hong, Oh, Jung, Kim, Jeong, \"Ensemble of Multi-task Learning Networks for Facial Expression "
         "Recognition In-the-Wild with Learning from Synthetic Data\", ECCV Workshops 2022, arXiv 2207.10025")
SUMMARY = ("MultiTaskIXL (DAN emotion branch + ResNet-50 appearance branch, shared FC 512-256-128, 6 expressions + "
           "68 landmarks), two views, ColorJitter/flip/affine/erasing, MixAugment (variant A), weighted CE + DAN "
           "losses + landmark MSE, 20% bagging, soft voting")
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
NUM_POINTS = 68


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    multitask: bool = param(True, "ablation: the landmark task (appearance branch + landmark MSE, the paper's "
                                  "multi-task learning); False = the emotion branch alone")
    mixaugment: bool = param(True, "ablation: MixAugment variant A on the emotion view (code: mixaug_data/"
                                   "mixaug_criterion); False = the weighted CE on the real batch only")
    color_jitter: bool = param(True, "ablation: ColorJitter(0.5, 0.5, 0.5, 0.5) once per face, both views (code's "
                                     "--aug True)")
    augment: bool = param(True, "ablation: flip, RandomAffine (p 0.7) and RandomErasing on the emotion view (code)")
    dan_losses: bool = param(True, "ablation: DAN's affinity + partition losses on every pass (code)")
    class_weights: bool = param(True, "ablation: CE class weights 1 - n_c / N from the training counts (code)")
    bagging: bool = param(True, "ablation: each member on its own bag_fraction subsample (paper); False = every "
                                "member on the whole training set")
    soft_voting: bool = param(True, "ablation: average the members' softmax probabilities; False = sum their raw "
                                    "logits (the code's test.py)")
    normalize_landmarks: bool = param(True, "landmark targets in [0, 1] (pixels / image_size); False = pixels "
                                            "(the code's units are not documented)")
    # model
    emotion_backbone: str = param("resnet50", "emotion branch backbone under the DAN heads (code: VGGFace2 "
                                              "ResNet-50; DINO ResNet-50 is resnet50 with DINO weights)")
    appearance: str = param("resnet50", "appearance (landmark) branch backbone (code: VGGFace2 ResNet-50, DINO "
                                        "ResNet-50 or MobileViTv2)")
    emotion_weights: str = param("", "pretrained weights file for the emotion backbone (empty = random init)")
    appearance_weights: str = param("", "pretrained weights file for the appearance backbone (empty = random init)")
    num_head: int = param(4, "DAN attention heads (code)", check=AT_LEAST_1)
    # training
    image_size: int = param(224, "input side (code: Resize((224, 224)))", check=AT_LEAST_1)
    epochs: int = param(12, "epochs per member (code)", check=AT_LEAST_0)
    batch_size: int = param(128, "batch size (code)", check=AT_LEAST_1)
    lr: float = param(1e-4, "Adam learning rate (code)")
    weight_decay: float = param(0.0, "Adam weight decay (code)", check=AT_LEAST_0)
    gamma: float = param(0.6, "ExponentialLR factor per epoch (code)")
    mix_alpha: float = param(0.1, "MixAugment Beta(alpha, alpha) (code)", check=ABOVE_0)
    landmark_weight: float = param(1.0, "weight of the landmark MSE in the loss (code: 1)")
    members: int = param(5, "ensemble members (ours: five 20% bags cover the training set once in expectation)",
                         check=AT_LEAST_1)
    bag_fraction: float = param(0.2, "share of the training set each member sees (paper: 20%)", check=SHARE)
    # data and run
    train_size: int = param(1200, "synthetic faces: training faces", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces", check=AT_LEAST_1)
    seed: int = param(17, "seed of every random draw (code: torch.manual_seed(17))")

    @classmethod
    def tiny(cls):
        """One tiny epoch of two members on the synthetic faces (seconds)."""
        return cls(emotion_backbone="resnet18", appearance="resnet18", num_head=1, image_size=32, epochs=1,
                   batch_size=12, members=2, bag_fraction=0.5, train_size=48, val_size=24, workers=1)


# ------------------------------------------------------------------------------------ components

def transforms(cfg):
    """(emotion view, landmark view, evaluation) pipelines. ColorJitter leads both view pipelines so
    that a TwoViewLoader with shared_randomness draws one jitter per face for both."""
    from .. import transforms as T

    size = [T.Resize((cfg.image_size, cfg.image_size))]
    if cfg.color_jitter:
        size.append(T.ColorJitter(0.5, 0.5, 0.5, 0.5))
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    geometry = [T.RandomHorizontalFlip(), T.RandomApply([T.RandomAffine(20, translate=(0.2, 0.2), scale=(0.8, 1.0))],
                                                        p=0.7)] if cfg.augment else []
    erase = [T.RandomErasing()] if cfg.augment else []
    emotion = T.Compose(size + geometry + normalize + erase)
    landmark = T.Compose(size + normalize)
    evaluation = T.Compose([T.Resize((cfg.image_size, cfg.image_size))] + normalize)
    return emotion, landmark, evaluation


def build_model(cfg, num_classes: int = len(CLASSES)):
    from ..models import MultiTaskIXL

    return MultiTaskIXL(num_classes, NUM_POINTS, emotion_backbone=cfg.emotion_backbone, appearance=cfg.appearance,
                        num_head=cfg.num_head, emotion_pretrained=cfg.emotion_weights or None,
                        appearance_pretrained=cfg.appearance_weights or None)


@dataclasses.dataclass
class StepOutputs:
    """A training forward: (logits, F, H) per pass (mixed, real, permuted with MixAugment; real
    otherwise), the landmarks of the landmark view (None without the landmark task), the mix."""
    passes: list
    landmarks: object
    mix: object


class MultiTaskStep(nn.Module):
    """The IXLab training step as a module affectfer.train.fit drives: in training, forward takes a
    TwoViewLoader batch (emotion view, landmark view on the channel axis), runs the MixAugment
    passes and returns StepOutputs; `loss` turns them and the batch targets into the named terms.
    In eval mode forward gives (logits, landmarks) of a plain image batch (both branches see it).
    It holds the model and the affinity loss's learnable centres (trained with the model)."""

    def __init__(self, model, cfg, class_weight=None):
        super().__init__()
        from ..data import MixAugment
        from ..losses import AffinityLoss

        self.model = model
        num_classes = model.classifier.fc.out_features
        self.affinity = AffinityLoss(num_classes, 512) if cfg.dan_losses else None
        self.mixer = MixAugment(cfg.mix_alpha) if cfg.mixaugment else None
        self.class_weight = None if class_weight is None else np.asarray(class_weight, np.float32)
        self.multitask, self.dan_losses = cfg.multitask, cfg.dan_losses
        self.landmark_weight = cfg.landmark_weight

    def forward(self, x):
        if not self.training:
            logits = self.model.forward_emotion(x)[0]
            return (logits, self.model.forward_landmarks(x)) if self.multitask else logits
        if x.ndim != 4 or x.shape[1] != 6:
            raise ValueError(f"training batches are two stacked views (N, 6, H, W), got shape {tuple(x.shape)}")
        emotion, landmark_view = x[:, :3], x[:, 3:]
        mix = None
        if self.mixer is not None:
            mix = self.mixer(emotion, np.zeros(len(emotion), np.int64))  # labels are attached in loss()
            views = [mix.mixed, emotion, mix.permuted]
        else:
            views = [emotion]
        passes = [self.model.forward_emotion(v) for v in views]
        landmarks = self.model.forward_landmarks(landmark_view) if self.multitask else None
        return StepOutputs(passes, landmarks, mix)

    def _weight(self, logits):
        from ..tensor import tensor

        return None if self.class_weight is None else tensor(self.class_weight.astype(logits.dtype))

    def _landmark_loss(self, landmarks, targets):
        from ..nn import functional as F
        from ..tensor import tensor

        t = np.asarray(targets, dtype=np.float32).reshape(len(targets), NUM_POINTS, 2)
        return F.mse_loss(landmarks, tensor(t)) * self.landmark_weight

    def loss(self, outputs, labels, targets=None):
        """Named loss terms (train.fit sums them): "mixaugment" or "ce", "affinity", "partition",
        "landmarks", as the switches enable them."""
        from ..losses import partition_loss
        from ..nn import functional as F
        from ..tensor import tensor

        if not isinstance(outputs, StepOutputs):  # evaluation: the CE and the landmark MSE
            logits, landmarks = outputs if isinstance(outputs, tuple) else (outputs, None)
            terms = {"ce": F.cross_entropy(logits, labels, weight=self._weight(logits))}
            if self.multitask and targets is not None:
                terms["landmarks"] = self._landmark_loss(landmarks, targets)
            return terms
        y = np.asarray(labels, dtype=np.int64)
        logits = outputs.passes[0][0]
        terms = {}
        if outputs.mix is not None:
            perm = outputs.mix.perm
            batch = dataclasses.replace(outputs.mix, labels_a=tensor(y), labels_b=tensor(y[perm].copy()))
            from ..data import mixaugment_loss

            terms["mixaugment"] = mixaugment_loss(logits, outputs.passes[1][0], outputs.passes[2][0], batch,
                                                  weight=self._weight(logits), variant="A")
            # the mixed pass's affinity target is the permuted label, as in the code
            pass_labels = [y[perm], y, y[perm]]
        else:
            terms["ce"] = F.cross_entropy(logits, tensor(y), weight=self._weight(logits))
            pass_labels = [y]
        if self.dan_losses:
            affinity = partition = None
            for (_, fmap, heads), target in zip(outputs.passes, pass_labels):
                a = self.affinity(fmap, tensor(np.ascontiguousarray(target)))
                p = partition_loss(heads)
                affinity = a if affinity is None else affinity + a
                partition = p if partition is None else partition + p
            terms["affinity"], terms["partition"] = affinity, partition
        if outputs.landmarks is not None:
            if targets is None:
                raise ValueError("the landmark task needs landmark targets (136 columns per face)")
            terms["landmarks"] = self._landmark_loss(outputs.landmarks, targets)
        return terms


# -------------------------------------------------------------------------------------------- data

def load(cfg, data):
    """The data (RecipeData in CLASSES order), landmarks as targets when the landmark task is on."""
    from ._common import load_data, synthetic_data

    if data is None:
        d = synthetic_data(CLASSES, cfg.train_size, cfg.val_size, cfg.image_size, seed=cfg.seed,
                           targets=("landmarks",) if cfg.multitask else ())
    else:
        d = load_data(data, CLASSES, cfg.val_fraction, cfg.seed)
    if cfg.multitask:
        for ds in (d.train, d.val):
            t = getattr(ds, "targets", None)
            if t is None or t.shape[1] != 2 * NUM_POINTS:
                raise ValueError(f"the landmark task needs {2 * NUM_POINTS} target columns per face (68 x, y pairs); "
                                 f"got {None if t is None else t.shape[1]} (or --set multitask=false)")
            if cfg.normalize_landmarks:
                ds.targets = np.ascontiguousarray(t / np.float32(cfg.image_size), dtype=np.float32)
    return d


# --------------------------------------------------------------------------------------------- run

def loss_weights(cfg, labels):
    """The CE class weights: 1 - n_c / N from the training labels (the code's normedWeights), or None."""
    from ..losses import class_weights
    from ._common import class_counts

    return class_weights(class_counts(labels, len(CLASSES)), "one_minus_frequency") if cfg.class_weights else None


def train_member(cfg, k, sampler, data, class_weight, val_loader, progress=True, log=print):
    """Member k: MultiTaskIXL trained on `sampler`'s samples; returns its MultiTaskStep (eval mode
    gives (logits, landmarks)) and its History."""
    import affectfer as af

    from ..data import TwoViewDataset, TwoViewLoader
    from ..optim import Adam
    from ..optim.lr_scheduler import ExponentialLR
    from ..train import fit

    af.manual_seed(cfg.seed + k)
    emotion_tf, landmark_tf, _ = transforms(cfg)
    loader = TwoViewLoader(TwoViewDataset(data.train, emotion_tf, landmark_tf), batch_size=min(cfg.batch_size, len(sampler)),
                           sampler=sampler, seed=cfg.seed + k, drop_last=True, workers=cfg.workers,
                           shared_randomness=True)
    step = MultiTaskStep(build_model(cfg), cfg, class_weight)
    optimizer = Adam(step.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = fit(step, loader, optimizer, cfg.epochs, loss_fn=step.loss, val_loader=val_loader,
                  num_classes=len(CLASSES), scheduler=ExponentialLR(optimizer, cfg.gamma), progress=progress, log=log)
    return step, history


def combine(member_logits, soft_voting: bool = True) -> np.ndarray:
    """(N, C) ensemble scores: the mean softmax (soft voting) or the sum of the raw logits."""
    z = np.stack([np.asarray(m, np.float64) for m in member_logits])
    if not soft_voting:
        return z.sum(0)
    p = np.exp(z - z.max(2, keepdims=True))
    return (p / p.sum(2, keepdims=True)).mean(0)


def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Train the bagged members, combine them and return the ensemble's macro F1 over the six classes
    ("macro_f1"), accuracy, per-class F1, every member's macro F1 and the landmark error."""
    import affectfer as af

    from .. import metrics
    from ..data import Loader
    from ..train import predict_outputs
    from ._common import bagging, classification_metrics, save_model, write_results

    config.validate()
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    d = load(config, data)
    weight = loss_weights(config, d.train.labels)
    log(f"IXLab multi-task ensemble: {len(d.train)} training faces, {len(d.val)} validation faces, "
        f"{config.members} members on {config.bag_fraction if config.bagging else 1.0:.0%} bags")
    _, _, eval_tf = transforms(config)
    val_loader = Loader(d.val, batch_size=128, transform=eval_tf, workers=config.workers, seed=config.seed)
    histories = []

    def member(k, sampler):
        log(f"\nmember {k + 1}/{config.members}: {len(sampler)} faces")
        step, history = train_member(config, k, sampler, d, weight, val_loader, progress, log)
        histories.append(history)
        return step

    ensemble = bagging(config.members, config.bag_fraction if config.bagging else 1.0, len(d.train), config.seed,
                       member)
    outputs = [predict_outputs(m, val_loader) for m in ensemble.members]
    labels = outputs[0][1][0]
    scores = combine([o[0][0] for o in outputs], config.soft_voting)
    pred = scores.argmax(1)
    results = classification_metrics(labels, pred, CLASSES)
    results["members_macro_f1"] = [float(metrics.macro_f1(labels, o[0][0].argmax(1), len(CLASSES))) for o in outputs]
    if config.multitask:
        truth = np.asarray(d.val.targets).reshape(-1, NUM_POINTS, 2)
        results["landmark_mse"] = [float(np.mean((o[0][1] - truth) ** 2)) for o in outputs]
    log(metrics.classification_report(labels, pred, CLASSES))
    log("members' macro F1: " + ", ".join(f"{v:.4f}" for v in results["members_macro_f1"])
        + f"; ensemble ({'soft voting' if config.soft_voting else 'logit sum'}) {results['macro_f1']:.4f}")
    if out is not None:
        for k, m in enumerate(ensemble.members):
            save_model(out, f"member{k}", m.model,
                       {"model": "multitask_ixl", "num_classes": len(CLASSES), "classes": list(CLASSES),
                        "image_size": config.image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                        "model_kwargs": {"emotion_backbone": config.emotion_backbone, "appearance": config.appearance,
                                         "num_head": config.num_head}})
    results["seconds"] = time.perf_counter() - started
    results["history_terms"] = sorted(histories[0].components) if histories else []
    write_results(out, config, results)
    return results
