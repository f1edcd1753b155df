"""affectfer.nn.utils: flat parameter arenas, zero_grad, gradient clipping, conv + batch-norm folding.

Flat arenas (the single parameter buffer of llm.c): `flatten_parameters(model)` packs the
parameters of each dtype back to back into one 1-D tensor and re-points every Parameter at its
slice, so the Parameter objects stay the same (the model, an optimizer, user code all still hold
them) while their bytes now live in the arena. A gradient arena of the same layout comes with it:
backward accumulates each parameter's gradient straight into its slice. The optimizers pack their
parameters this way, so their update is one C call per param group and dtype, and
zero_grad(set_to_none=False) is one fill.

    arenas = flatten_parameters(model)          # {"float32": ParameterArena}
    arenas["float32"].data                      # every float32 parameter, flat
    model.fc.weight.grad                        # after backward: a view into arenas[...].grad

Tensors that shared a parameter's memory before packing (an earlier .detach(), a NumPy view, the
`data` a Parameter was built from) keep the old bytes.
"""
from __future__ import annotations

import copy
import math
import weakref
from collections import OrderedDict

import numpy as np

from .. import _C
from ..autograd import no_grad
from ..tensor import _call, tensor

# Every live arena, so that Module.zero_grad finds the arenas of its parameters without a link
# from the Parameter (Parameters have no room for attributes).
_ARENAS: "weakref.WeakSet[ParameterArena]" = weakref.WeakSet()


class ParameterArena:
    """Tensors of one float dtype packed back to back in `data`, their gradients in `grad`.

    `params[k]` views data[starts[k] : starts[k] + params[k].numel()] with its own shape, and its
    gradient slot views the same range of `grad`: backward adopts that slot (zeroed) as .grad."""

    def __init__(self, params):
        self.params = list(params)
        self.starts, n = [], 0
        for p in self.params:
            self.starts.append(n)
            n += p.numel()
        self.data = _C.arena_pack(self.params)
        self.grad = _C.arena_attach_grads(self.params, self.data)
        _ARENAS.add(self)

    @property
    def dtype(self) -> str:
        return self.data.dtype

    def status(self) -> int:
        """_C.ARENA_INTACT (0) when every member is in place with its gradient in `grad`; else the
        flags _C.ARENA_NO_GRAD, _C.ARENA_FOREIGN_GRAD, _C.ARENA_MOVED."""
        return _C.arena_status(self.params, self.data, self.grad)

    def segment(self, first: int, stop: int):
        """(data, grad) views over members first..stop-1, which are contiguous by construction."""
        lo = self.starts[first] if first < len(self.params) else self.data.numel()
        hi = self.starts[stop] if stop < len(self.params) else self.data.numel()
        return _C.view_at(self.data, lo, (hi - lo,)), _C.view_at(self.grad, lo, (hi - lo,))

    def __repr__(self):
        return f"ParameterArena({len(self.params)} tensors, {self.data.numel()} {self.dtype} elements)"


def flatten_parameters(parameters) -> dict:
    """Pack float32/float64 parameters (a Module, or an iterable of leaf tensors, each once) into
    one ParameterArena per dtype; returns {dtype: arena}. Other dtypes are left alone. Packing
    again (another optimizer over the same tensors) moves them into the new arenas; the old ones
    then report _C.ARENA_MOVED and their owners fall back to per-tensor work."""
    params = list(parameters.parameters() if hasattr(parameters, "parameters") else parameters)
    by_dtype: dict = {}
    for p in params:
        if p.dtype in ("float32", "float64"):
            by_dtype.setdefault(p.dtype, []).append(p)
    return {dtype: ParameterArena(members) for dtype, members in by_dtype.items()}


@no_grad()
def zero_grad_(parameters, set_to_none: bool = True) -> None:
    """The one zero_grad of affectfer (Module.zero_grad and Optimizer.zero_grad call it).

    set_to_none=True (torch's default): every .grad becomes None; the arena slots stay, and the
    next backward adopts each slot again, zeroing it then (one memset per parameter that receives
    a gradient, as allocating a fresh zeroed gradient would cost). set_to_none=False: existing
    gradients are zeroed in place, so whoever holds one sees zeros: one fill over each arena whose
    members are all among `parameters` with their gradients in their slots, one fill per tensor
    for the rest; parameters whose .grad is None keep None (as torch)."""
    params = [p for p in parameters if p.grad is not None]
    if set_to_none:
        for p in params:
            p.grad = None
        return
    todo = {id(p): p for p in params}
    for arena in list(_ARENAS):
        if not todo or not all(id(p) in todo for p in arena.params if p.grad is not None):
            continue
        # the members' grads must be their slots; members without a grad only get their slot zeroed
        if arena.status() & (_C.ARENA_MOVED | _C.ARENA_FOREIGN_GRAD):
            continue
        _call("fill_", [arena.grad], (), (0.0,))
        for p in arena.params:
            todo.pop(id(p), None)
    for p in todo.values():
        _call("fill_", [p.grad], (), (0.0,))


@no_grad()
def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach=None):
    """Scale every gradient in place by min(1, max_norm / (total_norm + 1e-6)), total_norm being
    the norm_type-norm of all gradients together (torch.nn.utils.clip_grad_norm_). Returns
    total_norm as a 0-d tensor of the gradients' dtype."""
    if isinstance(parameters, _C.TensorBase):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return tensor(0.0)
    if math.isinf(norm_type):
        total = max(float(np.abs(g.numpy()).max()) if g.numel() else 0.0 for g in grads)
    elif norm_type <= 0:
        raise ValueError(f"norm_type must be positive, got {norm_type}")
    else:
        # per-tensor norms (each a C reduction), then the norm of the norms, as torch does
        norms = []
        for g in grads:
            powered = g * g if norm_type == 2.0 else (g * g).pow(norm_type / 2)
            norms.append(float(powered.sum().item()) ** (1.0 / norm_type))
        total = sum(n ** norm_type for n in norms) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           "so it cannot be clipped. To disable this error and scale the gradients by the "
                           "non-finite norm anyway, set `error_if_nonfinite=False`")
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for g in grads:
        _call("copy_", [g, _call("scale", [g], (), (coef,))])
    return tensor(total, dtype=grads[0].dtype)


def fuse_conv_bn_eval(conv, bn):
    """One Conv2d computing bn(conv(x)) with bn's running statistics (eval mode): with
    s = gamma / sqrt(running_var + eps) per output channel, W' = s W and b' = s (b - running_mean) + beta
    (the inference-time transform of Ioffe and Szegedy 2015, arXiv 1502.03167, folded into the
    convolution as torch.nn.utils.fuse_conv_bn_eval does). Computed in float64, stored in conv's dtype.
    conv and bn are left unchanged."""
    from .layers import BatchNorm2d, Conv2d  # module.py imports this file: layers are imported late
    from .module import Parameter
    if not isinstance(conv, Conv2d) or not isinstance(bn, BatchNorm2d):
        raise TypeError(f"fuse_conv_bn_eval(conv, bn): expected a Conv2d and a BatchNorm2d, got "
                        f"{type(conv).__name__} and {type(bn).__name__}")
    if bn.num_features != conv.out_channels:
        raise ValueError(f"fuse_conv_bn_eval: bn has {bn.num_features} features but conv has "
                         f"{conv.out_channels} output channels")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fuse_conv_bn_eval: bn has no running statistics (track_running_stats=False), so its "
                         "output depends on the batch and cannot be folded")
    out = conv.out_channels
    w = conv.weight.numpy().astype(np.float64)
    b = conv.bias.numpy().astype(np.float64) if conv.bias is not None else np.zeros(out)
    gamma = bn.weight.numpy().astype(np.float64) if bn.weight is not None else np.ones(out)
    beta = bn.bias.numpy().astype(np.float64) if bn.bias is not None else np.zeros(out)
    scale = gamma / np.sqrt(bn.running_var.numpy().astype(np.float64) + bn.eps)
    # a shallow copy keeps every hyper-parameter; its own registries, so conv keeps its parameters
    # (building a new Conv2d would draw an initialisation from the global RNG)
    fused = copy.copy(conv)
    for registry in ("_parameters", "_buffers", "_modules"):
        object.__setattr__(fused, registry, OrderedDict(getattr(conv, registry)))
    object.__setattr__(fused, "_non_persistent", set(conv._non_persistent))
    fused.weight = Parameter(tensor(w * scale.reshape(-1, 1, 1, 1), dtype=conv.weight.dtype))
    fused.bias = Parameter(tensor(scale * (b - bn.running_mean.numpy().astype(np.float64)) + beta,
                                  dtype=conv.weight.dtype))
    fused.training = False
    return fused


def fuse_conv_bn(model, pairs=None):
    """Fold every (Conv2d, BatchNorm2d) pair of an eval-mode model in place: the conv becomes
    fuse_conv_bn_eval(conv, bn) and the bn what its folded() gives (Identity, or the activation it
    applies: a ReLU for a BatchNorm2d(fused_relu=True)), so
    inference runs one op where it ran two.
    Returns the model. Its state_dict then has no bn entries: fold a copy loaded from a checkpoint,
    never the model you train.

    pairs: dotted names [("layer1.0.conv1", "layer1.0.bn1"), ...]. By default, within every module, a
    Conv2d child registered right before a BatchNorm2d child of matching width, which is how
    torchvision-style models (affectfer.models' ResNets among them) apply them in forward(); pass
    pairs for a model whose forward() uses its convs and batch norms in another order."""
    from .layers import BatchNorm2d, Conv2d
    if model.training:
        raise ValueError("fuse_conv_bn: the model is in training mode; call model.eval() first (training-mode "
                         "batch norm uses batch statistics, which cannot be folded into weights)")
    modules = dict(model.named_modules())
    if pairs is None:
        pairs = []
        for name, module in modules.items():
            children = list(module.named_children())
            for (cname, conv), (bname, bn) in zip(children, children[1:]):
                if (isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d) and bn.num_features == conv.out_channels
                        and bn.running_mean is not None):
                    prefix = name + "." if name else ""
                    pairs.append((prefix + cname, prefix + bname))
    for conv_name, bn_name in pairs:
        for n in (conv_name, bn_name):
            if n not in modules:
                raise ValueError(f"fuse_conv_bn: the model has no module named {n!r}")
        fused = fuse_conv_bn_eval(modules[conv_name], modules[bn_name])
        after = modules[bn_name].folded()
        for n, replacement in ((conv_name, fused), (bn_name, after.eval())):
            parent, _, leaf = n.rpartition(".")
            setattr(modules[parent] if parent else model, leaf, replacement)
    return model
