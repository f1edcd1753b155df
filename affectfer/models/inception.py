"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision")
with exactly torchvision's structure, parameter names, shapes and initialisation. Reference:
torchvision/models/inception.py (torchvision 0.29): every convolution is a BasicConv2d (conv without
bias, BatchNorm eps 1e-3, ReLU); the blocks Mixed_5b..Mixed_7c are InceptionA/B/C/D/E; an auxiliary
classifier `AuxLogits` reads Mixed_6e; weights start from N(0, 0.1^2) truncated to [-2, 2] (the
auxiliary fc from N(0, 0.001^2)), batch norms at weight 1, bias 0. 27,161,264 parameters at 1000
classes with the auxiliary head. The input must be at least 75 x 75 (299 x 299 for the pretrained
weights, and for the auxiliary head in training mode).

    model = inception_v3(num_classes=7)
    model.load_state_dict(torchvision_state_dict)    # names match one to one

torchvision's pretrained file (`inception_v3_google-0cc3c7bd.pth`) carries AuxLogits; with
aux_logits=False its keys are skipped by affectfer.weights.load_weights. Its model is built with
transform_input=True (the weights expect (x - 0.5) / 0.5 input): pass it when loading them.

Feature mode (SMM-EmotionNet and other heads on an intermediate map): `forward_features(x,
stop="Mixed_6e")` runs the stem and blocks up to and including Mixed_6e (transform_input applied
if set) and returns that map, (N, 768, 17, 17) at 299 x 299:

    backbone = inception_v3(aux_logits=False, transform_input=True)
    load_weights(backbone, "inception_v3_google-0cc3c7bd.pth", strict=False)
    fmap = backbone.forward_features(x, stop="Mixed_6e")     # (N, 768, 17, 17)
"""
from __future__ import annotations

from collections import namedtuple

from .. import nn
from ..nn import functional as F
from ..tensor import cat
from .blocks import BasicConv2d, inception_transform_input

# torchvision's training-mode output with the auxiliary head on
InceptionOutputs = namedtuple("InceptionOutputs", ["logits", "aux_logits"])

MIN_SIZE = 75  # the smallest input the stride-2 stages leave a non-empty map for (1 x 1 after Mixed_7c)
AUX_MIN_MAP = 17  # the auxiliary head's 5x5 / 3 pool then 5x5 conv need 17 x 17 (input 299 x 299)


def _avg3(x):
    # the pooling branch of InceptionA/C/E: 3x3, stride 1, zero padding counted in the average
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35 x 35 block: 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; avg pool -> 1x1 (pool_features)."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3 stride 2; 1x1 -> 3x3 -> 3x3 stride 2; max pool stride 2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (1x7 and 7x1) of width channels_7x7."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            bd = conv(bd)
        return cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3 stride 2; 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2; max pool."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 x 8 block with expanded filter banks: the 3x3 branches split into parallel 1x3 and 3x1."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        return cat([self.branch1x1(x), b3, bd, self.branch_pool(_avg3(x))], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e: 5x5 avg pool stride 3 -> 1x1 to 128 -> 5x5 to 768 -> global
    average -> fc."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# the trunk in order: the names forward_features(stop=...) accepts
_TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
          "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
          "Mixed_7a", "Mixed_7b", "Mixed_7c")


class Inception3(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 init_weights: bool = True, dropout: float = 0.5):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        if init_weights:
            for name, m in self.named_modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    # torchvision gives only the auxiliary fc its own std (0.001); the 0.01 it sets on
                    # AuxLogits.conv1 sits on the BasicConv2d, not on the Conv2d its init loop reads
                    std = 0.001 if name == "AuxLogits.fc" else 0.1
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _run(self, x, stop: str):
        """The trunk from the input to block `stop` included, and the auxiliary logits (training
        mode with the head on, and only when the trunk passes Mixed_6e)."""
        if x.ndim != 4 or min(x.shape[2:]) < MIN_SIZE:
            raise ValueError(f"Inception-v3 needs (N, C, H, W) input with H, W >= {MIN_SIZE}, got shape "
                             f"{tuple(x.shape)}")
        x = inception_transform_input(x) if self.transform_input else x
        aux = None
        for name in _TRUNK:
            x = getattr(self, name)(x)
            if name == "Mixed_6e" and self.AuxLogits is not None and self.training and stop == "Mixed_7c":
                if min(x.shape[2:]) < AUX_MIN_MAP:
                    raise ValueError(f"the auxiliary head needs a Mixed_6e map of at least {AUX_MIN_MAP} x {AUX_MIN_MAP} "
                                     f"(input >= 299 x 299), got {tuple(x.shape[2:])}: build the model with "
                                     "aux_logits=False to train on smaller images")
                aux = self.AuxLogits(x)
            if name == stop:
                return x, aux
        raise AssertionError(stop)  # stop is checked by the callers

    def features(self, x):
        """Everything before the pooling: (N, 3, H, W) -> (N, 2048, 8, 8) at 299 x 299."""
        return self._run(x, "Mixed_7c")[0]

    def forward_features(self, x, stop: str | None = None):
        """The pooled feature the heads consume, (N, 2048); or with `stop` the map after that trunk
        module, e.g. stop="Mixed_6e": (N, 768, 17, 17) at 299 x 299 (SMM-EmotionNet's backbone)."""
        if stop is None:
            return self.avgpool(self.features(x)).flatten(1)
        if stop not in _TRUNK:
            raise ValueError(f"forward_features: stop must be one of {', '.join(_TRUNK)}, got {stop!r}")
        return self._run(x, stop)[0]

    def forward(self, x):
        """Logits; in training mode with aux_logits=True, InceptionOutputs(logits, aux_logits) as
        torchvision returns."""
        x, aux = self._run(x, "Mixed_7c")
        logits = self.fc(self.dropout(self.avgpool(x)).flatten(1))
        if self.training and self.aux_logits:
            return InceptionOutputs(logits, aux)
        return logits

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fc for `num_classes` (timm's reset_classifier); 0 makes the model a feature
        extractor. The auxiliary head, if any, is rebuilt for the same number of classes."""
        self.fc = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()
        if self.AuxLogits is not None:
            self.AuxLogits.fc = nn.Linear(768, num_classes) if num_classes > 0 else nn.Identity()


def inception_v3(num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 dropout: float = 0.5, **kwargs) -> Inception3:
    """Inception-v3: 27,161,264 parameters at 1000 classes with the auxiliary head (torchvision's
    default), 23,834,568 without."""
    return Inception3(num_classes, aux_logits=aux_logits, transform_input=transform_input, dropout=dropout,
                      **kwargs)
