"""SE-ResNet-50 expression recognition for the first ABAW challenge (paper 003: Cafarelli, Massoli,
Falchi, Gennaro, Amato, "Expression Recognition Analysis in the Wild", arXiv 2101.09231): a VGGFace2
SE-ResNet-50 (SENet-50, Hu et al.) fine-tuned on the seven basic expressions of Aff-Wild2.

- Class weights w_c = n_max / n_c in the cross-entropy (losses.class_weights kind "max_over_count").
- SGD with momentum and two learning rates: a small one for the pretrained backbone, a larger one
  for the new classifier.
- Gradient accumulation: 4 batches of 64 per optimizer step (an effective batch of 256 on one GPU).
- Validation every N iterations (Aff-Wild2 epochs are long), keeping the weights with the best
  ABAW 2020 expression criterion 0.67 * macro F1 + 0.33 * accuracy over the 7 classes.

Input: the VGGFace2 convention (affectfer.models.preprocessing("vggface2"); github.com/cydonia999/
VGGFace2-pytorch `datasets/vgg_face2.py`): a face
crop resized to 256/224 of the input side, a random crop (centre crop for evaluation), random
grayscale with p 0.2, and the Caffe per-channel mean subtracted from 0-255 pixels without scaling.
The Caffe weights expect BGR; `weights` converted from them get their first convolution's input
channels reversed on load, so the pipeline stays RGB. `preprocess="imagenet"` uses the ImageNet
preset instead.

Sources: the method's components above are the paper's; its abstract is what we could read, so the
values it does not give are taken from the VGGFace2 models' own training script
(github.com/cydonia999/VGGFace2-pytorch `demo.py`: SGD momentum 0.9, weight decay 0, a validation
every 1000 iterations), and the values neither gives (the two learning rates, epochs) are marked
"not stated" in their help: set them from the paper with --set. The criterion is the challenge's
(Kollias et al., arXiv 2001.11409).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..models.presets import PRESETS, preprocessing
from ._common import AT_LEAST_0, AT_LEAST_1, UNIT, RecipeConfig, one_of, param

PAPER = ("Cafarelli, Massoli, Falchi, Gennaro, Amato, \"Expression Recognition Analysis in the Wild\", ABAW 2020 "
         "expression track (FG 2020), arXiv 2101.09231; the challenge and its 0.67 F1 + 0.33 accuracy criterion: "
         "Kollias, Schulc, Hajiyev, Zafeiriou, \"Analysing Affective Behavior in the First ABAW 2020 Competition\", "
         "arXiv 2001.11409")
SUMMARY = ("SE-ResNet-50 from VGGFace2, class weights n_max/n_c, SGD momentum with backbone/head learning rates, "
           "4x64 gradient accumulation, validation every N iterations, selection on 0.67 F1 + 0.33 Acc (7 classes)")
CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")  # ABAW 2020 order


@dataclasses.dataclass
class Config(RecipeConfig):
    # components (ablation switches)
    class_weighting: bool = param(True, "ablation: cross-entropy weights n_max / n_c (paper); False = unweighted")
    two_learning_rates: bool = param(True, "ablation: lr_backbone for the backbone and lr_head for the classifier "
                                           "(paper); False = lr_backbone everywhere")
    accumulation: bool = param(True, "ablation: sum accumulate_steps batches per SGD step (paper: 4 x 64); "
                                     "False = a step per batch")
    iteration_validation: bool = param(True, "ablation: validate every val_every iterations (paper) as well as at "
                                             "each epoch's end; False = epochs only")
    abaw_selection: bool = param(True, "ablation: keep the weights with the best 0.67 F1 + 0.33 Acc (paper); False = "
                                       "the best macro F1")
    # model and input
    backbone: str = param("se_resnet50", "the backbone (paper: SE-ResNet-50, affectfer.models name 'se_resnet50')")
    weights: str = param("", "pretrained weights (paper: VGGFace2 senet50_ft, converted with `python -m affectfer "
                             "convert-weights --format vggface2`); empty = random init")
    preprocess: str = param("vggface2", "an affectfer.models.preprocessing preset: 'vggface2' (Caffe mean "
                                        "subtraction on 0-255 pixels, the weights' convention: VGGFace2-pytorch datasets/vgg_face2.py) or "
                                        "'imagenet'", check=one_of(*PRESETS))
    image_size: int = param(224, "input side (the VGGFace2 models' 224)", check=AT_LEAST_1)
    # optimisation
    batch_size: int = param(64, "batch size (paper: 64)", check=AT_LEAST_1)
    accumulate_steps: int = param(4, "batches per optimizer step (paper: 4, an effective 256)", check=AT_LEAST_1)
    lr_backbone: float = param(1e-3, "SGD learning rate of the pretrained backbone (not stated: set from the paper)")
    lr_head: float = param(1e-2, "SGD learning rate of the new classifier (not stated: set from the paper)")
    momentum: float = param(0.9, "SGD momentum (VGGFace2-pytorch demo.py: 0.9)", check=UNIT)
    weight_decay: float = param(0.0, "SGD weight decay (VGGFace2-pytorch demo.py: 0)", check=AT_LEAST_0)
    epochs: int = param(5, "epochs (not stated: set from the paper)", check=AT_LEAST_1)
    val_every: int = param(1000, "optimizer steps between validations (paper: every N iterations; N from "
                                 "VGGFace2-pytorch demo.py's interval_validate 1000)", check=AT_LEAST_1)
    # data and run
    train_size: int = param(1200, "synthetic faces: training faces (imbalanced; no neutral class)", check=AT_LEAST_1)
    val_size: int = param(360, "synthetic faces: validation faces", check=AT_LEAST_1)
    seed: int = param(0, "seed of every random draw")

    @classmethod
    def tiny(cls):
        """One tiny epoch on the synthetic faces: ResNet-18 at 32 x 32, 3 steps of 2 x 8 faces (the
        paper's SE-ResNet-50 runs at these settings too: `--set backbone=se_resnet50`)."""
        return cls(backbone="resnet18", image_size=32, train_size=48, val_size=24, batch_size=8, accumulate_steps=2,
                   epochs=1, val_every=2, workers=1)


# ------------------------------------------------------------------------------------ components

def resize_side(cfg) -> int:
    """The side faces are resized to before the crop: the preset's resize / crop ratio (256 / 224)
    of the input side."""
    preset = preprocessing(cfg.preprocess)
    return round(cfg.image_size * preset.resize / preset.crop_size)


def transforms(cfg):
    """(training, evaluation) pipelines: short side to 256/224 of the input, random / centre crop,
    random grayscale (p 0.2) and flips for training, then the weights' normalisation."""
    from .. import transforms as T

    resize = T.Resize((resize_side(cfg),) * 2)
    normalize = preprocessing(cfg.preprocess).transforms()  # ToTensor, Normalize(the preset's mean, std)
    train = T.Compose([resize, T.RandomCrop(cfg.image_size), T.RandomGrayscale(0.2), T.RandomHorizontalFlip()]
                      + normalize)
    return train, T.Compose([resize, T.CenterCrop(cfg.image_size)] + normalize)


def build_model(cfg):
    """The backbone with a 7-class head; Caffe (BGR) VGGFace2 weights get their first convolution's
    input channels reversed so the model reads RGB."""
    from .. import models
    from ..models.factory import _first_conv
    from ..nn import Parameter
    from ..tensor import tensor

    model = models.create(cfg.backbone, num_classes=len(CLASSES), pretrained=cfg.weights or None)
    if cfg.weights and preprocessing(cfg.preprocess).channel_order == "BGR":
        conv = _first_conv(model)
        conv.weight = Parameter(tensor(np.ascontiguousarray(conv.weight.numpy()[:, ::-1])))
    return model


def head_parameters(model) -> list:
    """The classifier's parameters (the new layer the larger learning rate trains)."""
    for name in ("fc", "classifier", "head"):
        module = getattr(model, name, None)
        if module is not None:
            return list(module.parameters())
    raise ValueError(f"{type(model).__name__} has no fc/classifier/head to give its own learning rate")


def optimizer(cfg, model):
    """SGD with momentum: two parameter groups (backbone, head) or one."""
    from ..optim import SGD

    if not cfg.two_learning_rates:
        return SGD(model.parameters(), lr=cfg.lr_backbone, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    head = head_parameters(model)
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return SGD([{"params": backbone, "lr": cfg.lr_backbone}, {"params": head, "lr": cfg.lr_head}],
               lr=cfg.lr_backbone, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def loss_weights(cfg, labels) -> np.ndarray | None:
    """n_max / n_c per class; classes with no training sample get 0 (they are never a target)."""
    from ..losses import class_weights
    from ._common import class_counts

    if not cfg.class_weighting:
        return None
    counts = class_counts(labels, len(CLASSES))
    weights = np.zeros(len(CLASSES), np.float32)
    present = counts > 0
    weights[present] = class_weights(counts[present], kind="max_over_count")
    return weights


def fit_options(cfg) -> dict:
    """The train.fit arguments the switches decide."""
    return {"accumulate_steps": cfg.accumulate_steps if cfg.accumulation else 1,
            "val_every": cfg.val_every if cfg.iteration_validation else None,
            "metric": "abaw_expression" if cfg.abaw_selection else "macro_f1"}


# --------------------------------------------------------------------------------------------- run

def run(config: Config, data=None, out=None, progress=True, log=print) -> dict:
    """Fine-tune and return the best validation weights' ABAW 2020 score, macro F1 (7 classes) and
    accuracy. `out`: checkpoint, history plots, config.json and metrics.json."""
    import affectfer as af

    from .. import metrics
    from ..nn import functional as F
    from ..tensor import tensor
    from ..train import fit, predict
    from ._common import (classification_metrics, load_data, make_loaders, save_model, synthetic_data,
                          write_results)

    config.validate()
    log = log or (lambda *a: None)
    af.manual_seed(config.seed)
    started = time.perf_counter()
    if data is None:
        data_ = synthetic_data(CLASSES, config.train_size, config.val_size, config.image_size, seed=config.seed)
    else:
        data_ = load_data(data, CLASSES, config.val_fraction, config.seed)
    train_tf, eval_tf = transforms(config)
    train_loader, val_loader = make_loaders(data_, config.batch_size, train_tf, eval_tf, sampler="shuffle",
                                            workers=config.workers, seed=config.seed)
    model = build_model(config)
    weights = loss_weights(config, data_.train.labels)
    weight_tensor = tensor(weights) if weights is not None else None

    def loss_fn(logits, target, *rest):
        return F.cross_entropy(logits, target, weight=weight_tensor)

    options = fit_options(config)
    log(f"senet_abaw2020: {config.backbone}, {len(data_.train)} training faces, SGD "
        f"{'backbone %g / head %g' % (config.lr_backbone, config.lr_head) if config.two_learning_rates else config.lr_backbone}"
        f", {options['accumulate_steps']} x {config.batch_size} per step, selection on {options['metric']}")
    history = fit(model, train_loader, optimizer(config, model), config.epochs, loss_fn=loss_fn, val_loader=val_loader,
                  num_classes=len(CLASSES), progress=progress, log=log, plot_dir=out, class_names=CLASSES, **options)
    probs, labels = predict(model, val_loader)
    pred = probs.argmax(1)
    results = classification_metrics(labels, pred, CLASSES)
    results["abaw_expression"] = float(metrics.abaw_expression_score(labels, pred, len(CLASSES)))
    results["validations"] = len(history.val_metric)
    results["best_step"] = history.best_step
    results["class_weights"] = None if weights is None else [float(w) for w in weights]
    log(f"0.67 F1 + 0.33 Acc {results['abaw_expression']:.4f} (macro F1 {results['macro_f1']:.4f}, accuracy "
        f"{results['accuracy']:.4f}) after {results['validations']} validations")
    if out is not None:
        save_model(out, f"senet_abaw2020_{config.backbone}", model,
                   {"model": config.backbone, "num_classes": len(CLASSES), "classes": list(CLASSES),
                    "image_size": config.image_size, "resize": resize_side(config),
                    "mean": list(eval_tf.transforms[-1].mean), "std": list(eval_tf.transforms[-1].std)})
    results["seconds"] = time.perf_counter() - started
    write_results(out, config, results)
    return results
