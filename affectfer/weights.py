"""Pretrained weights from other tools: safetensors, PyTorch `.pth`/`.pt` files and VGGFace2 pickles,
read without torch and without running any code from the file.

    from affectfer import models, weights
    model = models.resnet18(num_classes=7)
    result = weights.load_weights(model, "resnet18-f37072fd.pth", strict=False)
    result.skipped   # {'fc.weight': 'shape (1000, 512) in the file, (7, 512) in the model', 'fc.bias': ...}

Formats, recognised from the first bytes (never from the file name):

* safetensors: read by affectfer.checkpoint.load_file.
* torch.save's zip archive (the default since PyTorch 1.6; torch/serialization.py `_save`): the entry
  `<name>/data.pkl` is a protocol-2 pickle in which every tensor is
  `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`
  (`_rebuild_tensor_v3(..., dtype)` for the dtypes without a typed storage class, e.g. uint16) and
  every storage a persistent id `('storage', torch.<T>Storage, key, location, numel)` whose raw bytes
  are the entry `<name>/data/<key>`, in the byte order of `<name>/byteorder` (little when absent).
* torch.save's legacy stream (`_use_new_zipfile_serialization=False`, PyTorch < 1.6): the pickled magic
  number 0x1950a86a20f9469cfc6c, protocol version 1001 and a system-info dict, then the object pickle
  with persistent ids `('storage', T, key, location, numel, view)`, the pickled sorted list of storage
  keys, then for each key an int64 element count and the raw little-endian bytes. (The older tar
  format of PyTorch < 0.4 is not read.)
* A pickle of a dict name -> NumPy array, as the VGGFace2 Caffe conversions are distributed
  (github.com/cydonia999/VGGFace2-pytorch): read only with format="vggface2", the explicit opt-in.

Checkpoints wrapped as {'state_dict': ...}, {'model_state_dict': ...} or {'model': ...} are unwrapped.

Safety. A pickle is a program for a small stack machine that can import and call anything; torch.load
without weights_only runs it. Here every pickle goes through `_RestrictedUnpickler`, whose find_class
maps a short allow-list of globals to inert stand-ins of our own (nothing from torch or numpy is ever
imported or called) and refuses every other global with ForbiddenGlobalError, naming it and the file.
Before unpickling, the opcode stream is scanned with pickletools.genops: every length prefix must fit
in the data and every memo index be plausible, because the C unpickler allocates what a length prefix or
a memo index claims before it reads. While unpickling, tensors and storages are placeholders that a BUILD
opcode cannot alter; they become NumPy arrays afterwards. Zip entries are read only up to their declared
sizes, which must fit in the archive's size all together (torch stores its entries uncompressed, so a
compressed entry that expands past that is refused: no zip bomb). A storage must fit in its entry and
a tensor in its storage, and the tensors of one file may total at most twice the file's size (tied
weights share storage), so reading a file never allocates much more than the file itself.

Names. Leading `module.` (DataParallel) is stripped, then one rename table maps the file's names to
the model's (torchvision's), chosen by `rename` or, by default, the table that matches the most keys
of the model. The tables (RENAME_TABLES, each a list of full-match regular expressions):

* none: torchvision's own names, which timm's resnet18/34/50 and the VGGFace2 ResNet-50 conversions
  share (conv1, bn1, layer{s}.{b}.conv1, downsample.0/1, fc): the ResNet family needs no renaming.
* torchvision: ViT files before torchvision 0.12: mlp.linear_1 -> mlp.0, mlp.linear_2 -> mlp.3.
* timm: timm's ViT (vit_base_patch16_224) to torchvision's vit_b_16: patch_embed.proj -> conv_proj,
  cls_token -> class_token, pos_embed -> encoder.pos_embedding, blocks.{i}.norm1/norm2 ->
  encoder.layers.encoder_layer_{i}.ln_1/ln_2, attn.qkv -> self_attention.in_proj_{weight,bias},
  attn.proj -> self_attention.out_proj, mlp.fc1/fc2 -> mlp.0/mlp.3, norm -> encoder.ln, head ->
  heads.head (same shapes throughout: both stack q, k, v in one (3D, D) projection).
* pretrainedmodels: Cadene's ResNet / SE-ResNet: layer0.conv1/bn1 -> conv1/bn1, se_module.fc1/fc2
  -> se.fc1/fc2 (timm's SE names), last_linear -> fc.

(timm's deep-stem `resnet*d` variants differ in structure, not only in names, and are not mapped.)
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import stat
import struct
import tempfile
import zipfile
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

__all__ = ["load_weights", "read_weights", "convert_weights", "LoadResult", "WeightsError", "ForbiddenGlobalError",
           "RENAME_TABLES", "HEAD_PREFIXES", "FORMATS"]

FORMATS = ("safetensors", "torch", "torch-legacy", "vggface2")

# Parameters of the classifier layers that a fine-tuning run replaces: with strict=False a shape
# mismatch there is skipped and reported instead of raised (fc: ResNet/GoogLeNet, classifier:
# EfficientNet, heads/head: ViT, last_linear: pretrainedmodels, bn: the BatchNorm1d over DAN's logits).
HEAD_PREFIXES = ("fc.", "classifier.", "heads.", "head.", "last_linear.", "bn.")
# GoogLeNet files carry the auxiliary classifiers that the pretrained model drops (aux_logits=False).
_AUX_PREFIXES = ("aux1.", "aux2.")

_VIT_BLOCK = r"blocks\.(\d+)\."
_VIT_LAYER = r"encoder.layers.encoder_layer_\1."
RENAME_TABLES = {
    "none": [],
    "torchvision": [(r"(.+\.mlp)\.linear_1\.(weight|bias)", r"\1.0.\2"),
                    (r"(.+\.mlp)\.linear_2\.(weight|bias)", r"\1.3.\2")],
    "timm": [(r"patch_embed\.proj\.(weight|bias)", r"conv_proj.\1"),
             (r"cls_token", "class_token"),
             (r"pos_embed", "encoder.pos_embedding"),
             (_VIT_BLOCK + r"norm1\.(weight|bias)", _VIT_LAYER + r"ln_1.\2"),
             (_VIT_BLOCK + r"norm2\.(weight|bias)", _VIT_LAYER + r"ln_2.\2"),
             (_VIT_BLOCK + r"attn\.qkv\.(weight|bias)", _VIT_LAYER + r"self_attention.in_proj_\2"),
             (_VIT_BLOCK + r"attn\.proj\.(weight|bias)", _VIT_LAYER + r"self_attention.out_proj.\2"),
             (_VIT_BLOCK + r"mlp\.fc1\.(weight|bias)", _VIT_LAYER + r"mlp.0.\2"),
             (_VIT_BLOCK + r"mlp\.fc2\.(weight|bias)", _VIT_LAYER + r"mlp.3.\2"),
             (r"norm\.(weight|bias)", r"encoder.ln.\1"),
             (r"head\.(weight|bias)", r"heads.head.\1")],
    "pretrainedmodels": [(r"layer0\.(conv1|bn1)\.(.+)", r"\1.\2"),
                         (r"(.+)\.se_module\.(fc1|fc2)\.(weight|bias)", r"\1.se.\2.\3"),
                         (r"last_linear\.(weight|bias)", r"fc.\1")],
}


class WeightsError(ValueError):
    """A weights file that is malformed, truncated, too large for its own size, or of another format."""


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle that names a global outside the allow-list: it would run code if torch.load'ed."""


class LoadResult(NamedTuple):
    """What load_weights did. missing_keys / unexpected_keys as torch's load_state_dict reports them;
    skipped: file key -> why it was not loaded; renamed: file key -> model key where they differ."""
    missing_keys: list
    unexpected_keys: list
    skipped: dict
    renamed: dict


def _short(value, limit: int = 80) -> str:
    """repr() for messages about hostile data: bounded, and safe for huge ints (str() of an int over
    4300 digits raises)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return type(value) is int


# ---------------------------------------------------------------------------------------------------
# Inert stand-ins for what a pickle may build
# ---------------------------------------------------------------------------------------------------

class _Inert:
    """Base of the placeholders the unpickler hands out: a BUILD opcode (pickle's setstate) on one
    of them is refused, so a file cannot alter a tensor after its checks."""
    __slots__ = ()

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"the pickle sets the state of a {type(self).__name__[1:]}, which takes none")


class _DType(_Inert):
    """A torch storage class or dtype global: the NumPy dtype it stands for (bfloat16 as its raw uint16)."""
    __slots__ = ("name", "np", "bf16")

    def __init__(self, name, np_dtype, bf16=False):
        self.name, self.np, self.bf16 = name, np.dtype(np_dtype), bf16


class _Storage(_Inert):
    """A torch storage: `numel` elements of `dtype`, raw bytes in `data` (filled once read)."""
    __slots__ = ("key", "dtype", "numel", "data")

    def __init__(self, key, dtype, numel, data=None):
        self.key, self.dtype, self.numel, self.data = key, dtype, numel, data


class _Tensor(_Inert):
    """A strided view of a storage, materialised as a NumPy array once the whole file is checked."""
    __slots__ = ("storage", "dtype", "offset", "size", "stride")

    def __init__(self, storage, dtype, offset, size, stride):
        self.storage, self.dtype, self.offset, self.size, self.stride = storage, dtype, offset, size, stride

    def nbytes(self) -> int:
        return _prod(self.size) * self.dtype.np.itemsize


class _Marker(_Inert):
    """A global that is only ever an argument (numpy.ndarray passed to _reconstruct)."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


_TORCH_DTYPES = {  # torch dtype name -> (NumPy dtype, bfloat16?)
    "float32": ("f4", False), "float64": ("f8", False), "float16": ("f2", False), "bfloat16": ("u2", True),
    "int64": ("i8", False), "int32": ("i4", False), "int16": ("i2", False), "int8": ("i1", False),
    "uint8": ("u1", False), "bool": ("?", False), "uint16": ("u2", False), "uint32": ("u4", False),
    "uint64": ("u8", False)}
_STORAGE_CLASSES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
                    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                    "UntypedStorage": "uint8"}
_NUMPY_DTYPES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}
_MAX_DIMS = 32


# ---------------------------------------------------------------------------------------------------
# The restricted unpickler
# ---------------------------------------------------------------------------------------------------

def _scan(stream, where: str) -> int:
    """Walk the pickle at `stream`'s position to its STOP without building anything, raising on a
    truncated argument or an implausible memo index; return the position after STOP."""
    count = 0
    for opcode, arg, _ in pickletools.genops(stream):
        count += 1
        # legitimate picklers number memo slots 0, 1, 2, ... one per opcode; the C unpickler would
        # grow its memo array to whatever index a PUT names (LONG_BINPUT 2**32-1: 32 GiB)
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= arg <= count:
            raise WeightsError(f"{where}: pickle memo index {_short(arg)} at opcode {count} (corrupt or hostile)")
    return stream.tell()


class _RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler whose globals come only from `allowed` ((module, name) -> object)."""

    def __init__(self, stream, where, allowed, persistent_load=None, encoding="utf-8"):
        super().__init__(stream, encoding=encoding)
        self._where, self._allowed, self._persistent = where, allowed, persistent_load

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise ForbiddenGlobalError(
                f"{self._where}: refusing to unpickle the global {_short(f'{module}.{name}', 120)}: only "
                "tensor data is read from weight files (this file would run that code under torch.load; "
                "do not load it with torch either unless you trust its source)") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(f"persistent id {_short(pid)} in a pickle that takes none")
        return self._persistent(pid)


def _unpickle(stream, where, allowed, persistent_load=None, encoding="utf-8"):
    start = stream.tell()
    end = _scan(stream, where)
    stream.seek(start)
    obj = _RestrictedUnpickler(stream, where, allowed, persistent_load, encoding).load()
    if stream.tell() != end:
        raise WeightsError(f"{where}: pickle ended at byte {stream.tell()}, its scan at {end}")
    return obj


class _Budget:
    """Bytes that tensors of one file may claim: twice the file's size (tied weights view a storage
    twice) plus 1 MiB for the tiny expanded tensors a stride of 0 can make."""

    def __init__(self, file_size: int, where: str):
        self.left, self.limit, self.where = 2 * file_size + (1 << 20), 2 * file_size + (1 << 20), where

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise WeightsError(f"{self.where}: {what} needs {_short(nbytes, 40)} bytes, more than this "
                               f"{(self.limit - (1 << 20)) // 2}-byte file can hold (corrupt or hostile)")
        self.left -= nbytes


class _TorchReader:
    """Unpickles torch.save's object pickle; storages come from `storage_for(pid)`."""

    def __init__(self, where, budget, storage_for):
        self.where, self.budget, self.storage_for = where, budget, storage_for
        self.allowed = {("collections", "OrderedDict"): OrderedDict,
                        ("torch._utils", "_rebuild_tensor_v2"): self.rebuild_tensor_v2,
                        ("torch._utils", "_rebuild_tensor_v3"): self.rebuild_tensor_v3,
                        ("torch._utils", "_rebuild_parameter"): self.rebuild_parameter}
        for cls, dtype in _STORAGE_CLASSES.items():
            self.allowed[("torch", cls)] = _DType(cls, *_TORCH_DTYPES[dtype])
        # the storage of a _rebuild_tensor_v3 tensor, by the name torch.storage.UntypedStorage has
        self.allowed[("torch.storage", "UntypedStorage")] = self.allowed[("torch", "UntypedStorage")]
        for name, (np_dtype, bf16) in _TORCH_DTYPES.items():
            self.allowed[("torch", name)] = _DType(name, np_dtype, bf16)
        self.storages = {}

    def storage_pid(self, pid, legacy):
        """Check one persistent id and return the (shared) _Storage for its key."""
        n = 6 if legacy else 5
        if not (type(pid) is tuple and len(pid) == n and pid[0] == "storage" and isinstance(pid[1], _DType)
                and type(pid[2]) is str and type(pid[3]) is str and _is_int(pid[4]) and pid[4] >= 0):
            raise WeightsError(f"{self.where}: malformed storage id {_short(pid)}")
        if legacy and pid[5] is not None:
            raise WeightsError(f"{self.where}: storage views of the pre-1.0 legacy format are not supported")
        _, dtype, key, _, numel = pid[:5]
        known = self.storages.get(key)
        if known is not None:
            if known.dtype.name != dtype.name or known.numel != numel:
                raise WeightsError(f"{self.where}: storage {_short(key)} is declared twice, differently")
            return known
        storage = self.storage_for(key, dtype, numel)
        self.storages[key] = storage
        return storage

    def _tensor(self, storage, dtype, offset, size, stride, requires_grad, hooks, metadata):
        where = self.where
        if not isinstance(storage, _Storage):
            raise WeightsError(f"{where}: tensor without a storage ({type(storage).__name__})")
        if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride) <= _MAX_DIMS
                and all(_is_int(v) and 0 <= v < 1 << 62 for v in size + stride) and _is_int(offset)
                and 0 <= offset < 1 << 62):
            raise WeightsError(f"{where}: tensor with offset {_short(offset)}, size {_short(size)}, "
                               f"stride {_short(stride)}: not a valid strided layout")
        if type(requires_grad) is not bool or not isinstance(hooks, dict) or hooks:
            raise WeightsError(f"{where}: tensor with requires_grad {_short(requires_grad)} and hooks {_short(hooks)}")
        if metadata is not None and not (isinstance(metadata, dict) and not metadata):
            raise WeightsError(f"{where}: tensor metadata {_short(metadata)} (conjugate/negative views) "
                               "is not supported")
        itemsize = dtype.np.itemsize
        elements = storage.numel * storage.dtype.np.itemsize // itemsize
        if _prod(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= elements:
            raise WeightsError(f"{where}: tensor of size {size}, stride {stride}, offset {offset} reaches past "
                               f"its storage {_short(storage.key)} of {elements} elements")
        tensor = _Tensor(storage, dtype, offset, size, stride)
        self.budget.take(tensor.nbytes(), f"a tensor of size {size}")
        return tensor

    def rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        dtype = storage.dtype if isinstance(storage, _Storage) else None
        return self._tensor(storage, dtype, offset, size, stride, requires_grad, hooks, metadata)

    def rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        if not isinstance(dtype, _DType) or dtype.name not in _TORCH_DTYPES:
            raise WeightsError(f"{self.where}: tensor of dtype {_short(dtype)}")
        if isinstance(storage, _Storage) and storage.numel * storage.dtype.np.itemsize % dtype.np.itemsize:
            raise WeightsError(f"{self.where}: storage {_short(storage.key)} is not a whole number of {dtype.name}")
        return self._tensor(storage, dtype, offset, size, stride, requires_grad, hooks, metadata)

    def rebuild_parameter(self, data, requires_grad, hooks):
        if not isinstance(data, _Tensor):
            raise WeightsError(f"{self.where}: parameter of a {type(data).__name__}")
        return data


def _materialise(tensor: _Tensor, byteorder: str) -> np.ndarray:
    """A contiguous native-endian copy of the strided view (checked in _TorchReader._tensor)."""
    dtype = tensor.dtype.np.newbyteorder("<" if byteorder == "little" else ">")
    out_dtype = np.float32 if tensor.dtype.bf16 else dtype.newbyteorder("=")
    if _prod(tensor.size) == 0:
        return np.zeros(tensor.size, out_dtype)
    flat = np.frombuffer(tensor.storage.data, dtype=dtype, count=len(tensor.storage.data) // dtype.itemsize)
    view = np.lib.stride_tricks.as_strided(flat[tensor.offset:], shape=tensor.size,
                                           strides=[s * dtype.itemsize for s in tensor.stride], writeable=False)
    if tensor.dtype.bf16:  # bfloat16 is the upper half of a float32 (no NumPy dtype for it)
        return (view.astype(np.uint32) << 16).view(np.float32)
    return np.array(view, dtype=out_dtype, order="C")


# ---------------------------------------------------------------------------------------------------
# torch.save's zip archive and legacy stream
# ---------------------------------------------------------------------------------------------------

def _read_torch_zip(data: bytes, where: str):
    budget = _Budget(len(data), where)
    archive = zipfile.ZipFile(io.BytesIO(data))
    infos = archive.infolist()
    if not infos:
        raise WeightsError(f"{where}: empty zip archive")
    prefix = infos[0].filename.split("/", 1)[0]
    entries = {info.filename: info for info in infos}
    left = [len(data)]  # bytes the entries read so far may still take, all together

    def entry(name, required=True):
        info = entries.get(f"{prefix}/{name}")
        if info is None:
            if required:
                raise WeightsError(f"{where}: no entry {prefix}/{name} (not a torch.save archive, or damaged)")
            return None
        if info.file_size > left[0]:
            raise WeightsError(f"{where}: entry {info.filename} declares {info.file_size} bytes, more than the "
                               f"{len(data)}-byte archive can hold uncompressed (torch stores entries uncompressed)")
        left[0] -= info.file_size
        with archive.open(info) as f:
            blob = f.read(info.file_size + 1)
        if len(blob) != info.file_size:
            raise WeightsError(f"{where}: entry {info.filename} holds {len(blob)} bytes, not the "
                               f"{info.file_size} declared")
        return blob

    byteorder = (entry("byteorder", required=False) or b"little").decode("ascii", "replace")
    if byteorder not in ("little", "big"):
        raise WeightsError(f"{where}: byte order {_short(byteorder)}")
    pickled = entry("data.pkl")

    def storage_for(key, dtype, numel):
        if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", key):
            raise WeightsError(f"{where}: storage key {_short(key)}")
        info = entries.get(f"{prefix}/data/{key}")
        nbytes = numel * dtype.np.itemsize
        if info is not None and nbytes > info.file_size:
            raise WeightsError(f"{where}: storage {key} of {numel} x {dtype.name} needs {nbytes} bytes, its entry "
                               f"holds {info.file_size}")
        return _Storage(key, dtype, numel, memoryview(entry(f"data/{key}"))[:nbytes])

    reader = _TorchReader(where, budget, storage_for)
    obj = _unpickle(io.BytesIO(pickled), where, reader.allowed, lambda pid: reader.storage_pid(pid, False))
    return obj, byteorder


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_HEADER = b"\x80\x02\x8a\x0a" + _LEGACY_MAGIC.to_bytes(10, "little")
_LEGACY_PROTOCOL = 1001


def _read_torch_legacy(data: bytes, where: str):
    budget = _Budget(len(data), where)
    stream = io.BytesIO(data)
    plain = {}  # the header pickles and the key list hold no globals at all
    if _unpickle(stream, where, plain) != _LEGACY_MAGIC or _unpickle(stream, where, plain) != _LEGACY_PROTOCOL:
        raise WeightsError(f"{where}: not a legacy torch.save stream (magic number or protocol version)")
    info = _unpickle(stream, where, plain)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise WeightsError(f"{where}: legacy stream from a big-endian machine or with a corrupt header")
    reader = _TorchReader(where, budget, lambda key, dtype, numel: _Storage(key, dtype, numel))
    obj = _unpickle(stream, where, reader.allowed, lambda pid: reader.storage_pid(pid, True))
    keys = _unpickle(stream, where, plain)
    if type(keys) is not list or set(keys) != set(reader.storages) or len(keys) != len(reader.storages):
        raise WeightsError(f"{where}: the storage key list does not match the storages the pickle uses")
    view, pos = memoryview(data), stream.tell()
    for key in keys:
        storage = reader.storages[key]
        if pos + 8 > len(data):
            raise WeightsError(f"{where}: truncated before storage {_short(key)}")
        (numel,) = struct.unpack_from("<q", data, pos)
        nbytes = numel * storage.dtype.np.itemsize
        if numel != storage.numel or pos + 8 + nbytes > len(data):
            raise WeightsError(f"{where}: storage {_short(key)} holds {numel} elements at byte {pos}, the pickle "
                               f"says {storage.numel}, the file has {len(data) - pos - 8} bytes left")
        storage.data = view[pos + 8:pos + 8 + nbytes]
        pos += 8 + nbytes
    return obj, "little"


# ---------------------------------------------------------------------------------------------------
# Pickles of NumPy arrays (VGGFace2)
# ---------------------------------------------------------------------------------------------------

class _NumpyReader:
    """The globals numpy's own pickling emits for plain numeric arrays, as inert stand-ins."""

    def __init__(self, where, budget):
        self.where, self.budget = where, budget
        self.ndarray = ndarray = _Marker("numpy.ndarray")
        self.allowed = {("_codecs", "encode"): self.encode}
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            self.allowed[(module, "_reconstruct")] = self.reconstruct
        for module in ("numpy.core.numeric", "numpy._core.numeric"):
            self.allowed[(module, "_frombuffer")] = self.frombuffer
        self.allowed[("numpy", "ndarray")] = ndarray
        self.allowed[("numpy", "dtype")] = self.dtype

    def encode(self, text, encoding):
        # Python 3 writes bytes at protocol 2 as _codecs.encode(latin-1 text, 'latin1')
        if type(text) is not str or encoding != "latin1":
            raise WeightsError(f"{self.where}: _codecs.encode of {type(text).__name__} as {_short(encoding)}")
        return text.encode("latin1")

    def dtype(self, spec, align=False, copy=True):
        if spec not in _NUMPY_DTYPES:
            raise WeightsError(f"{self.where}: NumPy dtype {_short(spec)} (only plain numeric dtypes are read)")
        return _NpDTypeBuilder(spec, self.where)

    def reconstruct(self, cls, shape, typecode):
        if cls is not self.ndarray or shape != (0,):
            raise WeightsError(f"{self.where}: _reconstruct({_short(cls)}, {_short(shape)}, ...) is not a plain array")
        return _NpArrayBuilder(self)

    def frombuffer(self, buf, dtype, shape, order):
        # protocol 5 (Python >= 3.14's default): numpy pickles arrays as _frombuffer(bytes, dtype, shape, order)
        if not isinstance(buf, (bytes, bytearray)) or order not in ("C", "F"):
            raise WeightsError(f"{self.where}: _frombuffer of {type(buf).__name__} in order {_short(order)}")
        out = _NpArrayBuilder(self)
        out.build(shape, dtype, order == "F", bytes(buf))
        return out

    def array(self, shape, dtype, fortran, raw):
        if not isinstance(dtype, _NpDTypeBuilder) or dtype.dtype is None:
            raise WeightsError(f"{self.where}: array of dtype {_short(dtype)}")
        if not (type(shape) is tuple and len(shape) <= _MAX_DIMS
                and all(_is_int(n) and 0 <= n < 1 << 62 for n in shape)):
            raise WeightsError(f"{self.where}: array shape {_short(shape)}")
        if isinstance(raw, str):  # a Python 2 str, decoded with latin-1 as the file must be read
            raw = raw.encode("latin1")
        size = len(raw) if isinstance(raw, (bytes, bytearray)) else None
        if size != _prod(shape) * dtype.dtype.itemsize:
            raise WeightsError(f"{self.where}: array of shape {shape} x {dtype.dtype} with "
                               f"{type(raw).__name__ if size is None else size} bytes of data")
        self.budget.take(len(raw), f"an array of shape {shape}")
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        return flat.reshape(shape, order="F" if fortran else "C").astype(dtype.dtype.newbyteorder("="), order="C")


class _NpDTypeBuilder(_Inert):
    """numpy's `dtype(spec, align, copy)` followed by `BUILD (version, byteorder, ...)`."""
    __slots__ = ("spec", "dtype", "where")

    def __init__(self, spec, where):
        self.spec, self.dtype, self.where = spec, None, where

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags): plain dtypes only
        if self.dtype is not None or type(state) is not tuple or len(state) < 5 or state[2:5] != (None, None, None) \
                or state[1] not in ("<", ">", "|", "="):
            raise WeightsError(f"{self.where}: NumPy dtype state {_short(state)} (only plain numeric dtypes are read)")
        self.dtype = np.dtype(self.spec).newbyteorder(state[1] if state[1] != "|" else "=")


class _NpArrayBuilder(_Inert):
    """numpy's `_reconstruct(ndarray, (0,), b'b')` followed by `BUILD (version, shape, dtype, fortran, raw)`."""
    __slots__ = ("array", "reader")

    def __init__(self, reader):
        self.array, self.reader = None, reader

    def build(self, shape, dtype, fortran, raw):
        if self.array is not None:
            raise WeightsError(f"{self.reader.where}: an array's state is set twice")
        self.array = self.reader.array(shape, dtype, fortran, raw)

    def __setstate__(self, state):
        if type(state) is not tuple or len(state) != 5 or state[0] != 1 or type(state[3]) is not bool:
            raise WeightsError(f"{self.reader.where}: NumPy array state {_short(state)}")
        self.build(state[1], state[2], state[3], state[4])


def _read_numpy_pickle(data: bytes, where: str):
    reader = _NumpyReader(where, _Budget(len(data), where))
    # the VGGFace2 files were written by Python 2: byte strings come back as latin-1 text
    return _unpickle(io.BytesIO(data), where, reader.allowed, encoding="latin1"), None


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def _detect(data: bytes) -> str:
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "torch"
    if data.startswith(_LEGACY_HEADER):
        return "torch-legacy"
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    if data[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _read_regular_file(path) -> bytes:
    """The whole file; a FIFO or device is refused instead of blocking or reading forever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{os.fspath(path)}: not a regular file")
        return f.read()


def _select(obj, key, where, is_tensor):
    """The name -> tensor mapping inside what was unpickled (unwrapping checkpoint dicts)."""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise WeightsError(f"{where}: no entry {key!r} at the top level of the file")
        obj = obj[key]
    elif isinstance(obj, dict) and not all(is_tensor(v) for v in obj.values()):
        for wrapper in _WRAPPER_KEYS:
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict):
        raise WeightsError(f"{where}: the file holds a {type(obj).__name__}, not a mapping of names to tensors")
    for name, value in obj.items():
        if type(name) is not str:
            raise WeightsError(f"{where}: key {_short(name)} is not a string")
        if not is_tensor(value):
            top = ", ".join(_short(k, 40) for k in list(obj)[:8])
            raise WeightsError(f"{where}: entry {_short(name)} is a {type(value).__name__}, not a tensor (top-level "
                               f"keys: {top}; pick the state dict with key=...)")
    return obj


def read_weights(source, format: str | None = None, key: str | None = None) -> "OrderedDict[str, np.ndarray]":
    """The tensors of a weights file (a path, or the file's bytes) as name -> NumPy array, in file
    order. format: None (recognise from the content), or one of FORMATS; a plain pickle is read only
    with format="vggface2". key: the entry of a checkpoint dict that holds the weights (by default
    'state_dict', 'model_state_dict' or 'model' when the top level is not itself the weights).
    Raises WeightsError for a malformed file, ForbiddenGlobalError for a pickle that would run code."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"read_weights: format must be None or one of {FORMATS}, got {format!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "<bytes>"
    else:
        data, where = _read_regular_file(source), os.fspath(source)
    found = _detect(data)
    if format is None:
        if found == "pickle":
            raise WeightsError(f"{where}: a plain pickle, not a torch archive: pickled NumPy weights (VGGFace2) are "
                               "read only on request, with format='vggface2'")
        if found == "unknown":
            raise WeightsError(f"{where}: not a safetensors file, torch archive or pickle (first bytes {data[:8]!r})")
        format = found
    elif (format == "vggface2") != (found == "pickle") or (format != "vggface2" and format != found):
        raise WeightsError(f"{where}: format {format!r} requested, but the content looks like {found}")

    if format == "safetensors":
        return _read_safetensors(source, data, key, where)

    readers = {"torch": _read_torch_zip, "torch-legacy": _read_torch_legacy, "vggface2": _read_numpy_pickle}
    try:
        obj, byteorder = readers[format](data, where)
        if format == "vggface2":
            state = _select(obj, key, where, lambda v: isinstance(v, _NpArrayBuilder) and v.array is not None)
            out = OrderedDict((name, value.array) for name, value in state.items())
        else:
            state = _select(obj, key, where, lambda v: isinstance(v, _Tensor))
            _Budget(len(data), where).take(sum(t.nbytes() for t in state.values()), f"{len(state)} tensors")
            out = OrderedDict((name, _materialise(t, byteorder)) for name, t in state.items())
    except (WeightsError, ForbiddenGlobalError):
        raise
    except Exception as exc:  # anything a malformed pickle or zip raises, one exception type for callers
        raise WeightsError(f"{where}: corrupt {format} file ({type(exc).__name__}: {_short(str(exc), 200)})") from None
    return out


def _read_safetensors(source, data, key, where):
    from .checkpoint import load_file

    if key is not None:
        raise WeightsError(f"{where}: safetensors files are flat; key={key!r} does not apply")
    if not isinstance(source, (bytes, bytearray, memoryview)):
        try:
            return OrderedDict(load_file(source)[0])
        except ValueError as exc:
            raise WeightsError(str(exc)) from None
    with tempfile.TemporaryDirectory() as folder:  # load_file reads paths only
        path = os.path.join(folder, "weights.safetensors")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return OrderedDict(load_file(path)[0])
        except ValueError as exc:
            raise WeightsError(str(exc).replace(path, where)) from None


def _normalise(state, rename, target_keys):
    """Strip 'module.' and apply one rename table (or a dict / callable); returns (state, renamed)."""
    stripped = OrderedDict()
    for name, value in state.items():
        new = name[len("module."):] if name.startswith("module.") else name
        if new in stripped:
            raise WeightsError(f"two tensors are both named {new!r} once 'module.' is stripped")
        stripped[new] = value

    def by_table(rules):
        compiled = [(re.compile(p), r) for p, r in rules]

        def apply(name):
            for pattern, replacement in compiled:
                if pattern.fullmatch(name):
                    return pattern.sub(replacement, name)
            return name
        return apply

    if rename is None:  # the table under which most of the file's names are the model's
        candidates = [by_table(RENAME_TABLES[t]) for t in RENAME_TABLES]
        fn = max(candidates, key=lambda f: sum(f(n) in target_keys for n in stripped))
    elif isinstance(rename, str):
        if rename not in RENAME_TABLES:
            raise ValueError(f"rename: unknown table {rename!r}, expected one of {sorted(RENAME_TABLES)}")
        fn = by_table(RENAME_TABLES[rename])
    elif isinstance(rename, dict):
        fn = lambda n: rename.get(n, n)  # noqa: E731
    elif callable(rename):
        fn = rename
    else:
        raise TypeError(f"rename must be None, a table name, a dict or a callable, got {type(rename).__name__}")
    out, renamed = OrderedDict(), {}
    for name, value in stripped.items():
        new = fn(name)
        if new is None:
            continue
        if new in out:
            raise WeightsError(f"two tensors are both renamed to {new!r}")
        if new != name:
            renamed[name] = new
        out[new] = value
    return out, renamed


def _kind(dtype_name: str) -> str:
    return "float" if "float" in dtype_name else "integer"


def load_weights(model, path, strict: bool = True, rename=None, format: str | None = None,
                 key: str | None = None) -> LoadResult:
    """Load a weights file into `model` by name (never by position).

    strict=True: every model tensor must be in the file (BatchNorm's num_batches_tracked excepted, as
    files before torchvision 0.4 lack it) and every file tensor in the model, with the same shape;
    otherwise RuntimeError naming them all, and the model is left untouched. strict=False: missing
    and unexpected names are reported, and head layers (HEAD_PREFIXES) whose shape differs, as after
    changing num_classes, are skipped and reported in `skipped`; any other shape mismatch still
    raises. Floating-point tensors load into floating-point ones (cast to the model's dtype), integer
    into integer; GoogLeNet's aux1/aux2 classifiers are skipped when the model has none.
    rename: None (pick the best of RENAME_TABLES), a table name, a dict file name -> model name, or a
    callable name -> name (a name mapped to None is dropped). format, key: as read_weights.
    A model with an `adapt_state_dict(state)` method adapts the renamed tensors before the checks
    (ViT: position embeddings made at another image size are resampled to the model's grid)."""
    state = read_weights(path, format=format, key=key)
    where = os.fspath(path) if not isinstance(path, (bytes, bytearray, memoryview)) else "<bytes>"
    target = model.state_dict()
    state, renamed = _normalise(state, rename, target)
    if hasattr(model, "adapt_state_dict"):  # e.g. ViT resamples position embeddings made at another size
        state = model.adapt_state_dict(state)
    skipped, errors = {}, []
    for name in list(state):
        value = state[name]
        if name not in target:
            if name.startswith(_AUX_PREFIXES):
                skipped[name] = "auxiliary classifier, not in the model"
                del state[name]
            continue
        want = target[name]
        if tuple(value.shape) != tuple(want.shape):
            why = f"shape {tuple(value.shape)} in the file, {tuple(want.shape)} in the model"
            if not strict and name.startswith(HEAD_PREFIXES):
                skipped[name] = why
                del state[name]
            else:
                hint = " (a head layer: strict=False skips it)" if name.startswith(HEAD_PREFIXES) else ""
                errors.append(f"size mismatch for {name}: {why}{hint}")
        elif _kind(str(value.dtype)) != _kind(want.dtype):
            errors.append(f"dtype mismatch for {name}: {value.dtype} in the file, {want.dtype} in the model")
    optional = {(prefix + "." if prefix else "") + k for prefix, mod in model.named_modules()
                for k in mod._optional_state_keys()}
    missing = [k for k in target if k not in state and k not in optional and k not in skipped]
    unexpected = [k for k in state if k not in target]
    if strict and unexpected:
        errors.insert(0, "Unexpected key(s) in the file: " + ", ".join(unexpected))
    if strict and missing:
        errors.insert(0, "Missing key(s) in the file: " + ", ".join(missing))
    if errors:
        raise RuntimeError(f"Error(s) in loading {where} into {type(model).__name__}:\n\t" + "\n\t".join(errors))
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
    return LoadResult(missing, unexpected, skipped, renamed)


def convert_weights(source, destination, format: str | None = None, key: str | None = None,
                    rename: str | dict | None = None) -> "OrderedDict[str, np.ndarray]":
    """Read `source` (any of FORMATS) and write its tensors to the safetensors file `destination`,
    'module.' stripped and renamed by `rename` (a table name or dict; None keeps the names).
    bfloat16 tensors are written as float32. Returns what was written."""
    from .checkpoint import save_file

    state = read_weights(source, format=format, key=key)
    state, _ = _normalise(state, "none" if rename is None else rename, set())
    save_file(state, destination, {"format": "affectfer-converted", "source": os.path.basename(os.fspath(source))})
    return state
