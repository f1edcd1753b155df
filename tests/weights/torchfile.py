"""Writers of torch.save's two formats and of VGGFace2-style NumPy pickles, without torch, for tests.

They emit what torch/serialization.py (`_save`, `_legacy_save`) and torch/_tensor.py
(`_reduce_ex_internal`) emit: a protocol-2 pickle in which a tensor is
REDUCE(GLOBAL torch._utils._rebuild_tensor_v2, (storage, offset, size, stride, requires_grad,
OrderedDict())) and a storage a persistent id ('storage', GLOBAL torch.<T>Storage, key, 'cpu', numel);
the zip layout <name>/data.pkl, .format_version, .storage_alignment, byteorder, data/<key>, version,
.data/serialization_id. Hostile files are built from the same pieces: Global(module, name) pickles as
any GLOBAL opcode, Reduce(func, args[, state]) as any call.
"""
import io
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                 np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                 np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
                 np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class Global:
    """Pickles as GLOBAL 'module name', as pickle writes a function or class."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce wants a callable
        raise TypeError("a stand-in")


class Reduce:
    """Pickles as REDUCE(func, args) and, with state, BUILD(state)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state


class Storage:
    """A torch storage: its persistent id, and the raw bytes written for it. key None: numbered by
    the pickler in order of first use, as torch does."""

    def __init__(self, key, type_name, numel, data: bytes, pid=None):
        self.key, self.type_name, self.numel, self.data = key, type_name, numel, data
        self.pid = pid  # a hand-made persistent id replaces the standard one

    def persistent_id(self, legacy):
        if self.pid is not None:
            return self.pid
        pid = ("storage", Global("torch", self.type_name), self.key, "cpu", self.numel)
        return pid + (None,) if legacy else pid


def rebuild(storage, offset, size, stride, func="_rebuild_tensor_v2", extra=()):
    args = (storage, offset, tuple(size), tuple(stride), False, OrderedDict()) + extra
    return Reduce(Global("torch._utils", func), args)


class _Pickler(pickle._Pickler):
    """The pure-Python pickler (its dispatch table can be extended) with our stand-ins."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy=False, py2_bytes=False):
        super().__init__(file, protocol=2)
        self.legacy, self.py2_bytes, self.storages = legacy, py2_bytes, OrderedDict()

    def save_global_standin(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_global_standin

    def save_bytes_py2(self, obj):
        if not self.py2_bytes:
            return pickle._Pickler.save_bytes(self, obj)
        # Python 2's str: BINSTRING, read back as latin-1 text
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes_py2

    def reducer_override(self, obj):
        if isinstance(obj, Reduce):
            return (obj.func, obj.args) if obj.state is None else (obj.func, obj.args, obj.state)
        return NotImplemented

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            if obj.key is None:
                obj.key = str(len(self.storages))
            self.storages.setdefault(obj.key, obj)
            return obj.persistent_id(self.legacy)
        return None


def dumps(obj, legacy=False, py2_bytes=False):
    """(pickle bytes, storages it references in order of first use)."""
    buf = io.BytesIO()
    pickler = _Pickler(buf, legacy, py2_bytes)
    pickler.dump(obj)
    return buf.getvalue(), pickler.storages


def tensors_to_objects(state):
    """name -> ndarray into name -> tensor stand-in, one storage per array, as torch.save writes a
    state_dict (keys '0', '1', ... in order of first use)."""
    out = OrderedDict()
    for name, arr in state.items():
        arr = np.require(arr, requirements="C")  # (ascontiguousarray would turn 0-d into 1-d)
        storage = Storage(None, STORAGE_NAMES[arr.dtype], arr.size, arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        out[name] = rebuild(storage, 0, arr.shape, [s // arr.itemsize for s in arr.strides])
    return out


def torch_zip(obj, name="archive", extra_entries=(), compress=zipfile.ZIP_STORED, pickled=None, byteorder="little"):
    """torch.save's zip archive of `obj` (stand-ins inside) as bytes; `pickled` replaces data.pkl."""
    data, storages = dumps(obj)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        z.writestr(f"{name}/data.pkl", data if pickled is None else pickled)
        z.writestr(f"{name}/.format_version", "1")
        z.writestr(f"{name}/.storage_alignment", "64")
        z.writestr(f"{name}/byteorder", byteorder)
        for key, storage in storages.items():
            z.writestr(f"{name}/data/{key}", storage.data)
        for entry, payload in extra_entries:
            z.writestr(f"{name}/{entry}", payload)
        z.writestr(f"{name}/version", "3\n")
        z.writestr(f"{name}/.data/serialization_id", "0" * 40)
    return buf.getvalue()


def torch_legacy(obj, pickled=None):
    """torch.save's legacy stream of `obj` as bytes; `pickled` replaces the object pickle."""
    header = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, {
        "protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    data, storages = dumps(obj, legacy=True)
    data = data if pickled is None else pickled
    keys = sorted(storages)
    body = b"".join(struct.pack("<q", storages[k].numel) + storages[k].data for k in keys)
    return header + data + pickle.dumps(keys, protocol=2) + body


def save_state_dict(path, state, wrap=None, legacy=False):
    """Write name -> ndarray as torch.save(state_dict) would (under {wrap: ...} when given)."""
    obj = tensors_to_objects(state)
    if wrap is not None:
        obj = {"epoch": 1, wrap: obj}
    with open(path, "wb") as f:
        f.write(torch_legacy(obj) if legacy else torch_zip(obj))


def numpy_pickle_py2(state):
    """A pickle of name -> ndarray as Python 2 with NumPy 1.x wrote the VGGFace2 files: globals
    numpy.core.multiarray._reconstruct / numpy.ndarray / numpy.dtype, raw data as a BINSTRING."""
    obj = {}
    for name, arr in state.items():
        arr = np.require(arr, requirements="C")  # (ascontiguousarray would turn 0-d into 1-d)
        dtype = Reduce(Global("numpy", "dtype"), (arr.dtype.str[1:], 0, 1), (3, "<" if arr.itemsize > 1 else "|",
                                                                              None, None, None, -1, -1, 0))
        obj[name] = Reduce(Global("numpy.core.multiarray", "_reconstruct"), (Global("numpy", "ndarray"), (0,), b"b"),
                           (1, arr.shape, dtype, False, arr.astype(arr.dtype.newbyteorder("<")).tobytes()))
    return dumps(obj, py2_bytes=True)[0]
