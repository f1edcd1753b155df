"""Attention layers with torch.nn's names, arguments, parameter names and initialisation:
MultiheadAttention, TransformerEncoderLayer, and stochastic depth (DropPath).

    attn = nn.MultiheadAttention(768, 12, batch_first=True)
    out, _ = attn(x, x, x, need_weights=False)      # the fused scaled_dot_product_attention op

Attention masks (attn_mask, key_padding_mask, is_causal) are not supported: ViT-style encoders and
the FER heads built on them attend over every token.
"""
from __future__ import annotations

from ..tensor import zeros as _zeros
from . import functional as F
from . import init
from .layers import Dropout, LayerNorm, Linear
from .module import Module, Parameter


class DropPath(Module):
    """Stochastic depth per sample ("row" mode) around a residual branch: timm's DropPath and
    torchvision's StochasticDepth(p, "row"). See functional.drop_path."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_path: probability has to be between 0 and 1, but got {drop_prob}")
        self.drop_prob, self.scale_by_keep = float(drop_prob), scale_by_keep

    @property
    def p(self) -> float:
        """torchvision's attribute name for the drop probability."""
        return self.drop_prob

    def forward(self, input):
        return F.drop_path(input, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self):
        return f"drop_prob={self.drop_prob:.3f}"


def _no_masks(where, **masks):
    given = [name for name, value in masks.items() if value is not None and value is not False]
    if given:
        raise ValueError(f"{where}: {', '.join(given)} is not supported (attention over every token only)")


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention (Vaswani et al. 2017) for kdim = vdim = embed_dim: the q, k, v
    projections stacked in in_proj_weight (3E, E) and in_proj_bias (3E) (xavier_uniform / zeros),
    out_proj Linear(E, E) (torch's Linear init, zero bias), softmax(q k^T / sqrt(E / num_heads)) v
    per head, `dropout` on the attention probabilities in training.

    forward(query, key, value, need_weights=True, average_attn_weights=True) -> (output, weights);
    inputs (L, B, E), or (B, L, E) with batch_first, or unbatched (L, E). need_weights=False (and
    no attention dropout in effect) runs the fused scaled_dot_product_attention op, which never holds
    the attention matrix; need_weights=True computes it explicitly to return it, averaged over heads
    (B, L, S) or per head (B, num_heads, L, S)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, dtype="float32"):
        super().__init__()
        embed_dim, num_heads = int(embed_dim), int(num_heads)
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads} instead")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ValueError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        if (kdim is not None and kdim != embed_dim) or (vdim is not None and vdim != embed_dim):
            raise ValueError(f"MultiheadAttention: kdim and vdim must equal embed_dim ({embed_dim}), "
                             f"got kdim={kdim}, vdim={vdim}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = self.vdim = embed_dim
        self.dropout, self.batch_first = float(dropout), batch_first
        self.in_proj_weight = Parameter(_zeros(3 * embed_dim, embed_dim, dtype=dtype))
        if bias:
            self.in_proj_bias = Parameter(_zeros(3 * embed_dim, dtype=dtype))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self._reset_parameters()

    def _reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)

    def _heads(self, x, B, L):
        """(B, L, E) -> (B, num_heads, L, head_dim)"""
        return x.reshape(B, L, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        _no_masks("MultiheadAttention", key_padding_mask=key_padding_mask, attn_mask=attn_mask, is_causal=is_causal)
        E = self.embed_dim
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim not in (2, 3) or t.shape[-1] != E:
                raise ValueError(f"MultiheadAttention: '{name}' must be (L, {E}) or a batch of them (3-D), got shape "
                                 f"{tuple(t.shape)}")
        batched = query.ndim == 3
        if key.ndim != query.ndim or value.ndim != query.ndim or key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention: key {tuple(key.shape)} and value {tuple(value.shape)} must match "
                             f"each other and the batching of query {tuple(query.shape)}")
        if not batched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        elif not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        B, L, S = query.shape[0], query.shape[1], key.shape[1]
        if key.shape[0] != B:
            raise ValueError(f"MultiheadAttention: query has batch {B}, key and value {key.shape[0]}")
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:  # self-attention: one (3E, E) projection
            q, k, v = F.linear(query, w, b).reshape(B, L, 3, E).split(1, dim=2)
            q, k, v = (t.reshape(B, L, E) for t in (q, k, v))
        else:
            ws, bs = w.split(E, dim=0), (b.split(E, dim=0) if b is not None else (None,) * 3)
            q, k, v = (F.linear(x, wi, bi) for x, wi, bi in zip((query, key, value), ws, bs))
        q, k, v = self._heads(q, B, L), self._heads(k, B, S), self._heads(v, B, S)
        dropping = self.training and self.dropout > 0.0
        weights = None
        if need_weights or dropping:
            probs = F.softmax(q @ k.transpose(-2, -1) * (self.head_dim ** -0.5), dim=-1)
            if need_weights:
                weights = probs.mean(dim=1) if average_attn_weights else probs
            out = F.dropout(probs, self.dropout, True) @ v if dropping else probs @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.out_proj(out.permute(0, 2, 1, 3).reshape(B, L, E))
        if not batched:
            return out.reshape(L, E), (weights.reshape(*weights.shape[1:]) if weights is not None else None)
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """torch.nn.TransformerEncoderLayer: self-attention then a feed-forward block, each in a residual
    with dropout, LayerNorm after each (norm_first=False, the original Transformer) or before each
    branch (norm_first=True, the pre-LN form of ViT):
        norm_first: x = x + drop1(attn(norm1(x)));  x = x + drop2(linear2(drop(act(linear1(norm2(x))))))
        otherwise:  x = norm1(x + drop1(attn(x)));  x = norm2(x + drop2(linear2(drop(act(linear1(x))))))
    activation: "relu", "gelu" (exact, erf) or a callable. Names as torch: self_attn, linear1,
    dropout, linear2, norm1, norm2, dropout1, dropout2."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype="float32"):
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"activation should be relu/gelu, not {activation}")
            activation = _ACTIVATIONS[activation]
        elif not callable(activation):
            raise TypeError(f"activation must be 'relu', 'gelu' or a callable, got {activation!r}")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation

    def _sa_block(self, x):
        return self.dropout1(self.self_attn(x, x, x, need_weights=False)[0])

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        _no_masks("TransformerEncoderLayer", src_mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                  is_causal=is_causal)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x))
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x))
        return self.norm2(x + self._ff_block(x))
