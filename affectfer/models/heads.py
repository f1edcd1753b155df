"""Heads and wrappers the multi-task and ensemble methods put on top of a backbone.

- `ExpressionHead`: Linear -> optional BatchNorm1d (DAN's classifier).
- `LandmarkHead`: two Linear layers for the x and y coordinates of 68 points, stacked to (B, 68, 2)
  (the IXLab ABAW4 multi-task model; trained with an MSE over every coordinate).
- `ValenceArousalHead`: Linear -> optional BN -> tanh (the CNU ABAW4 head); without tanh (the HUST
  head) clip the predictions to [-1, 1] when evaluating, as that code does at test time.
- `ActionUnitHead`: one logit per AU (train with BCE-with-logits and per-AU pos_weight).
- `SharedTrunk`: Linear-BN-Linear-BN without activation, applied to several branch vectors with the
  same weights (IXLab's 512 -> 256 -> 128 shared layers).
- `DeviationModule`: a frozen identity extractor and a trainable face extractor from the same
  weights; the feature is their difference (Zhang et al., "Learning a Facial Expression Embedding
  Disentangled from Identity", CVPR 2021; the HUST ABAW4 code's generic form).
- `SoftVotingEnsemble`: the weighted mean of the members' softmax probabilities.
"""
from __future__ import annotations

import copy

from .. import nn
from ..autograd import no_grad
from ..nn import functional as F
from ..tensor import stack


class ExpressionHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, bn: bool = True):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)
        self.bn = nn.BatchNorm1d(num_classes) if bn else None

    def forward(self, x):
        x = self.fc(x)
        return self.bn(x) if self.bn is not None else x


class LandmarkHead(nn.Module):
    def __init__(self, in_features: int, num_points: int = 68):
        super().__init__()
        self.encode1 = nn.Linear(in_features, num_points)  # x coordinates
        self.encode2 = nn.Linear(in_features, num_points)  # y coordinates

    def forward(self, x):
        return stack([self.encode1(x), self.encode2(x)], dim=2)


class ValenceArousalHead(nn.Module):
    def __init__(self, in_features: int, bn: bool = True, activation: str | None = "tanh"):
        super().__init__()
        if activation not in ("tanh", None):
            raise ValueError(f"activation must be 'tanh' or None, got {activation!r}")
        self.fc = nn.Linear(in_features, 2)
        self.bn = nn.BatchNorm1d(2) if bn else None
        self.activation = activation

    def forward(self, x):
        x = self.fc(x)
        if self.bn is not None:
            x = self.bn(x)
        return x.tanh() if self.activation == "tanh" else x


class ActionUnitHead(nn.Module):
    def __init__(self, in_features: int, num_aus: int = 12):
        super().__init__()
        self.fc = nn.Linear(in_features, num_aus)

    def forward(self, x):
        return self.fc(x)


class SharedTrunk(nn.Module):
    """Linear(d0, d1) -> BN1d(d1) -> Linear(d1, d2) -> BN1d(d2), no activation. Calling it on several
    branches applies the same weights; in training each call updates the BN statistics, as the
    reference (which calls it twice per step) does."""

    def __init__(self, dims=(512, 256, 128)):
        super().__init__()
        if len(dims) != 3:
            raise ValueError(f"dims must be (in, hidden, out), got {dims}")
        self.sharedfc1 = nn.Linear(dims[0], dims[1])
        self.sharedbn1 = nn.BatchNorm1d(dims[1])
        self.sharedfc2 = nn.Linear(dims[1], dims[2])
        self.sharedbn2 = nn.BatchNorm1d(dims[2])

    def forward(self, x):
        return self.sharedbn2(self.sharedfc2(self.sharedbn1(self.sharedfc1(x))))


class DeviationModule(nn.Module):
    """feature = face(x) - identity(x) (+ `eps_train` in training, as the HUST code adds 1e-6), then a
    Linear classifier. `extractor` is a feature extractor module ((B, 3, H, W) -> (B, D)), usually
    pretrained: it becomes the face twin and a deep copy of it the identity twin, so both start
    equal; a callable that builds one is accepted too (it is called twice and the identity copy
    receives the face copy's weights). The identity copy is frozen
    and always in eval mode (no gradient, no BatchNorm updates). `face_bn_mode="eval"` keeps the face
    extractor in eval mode during training too (the HUST recipe); "train" fine-tunes it normally.
    `sigmoid=True` gives the FUXI variant sigmoid(face) - sigmoid(identity)."""

    def __init__(self, extractor, num_classes: int, feature_dim: int, sigmoid: bool = False,
                 eps_train: float = 1e-6, face_bn_mode: str = "eval"):
        super().__init__()
        if face_bn_mode not in ("eval", "train"):
            raise ValueError(f"face_bn_mode must be 'eval' or 'train', got {face_bn_mode!r}")
        if isinstance(extractor, nn.Module):
            self.face = extractor
            self.identity = copy.deepcopy(extractor)
        else:
            self.face = extractor()
            self.identity = extractor()
            self.identity.load_state_dict(self.face.state_dict())
        self.identity.requires_grad_(False)
        self.classifier = nn.Linear(feature_dim, num_classes)
        self.sigmoid, self.eps_train, self.face_bn_mode = sigmoid, eps_train, face_bn_mode
        self.train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.identity.eval()
        if self.face_bn_mode == "eval":
            self.face.eval()
        return self

    def features(self, x):
        with no_grad():
            reference = self.identity(x)
        face = self.face(x)
        if self.sigmoid:
            face, reference = face.sigmoid(), reference.sigmoid()
        deviation = face - reference
        return deviation + self.eps_train if self.training and self.eps_train else deviation

    def forward(self, x):
        return self.classifier(self.features(x))


class SoftVotingEnsemble(nn.Module):
    """Averages the members' softmax probabilities, optionally weighted: returns (B, C) probabilities
    (argmax = the ensemble's prediction). `output_index` picks the logits of multi-output members."""

    def __init__(self, models, weights=None, output_index: int = 0):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("SoftVotingEnsemble needs at least one model")
        if weights is not None:
            weights = [float(w) for w in weights]
            if len(weights) != len(models) or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"weights must be {len(models)} non-negative numbers with a positive sum, got {weights}")
        self.members = nn.ModuleList(models)
        self.weights = weights
        self.output_index = output_index

    def forward(self, x):
        weights = self.weights or [1.0] * len(self.members)
        total = None
        for model, w in zip(self.members, weights):
            out = model(x)
            logits = out[self.output_index] if isinstance(out, tuple) else out
            p = F.softmax(logits, dim=1) * (w / sum(weights))
            total = p if total is None else total + p
        return total
