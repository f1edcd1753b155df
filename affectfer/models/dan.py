"""DAN, "Distract Your Attention" (Wen, Lin, Wang, Xu, Biomimetics 2023, arXiv 2109.07270), with the
module tree and parameter names of its released code (github.com/yaoing/DAN, networks/dan.py), so
the released AffectNet-7/8 and RAF-DB checkpoints (`model_state_dict`) load with load_state_dict.

    features   ResNet-18 up to layer4 as a Sequential (keys features.0 ... features.7)  -> F (B, 512, h, w)
    cat_head{i} num_head cross-attention heads, each F -> (B, 512):
                spatial unit  sa: 1x1 conv+BN (no ReLU), then ReLU(3x3 + 1x3 + 3x1 conv+BN branches),
                              summed over channels into a non-negative map a; out = F * a
                channel unit  ca: global average pool s, Linear-BN1d-ReLU-Linear-Sigmoid w; out = s * w
    fusion     stack heads -> H (B, heads, 512); log_softmax over the HEAD axis when heads > 1; sum
    classifier fc Linear(512, C) then bn BatchNorm1d(C)
    forward -> (logits, F, H): F feeds the affinity loss, H the partition loss (affectfer.losses).

The ABAW seed teams also ran the heads on a VGGFace2 ResNet-50 through a 2048->1024->512 1x1-conv
adaptor and stacked the heads without the log-softmax: `backbone=` any module giving a (B, C, h, w)
map with `out_channels` C (an adaptor is inserted when C != 512) and `log_softmax_heads=False`.
"""
from __future__ import annotations

from .. import nn
from ..nn import functional as F
from ..tensor import stack
from .resnet import resnet18


class SpatialAttention(nn.Module):
    def __init__(self, channels: int = 512):
        super().__init__()
        mid = channels // 2
        self.conv1x1 = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid))
        self.conv_3x3 = nn.Sequential(nn.Conv2d(mid, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.conv_1x3 = nn.Sequential(nn.Conv2d(mid, channels, (1, 3), padding=(0, 1)), nn.BatchNorm2d(channels))
        self.conv_3x1 = nn.Sequential(nn.Conv2d(mid, channels, (3, 1), padding=(1, 0)), nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.conv1x1(x)
        y = self.relu(self.conv_3x3(y) + self.conv_1x3(y) + self.conv_3x1(y))
        return x * y.sum(dim=1, keepdim=True)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int = 512, hidden: int = 32):
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.attention = nn.Sequential(nn.Linear(channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                       nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, sa):
        s = self.gap(sa).flatten(1)
        return s * self.attention(s)


class CrossAttentionHead(nn.Module):
    def __init__(self, channels: int = 512, hidden: int = 32):
        super().__init__()
        self.sa = SpatialAttention(channels)
        self.ca = ChannelAttention(channels, hidden)
        # the reference's init_weights: convs Kaiming-normal (fan_out), BN 1/0, Linear N(0, 0.001^2), biases 0
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.ca(self.sa(x))


def _resnet18_features() -> nn.Sequential:
    r = resnet18()
    return nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3, r.layer4)


class DAN(nn.Module):
    def __init__(self, num_classes: int = 8, num_head: int = 4, backbone: nn.Module | None = None,
                 log_softmax_heads: bool = True):
        super().__init__()
        if num_head < 1:
            raise ValueError(f"num_head must be >= 1, got {num_head}")
        if backbone is None:
            self.features = _resnet18_features()
            channels = 512
        else:
            channels = getattr(backbone, "out_channels", None)
            if not isinstance(channels, int):
                raise TypeError("backbone must have an int attribute out_channels (its feature map's channels)")
            self.features = backbone
        if channels != 512:  # the IXL adaptor: 1x1 convs down to the heads' 512 channels
            self.conv1x1_1 = nn.Sequential(nn.Conv2d(channels, 1024, 1), nn.BatchNorm2d(1024), nn.ReLU())
            self.conv1x1_2 = nn.Sequential(nn.Conv2d(1024, 512, 1), nn.BatchNorm2d(512), nn.ReLU())
        self.num_head = num_head
        self.log_softmax_heads = log_softmax_heads
        for i in range(num_head):
            setattr(self, f"cat_head{i}", CrossAttentionHead(512))
        self.fc = nn.Linear(512, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fc + BN head for `num_classes` (the IXL recipe re-heads an AffectNet-8 DAN)."""
        self.fc = nn.Linear(512, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)

    def forward(self, x):
        fmap = self.features(x)
        if hasattr(self, "conv1x1_1"):
            fmap = self.conv1x1_2(self.conv1x1_1(fmap))
        heads = stack([getattr(self, f"cat_head{i}")(fmap) for i in range(self.num_head)], dim=1)
        if self.num_head > 1 and self.log_softmax_heads:
            heads = F.log_softmax(heads, dim=1)
        logits = self.bn(self.fc(heads.sum(dim=1)))
        return logits, fmap, heads


def dan(num_classes: int = 8, num_head: int = 4, backbone: nn.Module | None = None,
        log_softmax_heads: bool = True) -> DAN:
    """DAN with `num_head` cross-attention heads on a ResNet-18 (default) or a given backbone. Train
    with CE(logits) + affinity_loss(F) + partition_loss(H) (affectfer.losses), as the reference does."""
    return DAN(num_classes, num_head, backbone, log_softmax_heads)
