"""ResNet-18/34/50 with exactly torchvision's structure, parameter names, shapes and initialisation
(He et al. 2016, "Deep Residual Learning"; torchvision's Bottleneck is "v1.5": the stride sits on the
3x3 convolution). Reference: torchvision/models/resnet.py (torchvision 0.29): the same module
tree, BatchNorm eps 1e-5 and momentum 0.1, kaiming-normal (fan_out, relu) conv init, BN weight 1
and bias 0, and the default nn.Linear init for the head.

    model = resnet18(num_classes=7)
    model.load_state_dict(torchvision_state_dict)    # names match one to one

layout="vggface2" is the ResNet-50 of the VGGFace2 face-recognition models (Cao et al. 2018,
"VGGFace2: A dataset for recognising faces across pose and age"), as converted from Caffe in
github.com/cydonia999/VGGFace2-pytorch (models/resnet.py, `resnet50_ft`): the original MSRA layout
with the stride on the first 1x1 convolution of a downsampling block, and a stem max pool without
padding that rounds up (3x3, stride 2, ceil_mode); the names are torchvision's. Its 7x7 average
pool (fixed, for 224 input) is the global average here, the same at 224 and defined at other
sizes. Its weights expect preprocessing("vggface2") input (BGR, mean-subtracted, 0..255 scale):
`model.preprocessing` names the convention of each layout.

    model = resnet50(num_classes=8631, layout="vggface2")
    load_weights(model, "resnet50_ft_weight.pkl", format="vggface2")
"""
from __future__ import annotations

from .. import nn
from .presets import preprocessing

LAYOUTS = ("torchvision", "vggface2")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, stride_on: str = "3x3"):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv (x4 channels) -> BN, plus the
    shortcut, then ReLU. stride_on="3x3" is torchvision's v1.5; "1x1" is the original Caffe/MSRA
    layout the VGGFace2 models use."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None, stride_on: str = "3x3"):
        super().__init__()
        if stride_on not in ("3x3", "1x1"):
            raise ValueError(f"stride_on must be '3x3' or '1x1', got {stride_on!r}")
        self.conv1 = conv1x1(inplanes, planes, stride if stride_on == "1x1" else 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride if stride_on == "3x3" else 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """layout: "torchvision" or "vggface2" (see the module docstring); stride_on: where a
    Bottleneck puts its stride, by default the layout's ("3x3" for torchvision, "1x1" for
    vggface2)."""

    def __init__(self, block, layers, num_classes: int = 1000, zero_init_residual: bool = False,
                 stride_on: str | None = None, layout: str = "torchvision"):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if stride_on is None:
            stride_on = "1x1" if layout == "vggface2" else "3x3"
        self.layout = layout
        self.preprocessing = preprocessing("vggface2" if layout == "vggface2" else "imagenet")
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        if layout == "vggface2":  # Caffe's pooling rounds the output size up, and has no padding here
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, stride_on)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, stride_on)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, stride_on)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, stride_on)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        # torchvision's init: convs Kaiming-normal fan_out (relu gain), BN weight 1 / bias 0; the fc
        # keeps the default Linear init. The VGGFace2 code draws N(0, 2 / (k * k * out_channels)):
        # the same distribution.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as the identity (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, stride_on: str) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, stride_on)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, stride_on=stride_on) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        """Everything before the pooling: (N, 3, H, W) -> (N, 512 * expansion, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(self.forward_features(x))

    def forward_features(self, x):
        """The pooled feature the heads consume: (N, 512 * expansion)."""
        return self.avgpool(self.features(x)).flatten(1)

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fc for `num_classes` (timm's reset_classifier); 0 makes the model a feature extractor."""
        features = self.fc.in_features
        self.fc = nn.Linear(features, num_classes) if num_classes > 0 else nn.Identity()


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], 11,689,512 parameters at 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], 21,797,672 parameters at 1000 classes."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes: int = 1000, layout: str = "torchvision", **kwargs) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3], 25,557,032 parameters at 1000 classes in either layout
    (torchvision's v1.5, or layout="vggface2": VGGFace2's `resnet50_ft`, 8631 classes in its file)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, layout=layout, **kwargs)
