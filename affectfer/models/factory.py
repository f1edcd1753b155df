"""A timm-like factory: `create(name, num_classes=..., pretrained=PATH, in_chans=3)` and
`list_models()`, over every architecture in affectfer.models.

`pretrained` is a local weights file (safetensors, a torch .pth read without torch, a VGGFace2
pickle with format="vggface2"): clusters often have no internet, so nothing is downloaded. Loading is
by name (affectfer.weights.load_weights, strict=False): a classifier of another size is skipped, as
after `reset_classifier`, and the skipped names are reported on the returned model as
`model.pretrained_report`.
"""
from __future__ import annotations

import fnmatch
import math

import numpy as np

from .. import nn
from ..tensor import tensor
from .dan import dan
from .efficientnet import efficientnet_b0
from .googlenet import googlenet
from .mobilevit import (mobilevitv2_050, mobilevitv2_075, mobilevitv2_100, mobilevitv2_125, mobilevitv2_150,
                        mobilevitv2_175, mobilevitv2_200)
from .resnet import resnet18, resnet34, resnet50
from .vit import vit_b_16

_MODELS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "dan": dan,
           "efficientnet_b0": efficientnet_b0, "googlenet": googlenet, "vit_b_16": vit_b_16}
_MODELS.update({f.__name__: f for f in (mobilevitv2_050, mobilevitv2_075, mobilevitv2_100, mobilevitv2_125,
                                        mobilevitv2_150, mobilevitv2_175, mobilevitv2_200)})


def register_model(name: str, constructor) -> None:
    """Make `constructor(num_classes=..., **kwargs)` available to create() under `name`."""
    _MODELS[name] = constructor


def list_models(pattern: str = "*") -> list:
    """Sorted model names matching a glob pattern, e.g. list_models("resnet*")."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create(name: str, num_classes: int = 1000, pretrained=None, in_chans: int = 3, **kwargs):
    """Build model `name` with a `num_classes` head. `pretrained`: a weights file loaded by name with
    the head skipped when its size differs. `in_chans` other than 3 adapts the first convolution as
    timm does: 1 channel sums the RGB filters; more channels repeat them, scaled by 3 / in_chans, so
    a gray or stacked input sees the same response magnitudes as the pretrained RGB one."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    model = _MODELS[name](num_classes=num_classes, **kwargs)
    model.pretrained_report = None
    if pretrained is not None:
        from ..weights import load_weights

        model.pretrained_report = load_weights(model, pretrained, strict=False)
    if in_chans != 3:
        _adapt_input_conv(model, in_chans)
    return model


def _first_conv(model):
    for _, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ValueError(f"{type(model).__name__} has no convolution to adapt to in_chans")


def _adapt_input_conv(model, in_chans: int) -> None:
    conv = _first_conv(model)
    if conv.groups != 1 or conv.in_channels != 3:
        raise ValueError(f"the first convolution has {conv.in_channels} input channels and groups={conv.groups}; "
                         "in_chans adapts only a plain 3-channel stem")
    w = np.asarray(conv.weight.numpy(), dtype=np.float64)
    if in_chans == 1:
        new = w.sum(axis=1, keepdims=True)
    else:
        new = np.tile(w, (1, math.ceil(in_chans / 3), 1, 1))[:, :in_chans] * (3.0 / in_chans)
    conv.weight = nn.Parameter(tensor(new.astype(conv.weight.numpy().dtype)))
    conv.in_channels = in_chans
