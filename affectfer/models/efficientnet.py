"""EfficientNet-B0 with exactly torchvision's module tree, parameter names, shapes and
initialisation (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks"). Reference: torchvision/models/efficientnet.py (torchvision 0.29): MBConv blocks with
squeeze-and-excitation (Hu et al. 2018), SiLU activations, default BatchNorm (eps 1e-5, momentum
0.1), row-mode stochastic depth (Huang et al. 2016) growing linearly with block depth, and a
dropout + linear classifier. 5,288,548 parameters at 1000 classes.

    model = efficientnet_b0(num_classes=7)
    model.load_state_dict(torchvision_state_dict)    # names match one to one
"""
from __future__ import annotations

import math

from .. import nn
from ..nn import functional as F
from .blocks import SqueezeExcitation

# (expand ratio, kernel, stride, input channels, output channels, repeats) of stages features.1..7
B0_STAGES = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


# torchvision's names (torchvision.ops.stochastic_depth / StochasticDepth) for the shared row-mode
# stochastic depth of affectfer.nn
stochastic_depth = F.drop_path


def StochasticDepth(p: float, mode: str = "row") -> nn.DropPath:
    """torchvision.ops.StochasticDepth(p, mode): "row" mode only (the one EfficientNet uses), which
    is nn.DropPath(p)."""
    if mode != "row":
        raise ValueError(f"only mode 'row' is supported, got {mode!r}")
    return nn.DropPath(p)


class Conv2dNormActivation(nn.Sequential):
    """torchvision's Conv2dNormActivation: a Sequential conv -> BN [-> activation], so the names are
    `.0.weight`, `.1.running_mean`. A BN followed by SiLU runs as one batch_norm_silu pass (the same
    values); anything else (a folded BN: fuse_conv_bn) runs the children in turn."""

    def forward(self, input):
        if len(self) == 3 and type(self[1]) is nn.BatchNorm2d and type(self[2]) is nn.SiLU:
            return self[1].forward_act(self[0](input), "silu")
        return super().forward(input)


def conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                activation: bool = True) -> Conv2dNormActivation:
    """Conv (no bias, 'same' padding for odd kernels) -> BN [-> SiLU], torchvision's
    Conv2dNormActivation as EfficientNet configures it."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                        groups=groups, bias=False), nn.BatchNorm2d(out_channels)]
    if activation:
        layers.append(nn.SiLU(inplace=True))
    return Conv2dNormActivation(*layers)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand -> BN -> SiLU] -> depthwise kxk -> BN -> SiLU -> SE -> 1x1
    project -> BN, with a stochastic-depth residual when the shape is kept."""

    def __init__(self, expand_ratio: int, kernel: int, stride: int, input_channels: int, out_channels: int,
                 stochastic_depth_prob: float):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and input_channels == out_channels
        expanded = input_channels * expand_ratio
        layers = []
        if expanded != input_channels:
            layers.append(conv_bn_act(input_channels, expanded, 1))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded))
        # torchvision squeezes to a quarter of the block's input, not of the expanded width
        layers.append(SqueezeExcitation(expanded, max(1, input_channels // 4), activation=nn.SiLU))
        layers.append(conv_bn_act(expanded, out_channels, 1, activation=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = nn.DropPath(stochastic_depth_prob)
        self.out_channels = out_channels

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


class EfficientNet(nn.Module):
    def __init__(self, stages=B0_STAGES, dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                 num_classes: int = 1000, last_channel=None):
        super().__init__()
        layers = [conv_bn_act(3, stages[0][3], 3, stride=2)]
        total = sum(s[5] for s in stages)
        index = 0
        for expand, kernel, stride, cin, cout, repeats in stages:
            stage = []
            for r in range(repeats):
                # the probability grows linearly with the block's depth: 0 for the first block
                p = stochastic_depth_prob * index / total
                stage.append(MBConv(expand, kernel, stride if r == 0 else 1, cin if r == 0 else cout, cout, p))
                index += 1
            layers.append(nn.Sequential(*stage))
        head_in = stages[-1][4]
        head_out = last_channel if last_channel is not None else 4 * head_in
        layers.append(conv_bn_act(head_in, head_out, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(head_out, num_classes))

        # torchvision's init: convs Kaiming-normal fan_out (gain sqrt(2)) with zero bias, BN 1/0, and
        # the linear layer U(+-1/sqrt(out_features)) with zero bias
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                _init_linear(m)

    def forward_features(self, x):
        """The pooled feature the heads consume: (N, 1280)."""
        return self.avgpool(self.features(x)).flatten(1)

    def forward(self, x):
        return self.classifier(self.forward_features(x))

    def get_classifier(self):
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh, torchvision-initialised linear layer for `num_classes` (the dropout is kept); 0
        makes the model a feature extractor."""
        features = self.classifier[1].in_features
        if num_classes > 0:
            head = nn.Linear(features, num_classes)
            _init_linear(head)
        else:
            head = nn.Identity()
        setattr(self.classifier, "1", head)


def _init_linear(m) -> None:
    bound = 1.0 / math.sqrt(m.out_features)
    nn.init.uniform_(m.weight, -bound, bound)
    nn.init.zeros_(m.bias)


def efficientnet_b0(num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2,
                    **kwargs) -> EfficientNet:
    """EfficientNet-B0: 16 MBConv blocks in 7 stages, a 1280-channel head, 5,288,548 parameters at
    1000 classes."""
    return EfficientNet(B0_STAGES, dropout, stochastic_depth_prob, num_classes, **kwargs)
