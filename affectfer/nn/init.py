"""affectfer.nn.init: torch.nn.init's in-place initialisers, drawing from affectfer's Philox
generator (affectfer.manual_seed makes every initialisation repeatable; the numbers differ from
torch's generator, the distributions do not)."""
from __future__ import annotations

import math

from .. import _C
from ..autograd import no_grad
from ..tensor import _call, empty as _empty, tensor as _copy_of


def _int64(u: int) -> int:
    """A uint64 (seed, stream) as the int64 with the same bits, the form op attributes take."""
    return u - (1 << 64) if u >= 1 << 63 else u


def _random(tensor, op, a, b):
    """The in-place uniform_/normal_ op on a fresh Philox stream of the global generator: the same
    values as affectfer.rand/randn of that shape would draw."""
    if tensor.dtype not in ("float32", "float64"):
        raise TypeError(f"random initialisation needs a float32/float64 tensor, got {tensor.dtype}")
    seed, stream = _C.next_stream()
    _call(op, [tensor], (_int64(seed), _int64(stream)), (float(a), float(b)))
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """Recommended std gain per nonlinearity (torch.nn.init.calculate_gain's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = 1
    for d in tensor.shape[2:]:
        receptive *= d
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


@no_grad()
def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    return _random(tensor, "uniform_", a, b)


@no_grad()
def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    return _random(tensor, "normal_", mean, std)


@no_grad()
def constant_(tensor, val: float):
    _call("fill_", [tensor], (), (float(val),))
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """U(-bound, bound), bound = gain * sqrt(3 / fan) (He et al. 2015)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """N(0, std^2), std = gain / sqrt(fan) (He et al. 2015)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    return normal_(tensor, 0.0, std)


def xavier_uniform_(tensor, gain: float = 1.0):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


@no_grad()
def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0):
    """N(mean, std^2) restricted to [a, b] (absolute bounds, as torch.nn.init.trunc_normal_). By
    rejection: every element out of [a, b] is redrawn from a fresh normal stream until none is left;
    the first in-range draw of an i.i.d. sequence is exactly the truncated distribution. The bounds
    must hold at least 1e-6 of the normal's mass (torch's inverse-CDF method has no such limit, but
    a narrower window is a mistake in practice and would take ~1e6 rounds here)."""
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a!r}, b={b!r}")
    if not std > 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std!r}")
    mass = 0.5 * (math.erf((b - mean) / (std * math.sqrt(2))) - math.erf((a - mean) / (std * math.sqrt(2))))
    if mass < 1e-6:
        raise ValueError(f"trunc_normal_: [a, b] = [{a!r}, {b!r}] holds {mass:.3g} of N({mean!r}, {std!r}^2); "
                         "need at least 1e-6")
    normal_(tensor, mean, std)
    while True:
        values = tensor.numpy()
        outside = (values < a) | (values > b) | ~(values == values)
        if not outside.any():
            return tensor
        fresh = normal_(_empty(*tensor.shape, dtype=tensor.dtype), mean, std)
        _call("copy_", [tensor, _call("where", [_copy_of(outside), fresh, tensor])])
