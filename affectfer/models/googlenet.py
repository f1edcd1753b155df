"""GoogLeNet (Inception v1, Szegedy et al. 2015, "Going Deeper with Convolutions") with exactly
torchvision's structure, parameter names, shapes and initialisation. Reference:
torchvision/models/googlenet.py (torchvision 0.29): every convolution is a BasicConv2d (conv
without bias, BatchNorm eps 1e-3, ReLU), every max pool rounds up (ceil_mode=True), and the
"5x5" branch of each Inception block is a 3x3 convolution, as in torchvision's port of the
pretrained weights. Convolutions and linear layers start from N(0, 0.01^2) truncated to [-2, 2],
batch norms at weight 1, bias 0.

    model = googlenet(num_classes=7)
    model.load_state_dict(torchvision_state_dict)    # names match one to one

torchvision's pretrained file carries the auxiliary classifiers aux1/aux2; with aux_logits=False
(the default here, and what torchvision's pretrained constructor leaves) they are absent and
affectfer.weights.load_weights skips them. That pretrained model is also built with
transform_input=True (its weights expect (x - 0.5) / 0.5 input): pass it when loading them, e.g.
create("googlenet", pretrained=path, transform_input=True).
"""
from __future__ import annotations

from collections import namedtuple

from .. import nn
from ..tensor import cat
from .blocks import BasicConv2d, inception_transform_input

# torchvision's training-mode output with auxiliary heads: the main logits first, then the head
# after inception4d (aux2), then the one after inception4a (aux1).
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max pool
    (stride 1) -> 1x1."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 adaptive average pool -> 1x1 BasicConv2d to 128 -> fc1 (2048 -> 1024)
    -> ReLU -> dropout -> fc2."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = self.conv(nn.functional.adaptive_avg_pool2d(x, (4, 4))).flatten(1)
        return self.fc2(self.dropout(self.fc1(x).relu()))


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = False,
                 init_weights: bool = True, dropout: float = 0.2, dropout_aux: float = 0.7):
        super().__init__()
        self.aux_logits, self.transform_input = aux_logits, transform_input
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        if init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def _trunk(self, x):
        """Stem to inception5b, with the auxiliary logits in training mode: (features, aux2, aux1)."""
        x = inception_transform_input(x) if self.transform_input else x
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        return x, aux2, aux1

    def features(self, x):
        """Everything before the pooling: (N, 3, H, W) -> (N, 1024, ~H/32, ~W/32)."""
        return self._trunk(x)[0]

    def forward_features(self, x):
        """The pooled feature the heads consume: (N, 1024)."""
        return self.avgpool(self.features(x)).flatten(1)

    def forward(self, x):
        """Logits; in training mode with aux_logits=True, GoogLeNetOutputs(logits, aux_logits2,
        aux_logits1) as torchvision returns."""
        x, aux2, aux1 = self._trunk(x)
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fc for `num_classes` (timm's reset_classifier); 0 makes the model a feature
        extractor. The auxiliary heads, if any, are rebuilt for the same number of classes."""
        self.fc = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()
        if self.aux_logits:
            for aux in (self.aux1, self.aux2):
                aux.fc2 = nn.Linear(1024, num_classes) if num_classes > 0 else nn.Identity()


def googlenet(num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = False,
              dropout: float = 0.2, **kwargs) -> GoogLeNet:
    """GoogLeNet: 6,624,904 parameters at 1000 classes without the auxiliary heads."""
    return GoogLeNet(num_classes, aux_logits=aux_logits, transform_input=transform_input, dropout=dropout,
                     **kwargs)
