"""affectfer.Tensor and tensor creation.

A Tensor is a handle on a C `af_tensor` (csrc/core/tensor.h): the data never lives in Python.
Arithmetic operators and the common methods below each call one C op through `_call`; the op's
backward is recorded by the C tape when grad mode is on.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _C

float32, float64, float16, bfloat16 = "float32", "float64", "float16", "bfloat16"
uint8, int32, int64, bool_ = "uint8", "int32", "int64", "bool"
_DTYPE_IDS = {name: i for i, name in enumerate(["float32", "float64", "float16", "bfloat16", "uint8", "int32", "int64", "bool"])}


def _call(op: str, inputs, ints=(), floats=()):
    """Run C op `op` (a name from csrc/ops/op_list.h)."""
    return _C.call(_C.ops[op], inputs, ints, floats)


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
    `t.numpy()` view the same memory without copying.
    """

    __slots__ = ()

    # ---- conversion and inspection ----
    @property
    def __array_interface__(self):
        if self.device != "cpu":
            raise TypeError("a CUDA tensor has no CPU memory to view; call .cpu() first")
        return {"shape": self.shape, "typestr": np.dtype(self.dtype).str, "version": 3,
                "data": (self._data_ptr, self._readonly)}

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item() needs a one-element tensor, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn}" if self.grad_fn else (", requires_grad=True" if self.requires_grad else "")
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(") if self.device == "cpu" else "..."
        return f"tensor({body}, dtype={self.dtype}{grad})"

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = flag
        return self

    def clone(self) -> "Tensor":
        return tensor(self.numpy()) if not self.requires_grad else self * 1.0

    # ---- dtype ----
    def to(self, dtype) -> "Tensor":
        name = _dtype_name(dtype)
        if name == self.dtype:
            return self
        return _call("cast", [self], (_DTYPE_IDS[name],))

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # ---- arithmetic ----
    def _binary(self, other, op, scalar_op=None):
        if isinstance(other, numbers.Number):
            if scalar_op is None:
                other = full((), other, dtype=self.dtype)
            else:
                return scalar_op(float(other))
        elif not isinstance(other, _C.TensorBase):
            other = tensor(np.asarray(other, dtype=self.dtype))
        return _call(op, [self, other])

    def __add__(self, other):
        return self._binary(other, "add", lambda v: _call("add_scalar", [self], (), (v,)))

    __radd__ = __add__

    def __sub__(self, other):
        return self._binary(other, "sub", lambda v: _call("add_scalar", [self], (), (-v,)))

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        return self._binary(other, "mul", lambda v: _call("scale", [self], (), (v,)))

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self._binary(other, "div", lambda v: _call("scale", [self], (), (1.0 / v,)))

    def __rtruediv__(self, other):
        return self.pow(-1.0) * other

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

    # ---- shapes (csrc/ops/shape.c) ----
    def reshape(self, *shape):
        shape = _resolve_shape(self, shape)
        return _call("reshape", [self], shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.ndim
        s, e = start_dim % max(nd, 1), end_dim % max(nd, 1)
        if nd == 0:
            return self.reshape(1)
        merged = 1
        for d in self.shape[s:e + 1]:
            merged *= d
        return self.reshape(*self.shape[:s], merged, *self.shape[e + 1:])

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        return _call("permute", [self], tuple(d % self.ndim for d in dims))

    def transpose(self, dim0, dim1):
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(*dims)

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(*self.shape[:dim], 1, *self.shape[dim:])

    def squeeze(self, dim=None):
        if dim is None:
            return self.reshape(*[d for d in self.shape if d != 1])
        dim = dim % self.ndim
        if self.shape[dim] != 1:
            return self
        return self.reshape(*self.shape[:dim], *self.shape[dim + 1:])

    # ---- reductions (csrc/ops/reduce.c) ----
    def sum(self, dim=None, keepdim=False):
        return _call("sum", [self], (int(keepdim),) + _dims(self, dim))

    def mean(self, dim=None, keepdim=False):
        return _call("mean", [self], (int(keepdim),) + _dims(self, dim))

    # ---- matrix products (csrc/ops/matmul.c) ----
    def __matmul__(self, other):
        return _call("matmul", [self, other])

    def matmul(self, other):
        return _call("matmul", [self, other])


def _dims(t, dim):
    if dim is None:
        return ()
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(sorted(d % t.ndim for d in dim))


def _resolve_shape(t, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [int(s) for s in shape]
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


def tensor(data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (array-like, any strides, read-only is fine).
    Python floats become float32 unless `dtype` says otherwise, as in PyTorch."""
    if isinstance(data, _C.TensorBase):
        data = data.numpy()
    name = _dtype_name(dtype)
    if name is None:
        arr = np.asarray(data)
        if arr.dtype == np.float64 and not isinstance(data, np.ndarray):
            name = "float32"
        elif arr.dtype.kind == "i" and arr.dtype != np.int32:
            name = "int64"
    t = _C.from_numpy(data, True, name)
    if requires_grad:
        t.requires_grad = True
    return t


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing `array`'s memory: writes through either are seen by both. The array must be
    C-contiguous, aligned and writable; otherwise use `affectfer.tensor(array)`, which copies."""
    return _C.from_numpy(array, False)


def from_dlpack(obj) -> Tensor:
    """Import a tensor from any DLPack producer (NumPy, PyTorch, JAX, CuPy) without copying."""
    return _C.from_dlpack(obj)


def empty(*shape, dtype="float32") -> Tensor:
    return _C.empty(_shape_arg(shape), _dtype_name(dtype), False)


def zeros(*shape, dtype="float32", requires_grad=False) -> Tensor:
    t = _C.empty(_shape_arg(shape), _dtype_name(dtype), True)
    t.requires_grad = requires_grad
    return t


def full(shape, value, dtype="float32", requires_grad=False) -> Tensor:
    shape = _shape_arg((shape,)) if not isinstance(shape, int) else (shape,)
    t = tensor(np.full(shape, value, dtype=_dtype_name(dtype)))
    t.requires_grad = requires_grad
    return t


def ones(*shape, dtype="float32", requires_grad=False) -> Tensor:
    return full(_shape_arg(shape), 1, dtype, requires_grad)


def rand(*shape, dtype="float32", requires_grad=False) -> Tensor:
    """Uniform [0, 1) from the global Philox generator (see affectfer.manual_seed)."""
    t = _C.random(_shape_arg(shape), _dtype_name(dtype), 0, 0.0, 1.0)
    t.requires_grad = requires_grad
    return t


def randn(*shape, dtype="float32", requires_grad=False) -> Tensor:
    """Standard normal from the global Philox generator (see affectfer.manual_seed)."""
    t = _C.random(_shape_arg(shape), _dtype_name(dtype), 1, 0.0, 1.0)
    t.requires_grad = requires_grad
    return t


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)
