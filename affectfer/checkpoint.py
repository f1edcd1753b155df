"""Checkpoints in the safetensors format, written atomically and reloaded bit for bit.

A weights file is a plain safetensors file: the model's state_dict under its torch-style names, and
a JSON `config` entry in the header metadata, so other tools (safetensors, PyTorch) read it as it is.
For an exact resume, `save(..., optimizer=...)` also writes `<name>.train.safetensors` beside it:
the optimizer's tensors and its JSON-encoded settings, the epoch and the RNG state.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a
JSON header mapping each name to {dtype, shape, data_offsets} (plus "__metadata__": str -> str), then
the raw little-endian bytes. We write it ourselves; the `safetensors` package is not needed.
Writes go to a temporary file in the same folder, fsync'ed, then os.replace'd over the target: a crash
leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np

from . import _C

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "U8": np.uint8, "I32": np.int32,
           "I64": np.int64, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 << 20


def _as_array(value, name):
    arr = value.numpy() if isinstance(value, _C.TensorBase) else np.asarray(value)
    if arr.dtype not in _NAMES:
        raise TypeError(f"tensor '{name}' has dtype {arr.dtype}, which safetensors files here do not store")
    return np.require(arr, requirements="C")  # (np.ascontiguousarray would turn 0-d into 1-d)


def _atomic_write(path, chunks):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write `tensors` (name -> Tensor or NumPy array) and string `metadata` to a safetensors file."""
    arrays = {name: _as_array(v, name) for name, v in tensors.items()}
    header, offset = {}, 0
    for name, arr in arrays.items():
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # 8-byte alignment of the data, as the reference writer does
    little = lambda a: a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    _atomic_write(path, [struct.pack("<Q", len(blob)), blob] + [little(a) for a in arrays.values()])


def load_file(path):
    """(tensors: name -> NumPy array, metadata: dict). A corrupt or truncated file raises ValueError
    saying what is wrong; a missing one FileNotFoundError."""
    with open(path, "rb") as f:
        data = f.read()
    where = os.fspath(path)
    if len(data) < 8:
        raise ValueError(f"{where}: not a safetensors file (truncated: {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{where}: header length {n} does not fit in a {len(data)}-byte file (truncated or corrupt)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: corrupt header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where}: corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, entry in header.items():
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
            shape = tuple(int(s) for s in entry["shape"])
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: corrupt entry for '{name}': {entry!r}") from None
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= len(body) or end - begin != int(np.prod(shape)) * dtype.itemsize:
            raise ValueError(f"{where}: tensor '{name}' of shape {shape} does not match its byte range "
                             f"[{begin}, {end}) in a {len(body)}-byte data section (truncated or corrupt)")
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    return tensors, metadata


def _train_path(path):
    root, ext = os.path.splitext(os.fspath(path))
    return root + ".train" + (ext or ".safetensors")


def save(model, path, optimizer=None, config=None, epoch=None) -> None:
    """Write `model`'s weights (and `config`, any JSON-able object) to `path`; with `optimizer`, also
    the optimizer state, epoch and RNG state to `<path stem>.train.safetensors` for an exact resume."""
    save_file(model.state_dict(), path, {"format": "affectfer", "config": json.dumps(config)})
    if optimizer is None:
        return
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, (_C.TensorBase, np.ndarray)):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    meta = {"format": "affectfer-train", "param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars),
            "epoch": json.dumps(epoch), "rng": json.dumps(list(_C.rng_state()))}
    save_file(tensors, _train_path(path), meta)


class Checkpoint:
    """What `load` found: the weights, the config, and for training checkpoints the epoch."""

    def __init__(self, weights, config, epoch=None):
        self.weights, self.config, self.epoch = weights, config, epoch


def load(path, model=None, optimizer=None, strict=True) -> Checkpoint:
    """Read a checkpoint; load the weights into `model` (strict name/shape checking) and, when
    `optimizer` is given, its state and the RNG state from the `.train` file beside it."""
    weights, meta = load_file(path)
    config = json.loads(meta["config"]) if "config" in meta else None
    if model is not None:
        model.load_state_dict(weights, strict=strict)
    epoch = None
    if optimizer is not None:
        tensors, tmeta = load_file(_train_path(path))
        state: dict = {}
        for name, value in tensors.items():
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
        for name, value in json.loads(tmeta["scalars"]).items():
            index, key = name.split(".", 1)
            state.setdefault(int(index), {})[key] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(tmeta["param_groups"])})
        _C.set_rng_state(*json.loads(tmeta["rng"]))
        epoch = json.loads(tmeta["epoch"])
    return Checkpoint(weights, config, epoch)
