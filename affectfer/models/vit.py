"""ViT-B/16 with exactly torchvision's module tree, parameter names, shapes and initialisation
(Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition at
Scale"). Reference: torchvision/models/vision_transformer.py (torchvision 0.29): a 16x16 stride-16
patch convolution, a class token, learned position embeddings, 12 pre-LN encoder blocks (LayerNorm
eps 1e-6, 12-head self-attention, a GELU MLP) and a linear head on the class token.
86,567,656 parameters at 1000 classes.

    model = vit_b_16(num_classes=7, image_size=112)
    model.load_state_dict(torchvision_state_dict)    # a 224 checkpoint: position embeddings resampled

Input size. Any `image_size` divisible by 16 builds a model with (image_size/16)^2 + 1 position
embeddings. A checkpoint made at another size loads through `load_state_dict` (and
affectfer.weights.load_weights, which calls `adapt_state_dict`): its position embeddings are
resampled as timm's resample_abs_pos_embed does: the class-token slot is kept and the square grid is
resized bicubically with align_corners=False (torch.nn.functional.interpolate; timm also
antialiases when shrinking, which this does not).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from .. import nn
from ..nn import functional as F
from ..tensor import cat, tensor, zeros

POS_EMBEDDING = "encoder.pos_embedding"


class MLPBlock(nn.Sequential):
    """torchvision's MLPBlock: Linear -> GELU -> Dropout -> Linear -> Dropout (names mlp.0 / mlp.3),
    xavier-uniform weights and N(0, 1e-6) biases."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float):
        super().__init__(nn.Linear(in_dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, in_dim),
                         nn.Dropout(dropout))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-LN transformer block: x + drop(attn(ln_1(x))), then + mlp(ln_2(.))."""

    def __init__(self, num_heads: int, hidden_dim: int, mlp_dim: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=attention_dropout,
                                                    batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input):
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """Position embeddings (N(0, 0.02)), dropout, the blocks as encoder.layers.encoder_layer_{i}, LayerNorm."""

    def __init__(self, seq_length: int, num_layers: int, num_heads: int, hidden_dim: int, mlp_dim: int,
                 dropout: float, attention_dropout: float):
        super().__init__()
        self.pos_embedding = nn.Parameter(zeros(1, seq_length, hidden_dim))
        nn.init.normal_(self.pos_embedding, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout))
            for i in range(num_layers)))
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, input):
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))


def resample_pos_embedding(pos, grid: int, num_prefix_tokens: int = 1) -> np.ndarray:
    """Position embeddings (1, prefix + g*g, D) of a g x g grid, resized to grid x grid: the prefix
    (class token) kept, the grid resampled bicubically with align_corners=False (timm's
    resample_abs_pos_embed without antialiasing). Computed in float64, returned in pos's dtype."""
    pos = np.asarray(pos.numpy() if hasattr(pos, "numpy") else pos)
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"position embeddings must be (1, tokens, dim), got shape {pos.shape}")
    old = math.isqrt(pos.shape[1] - num_prefix_tokens)
    if old * old != pos.shape[1] - num_prefix_tokens:
        raise ValueError(f"position embeddings of {pos.shape[1]} tokens are not {num_prefix_tokens} prefix tokens "
                         "and a square grid")
    if old == grid:
        return pos
    prefix, body = pos[:, :num_prefix_tokens], pos[:, num_prefix_tokens:]
    dim = pos.shape[2]
    img = tensor(np.ascontiguousarray(body.reshape(1, old, old, dim).transpose(0, 3, 1, 2)), dtype="float64")
    out = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False).numpy()
    out = out.transpose(0, 2, 3, 1).reshape(1, grid * grid, dim)
    return np.concatenate([prefix.astype(np.float64), out], axis=1).astype(pos.dtype)


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12, num_heads: int = 12,
                 hidden_dim: int = 768, mlp_dim: int = 3072, dropout: float = 0.0, attention_dropout: float = 0.0,
                 num_classes: int = 1000):
        super().__init__()
        if not isinstance(image_size, int) or image_size <= 0 or image_size % patch_size:
            raise ValueError(f"image_size must be a positive multiple of the patch size {patch_size}, "
                             f"got {image_size!r}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.num_classes = num_classes
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1  # + the class token
        self.class_token = nn.Parameter(zeros(1, 1, hidden_dim))
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout)
        self.seq_length = seq_length
        self.heads = nn.Sequential(OrderedDict(head=self._new_head(num_classes)))
        # torchvision's init: the patch projection truncated-normal with std sqrt(1/fan_in), zero bias
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)

    def _new_head(self, num_classes: int):
        """torchvision's head: a zero-initialised Linear (Identity for 0 classes)."""
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.hidden_dim, num_classes)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def _process_input(self, x):
        if x.ndim != 4 or x.shape[1] != self.conv_proj.in_channels:
            raise ValueError(f"VisionTransformer expects (N, {self.conv_proj.in_channels}, H, W) images, got shape "
                             f"{tuple(x.shape)}")
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"VisionTransformer built for {self.image_size}x{self.image_size} images got {h}x{w}; "
                             f"build it with image_size={h} (checkpoints of other sizes load, see vit_b_16)")
        x = self.conv_proj(x)  # (n, hidden, h/p, w/p)
        return x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)

    def forward_features(self, x):
        """The pooled feature the heads consume: the class token after the final LayerNorm, (N, hidden_dim)."""
        x = self._process_input(x)
        n = x.shape[0]
        x = self.encoder(cat([cat([self.class_token] * n, dim=0), x], dim=1))
        return x[:, 0]

    def forward(self, x):
        return self.heads(self.forward_features(x))

    def get_classifier(self):
        return self.heads.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh zero-initialised head for `num_classes` (torchvision's init); 0 makes the model a
        feature extractor."""
        self.num_classes = num_classes
        self.heads.head = self._new_head(num_classes)

    def adapt_state_dict(self, state_dict):
        """The checkpoint with its position embeddings resampled to this model's grid when they were
        made for another image size (see the module docstring). Other entries are passed through."""
        if POS_EMBEDDING not in state_dict:
            return state_dict
        pos = state_dict[POS_EMBEDDING]
        if tuple(pos.shape) == (1, self.seq_length, self.hidden_dim) or len(pos.shape) != 3 \
                or pos.shape[2] != self.hidden_dim:
            return state_dict  # equal, or a mismatch load_state_dict reports
        out = type(state_dict)(state_dict) if isinstance(state_dict, OrderedDict) else dict(state_dict)
        out[POS_EMBEDDING] = resample_pos_embedding(pos, self.image_size // self.patch_size)
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(self.adapt_state_dict(state_dict), strict, assign)


def vit_b_16(num_classes: int = 1000, image_size: int = 224, dropout: float = 0.0, attention_dropout: float = 0.0,
             **kwargs) -> VisionTransformer:
    """ViT-B/16: 12 layers, 12 heads, hidden 768, MLP 3072, 16x16 patches; 86,567,656 parameters at
    1000 classes and 224x224 (the position embeddings grow with image_size)."""
    return VisionTransformer(image_size=image_size, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
                             mlp_dim=3072, dropout=dropout, attention_dropout=attention_dropout,
                             num_classes=num_classes, **kwargs)
