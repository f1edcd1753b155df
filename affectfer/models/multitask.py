"""The two ABAW4 multi-task networks of the seed papers.

`MultiTaskIXL` (Jeong et al., "Ensemble of Multi-task Learning Networks for Facial Expression
Recognition In-the-wild with Learning from Synthetic Data", arXiv 2207.10025; the authors' code
github.com/Yeonggi-hong/ECCV2022-ABAW-competition, networks/models_tmp.py `MTL_finetuning` and
`MTL_classfier`): two image branches joined by shared fully connected layers.

    em_feature   a DAN (affectfer.models.dan) on a ResNet-50 map, with the 2048 -> 1024 -> 512 adaptor;
                 its heads, summed over heads, give the emotion vector e (B, 512). As in that code the
                 heads are stacked without the log-softmax, and the DAN's own fc/bn are not used.
    lm_feature   a second, separate backbone (ResNet-50, a DINO ResNet-50 (same structure, other weights),
                 MobileViTv2, or any module with forward_features) -> pooled (B, D)
    conv1x1_lm   Conv(D -> 512, 1x1) + BN2d + ReLU on the pooled vector -> l (B, 512)
    classifier   the shared layers sharedfc1 512->256, sharedbn1, sharedfc2 256->128, sharedbn2 (no
                 activation; the same weights run on e and on l), then fc 128->C + bn on e (logits) and
                 encode1 / encode2 128->68 on l (x and y of 68 landmarks, stacked to (B, 68, 2))
    forward(x_emotion, x_landmark) -> (logits, landmarks, F, H): F (the DAN map) feeds the affinity
                 loss and H (the heads) the partition loss, as the reference adds them.

The reference feeds the two branches different views of the same image (the emotion view
augmented, the landmark view only normalised so that the landmark targets stay valid):
affectfer.data.TwoViewLoader stacks the two views on the channel axis, and forward splits a
6-channel input back into them.

`SMMEmotionNet` (HUST-ANT's ABAW4 multi-task network, arXiv 2207.09748, adopted from the ABAW3
winner's Multitask EmotionNet; code github.com/sylyoung/ABAW4-HUST-ANT, MTL/SMM_EmotionNet.py and
MTL/base_models.py), with that code's module names so its checkpoints map key for key:

    backbone_CNN                    Inception-v3 up to Mixed_6e -> (B, 768, 17, 17) at 299 x 299
    AU_attention_convs              Conv(768 -> 4K, 3x3)+BN+ReLU -> Conv(4K -> K, 1x1)+BN+ReLU, K = 17 AUs
                                    (the 12 labelled ones and the hidden AU5, AU9, AU14, AU16, AU17)
    AU_attention_map_module         Conv(K -> K, 1x1) + Sigmoid: one attention map per AU
    AU_attention_classification_module  Conv 1x1 + GAP: attention predictions the released code computes
                                    and never uses (kept so the checkpoint keys match)
    AU_Metric_Modules[k]            x * map_k + x -> Conv(768 -> 16, 3x3)+BN+ReLU -> Conv(16 -> 16, 1x1)
                                    +BN+ReLU -> GAP -> fc 16 -> 16: the k-th AU embedding
    positional_encoding             sinusoidal (Vaswani et al. 2017), dropout 0.3
    MHA                             one post-LN transformer encoder layer (d 16, 8 heads, FFN 1024, GELU)
    emotion_classifiers[0]          AU logits: <emb_k, w_k> + b_k for the 12 labelled positions
    transformation_matrices[k]      bias-free 16 -> 16 maps of the PRE-transformer embeddings, then
    emotion_classifiers[1], [2]     EXPR 16 -> 8 and VA 16 -> 2 on every one of the 17, averaged over them
    forward(x) -> (va (B, 2), expression logits (B, 8), AU logits (B, 12)): train.fit's "abaw_mtl" order.
VA has no tanh; the reference clips the predictions to [-1, 1] at test time (`clip_va`).
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..tensor import stack, tensor
from .dan import DAN
from .heads import SharedTrunk
from .resnet import ResNet


def _build(backbone, pretrained=None):
    """A factory name (built with its pretrained weights, if a file is given) or a module as is."""
    if isinstance(backbone, str):
        from .factory import create

        return create(backbone, pretrained=pretrained)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be a factory model name or an nn.Module, got {type(backbone).__name__}")
    if pretrained is not None:
        raise ValueError("pretrained applies to a backbone given by name; load the weights into the module yourself")
    return backbone


def feature_dim(model) -> int:
    """The width D of `model.forward_features` (B, D): timm's `num_features`, or the input width of
    its classifier (`get_classifier()`)."""
    d = getattr(model, "num_features", None)
    if isinstance(d, int):
        return d
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    d = getattr(head, "in_features", None)
    if isinstance(d, int):
        return d
    raise TypeError(f"{type(model).__name__}: cannot tell its feature width (no num_features, no get_classifier() "
                    "with in_features); pass the width explicitly")


class FeatureMap(nn.Module):
    """The spatial map of a classification backbone, before its pooling: `model.features(x)`
    (B, out_channels, h, w). `out_channels` is what affectfer.models.dan needs from a backbone."""

    def __init__(self, model: nn.Module, out_channels: int | None = None):
        super().__init__()
        if not callable(getattr(model, "features", None)):
            raise TypeError(f"{type(model).__name__} has no features(x) giving its spatial map")
        self.model = model
        self.out_channels = int(out_channels) if out_channels is not None else feature_dim(model)

    def forward(self, x):
        return self.model.features(x)


def feature_map(backbone) -> nn.Module:
    """A backbone as the (B, C, h, w) map module DAN expects. A ResNet becomes the Sequential of its
    children up to layer4 (keys features.0 ... features.7, as DAN's own ResNet-18); a module with an
    int `out_channels` is used as is; any other classifier with features(x) is wrapped in FeatureMap."""
    if isinstance(backbone, ResNet):
        seq = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool, backbone.layer1,
                            backbone.layer2, backbone.layer3, backbone.layer4)
        seq.out_channels = backbone.fc.in_features
        return seq
    if isinstance(getattr(backbone, "out_channels", None), int):
        return backbone
    return FeatureMap(backbone)


class MultiTaskClassifier(SharedTrunk):
    """IXL's `MTL_classfier`: the shared trunk (sharedfc1, sharedbn1, sharedfc2, sharedbn2) applied to
    both branch vectors, then the landmark layers encode1/encode2 and the emotion fc + bn, with the
    reference's flat parameter names. forward(e, l) -> (logits (B, C), landmarks (B, n, 2))."""

    def __init__(self, num_classes: int = 6, num_points: int = 68, dims=(512, 256, 128)):
        super().__init__(dims)
        self.encode1 = nn.Linear(dims[2], num_points)
        self.encode2 = nn.Linear(dims[2], num_points)
        self.fc = nn.Linear(dims[2], num_classes)
        self.bn = nn.BatchNorm1d(num_classes)

    def expression(self, emotion):
        """(B, C) logits of an emotion vector."""
        return self.bn(self.fc(super().forward(emotion)))

    def landmarks(self, landmark):
        """(B, n, 2) landmarks of an appearance vector."""
        a = super().forward(landmark)
        return stack([self.encode1(a), self.encode2(a)], dim=2)

    def forward(self, emotion, landmark):
        return self.expression(emotion), self.landmarks(landmark)


class MultiTaskIXL(nn.Module):
    """IXL's multi-task network (see the module docstring): a DAN emotion branch and an appearance
    (landmark) branch joined by shared layers; 6 expressions and 68 landmarks by default.

    emotion_backbone / appearance: a factory name ("resnet50"; a DINO ResNet-50 is "resnet50" with
    the DINO weights; "mobilevitv2_200" ...) or a module; `*_pretrained` a weights file for a name.
    `appearance_dim`: the width of the appearance module's forward_features when it cannot be read
    from the module. `log_softmax_heads=False` stacks the DAN heads as IXL's code does."""

    def __init__(self, num_classes: int = 6, num_points: int = 68, emotion_backbone="resnet50",
                 appearance="resnet50", num_head: int = 4, log_softmax_heads: bool = False,
                 emotion_pretrained=None, appearance_pretrained=None, appearance_dim: int | None = None,
                 dims=(512, 256, 128)):
        super().__init__()
        if dims[0] != 512:
            raise ValueError(f"the shared layers take the DAN's 512-d vector: dims[0] must be 512, got {dims[0]}")
        self.em_feature = DAN(num_classes, num_head, feature_map(_build(emotion_backbone, emotion_pretrained)),
                              log_softmax_heads)
        lm = _build(appearance, appearance_pretrained)
        if not callable(getattr(lm, "forward_features", None)):
            raise TypeError(f"appearance: {type(lm).__name__} has no forward_features(x)")
        width = int(appearance_dim) if appearance_dim is not None else feature_dim(lm)
        if callable(getattr(lm, "reset_classifier", None)):
            lm.reset_classifier(0)  # the branch uses only the features; an unused fc would sit in the optimizer
        self.lm_feature = lm
        self.conv1x1_lm = nn.Sequential(nn.Conv2d(width, dims[0], 1), nn.BatchNorm2d(dims[0]), nn.ReLU())
        self.classifier = MultiTaskClassifier(num_classes, num_points, dims)

    def appearance_vector(self, x):
        """(B, 512) landmark-branch vector: pooled backbone features through conv1x1_lm."""
        f = self.lm_feature.forward_features(x)
        if f.ndim == 4:  # a backbone whose forward_features keeps the map (timm's convention)
            f = f.mean(dim=(2, 3))
        if f.ndim != 2:
            raise ValueError(f"appearance features must be (B, D) or (B, D, h, w), got shape {tuple(f.shape)}")
        return self.conv1x1_lm(f.reshape(f.shape[0], f.shape[1], 1, 1)).flatten(1)

    def forward_emotion(self, x):
        """The emotion path alone: (logits, F, H)."""
        _, fmap, heads = self.em_feature(x)
        return self.classifier.expression(heads.sum(dim=1)), fmap, heads

    def forward_landmarks(self, x):
        """The landmark path alone: (B, n, 2)."""
        return self.classifier.landmarks(self.appearance_vector(x))

    def forward(self, x, x_landmark=None):
        if x_landmark is None:
            if x.ndim == 4 and x.shape[1] == 6:  # a TwoViewLoader batch: emotion view, then landmark view
                x, x_landmark = x[:, :3], x[:, 3:]
            else:
                x_landmark = x
        logits, fmap, heads = self.forward_emotion(x)
        return logits, self.forward_landmarks(x_landmark), fmap, heads


# --------------------------------------------------------------------------------------------------
# SMM-EmotionNet

HIDDEN_AUS = ("AU5", "AU9", "AU14", "AU16", "AU17")


class AUEmbedding(nn.Module):
    """One AU's ROI embedding (the reference's Attention_Metric_Module): x * map + x, then
    Conv 3x3 + BN + ReLU, Conv 1x1 + BN + ReLU, global average pool, fc: (B, C, h, w), (B, 1, h, w)
    -> (B, dim)."""

    def __init__(self, in_channels: int = 768, dim: int = 16):
        super().__init__()
        self.Conv1 = nn.Sequential(nn.Conv2d(in_channels, dim, 3, padding=1), nn.BatchNorm2d(dim), nn.ReLU())
        self.Conv2 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim), nn.ReLU())
        self.GAP = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(dim, dim)

    def forward(self, fmap, attention):
        x = fmap * attention + fmap
        return self.fc(self.GAP(self.Conv2(self.Conv1(x))).flatten(1))


class AUInnerProductHead(nn.Module):
    """Per-AU logits from a sequence of AU embeddings (the reference's AUClassifier): the k-th logit
    is <seq[:, k], fc.weight[k]> + fc.bias[k] for the first num_aus positions, i.e. one row of a
    Linear(dim, num_aus) per AU instead of a full product."""

    def __init__(self, dim: int = 16, num_aus: int = 12):
        super().__init__()
        self.fc = nn.Linear(dim, num_aus)

    def forward(self, seq):
        k = self.fc.out_features
        if seq.ndim != 3 or seq.shape[1] < k:
            raise ValueError(f"expected (B, >= {k}, dim) AU embeddings, got shape {tuple(seq.shape)}")
        return (seq[:, :k] * self.fc.weight).sum(dim=2) + self.fc.bias


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[:L] then dropout, PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...) (Vaswani et
    al. 2017), batch-first (B, L, d). The table is a buffer of shape (maxlen, 1, d), as the
    reference stores it."""

    def __init__(self, dim: int, dropout: float = 0.3, maxlen: int = 5000):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the positional encoding needs an even dimension, got {dim}")
        den = np.exp(-np.arange(0, dim, 2) * math.log(10000.0) / dim)
        pos = np.arange(maxlen)[:, None]
        table = np.zeros((maxlen, dim))
        table[:, 0::2], table[:, 1::2] = np.sin(pos * den), np.cos(pos * den)
        self.register_buffer("pos_embedding", tensor(table[:, None, :].astype(np.float32)))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        pe = self.pos_embedding[:x.shape[1]].reshape(1, x.shape[1], x.shape[2])
        if pe.dtype != x.dtype:
            pe = pe.to(x.dtype)
        return self.dropout(x + pe)


# torchvision's Inception3 children up to Mixed_6e, in forward order (HUST's base_models.inception_v3
# keeps exactly these; like theirs, the Sequential drops transform_input, which forward applies)
INCEPTION_V3_MIXED_6E = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                         "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                         "Mixed_6c", "Mixed_6d", "Mixed_6e")


def inception_v3_mixed_6e(pretrained=None) -> nn.Sequential:
    """The factory's Inception-v3 truncated after Mixed_6e, as a Sequential of its torchvision-named
    children (keys 0.* ... 14.*, HUST's backbone_CNN): (B, 3, 299, 299) -> (B, 768, 17, 17).
    `pretrained`: a weights file for the whole Inception-v3 (the rest is dropped)."""
    from . import factory

    if "inception_v3" not in factory.list_models():
        raise ImportError("this affectfer has no inception_v3 in the model factory; pass backbone= a module "
                          "mapping images to a (B, C, h, w) map (and feature_dim=C)")
    net = factory.create("inception_v3", pretrained=pretrained)
    missing = [n for n in INCEPTION_V3_MIXED_6E if not isinstance(getattr(net, n, None), nn.Module)]
    if missing:
        raise TypeError(f"inception_v3 lacks torchvision's child modules {missing}")
    seq = nn.Sequential(*[getattr(net, n) for n in INCEPTION_V3_MIXED_6E])
    seq.out_channels = 768
    return seq


def _default_encoder_layer(dim: int, heads: int):
    layer = getattr(nn, "TransformerEncoderLayer", None)
    if layer is None:
        raise ImportError("this affectfer has no nn.TransformerEncoderLayer; pass encoder_layer= a module mapping "
                          "(B, L, dim) to (B, L, dim)")
    return layer(d_model=dim, nhead=heads, dim_feedforward=1024, dropout=0.1, activation="gelu", batch_first=True)


class SMMEmotionNet(nn.Module):
    """HUST-ANT's SMM-EmotionNet (see the module docstring).

    backbone: a module mapping images to a (B, feature_dim, h, w) map; None builds the factory's
        Inception-v3 truncated after Mixed_6e (`inception_v3_mixed_6e()`, feature_dim 768).
    encoder_layer: the one transformer encoder layer over the 17 AU embeddings, a module mapping
        (B, 17, dim) to (B, 17, dim) (a tuple output's first item is used); None builds
        nn.TransformerEncoderLayer(dim, 8 heads, FFN 1024, dropout 0.1, GELU, post-LN, batch_first).
    forward(x) -> (va (B, 2), expression logits (B, 8), AU logits (B, 12)); `clip_va=True` clips the
    VA predictions to [-1, 1] in eval mode, as the reference does at test time."""

    def __init__(self, num_aus: int = 12, num_expressions: int = 8, num_hidden_aus: int = len(HIDDEN_AUS),
                 dim: int = 16, heads: int = 8, backbone=None, feature_dim: int | None = None,
                 encoder_layer=None, dropout: float = 0.3, clip_va: bool = True):
        super().__init__()
        if backbone is None:
            backbone = inception_v3_mixed_6e()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if feature_dim is None:
            feature_dim = getattr(backbone, "out_channels", None)
            if not isinstance(feature_dim, int):
                raise TypeError("pass feature_dim= (the backbone map's channels): the backbone has no int out_channels")
        self.num_aus, self.num_expressions, self.clip_va = num_aus, num_expressions, clip_va
        k = num_aus + num_hidden_aus
        self.backbone_CNN = backbone
        self.AU_attention_convs = nn.Sequential(
            nn.Conv2d(feature_dim, 4 * k, 3, padding=1), nn.BatchNorm2d(4 * k), nn.ReLU(),
            nn.Conv2d(4 * k, k, 1), nn.BatchNorm2d(k), nn.ReLU())
        self.AU_attention_map_module = nn.Sequential(nn.Conv2d(k, k, 1), nn.Sigmoid())
        # the released code computes attention predictions from this branch and never uses them; it
        # is kept so that the checkpoint keys match (it gets no gradient)
        self.AU_attention_classification_module = nn.Sequential(nn.Conv2d(k, k, 1), nn.AdaptiveAvgPool2d(1),
                                                                nn.Flatten())
        self.AU_Metric_Modules = nn.ModuleList([AUEmbedding(feature_dim, dim) for _ in range(k)])
        self.positional_encoding = SinusoidalPositionalEncoding(dim, dropout)
        self.MHA = encoder_layer if encoder_layer is not None else _default_encoder_layer(dim, heads)
        self.transformation_matrices = nn.ModuleList([nn.Linear(dim, dim, bias=False) for _ in range(k)])
        # the reference's task order ["AU", "EXPR", "VA"] numbers these
        self.emotion_classifiers = nn.ModuleList([AUInnerProductHead(dim, num_aus), nn.Linear(dim, num_expressions),
                                                  nn.Linear(dim, 2)])

    def attention_maps(self, fmap):
        """(B, 17, h, w) sigmoid attention maps, one per AU, of a backbone map."""
        return self.AU_attention_map_module(self.AU_attention_convs(fmap))

    def embeddings(self, fmap):
        """(B, 17, dim) AU embeddings of a backbone map (before the transformer)."""
        maps = self.attention_maps(fmap)
        return stack([m(fmap, maps[:, k:k + 1]) for k, m in enumerate(self.AU_Metric_Modules)], dim=1)

    def heads(self, emb):
        """(va, expression logits, AU logits) from the (B, 17, dim) embeddings."""
        seq = self.MHA(self.positional_encoding(emb))
        seq = seq[0] if isinstance(seq, tuple) else seq
        au = self.emotion_classifiers[0](seq)
        projected = stack([t(emb[:, k]) for k, t in enumerate(self.transformation_matrices)], dim=1)
        expr = self.emotion_classifiers[1](projected).mean(dim=1)
        va = self.emotion_classifiers[2](projected).mean(dim=1)
        if self.clip_va and not self.training:
            va = va.clamp(-1.0, 1.0)
        return va, expr, au

    def forward(self, x):
        return self.heads(self.embeddings(self.backbone_CNN(x)))


def multitask_ixl(num_classes: int = 6, **kwargs) -> MultiTaskIXL:
    """MultiTaskIXL for the model factory: create("multitask_ixl", num_classes=6, appearance=...)."""
    return MultiTaskIXL(num_classes=num_classes, **kwargs)


def smm_emotionnet(num_classes: int = 8, **kwargs) -> SMMEmotionNet:
    """SMMEmotionNet for the model factory; num_classes = the expression classes (8 in ABAW4 MTL)."""
    return SMMEmotionNet(num_expressions=num_classes, **kwargs)
