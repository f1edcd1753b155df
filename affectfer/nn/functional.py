"""affectfer.nn.functional: one function per C op, with torch.nn.functional's names and signatures.

Python turns the torch-style arguments (ints or pairs, negative dims, reduction names) into the op's
integer/float attributes (the contract in csrc/ops/<op>.c) and calls it; shapes and dtypes are
checked in C, which raises TypeError/ValueError naming the argument.

Besides torch.nn.functional's names, the torch.* functions of the C ops live here too (abs, clamp,
maximum, where, var, std, max, argmax, gather, index_select), so `max` and `abs` in this module are
these functions: code here that means Python's builtins writes builtins.max / builtins.abs.
"""
from __future__ import annotations

import math
import numbers

from .. import _C
from .._args import pair as _pair
from ..autograd import no_grad
from ..tensor import _call, tensor
from ..tensor import ones as _ones
from ..tensor import _wrap_dim as _dim

_REDUCTIONS = dict(_C.reductions)




def _reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return _REDUCTIONS[reduction]


def _signed64(v):
    """A 64-bit unsigned value as the signed int64 with the same bits (op attributes are int64)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


# ---- convolution, pooling, linear ----
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation: input (N, Cin, H, W), weight (Cout, Cin/groups, KH, KW), bias (Cout).
    padding: int, pair, 'valid' (0) or 'same' (stride 1 and an odd effective kernel only)."""
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            ph = pw = 0
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            kh, kw = weight.shape[-2:]
            if (dh * (kh - 1)) % 2 or (dw * (kw - 1)) % 2:
                raise ValueError("padding='same' needs an odd effective kernel size here (asymmetric padding is "
                                 "not supported); pad explicitly instead")
            ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
        else:
            raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
    return _call("conv2d", [input, weight, bias], (sh, sw, ph, pw, dh, dw, int(groups)))


def linear(input, weight, bias=None):
    """y = input @ weight.T + bias; input (..., in_features), weight (out_features, in_features)."""
    return _call("linear", [input, weight, bias])


def scaled_dot_product_attention(q, k, v, scale=None):
    """softmax(q k^T * scale) v, fused (torch.nn.functional.scaled_dot_product_attention without mask,
    dropout or causal option): q (..., Nq, D), k (..., Nk, D), v (..., Nk, Dv) with the same leading
    dims, e.g. (B, heads, N, D); scale defaults to 1/sqrt(D). The op keeps at most one block of the
    attention matrix (csrc/ops/attention.c), so memory grows with N, not N^2."""
    if scale is None:
        d = q.shape[-1] if q.ndim else 0
        scale = 1.0 / math.sqrt(d) if d > 0 else 1.0
    elif not isinstance(scale, numbers.Real) or isinstance(scale, bool):
        raise TypeError(f"scaled_dot_product_attention: argument 'scale' must be a number, got {scale!r}")
    return _call("scaled_dot_product_attention", [q, k, v], (), (float(scale),))


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over KHxKW windows (padding counts as -inf); stride defaults to kernel_size."""
    if return_indices:
        raise ValueError("max_pool2d(return_indices=True) is not supported")
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = (kh, kw) if stride is None or stride == [] else _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    return _call("max_pool2d", [input], (kh, kw, sh, sw, ph, pw, dh, dw, int(bool(ceil_mode))))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over KHxKW windows; stride defaults to kernel_size."""
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = (kh, kw) if stride is None or stride == [] else _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if divisor_override is not None and int(divisor_override) <= 0:
        raise ValueError(f"divisor_override must be a positive int or None, got {divisor_override!r}")
    return _call("avg_pool2d", [input], (kh, kw, sh, sw, ph, pw, int(bool(ceil_mode)), int(bool(count_include_pad)),
                                         int(divisor_override or 0)))


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed (out_h, out_w); None keeps that input dimension."""
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size, output_size)
    oh, ow = output_size
    oh = input.shape[-2] if oh is None else int(oh)
    ow = input.shape[-1] if ow is None else int(ow)
    return _call("adaptive_avg_pool2d", [input], (oh, ow))


# ---- normalisation and regularisation ----
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, C) or (N, C, ...). training=True normalises with the batch
    statistics and updates running_mean / running_var in place (when given); otherwise uses them."""
    return _call("batch_norm", [input, weight, bias, running_mean, running_var], (int(bool(training)),),
                 (float(momentum), float(eps)))


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
    """relu(batch_norm(...)) in one pass over the data (forward and backward), same arguments."""
    return _call("batch_norm_relu", [input, weight, bias, running_mean, running_var], (int(bool(training)),),
                 (float(momentum), float(eps)))


def batch_norm_silu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5):
    """silu(batch_norm(...)) in one pass over the data (forward and backward), same arguments."""
    return _call("batch_norm_silu", [input, weight, bias, running_mean, running_var], (int(bool(training)),),
                 (float(momentum), float(eps)))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalises over the trailing dims given by normalized_shape (an int or a tuple)."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    normalized_shape = tuple(int(d) for d in normalized_shape)
    k = len(normalized_shape)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != normalized_shape or k > input.ndim:
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not match the trailing dims of an "
                         f"input of shape {tuple(input.shape)}")
    return _call("layer_norm", [input, weight, bias], (k,), (float(eps),))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalises each of num_groups channel groups of every sample over its channels and spatial
    dims (biased variance), then scales and shifts per channel; input (N, C, *)."""
    if not isinstance(num_groups, numbers.Integral) or isinstance(num_groups, bool):
        raise TypeError(f"group_norm: argument 'num_groups' must be an int, got {num_groups!r}")
    return _call("group_norm", [input, weight, bias], (int(num_groups),), (float(eps),))


def dropout(input, p=0.5, training=True, inplace=False):
    """Zeroes each element with probability p and scales the rest by 1/(1-p) (training only). The
    mask comes from a fresh Philox stream, so affectfer.manual_seed makes it repeatable."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    seed, stream = _C.next_stream()
    return _call("dropout", [input], (1, _signed64(seed), _signed64(stream)), (float(p),))


# ---- activations ----
def drop_path(input, p=0.0, training=False, scale_by_keep=True):
    """Stochastic depth, "row" mode (Huang et al. 2016, "Deep Networks with Stochastic Depth"; timm's
    drop_path, torchvision.ops.stochastic_depth(mode="row")): each sample (index of dim 0) is zeroed
    whole with probability p, and the survivors are scaled by 1/(1-p) (scale_by_keep), so the
    expectation is unchanged; the identity outside training or at p = 0. The per-sample mask is
    dropout applied to a ones column, so it comes from affectfer's Philox stream."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop_path: probability p has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    keep = dropout(_ones(input.shape[0], *([1] * (input.ndim - 1)), dtype=input.dtype), p, True)
    if not scale_by_keep:
        keep = clamp(keep, max=1.0)  # 1/(1-p) -> exactly 1: a plain 0/1 mask
    return input * keep


def relu(input, inplace=False):
    return _call("relu", [input])


def gelu(input, approximate="none"):
    """x * Phi(x) (exact erf), or the tanh approximation with approximate='tanh'."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _call("gelu", [input], (int(approximate == "tanh"),))


def silu(input, inplace=False):
    return _call("silu", [input])


def sigmoid(input):
    return _call("sigmoid", [input])


def tanh(input):
    return _call("tanh", [input])


def softmax(input, dim, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _call("softmax", [input], (_dim(dim, input.ndim),))


def log_softmax(input, dim, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    return _call("log_softmax", [input], (_dim(dim, input.ndim),))


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, and x itself where beta * x > threshold (for stability)."""
    return _call("softplus", [input], (), (float(beta), float(threshold)))


def logsigmoid(input):
    """log(sigmoid(x)), computed as min(x, 0) - log1p(e^-|x|)."""
    return _call("log_sigmoid", [input])


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return _call("hardswish", [input])


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6 (MobileNetV3)."""
    return _call("hardsigmoid", [input])


# ---- elementwise, selection and indexing (torch.* functions, also Tensor methods) ----
def abs(input):
    return input.abs()


def clamp(input, min=None, max=None):
    """min(max(input, min), max) with number bounds, either of them None."""
    return input.clamp(min, max)


def maximum(input, other):
    """Elementwise maximum with broadcasting (NaN propagates; a tie splits the gradient in halves)."""
    return _call("maximum", [input, other])


def where(condition, input, other):
    """input where condition (bool or uint8) is set, else other; the three broadcast together. input
    or other may be a number (it takes the other operand's dtype)."""
    if not isinstance(input, _C.TensorBase) and not isinstance(other, _C.TensorBase):
        raise TypeError("where: at least one of 'input' and 'other' must be a Tensor")
    if not isinstance(input, _C.TensorBase):
        input = tensor(input, dtype=other.dtype)
    if not isinstance(other, _C.TensorBase):
        other = tensor(other, dtype=input.dtype)
    return _call("where", [condition, input, other])


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """torch.var: squared deviations from the mean summed over dim, divided by n - correction."""
    return input.var(dim, unbiased, keepdim, correction=correction)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """torch.std: the square root of var."""
    return input.std(dim, unbiased, keepdim, correction=correction)


def max(input, dim=None, keepdim=False):
    """torch.max: the largest element, (values, indices) along dim, or the maximum with a tensor."""
    return input.max(dim, keepdim)


def argmax(input, dim=None, keepdim=False):
    """torch.argmax: int64 index of the first maximum (of the flattened input when dim is None)."""
    return input.argmax(dim, keepdim)


def gather(input, dim, index, *, sparse_grad=False):
    """torch.gather: out[..., j, ...] = input[..., index[..., j, ...], ...] along dim (index int64)."""
    if sparse_grad:
        raise ValueError("gather(sparse_grad=True) is not supported")
    return input.gather(dim, index)


def index_select(input, dim, index):
    """torch.index_select: the entries index (int64, 1-D) of input along dim."""
    return input.index_select(dim, index)


def one_hot(tensor, num_classes=-1):
    """int64 (*shape) -> int64 (*shape, num_classes); num_classes=-1 takes the largest value + 1."""
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool):
        raise TypeError(f"one_hot: argument 'num_classes' must be an int, got {num_classes!r}")
    if num_classes == -1:
        if not isinstance(tensor, _C.TensorBase) or tensor.dtype != "int64":
            return _call("one_hot", [tensor], (1,))  # C names the argument and the dtype
        if tensor.numel() == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        with no_grad():  # float64 holds every class index exactly
            num_classes = int(tensor.to("float64").max().item()) + 1
    return _call("one_hot", [tensor], (int(num_classes),))


# ---- padding and resampling ----
_PAD_MODES = {"constant": 0, "reflect": 1, "replicate": 2}


def pad(input, pad, mode="constant", value=None):
    """torch.nn.functional.pad for the last two dims: pad = (left, right) or (left, right, top,
    bottom); modes 'constant' (negative padding crops), 'reflect' and 'replicate'."""
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: argument 'mode' must be 'constant', 'reflect' or 'replicate', got {mode!r}")
    try:
        widths = [int(v) for v in pad]
    except (TypeError, ValueError):
        raise TypeError(f"pad: argument 'pad' must be a tuple of ints, got {pad!r}") from None
    if len(widths) not in (2, 4):
        raise ValueError(f"pad: argument 'pad' must have 2 or 4 entries (the last one or two dims), got {len(widths)}")
    if mode != "constant" and value not in (None, 0):
        raise ValueError(f"pad: argument 'value' is only used in constant mode, got {value!r} with mode {mode!r}")
    if len(widths) == 2:
        widths += [0, 0]
    if input.ndim == 1 and widths[2:] == [0, 0]:
        return _call("pad", [input.reshape(1, -1)], (_PAD_MODES[mode], *widths), (float(value or 0),)).reshape(-1)
    return _call("pad", [input], (_PAD_MODES[mode], *widths), (float(value or 0.0),))


_INTERP_MODES = {"bilinear": 0, "bicubic": 1}


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """torch.nn.functional.interpolate for 4-D (N, C, H, W) inputs, modes 'bilinear' and 'bicubic'.
    Give size or scale_factor (a number or a pair); the output size is floor(H * scale_factor) and
    the coordinates use scale_factor itself unless recompute_scale_factor=True, as in torch."""
    if mode not in _INTERP_MODES:
        raise ValueError(f"interpolate: argument 'mode' must be 'bilinear' or 'bicubic', got {mode!r}")
    if antialias:
        raise ValueError("interpolate: antialias=True is not supported")
    if input.ndim != 4:
        raise ValueError(f"interpolate: {mode} mode needs a 4-D (N, C, H, W) input, got shape {tuple(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of 'size' and 'scale_factor'")
    H, W = input.shape[2:]
    scales = (0.0, 0.0)
    if size is not None:
        oh, ow = _pair(size, "size")
    else:
        if isinstance(scale_factor, numbers.Real):
            scale_factor = (scale_factor, scale_factor)
        try:
            sh, sw = (float(v) for v in scale_factor)
        except (TypeError, ValueError):
            raise TypeError(f"interpolate: argument 'scale_factor' must be a number or a pair, got {scale_factor!r}") \
                from None
        if not (sh > 0 and sw > 0):
            raise ValueError(f"interpolate: argument 'scale_factor' must be positive, got {scale_factor!r}")
        oh, ow = int(H * sh // 1), int(W * sw // 1)
        if not recompute_scale_factor:
            scales = (sh, sw)
    return _call("interpolate", [input], (_INTERP_MODES[mode], int(bool(align_corners)), oh, ow), scales)


# ---- losses ----
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """torch.nn.functional.cross_entropy: logits (N, C) or (N, C, d1, ...) or (C,); target class
    indices (int64) or class probabilities (float, the logits' shape)."""
    if size_average is not None or reduce is not None:
        raise ValueError("size_average and reduce are deprecated in torch and not supported; use reduction=")
    red = _reduction(reduction)
    if input.ndim == 1:  # one sample
        index_target = target.ndim == 0
        out = cross_entropy(input.reshape(1, input.shape[0]), target.reshape(1) if index_target else
                            target.reshape(1, target.shape[0]), weight, ignore_index=ignore_index,
                            reduction=reduction, label_smoothing=label_smoothing)
        return out.reshape(()) if red == 0 else out
    if input.ndim > 2:  # (N, C, d1, ...) -> (N*d1*..., C)
        N, C = input.shape[:2]
        rest = tuple(input.shape[2:])
        perm = (0,) + tuple(range(2, input.ndim)) + (1,)
        flat_input = input.permute(*perm).reshape(-1, C)
        if target.ndim == input.ndim:
            flat_target = target.permute(*perm).reshape(-1, C)
        else:
            flat_target = target.reshape(-1)
        out = _call("cross_entropy", [flat_input, flat_target, weight], (red, int(ignore_index)),
                    (float(label_smoothing),))
        return out.reshape(N, *rest) if red == 0 else out
    return _call("cross_entropy", [input, target, weight], (red, int(ignore_index)), (float(label_smoothing),))


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean (or sum, or elementwise) squared error; input and target broadcast like torch."""
    if size_average is not None or reduce is not None:
        raise ValueError("size_average and reduce are deprecated in torch and not supported; use reduction=")
    red = _reduction(reduction)
    diff = input - target
    sq = diff * diff
    return sq if red == 0 else (sq.mean() if red == 1 else sq.sum())


def all_reduce(input, timeout=None):
    """The sum of `input` over the ranks of affectfer.distributed's group, as a new tensor that is
    differentiable: its gradient is the incoming gradient summed over the ranks, as
    torch.distributed.nn.functional.all_reduce. Every rank must call it, in the same order. In a
    single process it is a copy. timeout: seconds to wait for the others (default: the group's)."""
    if timeout is None:
        from ..distributed import _group
        timeout = _group.backstop if _group is not None else 300.0
    return _call("all_reduce", [input], (), (float(timeout),))
