"""MobileViTv2 (Mehta & Rastegari 2022, "Separable Self-attention for Mobile Vision Transformers",
arXiv:2206.02680) with exactly timm's module tree, parameter names, shapes and initialisation
(timm/models/mobilevit.py and byobnet.py, timm 1.0), so timm's `mobilevitv2_*` checkpoints load one
to one:

    model = mobilevitv2_100(num_classes=7)
    model.load_state_dict(timm_state_dict)    # stem.conv.weight, stages.2.1.transformer.0.attn.qkv_proj.weight, head.fc.weight ...

A width multiplier a scales the stage widths (64, 128, 256, 384, 512) and the 32-channel stem.
Stages 0-1 are inverted residuals (timm's "bottle" blocks with the bottleneck on the input: 1x1
expand x2 -> depthwise 3x3 -> linear 1x1); stages 2-4 are one strided inverted residual then one
MobileViTv2 block: depthwise 3x3 -> 1x1 to d = channels / 2 -> 2x2 patches (B, d, P=4, N) ->
L x [x + LinearSelfAttention(GN(x)); x + ConvMlp(GN(x))] -> GN -> fold -> 1x1 conv + BN. GN is
GroupNorm with one group, activations are SiLU, batch norms torch's defaults (eps 1e-5). timm's
pretrained weights expect inputs in [0, 1] (no mean/std) at 256x256.
"""
from __future__ import annotations

import math

from .. import nn
from ..nn import functional as F
from .efficientnet import stochastic_depth

WIDTHS = (64, 128, 256, 384, 512)
TRANSFORMER_DEPTHS = (2, 4, 3)  # of the MobileViTv2 blocks in stages 2, 3, 4


def make_divisible(v: float, divisor: int = 8, min_value=None, round_limit: float = 0.9) -> int:
    """timm.layers.make_divisible: the nearest multiple of `divisor`, rounded up once more when
    rounding lost more than 10%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class DropPath(nn.Module):
    """timm.layers.DropPath: per-sample stochastic depth (Huang et al. 2016), survivors scaled by
    1/(1-p); the identity in eval mode and at p=0."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be between 0 and 1, got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x):
        return stochastic_depth(x, self.drop_prob, self.training)

    def extra_repr(self):
        return f"drop_prob={self.drop_prob:0.3f}"


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's BatchNormAct2d: batch norm then an activation (children `drop`, `act`), so the
    parameters keep the plain `bn.weight` / `bn.running_mean` names."""

    def __init__(self, num_features: int, apply_act: bool = True):
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.SiLU(inplace=True) if apply_act else nn.Identity()

    def folded(self):
        """Its activation: nn.utils.fuse_conv_bn folds the normalisation into the conv and keeps it."""
        return self.act

    def forward(self, input):
        if type(self.act) is nn.SiLU:  # one pass (batch_norm_silu), the same values
            return self.forward_act(input, "silu")
        return self.act(super().forward(input))


class ConvNormAct(nn.Module):
    """Bias-free conv with 'same' padding for odd kernels, then BatchNormAct2d (timm's ConvNormAct)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 apply_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                              groups=groups, bias=False)
        self.bn = BatchNormAct2d(out_chs, apply_act)

    def forward(self, x):
        return self.bn(self.conv(x))


class BottleneckBlock(nn.Module):
    """timm's "bottle" block as MobileViT configures it (bottle_in, linear_out, depthwise): 1x1
    expand to make_divisible(in_chs * bottle_ratio) -> depthwise kxk (stride) -> 1x1 project without
    activation, plus the input when the shape is kept. timm's downsample='' gives no shortcut at all
    (not a projection) when the shape changes. The Identity children mirror timm's tree."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, bottle_ratio: float = 2.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        mid = make_divisible(in_chs * bottle_ratio)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = None
        self.conv1_1x1 = ConvNormAct(in_chs, mid, 1)
        self.conv2_kxk = ConvNormAct(mid, mid, 3, stride=stride, groups=mid)
        self.conv2b_kxk = nn.Identity()
        self.attn = nn.Identity()
        self.conv3_1x1 = ConvNormAct(mid, out_chs, 1, apply_act=False)
        self.attn_last = nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act = nn.Identity()

    def forward(self, x):
        y = self.drop_path(self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x))))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return y


class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: each sample normalised over all its channels and positions."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(1, num_channels, eps)


class LinearSelfAttention(nn.Module):
    """Separable self-attention (arXiv:2206.02680, section 3.2) on (B, d, P, N) patches: one 1x1 conv
    gives a query score (1 channel), keys (d) and values (d); the scores' softmax over the N patches
    (for each of the P pixel positions) weights the keys into one context vector (B, d, P, 1), which
    scales ReLU(values) before the 1x1 output projection. O(N d) instead of attention's O(N^2 d)."""

    def __init__(self, embed_dim: int, attn_drop: float = 0.0, proj_drop: float = 0.0, bias: bool = True):
        super().__init__()
        self.embed_dim = embed_dim
        self.qkv_proj = nn.Conv2d(embed_dim, 1 + 2 * embed_dim, 1, bias=bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out_proj = nn.Conv2d(embed_dim, embed_dim, 1, bias=bias)
        self.out_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        query, key, value = self.qkv_proj(x).split([1, self.embed_dim, self.embed_dim], dim=1)
        scores = self.attn_drop(F.softmax(query, dim=-1))        # (B, 1, P, N)
        context = (key * scores).sum(dim=-1, keepdim=True)       # (B, d, P, 1)
        return self.out_drop(self.out_proj(F.relu(value) * context))


class ConvMlp(nn.Module):
    """timm's ConvMlp: 1x1 conv -> activation -> dropout -> 1x1 conv, on (B, C, H, W)-shaped input."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.norm = nn.Identity()
        self.act = nn.SiLU()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.norm(self.fc1(x)))))


class LinearTransformerBlock(nn.Module):
    """Pre-norm transformer layer with separable attention: x + attn(GN(x)), then x + mlp(GN(x))."""

    def __init__(self, embed_dim: int, mlp_ratio: float = 2.0, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm1 = GroupNorm1(embed_dim)
        self.attn = LinearSelfAttention(embed_dim, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = GroupNorm1(embed_dim)
        self.mlp = ConvMlp(embed_dim, int(embed_dim * mlp_ratio), drop=drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def unfold_patches(x, patch_h: int, patch_w: int):
    """(B, C, H, W) -> (B, C, P, N): pixel p = (i, j) of every ph x pw patch along dim 2, the
    patches n = (row, column) in raster order along dim 3 (timm's reshape + permute; B and C are
    merged so the permute stays within five dimensions)."""
    B, C, H, W = x.shape
    nh, nw = H // patch_h, W // patch_w
    x = x.reshape(B * C, nh, patch_h, nw, patch_w).permute(0, 2, 4, 1, 3)
    return x.reshape(B, C, patch_h * patch_w, nh * nw)


def fold_patches(x, patch_h: int, patch_w: int, nh: int, nw: int):
    """The inverse of unfold_patches: (B, C, P, N) -> (B, C, nh * ph, nw * pw)."""
    B, C = x.shape[:2]
    x = x.reshape(B * C, patch_h, patch_w, nh, nw).permute(0, 3, 1, 4, 2)
    return x.reshape(B, C, nh * patch_h, nw * patch_w)


class MobileVitV2Block(nn.Module):
    """Local depthwise conv, global separable attention over 2x2 patches, 1x1 projection (no
    fusion concat, unlike MobileViT v1). A feature map whose sides are not multiples of the patch
    size is first resized bilinearly (align_corners=True) up to the next multiples, as timm does,
    and the block's output keeps that size."""

    def __init__(self, in_chs: int, out_chs: int = None, kernel_size: int = 3, bottle_ratio: float = 0.5,
                 mlp_ratio: float = 2.0, transformer_depth: int = 2, patch_size: int = 2, attn_drop: float = 0.0,
                 drop: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        out_chs = out_chs or in_chs
        dim = make_divisible(bottle_ratio * in_chs)
        self.conv_kxk = ConvNormAct(in_chs, in_chs, kernel_size, groups=in_chs)
        self.conv_1x1 = nn.Conv2d(in_chs, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            LinearTransformerBlock(dim, mlp_ratio, drop=drop, attn_drop=attn_drop, drop_path=drop_path_rate)
            for _ in range(transformer_depth)])
        self.norm = GroupNorm1(dim)
        self.conv_proj = ConvNormAct(dim, out_chs, 1, apply_act=False)
        self.patch_size = (patch_size, patch_size)
        self.patch_area = patch_size * patch_size

    def forward(self, x):
        H, W = x.shape[2:]
        ph, pw = self.patch_size
        nh, nw = math.ceil(H / ph), math.ceil(W / pw)
        if (nh * ph, nw * pw) != (H, W):
            x = F.interpolate(x, size=(nh * ph, nw * pw), mode="bilinear", align_corners=True)
        x = self.conv_1x1(self.conv_kxk(x))
        x = self.norm(self.transformer(unfold_patches(x, ph, pw)))
        return self.conv_proj(fold_patches(x, ph, pw, nh, nw))


class SelectAdaptivePool2d(nn.Module):
    """timm's global average pool + flatten, (N, C, H, W) -> (N, C)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x):
        return self.flatten(self.pool(x))


class ClassifierHead(nn.Module):
    """timm's ClassifierHead: global pool -> dropout -> fc."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.global_pool = SelectAdaptivePool2d()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
        self.flatten = nn.Identity()

    def forward(self, x):
        return self.flatten(self.fc(self.drop(self.global_pool(x))))


class MobileViTv2(nn.Module):
    """timm's ByobNet as the mobilevitv2_* configurations build it: stem, stages.0-4, final_conv
    (an Identity: these variants have no extra 1x1 head conv), head.fc."""

    def __init__(self, multiplier: float = 1.0, num_classes: int = 1000, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if not multiplier > 0:
            raise ValueError(f"multiplier must be positive, got {multiplier}")
        widths = [make_divisible(int(c * multiplier)) for c in WIDTHS]
        stem = int(32 * multiplier)
        # one drop-path rate per block, growing linearly over the 9 blocks (timm's
        # calculate_drop_path_rates over stage depths 1, 2, 2, 2, 2)
        depths = (1, 2, 2, 2, 2)
        total = sum(depths)
        rates = [drop_path_rate * i / (total - 1) for i in range(total)]
        self.num_classes, self.multiplier = num_classes, multiplier
        self.stem = ConvNormAct(3, stem, 3, stride=2)
        stages, prev, k = [], stem, 0
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2, 2, 2))):
            blocks = []
            if i < 2:
                for b in range(depths[i]):
                    blocks.append(BottleneckBlock(prev, width, stride if b == 0 else 1, 2.0, rates[k]))
                    prev, k = width, k + 1
            else:
                blocks.append(BottleneckBlock(prev, width, stride, 2.0, rates[k]))
                blocks.append(MobileVitV2Block(width, width, transformer_depth=TRANSFORMER_DEPTHS[i - 2],
                                               drop_path_rate=rates[k + 1]))
                prev, k = width, k + 2
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.final_conv = nn.Identity()
        self.head = ClassifierHead(prev, num_classes, drop_rate)
        self._init_weights()

    def _init_weights(self):
        """timm's ByobNet init: convs N(0, 2 / fan_out) with fan_out = KH*KW*Cout / groups and zero
        bias, linear N(0, 0.01) with zero bias, batch norms 1/0 (group norms keep their 1/0), and
        zero_init_last: the last batch-norm scale of every residual bottleneck starts at 0, so each
        residual block starts as the identity (Goyal et al. 2017)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, BottleneckBlock) and m.shortcut is not None:
                nn.init.zeros_(m.conv3_1x1.bn.weight)

    def forward_feature_map(self, x):
        """The last feature map before pooling (timm's forward_features): (N, C, H/32, W/32)."""
        return self.final_conv(self.stages(self.stem(x)))

    def forward_features(self, x):
        """The pooled feature the heads consume: (N, num_features), 512 * multiplier."""
        return self.head.global_pool(self.forward_feature_map(x))

    def forward(self, x):
        return self.head(self.forward_feature_map(x))

    def get_classifier(self):
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh fc for `num_classes` with torch's default Linear init, as timm's reset_classifier
        builds it; 0 makes the model a feature extractor."""
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def mobilevitv2_050(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-0.5: 256 features, 1,370,593 parameters at 1000 classes."""
    return MobileViTv2(0.5, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_075(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-0.75: 384 features, 2,866,009 parameters at 1000 classes."""
    return MobileViTv2(0.75, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_100(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-1.0: 512 features, 4,901,841 parameters at 1000 classes."""
    return MobileViTv2(1.0, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_125(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-1.25: 640 features, 7,478,089 parameters at 1000 classes."""
    return MobileViTv2(1.25, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_150(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-1.5: 768 features, 10,594,753 parameters at 1000 classes."""
    return MobileViTv2(1.5, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_175(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-1.75: 896 features, 14,251,833 parameters at 1000 classes."""
    return MobileViTv2(1.75, num_classes, drop_rate, drop_path_rate)


def mobilevitv2_200(num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> MobileViTv2:
    """MobileViTv2-2.0: 1024 features (the feature extractor of IXL), 18,449,329 parameters at 1000
    classes."""
    return MobileViTv2(2.0, num_classes, drop_rate, drop_path_rate)
