"""SE-ResNet-50 of the VGGFace2 face-recognition models (`senet50_ft`, `senet50_scratch`; Cao et al.
2018, "VGGFace2: A dataset for recognising faces across pose and age"), with the structure and
parameter names of their PyTorch conversion (github.com/cydonia999/VGGFace2-pytorch,
models/senet.py), so its `*_weight.pkl` files load by name:

    model = se_resnet50(num_classes=8631)
    load_weights(model, "senet50_ft_weight.pkl", format="vggface2")   # the opt-in pickle reader
    x = model.preprocessing.reorder(batch)                              # BGR, mean-subtracted

It is ResNet-50 in the VGGFace2 layout (models.resnet: stride on the first 1x1 convolution, stem max
pool 3x3 / 2 without padding and rounding up, BatchNorm eps 1e-5) with squeeze-and-excitation (Hu
et al. 2018, reduction 16) in every bottleneck: after bn3 and before the residual addition, the
bn3 output is scaled per channel by sigmoid(conv5(relu(conv4(global average)))). The conversion
keeps the two 1x1 convolutions (with bias) on the block itself, so their names are
`layer{s}.{b}.conv4.*` (C -> C/16) and `layer{s}.{b}.conv5.*` (C/16 -> C), not a sub-module's.
The weight files have no num_batches_tracked (load_weights accepts its absence).
"""
from __future__ import annotations

from .. import nn
from .blocks import squeeze_excitation
from .resnet import Bottleneck, ResNet


class SEBottleneck(Bottleneck):
    """The VGGFace2 SE bottleneck: Bottleneck's conv1..bn3 (stride on the 1x1 by default), then
    squeeze-and-excitation through conv4 / conv5, then the shortcut and ReLU."""

    reduction = 16

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, stride_on: str = "1x1"):
        super().__init__(inplanes, planes, stride, downsample, stride_on)
        channels = planes * self.expansion
        self.conv4 = nn.Conv2d(channels, channels // self.reduction, kernel_size=1)
        self.conv5 = nn.Conv2d(channels // self.reduction, channels, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = squeeze_excitation(out, self.conv4, self.conv5, self.relu, self.sigmoid)
        return self.relu(out + identity)


class SENet(ResNet):
    """ResNet with SE bottlenecks, in the VGGFace2 layout unless told otherwise."""

    def __init__(self, layers, num_classes: int = 1000, layout: str = "vggface2", **kwargs):
        super().__init__(SEBottleneck, layers, num_classes, layout=layout, **kwargs)


def se_resnet50(num_classes: int = 1000, **kwargs) -> SENet:
    """SE-ResNet-50 (VGGFace2 `senet50_ft` layout and names): 28,088,024 parameters at 1000 classes
    (the VGGFace2 files have 8631: num_classes=8631 to load one strictly)."""
    return SENet([3, 4, 6, 3], num_classes, **kwargs)
