"""affectfer.nn.utils: gradient clipping."""
from __future__ import annotations

import math

import numpy as np

from .. import _C
from ..autograd import no_grad
from ..tensor import _call, tensor


@no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None):
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)), total_norm being the
    norm_type-norm of all gradients together (torch.nn.utils.clip_grad_norm_). Returns total_norm
    as a 0-d float tensor."""
    if isinstance(parameters, _C.TensorBase):
        parameters = [parameters]
    grads = [p for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return tensor(0.0)
    if math.isinf(norm_type):
        total = max(float(np.abs(p.grad.numpy()).max()) if p.grad.numel() else 0.0 for p in grads)
    elif norm_type <= 0:
        raise ValueError(f"norm_type must be positive, got {norm_type}")
    else:
        # per-tensor norms (each a C reduction), then the norm of the norms, as torch does
        norms = []
        for p in grads:
            g = p.grad
            powered = g * g if norm_type == 2.0 else (g * g).pow(norm_type / 2)
            norms.append(float(powered.sum().item()) ** (1.0 / norm_type))
        total = sum(n ** norm_type for n in norms) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           "so it cannot be clipped. To disable this error and scale the gradients by the "
                           "non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for p in grads:
        p.grad = _call("scale", [p.grad], (), (coef,))
    return tensor(total, dtype=grads[0].grad.dtype)
