"""Module and Parameter: the torch.nn.Module contract over affectfer tensors.

A Module holds Parameters (leaf tensors with requires_grad=True), buffers (tensors that are state
but not trained: BatchNorm's running_mean, running_var, num_batches_tracked) and child Modules, each
registered by assigning an attribute. Their dotted names (`layer1.0.conv1.weight`) are the keys of
`state_dict()`, in the order torch uses, so checkpoints map one to one onto torchvision's.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import _C
from ..autograd import no_grad
from ..tensor import Tensor, _call, _dtype_name, _parse_to, tensor
from .utils import zero_grad_

_FLOATS = ("float32", "float64")

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A tensor that is a module's trainable state: a leaf with requires_grad=True (by default).

    Parameter(data) shares data's memory, as torch.nn.Parameter does."""

    __slots__ = ()

    def __new__(cls, data=None, requires_grad: bool = True):
        if data is None:
            data = _C.empty((0,), "float32", True)
        if not isinstance(data, _C.TensorBase):
            raise TypeError(f"Parameter(data): data must be an affectfer.Tensor, got {type(data).__name__}")
        param = data.detach()  # a new leaf header over the same storage
        param.__class__ = cls
        param.requires_grad = requires_grad
        return param

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _copy_into(dst, src, key: str) -> None:
    """dst[...] = src in place through the copy_ op (any float/int array-like source, cast to
    dst's dtype), so a parameter packed in an arena stays there."""
    if not isinstance(src, _C.TensorBase):
        src = tensor(np.asarray(src), dtype=dst.dtype)
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"size mismatch for {key}: copying a param with shape {tuple(src.shape)} from checkpoint, "
                         f"the shape in current model is {tuple(dst.shape)}.")
    if src.dtype != dst.dtype and not (src.dtype in _FLOATS and dst.dtype in _FLOATS):
        src = src.to(dst.dtype)  # copy_ converts between float32 and float64 only
    with no_grad():
        _call("copy_", [dst, src])


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return lines[0] if len(lines) == 1 else lines[0] + "\n" + "\n".join(" " * spaces + ln for ln in lines[1:])


class Module:
    """Base class of every layer and model: subclass, assign parameters, buffers and sub-modules in
    __init__, compute in forward(); call the module to run forward."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- registration ----
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign attributes before Module.__init__() call")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            self._forget(name, keep=params)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=modules)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(affectfer.nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(affectfer.nn.Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, _C.TensorBase):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Drops name from every registry but keep: a name re-registered in the same registry keeps its
        place there, as in torch, because that order is the state_dict's key order and a Sequential's
        order of execution (replacing model.features[0][1] must not move it behind its siblings)."""
        for store in (self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        self._non_persistent.discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters or name in self._buffers or name in self._modules:
            self._forget(name)
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' (Parameter or None expected)")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        if value is not None and not isinstance(value, _C.TensorBase):
            raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
        if "." in name or not name:
            raise KeyError(f"buffer name can't be empty or contain '.', got {name!r}")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = value
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module) -> None:
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    # ---- traversal ----
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, value in getattr(mod, store).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target: str) -> "Module":
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule '{part}' (looking up '{target}')")
            mod = mod._modules[part]
        return mod

    # ---- state ----
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """OrderedDict name -> tensor: each module's parameters then its persistent buffers, then its
        children, depth first (torch's order). Values share memory with the model (detached unless
        keep_vars)."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def _optional_state_keys(self):
        """Own keys a checkpoint may lack without being incomplete (BatchNorm: num_batches_tracked)."""
        return ()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy every tensor of `state_dict` into this model in place (casting to each tensor's
        dtype). strict=True: missing or unexpected keys raise RuntimeError naming them all; a shape
        mismatch always raises. Returns (missing_keys, unexpected_keys)."""
        missing, errors = [], []
        expected = set()
        for mod_prefix, mod in self.named_modules(remove_duplicate=False):
            pre = mod_prefix + "." if mod_prefix else ""
            optional = set(mod._optional_state_keys())
            own = [(n, t) for n, t in mod._parameters.items() if t is not None]
            own += [(n, t) for n, t in mod._buffers.items() if t is not None and n not in mod._non_persistent]
            for name, target in own:
                key = pre + name
                expected.add(key)
                if key not in state_dict:
                    if name not in optional:
                        missing.append(key)
                    continue
                try:
                    _copy_into(target, state_dict[key], key)
                except (ValueError, TypeError) as exc:
                    errors.append(str(exc))
        unexpected = [k for k in state_dict if k not in expected]
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        return IncompatibleKeys(missing, unexpected)

    # ---- modes and gradients ----
    def train(self, mode: bool = True) -> "Module":
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none=True, torch's default) or zero it in place:
        affectfer.nn.utils.zero_grad_, shared with the optimizers."""
        zero_grad_(self.parameters(), set_to_none)

    def apply(self, fn) -> "Module":
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, *args, **kwargs) -> "Module":
        """Move or cast in place, as torch.nn.Module.to: `to(device)`, `to(dtype)`,
        `to(device, dtype)`, `to(tensor)`. dtype casts floating-point parameters and buffers only
        (integer buffers such as num_batches_tracked keep theirs). The Parameter objects stay the
        same (their data is re-pointed, torch's `param.data = ...`), so an optimizer built before
        keeps working; a parameter cast to another dtype leaves its arena and loses its .grad."""
        device, dtype = _parse_to(args, kwargs)
        if dtype is not None and dtype not in _FLOATS:
            raise TypeError(f"Module.to: only floating point dtypes (float32, float64) are supported, got {dtype}")
        with no_grad():
            for m in self.modules():
                for t in list(m._parameters.values()) + list(m._buffers.values()):
                    if t is None:
                        continue
                    want = dtype if dtype is not None and t.dtype in _FLOATS else t.dtype
                    moved = t.to(device, want)
                    if moved is not t:
                        _C.set_data(t, moved)
        return self

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self, device=None) -> "Module":
        """Moves every parameter and buffer to CUDA device `device` (default 0), in place."""
        return self.to("cuda:%d" % device if isinstance(device, int) else device or "cuda:0")

    def float(self) -> "Module":
        return self.to("float32")

    def double(self) -> "Module":
        return self.to("float64")

    # ---- printing ----
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [_addindent(f"({name}): {child!r}", 2) for name, child in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (extra if extra else "")
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))
