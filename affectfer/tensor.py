"""affectfer.Tensor and tensor creation.

A Tensor is a handle on a C `af_tensor` (csrc/core/tensor.h): the data never lives in Python.
Arithmetic operators and the common methods below each call one C op through `_call`; the op's
backward is recorded by the C tape when grad mode is on.
"""
from __future__ import annotations

import copy as _copy
import numbers
import operator

import numpy as np

from . import _C
from .autograd import no_grad as _no_grad

float32, float64, float16, bfloat16 = "float32", "float64", "float16", "bfloat16"
uint8, int32, int64, bool_ = "uint8", "int32", "int64", "bool"
_DTYPE_IDS = dict(_C.dtypes)  # {name: af_dtype id}, defined once in csrc/core/dtype.h
_MAX_CAT = _C.limits["op_inputs"]  # tensors per cat call
_MAX_SPLIT = _C.limits["op_int_attrs"] - 1  # pieces per split call: dim + one size each


def _call(op: str, inputs, ints=(), floats=()):
    """Run C op `op` (a name from csrc/ops/op_list.h)."""
    return _C.call(_C.ops[op], inputs, ints, floats)


def _wrap_dim(dim, ndim, name="dim"):
    """`dim` in [-ndim, ndim) as an index in [0, ndim), else IndexError with torch's message; a 0-d
    tensor accepts -1 and 0, as in torch."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"argument '{name}' must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim}) "
                         f"for argument '{name}'")
    return int(dim) % n


def _size(value, name):
    """One size of a shape: an int (or an object with __index__), never a float or a bool."""
    if isinstance(value, bool):
        raise TypeError(f"argument '{name}' must be a sequence of ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"argument '{name}' must be a sequence of ints, got an element {value!r} "
                        f"of type {type(value).__name__}") from None


def _dtype_name(dtype) -> str:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype not in _DTYPE_IDS:
            raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_IDS)}")
        return dtype
    name = np.dtype(dtype).name
    if name not in _DTYPE_IDS:
        raise TypeError(f"unsupported dtype {dtype!r}")
    return name


class Tensor(_C.TensorBase):
    """An n-dimensional array (up to 5 dims) owned by the C core, with autograd.

    Create with `affectfer.tensor(data)` (copies), `affectfer.from_numpy(array)` (shares memory),
    `affectfer.zeros/ones/randn/rand`, or `affectfer.from_dlpack(x)`. `np.asarray(t)` and
    `t.numpy()` view the same memory without copying. NumPy has no bfloat16: for a bfloat16 tensor
    both raise TypeError, and `t.float()` gives the (exact) float32 copy to view instead; its
    repr shows the values through that conversion.
    """

    __slots__ = ()

    # ---- conversion and inspection ----
    @property
    def __array_interface__(self):
        if self.device != "cpu":
            raise TypeError("a CUDA tensor has no CPU memory to view; call .cpu() first")
        _numpy_dtype(self)
        return {"shape": self.shape, "typestr": np.dtype(self.dtype).str, "version": 3,
                "data": (self._data_ptr, self._readonly)}

    def numpy(self) -> np.ndarray:
        _numpy_dtype(self)
        return super().numpy()

    def __array__(self, dtype=None, copy=None):
        _numpy_dtype(self)
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def size(self, dim=None):
        if dim is None:
            return self.shape
        d = _wrap_dim(dim, self.ndim)
        if self.ndim == 0:
            raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
        return self.shape[d]

    def __bool__(self):
        # as torch (and NumPy): only a one-element tensor has a truth value
        n = self.numel()
        if n != 1:
            raise RuntimeError(f"Boolean value of Tensor with {'no values' if n == 0 else 'more than one value'} "
                               f"is ambiguous (shape {self.shape}): use .any() / .all() on .numpy(), or .item()")
        return bool(self.item())

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item() needs a one-element tensor, this one has shape {self.shape}")
        return self.cpu().numpy().reshape(()).item()

    def tolist(self):
        return self.cpu().numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn}" if self.grad_fn else (", requires_grad=True" if self.requires_grad else "")
        if self.device != "cpu":
            body = "..."
        else:  # bfloat16 has no NumPy dtype: show its values through the exact cast to float32
            with _no_grad():
                values = (self.float() if self.dtype == "bfloat16" else self).numpy()
            body = np.array2string(values, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{grad})"

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = flag
        return self

    def clone(self) -> "Tensor":
        """A copy in fresh memory; differentiable (gradients flow back to self) when self requires
        grad, as torch.Tensor.clone."""
        if self.requires_grad:
            return self * 1.0
        out = empty(self.shape, dtype=self.dtype)
        _call("copy_", [out, self])
        return out

    def __deepcopy__(self, memo):
        """copy.deepcopy (and so deepcopy of a Module): a leaf with its own memory, the same dtype,
        requires_grad and class (a Parameter stays a Parameter), and a copy of .grad. As in torch,
        only graph leaves can be deep-copied."""
        if id(self) in memo:
            return memo[id(self)]
        if not self.is_leaf:
            raise RuntimeError("only tensors created by the user (graph leaves) support deepcopy; "
                               "call .detach() first to copy the value without its graph")
        with _no_grad():
            out = self.detach().clone()
        if type(self) is not Tensor:  # Parameter and other subclasses keep their class
            out = type(self)(out, requires_grad=self.requires_grad)
        else:
            out.requires_grad = self.requires_grad
        memo[id(self)] = out
        grad = self.grad
        if grad is not None:  # a fresh wrapper: copy.deepcopy keeps it alive, so its id, a memo key, is not reused
            out.grad = _copy.deepcopy(grad, memo)
        return out

    # ---- dtype and device ----
    def to(self, *args, **kwargs) -> "Tensor":
        """torch.Tensor.to: `to(dtype)`, `to(device)`, `to(device, dtype)`, `to(other)` (other's
        device and dtype), keywords dtype=, device=, copy=False, non_blocking (ignored). Returns
        self when nothing changes and copy is False. Devices: "cpu", and "cuda"/"cuda:N" in a build
        with CUDA and a visible GPU (affectfer.cuda.is_available()). A move between devices is a
        copy outside the autograd graph (the result is a leaf with this tensor's requires_grad), as
        Module.to needs for its parameters."""
        copy = bool(kwargs.pop("copy", False))
        kwargs.pop("non_blocking", None)
        device, dtype = _parse_to(args, kwargs)
        out = self
        if dtype is not None and dtype != self.dtype:
            if dtype not in ("float32", "float64"):  # no gradient flows into other dtypes (as torch)
                with _no_grad():
                    out = _call("cast", [self], (_DTYPE_IDS[dtype],))
            else:
                out = _call("cast", [self], (_DTYPE_IDS[dtype],))
        if device is not None and device != _device(self.device):
            moved = _C.copy_to(out, device)
            moved.requires_grad = self.requires_grad and moved.dtype in ("float32", "float64")
            return moved
        return out.clone() if copy and out is self else out

    def cpu(self) -> "Tensor":
        """This tensor on the CPU: itself when it is there, else a copy."""
        return self.to("cpu")

    def cuda(self, device=None) -> "Tensor":
        """This tensor on CUDA device `device` (default 0): itself when it is there, else a copy."""
        return self.to(_cuda_name(device))

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # ---- arithmetic ----
    def _binary(self, other, op, scalar_op=None):
        """NotImplemented for operands that are not numbers, tensors or arrays (then Python raises
        its TypeError "unsupported operand type(s)", as for torch; np.asarray(None) would be NaN)."""
        if isinstance(other, numbers.Number):
            if scalar_op is None:
                other = full((), other, dtype=self.dtype, device=self.device)
            else:
                return scalar_op(float(other))
        elif isinstance(other, (np.ndarray, list, tuple)):
            other = tensor(np.asarray(other, dtype=self.dtype), device=self.device)
        elif not isinstance(other, _C.TensorBase):
            return NotImplemented
        return _call(op, [self, other])

    def __add__(self, other):
        return self._binary(other, "add", lambda v: _call("add_scalar", [self], (), (v,)))

    __radd__ = __add__

    def __sub__(self, other):
        return self._binary(other, "sub", lambda v: _call("add_scalar", [self], (), (-v,)))

    def __rsub__(self, other):
        return NotImplemented if other is None else (-self) + other

    def __mul__(self, other):
        return self._binary(other, "mul", lambda v: _call("scale", [self], (), (v,)))

    __rmul__ = __mul__

    def __truediv__(self, other):
        # x / 0 is inf or nan as in torch (IEEE division), not Python's ZeroDivisionError
        return self._binary(other, "div", lambda v: _call("scale", [self], (), (1.0 / v,)) if v != 0
                            else _call("div", [self, full((), v, dtype=self.dtype)]))

    def __rtruediv__(self, other):
        return NotImplemented if other is None else self.pow(-1.0) * other

    def __neg__(self):
        return _call("neg", [self])

    def __pow__(self, exponent):
        if not isinstance(exponent, numbers.Number):
            raise TypeError("only scalar exponents are supported")
        return self.pow(exponent)

    def pow(self, exponent: float):
        return _call("pow_scalar", [self], (), (float(exponent),))

    def exp(self):
        return _call("exp", [self])

    def log(self):
        return _call("log", [self])

    def sqrt(self):
        return _call("sqrt", [self])

    def relu(self):
        return _call("relu", [self])

    def sigmoid(self):
        return _call("sigmoid", [self])

    def tanh(self):
        return _call("tanh", [self])

    def abs(self):
        return _call("abs", [self])

    def clamp(self, min=None, max=None):
        """min(max(self, min), max); either bound may be None (not both). Bounds are numbers."""
        if min is None and max is None:
            raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
        for name, v in (("min", min), ("max", max)):
            if v is not None and not isinstance(v, numbers.Real):
                raise TypeError(f"clamp: argument '{name}' must be a number or None, got {type(v).__name__}")
        return _call("clamp", [self], (int(min is not None), int(max is not None)),
                     (float(0.0 if min is None else min), float(0.0 if max is None else max)))

    clip = clamp

    def maximum(self, other):
        return _call("maximum", [self, other])

    def where(self, condition, y):
        """torch.Tensor.where: self where condition, else y (a tensor or a number)."""
        if isinstance(y, numbers.Real) and not isinstance(y, bool):
            y = tensor(y, dtype=self.dtype)
        return _call("where", [condition, self, y])

    # ---- shapes (csrc/ops/shape.c) ----
    def reshape(self, *shape):
        shape = _resolve_shape(self, shape)
        return _call("reshape", [self], shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.ndim
        s, e = _wrap_dim(start_dim, nd, "start_dim"), _wrap_dim(end_dim, nd, "end_dim")
        if nd == 0:
            return self.reshape(1)
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a {nd}-D tensor")
        merged = 1
        for d in self.shape[s:e + 1]:
            merged *= d
        return self.reshape(*self.shape[:s], merged, *self.shape[e + 1:])

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if len(dims) != self.ndim:
            raise ValueError(f"permute: argument 'dims' {dims} must name each of the {self.ndim} dimensions once")
        dims = tuple(_wrap_dim(d, self.ndim, "dims") for d in dims)
        if len(set(dims)) != len(dims):
            raise ValueError(f"permute: argument 'dims' {dims} repeats a dimension")
        return _call("permute", [self], dims) if dims else self

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dim0, dim1 = _wrap_dim(dim0, self.ndim, "dim0"), _wrap_dim(dim1, self.ndim, "dim1")
        if not dims:
            return self
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(*dims)

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def unsqueeze(self, dim):
        dim = _wrap_dim(dim, self.ndim + 1)
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(*[d for d in self.shape if d != 1])
        dim = _wrap_dim(dim, self.ndim)
        if self.ndim == 0 or self.shape[dim] != 1:
            return self
        return self.reshape(*self.shape[:dim], *self.shape[dim + 1:])

    def split(self, split_size_or_sections, dim=0):
        return split(self, split_size_or_sections, dim)

    # ---- basic indexing: slice + reshape ops, so it is differentiable ----
    def __getitem__(self, key):
        """Ints, slices with step >= 1, None and one Ellipsis, as torch basic indexing. The result
        is a copy (torch returns a view); gradients flow back to this tensor."""
        if not isinstance(key, tuple):
            key = (key,)
        n_ellipsis = sum(1 for k in key if k is Ellipsis)
        if n_ellipsis > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        n_used = sum(1 for k in key if k is not None and k is not Ellipsis)
        if n_used > self.ndim:
            raise IndexError(f"too many indices for a tensor of dimension {self.ndim}")
        expanded = []
        for k in key:
            expanded.extend([slice(None)] * (self.ndim - n_used) if k is Ellipsis else [k])
        if not n_ellipsis:
            expanded.extend([slice(None)] * (self.ndim - n_used))
        out, final_shape, dim = self, [], 0
        for k in expanded:
            if k is None:
                final_shape.append(1)
                continue
            size = self.shape[dim]
            if isinstance(k, slice):
                start, stop, step = k.indices(size)
                if step < 1:
                    raise ValueError(f"slice step must be >= 1, got {step}")
                stop = max(start, stop)
                if (start, stop, step) != (0, size, 1):
                    out = _call("slice", [out], (dim, start, stop, step))
                final_shape.append(len(range(start, stop, step)))
            elif isinstance(k, numbers.Integral) and not isinstance(k, bool):
                i = int(k)
                if not -size <= i < size:
                    raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {size}")
                i %= size
                out = _call("slice", [out], (dim, i, i + 1, 1))
            else:
                raise TypeError(f"unsupported index {k!r}: only ints, slices, None and ... are supported")
            dim += 1
        return out.reshape(*final_shape)

    # ---- reductions (csrc/ops/reduce.c) ----
    def sum(self, dim=None, keepdim=False):
        return _call("sum", [self], (int(keepdim),) + _dims(self, dim))

    def mean(self, dim=None, keepdim=False):
        return _call("mean", [self], (int(keepdim),) + _dims(self, dim))

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """torch.var: sum((x - mean)^2) / max(0, n - correction) over dim (all dims when None);
        correction defaults to 1, unbiased=False means correction 0."""
        if isinstance(dim, bool):  # var(unbiased), torch's older overload
            dim, unbiased = None, dim
        return _call("var", [self], (int(keepdim),) + _dims(self, dim), (_correction(unbiased, correction),))

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        """torch.std: the square root of var (same arguments)."""
        if isinstance(dim, bool):  # var(unbiased), torch's older overload
            dim, unbiased = None, dim
        return _call("std", [self], (int(keepdim),) + _dims(self, dim), (_correction(unbiased, correction),))

    def max(self, dim=None, keepdim=False):
        """max() is the largest element (0-D); max(dim) is (values, indices) along dim, the index of the
        first maximum; max(other_tensor) is torch.maximum."""
        if isinstance(dim, Tensor):
            return _call("maximum", [self, dim])
        if dim is None:
            return _call("max", [self.reshape(-1)], (0, 0))[0].reshape(())
        values, indices = _call("max", [self], (_one_dim(self, dim), int(bool(keepdim))))
        return MaxResult(values, indices)

    def argmax(self, dim=None, keepdim=False):
        """Index (int64) of the first maximum along dim, or in the flattened tensor when dim is None."""
        if dim is None:
            out = _call("argmax", [self.reshape(-1)], (0, 0))
            return out.reshape(*(1,) * self.ndim) if keepdim else out
        return _call("argmax", [self], (_one_dim(self, dim), int(bool(keepdim))))

    # ---- indexing (csrc/ops/index.c) ----
    def gather(self, dim, index):
        return _call("gather", [self, index], (_one_dim(self, dim),))

    def index_select(self, dim, index):
        return _call("index_select", [self, index], (_one_dim(self, dim),))

    # ---- matrix products (csrc/ops/matmul.c) ----
    def __matmul__(self, other):
        return _call("matmul", [self, other])

    def matmul(self, other):
        return _call("matmul", [self, other])


def matmul(input, other) -> Tensor:
    """Matrix product with torch.matmul's broadcasting of the batch dims (all but the last two):
    (B,H,N,D)@(B,H,D,M), (B,1,N,D)@(1,H,D,M), (N,D)@(B,D,M). Both operands at least 2-D."""
    return _call("matmul", [input, other])


def cat(tensors, dim=0) -> Tensor:
    """Concatenate tensors of one dtype along `dim` (torch.cat). More tensors than the op's input
    limit (`_MAX_CAT`) are joined in groups, then the groups."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: argument 'tensors' must be a non-empty sequence")
    nd = tensors[0].ndim
    if nd == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated")
    if not -nd <= dim < nd:
        raise IndexError(f"cat: argument 'dim' {dim} out of range for {nd}-D tensors")
    dim %= nd
    while len(tensors) > _MAX_CAT:
        groups = [tensors[i:i + _MAX_CAT] for i in range(0, len(tensors), _MAX_CAT)]
        tensors = [_call("cat", g, (dim,)) if len(g) > 1 else g[0] for g in groups]
    return _call("cat", tensors, (dim,))


def stack(tensors, dim=0) -> Tensor:
    """Stack same-shaped tensors along a new dim (torch.stack): unsqueeze each, then cat."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: argument 'tensors' must be a non-empty sequence")
    nd = tensors[0].ndim + 1
    if not -nd <= dim < nd:
        raise IndexError(f"stack: argument 'dim' {dim} out of range for {nd - 1}-D tensors")
    dim %= nd
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: argument 'tensors' entry {i} has shape {t.shape}, entry 0 {tensors[0].shape}")
    return cat([t.unsqueeze(dim) for t in tensors], dim)


def split(tensor, split_size_or_sections, dim=0):
    """Split along `dim` into pieces of `split_size` (the last may be smaller) or of the listed
    sizes (torch.split). Returns a tuple. The op makes at most `_MAX_SPLIT` pieces per call, so longer
    splits peel `_MAX_SPLIT - 1` pieces at a time off the front."""
    nd = tensor.ndim
    if nd == 0:
        raise ValueError("split: argument 'tensor' must be at least 1-D")
    if not -nd <= dim < nd:
        raise IndexError(f"split: argument 'dim' {dim} out of range for a {nd}-D tensor")
    dim %= nd
    size = tensor.shape[dim]
    if isinstance(split_size_or_sections, numbers.Integral):
        step = int(split_size_or_sections)
        if step <= 0 and size > 0:
            raise ValueError(f"split: argument 'split_size' must be positive, got {step}")
        sizes = [min(step, size - i) for i in range(0, size, step)] if size else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != size:
            raise ValueError(f"split: argument 'split_size_or_sections' {sizes} must be non-negative and sum to {size}")
        if not sizes:
            raise ValueError("split: argument 'split_size_or_sections' must not be empty")
    pieces = []
    rest = tensor
    while len(sizes) > _MAX_SPLIT:
        k = _MAX_SPLIT - 1
        out = _call("split", [rest], (dim, *sizes[:k], sum(sizes[k:])))
        pieces.extend(out[:k])
        rest, sizes = out[k], sizes[k:]
    out = _call("split", [rest], (dim, *sizes))
    pieces.extend(out if isinstance(out, tuple) else (out,))
    return tuple(pieces)


class MaxResult(tuple):
    """(values, indices) from Tensor.max(dim), like torch.return_types.max."""

    __slots__ = ()

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _one_dim(t, dim):
    """A single dim in [-ndim, ndim) (a 0-D tensor accepts 0 and -1, as torch), made non-negative."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"argument 'dim' must be an int, got {dim!r}")
    n = max(t.ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"argument 'dim' {dim} out of range for a tensor with {t.ndim} dimensions")
    return int(dim) % n


def _correction(unbiased, correction):
    if unbiased is not None and correction is not None:
        raise ValueError("var/std: pass either 'unbiased' or 'correction', not both")
    if correction is None:
        return 0.0 if unbiased is False else 1.0
    if not isinstance(correction, numbers.Real):
        raise TypeError(f"var/std: argument 'correction' must be a number, got {correction!r}")
    return float(correction)


def _dims(t, dim):
    """The reduced dims, sorted; () means all (and is what a 0-d tensor's dim 0 or -1 reduces)."""
    if dim is None:
        return ()
    if not isinstance(dim, (tuple, list)):
        dim = (dim,)
    dims = [_wrap_dim(d, t.ndim) for d in dim]
    if len(set(dims)) != len(dims):
        raise ValueError(f"argument 'dim' {tuple(dim)} names a dimension more than once")
    return tuple(sorted(dims)) if t.ndim else ()


def _resolve_shape(t, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [_size(s, "shape") for s in shape]
    if shape.count(-1) > 1:
        raise ValueError("only one dimension can be -1")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        if known == 0 or t.numel() % known:
            raise ValueError(f"cannot reshape a tensor of shape {t.shape} into {tuple(shape)}")
        shape[shape.index(-1)] = t.numel() // known
    return tuple(shape)


_C._set_tensor_class(Tensor)


_DEVICES = ("cpu", "cuda")


def _device(device) -> str:
    """The canonical name of a device argument ("cpu", "cuda:0"), or a clear error: ValueError for
    a name that is no device, RuntimeError when this build or machine cannot use CUDA."""
    name = device.device if isinstance(device, _C.TensorBase) else device
    if not isinstance(name, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {type(device).__name__}")
    kind, colon, index = name.partition(":")
    if kind == "cpu" and (not colon or index == "0"):
        return "cpu"
    if kind == "cuda" and (not colon or index.isdigit()):
        from . import cuda
        try:
            cuda.check_device(int(index or 0))
        except RuntimeError as e:
            raise RuntimeError(f"device {name!r}: {e} (affectfer.cuda.is_available() is "
                               f"{cuda.is_available()})") from None
        return f"cuda:{int(index or 0)}"
    raise ValueError(f"unknown device {name!r}; this build accepts 'cpu'"
                     + (", 'cuda' and 'cuda:N'" if _C.cuda_built() else " (it was built without CUDA)"))


def _cuda_name(device) -> str:
    if device is None:
        return "cuda:0"
    return f"cuda:{device}" if isinstance(device, int) else device


def _device_arg(device) -> tuple:
    """_C.empty's optional device argument: () for the CPU (the default), else (name,)."""
    return () if device is None or _device(device) == "cpu" else (_device(device),)


def _place(t, device):
    """t (a fresh CPU tensor) on `device` (None: the CPU)."""
    if device is None or _device(device) == "cpu":
        return t
    requires_grad = t.requires_grad
    t = _C.copy_to(t, _device(device))
    t.requires_grad = requires_grad
    return t


def _parse_to(args, kwargs):
    """(device, dtype) from the arguments of Tensor.to / Module.to; None where not given."""
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    if len(args) > 2:
        raise TypeError(f"to() takes at most 2 positional arguments, got {len(args)}")
    for arg in args:
        if isinstance(arg, _C.TensorBase):
            device, dtype = arg.device, arg.dtype
        elif arg is None:
            continue
        elif isinstance(arg, str) and arg not in _DTYPE_IDS:
            if arg.partition(":")[0] not in _DEVICES + ("cuda",):
                raise TypeError(f"unknown dtype or device {arg!r}: dtypes are {', '.join(_DTYPE_IDS)}; "
                                f"devices {', '.join(_DEVICES)}")
            device = arg
        else:
            dtype = arg
    return (None if device is None else _device(device)), _dtype_name(dtype)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (array-like, any strides, read-only is fine).
    Python floats become float32 unless `dtype` says otherwise, as in PyTorch. device: "cpu"
    or "cuda[:N]" (the data is copied there) or None (the CPU)."""
    if device is not None:
        _device(device)
    if isinstance(data, _C.TensorBase):
        data = data.cpu().numpy()
    name = _dtype_name(dtype)
    if name is None:
        arr = np.asarray(data)
        if arr.dtype == np.float64 and not isinstance(data, np.ndarray):
            name = "float32"
        elif arr.dtype.kind == "i" and arr.dtype != np.int32:
            name = "int64"
    t = _place(_C.from_numpy(data, True, name), device)
    if requires_grad:
        t.requires_grad = True
    return t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory: writes through either are seen by both. The array must be
    C-contiguous, aligned and writable; otherwise use `affectfer.tensor(array)`, which copies.

    WARNING: autograd cannot see writes made through NumPy. Backward refuses to use a tensor that
    an in-place op (fill_, copy_, an optimizer step) changed after the forward pass saved it, but a
    write through `array` (or any other view of that memory) changes no version counter: backward
    then silently computes gradients from the new values. Do not write into the array while a
    graph that used the tensor is alive, or pass `affectfer.tensor(array)` (a copy) instead."""
    return _C.from_numpy(array, False)


def from_dlpack(obj) -> Tensor:
    """Import a tensor from any DLPack producer (NumPy, PyTorch, JAX, CuPy) without copying."""
    return _C.from_dlpack(obj)


def empty(*shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """Uninitialised memory of `shape`."""
    t = _C.empty(_shape_arg(shape), _dtype_name(dtype), False, *_device_arg(device))
    t.requires_grad = requires_grad
    return t


def zeros(*shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    t = _C.empty(_shape_arg(shape), _dtype_name(dtype), True, *_device_arg(device))
    t.requires_grad = requires_grad
    return t


def full(shape, value, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """`shape` filled with `value` (one fill_; float16/bfloat16, which fill_ does not write, go
    through a NumPy copy)."""
    shape = _shape_arg((shape,)) if not isinstance(shape, int) else (shape,)
    name = _dtype_name(dtype)
    if name in ("float16", "bfloat16"):
        t = tensor(np.full(shape, value, dtype=name), device=device)
    else:
        t = empty(shape, dtype=name, device=device)
        _call("fill_", [t], (), (float(value),))
    t.requires_grad = requires_grad
    return t


def ones(*shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 1, dtype, device, requires_grad)


def rand(*shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """Uniform [0, 1) from the global Philox generator (see affectfer.manual_seed)."""
    if device is not None:
        _device(device)
    t = _place(_C.random(_shape_arg(shape), _dtype_name(dtype), 0, 0.0, 1.0), device)
    t.requires_grad = requires_grad
    return t


def randn(*shape, dtype="float32", device=None, requires_grad=False) -> Tensor:
    """Standard normal from the global Philox generator (see affectfer.manual_seed)."""
    if device is not None:
        _device(device)
    t = _place(_C.random(_shape_arg(shape), _dtype_name(dtype), 1, 0.0, 1.0), device)
    t.requires_grad = requires_grad
    return t


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(_size(s, "size") for s in shape)


def _numpy_dtype(t):
    if t.dtype == "bfloat16":
        raise TypeError("a bfloat16 tensor has no NumPy dtype (NumPy has no bfloat16): convert it first, "
                        "np.asarray(t.float())")
