"""Checkpoints in the safetensors format, written atomically and reloaded bit for bit.

A weights file is a plain safetensors file: the model's state_dict under its torch-style names, and
a JSON `config` entry in the header metadata, so other tools (safetensors, PyTorch) read it as it is.
For an exact resume, `save(..., optimizer=...)` also writes `<name>.train.safetensors` beside it:
the optimizer's tensors and its JSON-encoded settings, the epoch and the RNG state. Both files carry
the same random `save_id`; `load` refuses a pair from two different saves.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length, a
JSON header mapping each name to {dtype, shape, data_offsets} (plus "__metadata__": str -> str), then
the raw little-endian bytes. We write it ourselves; the `safetensors` package is not needed.
Writes go to a temporary file in the same folder, fsync'ed, then os.replace'd over the target: a crash
leaves either the old file or the new one, never half of one (and the killed write's temporary, which
the next save of that path removes). Reading checks the header as the spec requires, so a crafted
file raises ValueError naming it, never a NumPy or recursion error.
"""
from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import uuid

import numpy as np

from . import _C

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "U8": np.uint8, "I32": np.int32,
           "I64": np.int64, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 << 20  # the spec's bound (100 MB)
_MAX_DIMS = 32  # NumPy's smallest NPY_MAXDIMS; a crafted file may not ask for more


def _as_array(value, name):
    arr = value.numpy() if isinstance(value, _C.TensorBase) else np.asarray(value)
    if arr.dtype not in _NAMES:
        raise TypeError(f"tensor '{name}' has dtype {arr.dtype}, which safetensors files here do not store")
    return np.require(arr, requirements="C")  # (np.ascontiguousarray would turn 0-d into 1-d)


def _remove_stale_temporaries(folder, base):
    """Deletes the temporaries of earlier writes of `base` whose process is gone (killed mid-write:
    nothing else removes them). A temporary's name carries its writer's pid, so a write in progress in
    another live process is left alone."""
    pattern = re.compile(r"\." + re.escape(base) + r"\.(\d+)-[^/]*\.tmp\Z")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for entry in names:
        match = pattern.match(entry)
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, entry))
        except OSError:
            pass  # another writer removed it first, or the folder is read-only: the save reports that


def _process_alive(pid):
    if pid == os.getpid():
        return True  # a concurrent write from another thread of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists but belongs to someone else / not a pid we can probe: leave its file
    return True


def _atomic_write(path, chunks):
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    _remove_stale_temporaries(folder, base)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}-", suffix=".tmp", dir=folder)
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


def _unique_object(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key '{key}'")
        obj[key] = value
    return obj


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON number")  # json accepts NaN/Infinity unless told not to


def _parse_header(raw, where):
    try:
        return json.loads(raw, object_pairs_hook=_unique_object, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"{where}: corrupt header (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{where}: corrupt header ({exc})") from None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_entry(name, entry, where):
    """(dtype, shape, begin, end) of a header entry, each checked as the safetensors spec requires."""
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise ValueError(f"{where}: corrupt entry for '{name}': expected {{dtype, shape, data_offsets}}, got {entry!r:.200}")
    if entry["dtype"] not in _DTYPES:
        raise ValueError(f"{where}: tensor '{name}' has dtype {entry['dtype']!r:.40}; supported: {sorted(_DTYPES)}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or len(shape) > _MAX_DIMS or not all(_is_int(s) and s >= 0 for s in shape):
        raise ValueError(f"{where}: tensor '{name}' has an invalid shape {shape!r:.200} "
                         f"(expected a list of at most {_MAX_DIMS} integers >= 0)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(v) for v in offsets) \
            or not 0 <= offsets[0] <= offsets[1]:
        raise ValueError(f"{where}: tensor '{name}' has invalid data_offsets {offsets!r:.200} (expected [begin, end], 0 <= begin <= end)")
    dtype = np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<")
    count = 1
    for s in shape:
        count *= s  # Python ints: a crafted shape cannot overflow
    if offsets[1] - offsets[0] != count * dtype.itemsize:
        raise ValueError(f"{where}: tensor '{name}' of shape {tuple(shape)} and dtype {entry['dtype']} needs "
                         f"{count * dtype.itemsize} bytes, its data_offsets {offsets} hold {offsets[1] - offsets[0]} (truncated or corrupt)")
    return dtype, tuple(shape), offsets[0], offsets[1]


def load_file(path):
    """(tensors: name -> NumPy array, metadata: dict). A corrupt, truncated or crafted file raises
    ValueError naming the file and what is wrong; a missing one FileNotFoundError.

    The header is checked as the safetensors spec requires: a JSON object without duplicate keys,
    of name -> {dtype, shape, data_offsets} plus an optional "__metadata__" of str -> str; the
    tensors' byte ranges, in order, cover the data section exactly (no gap, no overlap)."""
    with open(path, "rb") as f:
        data = f.read()
    where = os.fspath(path)
    if len(data) < 8:
        raise ValueError(f"{where}: not a safetensors file (truncated: {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ValueError(f"{where}: header length {n} does not fit in a {len(data)}-byte file (truncated or corrupt)")
    header = _parse_header(data[8:8 + n], where)
    if not isinstance(header, dict):
        raise ValueError(f"{where}: corrupt header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{where}: corrupt header (__metadata__ must map strings to strings, got {metadata!r:.200})")
    body = memoryview(data)[8 + n:]
    entries = sorted(((name, *_check_entry(name, entry, where)) for name, entry in header.items()),
                     key=lambda e: (e[3], e[4]))
    expected = 0
    for name, _, shape, begin, end in entries:
        if begin != expected:
            what = "overlaps the previous tensor" if begin < expected else f"leaves a gap of {begin - expected} bytes before it"
            raise ValueError(f"{where}: tensor '{name}' at bytes [{begin}, {end}) {what} (corrupt)")
        expected = end
    if expected != len(body):
        raise ValueError(f"{where}: the tensors cover {expected} bytes of a {len(body)}-byte data section (truncated or corrupt)")
    tensors = {}
    for name, dtype, shape, begin, end in entries:
        tensors[name] = np.frombuffer(body[begin:end], dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)
    return {name: tensors[name] for name in header}, metadata


def _train_path(path):
    root, ext = os.path.splitext(os.fspath(path))
    return root + ".train" + (ext or ".safetensors")


def save(model, path, optimizer=None, config=None, epoch=None) -> None:
    """Write `model`'s weights (and `config`, any JSON-able object) to `path`; with `optimizer`, also
    the optimizer state, epoch and RNG state to `<path stem>.train.safetensors` for an exact resume.

    The two files are two atomic replaces, so a crash between them would leave a pair from different
    saves: both carry the same random `save_id`, and `load` refuses a pair whose ids differ. The
    training state is written first, so a crash in between leaves the previous weights beside it."""
    save_id = uuid.uuid4().hex
    weights_meta = {"format": "affectfer", "config": json.dumps(config), "save_id": save_id}
    if optimizer is not None:
        state = optimizer.state_dict()
        tensors, scalars = {}, {}
        for index, entry in state["state"].items():
            for key, value in entry.items():
                if isinstance(value, (_C.TensorBase, np.ndarray)):
                    tensors[f"state.{index}.{key}"] = value
                else:
                    scalars[f"{index}.{key}"] = value
        meta = {"format": "affectfer-train", "param_groups": json.dumps(state["param_groups"]),
                "scalars": json.dumps(scalars), "epoch": json.dumps(epoch), "rng": json.dumps(list(_C.rng_state())),
                "save_id": save_id}
        save_file(tensors, _train_path(path), meta)
    save_file(model.state_dict(), path, weights_meta)


class Checkpoint:
    """What `load` found: the weights, the config, and for training checkpoints the epoch."""

    def __init__(self, weights, config, epoch=None):
        self.weights, self.config, self.epoch = weights, config, epoch


def _meta_json(meta, key, where, required=True):
    """The JSON value stored under metadata `key`, or a ValueError naming the file and the key."""
    if key not in meta:
        if required:
            raise ValueError(f"{where}: metadata entry '{key}' is missing (not an affectfer checkpoint?)")
        return None
    try:
        return json.loads(meta[key], parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: metadata entry '{key}' is not valid JSON ({exc}): {meta[key]!r:.200}") from None


def _read_training_state(path, weights_meta):
    """(optimizer state_dict, rng, epoch) from the `.train` file beside `path`, all checked before
    anything is loaded, so a refused checkpoint leaves the model and optimizer untouched."""
    train_path = _train_path(path)
    tensors, meta = load_file(train_path)
    where = os.fspath(train_path)
    if meta.get("save_id") != weights_meta.get("save_id"):
        raise ValueError(f"{os.fspath(path)} (save {weights_meta.get('save_id')}) and {where} (save "
                         f"{meta.get('save_id')}) come from different saves (a save was interrupted between "
                         f"the two files, or one was replaced): refusing to resume from a mixed pair")
    state: dict = {}
    for name, value in tensors.items():
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise ValueError(f"{where}: unexpected tensor name '{name}' (expected state.<index>.<key>)")
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    scalars = _meta_json(meta, "scalars", where)
    if not isinstance(scalars, dict):
        raise ValueError(f"{where}: metadata entry 'scalars' is not a JSON object: {meta['scalars']!r:.200}")
    for name, value in scalars.items():
        index, _, key = name.partition(".")
        if not index.isdigit() or not key:
            raise ValueError(f"{where}: unexpected scalar name '{name}' in 'scalars' (expected <index>.<key>)")
        state.setdefault(int(index), {})[key] = value
    param_groups = _meta_json(meta, "param_groups", where)
    rng = _meta_json(meta, "rng", where)
    if not (isinstance(rng, list) and len(rng) == 2 and all(_is_int(v) and 0 <= v < 1 << 64 for v in rng)):
        raise ValueError(f"{where}: metadata entry 'rng' must be [seed, counter] (two integers in [0, 2**64)), "
                         f"got {meta['rng']!r:.200}")
    epoch = _meta_json(meta, "epoch", where, required=False)
    return {"state": state, "param_groups": param_groups}, rng, epoch


def load(path, model=None, optimizer=None, strict=True) -> Checkpoint:
    """Read a checkpoint; load the weights into `model` (strict name/shape checking) and, when
    `optimizer` is given, its state and the RNG state from the `.train` file beside it (which must
    come from the same `save` as the weights)."""
    weights, meta = load_file(path)
    config = _meta_json(meta, "config", os.fspath(path), required=False)
    training = _read_training_state(path, meta) if optimizer is not None else None
    if model is not None:
        model.load_state_dict(weights, strict=strict)
    epoch = None
    if training is not None:
        optimizer_state, rng, epoch = training
        optimizer.load_state_dict(optimizer_state)
        _C.set_rng_state(*rng)
    return Checkpoint(weights, config, epoch)
