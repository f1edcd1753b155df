"""Building blocks that several architectures share: squeeze-and-excitation, the conv-BN-ReLU unit
of the Inception family, and the input rescaling of torchvision's Inception ports."""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..tensor import cat


def _global_average(x):
    return F.adaptive_avg_pool2d(x, 1)


def squeeze_excitation(input, reduce, expand, activation, scale_activation, pool=_global_average):
    """Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks"): each channel of
    `input` (N, C, H, W) times scale_activation(expand(activation(reduce(pool(input))))), where pool
    squeezes H, W to 1 x 1 and reduce / expand are the 1x1 convolutions C -> C/r -> C. The one
    implementation behind SqueezeExcitation and the VGGFace2 SE bottleneck, which keeps its two
    convolutions on the block itself (models.senet)."""
    return input * scale_activation(expand(activation(reduce(pool(input)))))


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: global average -> 1x1 conv `fc1` (input_channels ->
    squeeze_channels, with bias) -> activation -> 1x1 conv `fc2` (back, with bias) ->
    scale_activation, scaling the input per channel. fc1/fc2 are also timm's and Cadene's
    `se_module` names. activation / scale_activation: module classes (ReLU and Sigmoid by default,
    as torchvision; EfficientNet passes SiLU). `reduction` gives squeeze_channels as
    input_channels // reduction instead (SENet's ratio r, 16 in Hu et al.)."""

    def __init__(self, input_channels: int, squeeze_channels: int | None = None, activation=nn.ReLU,
                 scale_activation=nn.Sigmoid, reduction: int | None = None):
        super().__init__()
        if (squeeze_channels is None) == (reduction is None):
            raise ValueError(f"SqueezeExcitation: give exactly one of squeeze_channels and reduction, got "
                             f"squeeze_channels={squeeze_channels!r}, reduction={reduction!r}")
        if reduction is not None:
            if not isinstance(reduction, int) or reduction < 1:
                raise ValueError(f"SqueezeExcitation: reduction must be a positive int, got {reduction!r}")
            squeeze_channels = max(1, input_channels // reduction)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, input):
        return squeeze_excitation(input, self.fc1, self.fc2, self.activation, self.scale_activation, self.avgpool)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU: the unit of torchvision's GoogLeNet and
    Inception-v3, named `conv` and `bn` as there."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        # BN -> ReLU in one pass (batch_norm_relu): one read and write of the activation instead of
        # two, the same values and the same state_dict as torchvision's separate ReLU
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001, fused_relu=True)

    def forward(self, x):
        return self.bn(self.conv(x))


# ImageNet channel statistics: transform_input maps an input normalised with them to the
# (x - 0.5) / 0.5 scaling the original Caffe/TensorFlow Inception weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def inception_transform_input(x):
    """torchvision's `transform_input` of GoogLeNet and Inception-v3: x * (std / 0.5) + (mean - 0.5) / 0.5
    per channel, an ImageNet-normalised RGB batch -> the [-1, 1] scaling of the ported weights."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"transform_input needs (N, 3, H, W) RGB input, got shape {tuple(x.shape)}")
    return cat([x[:, c:c + 1] * (IMAGENET_STD[c] / 0.5) + (IMAGENET_MEAN[c] - 0.5) / 0.5 for c in range(3)], 1)
