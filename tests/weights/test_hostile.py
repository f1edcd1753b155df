"""Hostile weight files: every one raises WeightsError or ForbiddenGlobalError, nothing in them runs,
and nothing allocates much beyond the file's own size."""
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from affectfer.weights import ForbiddenGlobalError, WeightsError, read_weights

from . import torchfile as tf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class RunsCode:
    """What an attacker pickles: unpickling it calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hostile_pickles(marker, protocol=2):
    cmd = f"touch {marker}"
    evil = RunsCode(cmd)
    pid = ("storage", evil, "0", "cpu", 2)
    return {"plain": pickle.dumps(evil, protocol=protocol),
            "inside a state dict": tf.dumps({"x": tf.Reduce(tf.Global("os", "system"), (cmd,)), "w": 1})[0],
            "as a storage type": tf.dumps({"w": tf.rebuild(tf.Storage("0", "", 2, b"", pid=pid), 0, (2,), (1,))})[0]}


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("container", ["torch", "torch-legacy", "vggface2"])
def test_os_system_never_runs(tmp_path, container, protocol):
    marker = tmp_path / "pwned"
    for what, pickled in hostile_pickles(marker, protocol).items():
        if container == "vggface2" and what == "as a storage type":
            continue  # a torch-only construct: numpy pickles refuse the torch global first
        if container == "torch":
            data = tf.torch_zip({}, pickled=pickled)
        elif container == "torch-legacy":
            data = tf.torch_legacy({}, pickled=pickled)
        else:
            data = pickled
        with pytest.raises(ForbiddenGlobalError, match=r"refusing to unpickle the global '(posix|os)\.system'") as info:
            read_weights(data, format=container)
        assert "<bytes>" in str(info.value), what
        assert not marker.exists(), what
    # the control: the same pickle does run code under plain pickle (so the test can fail)
    pickle.loads(hostile_pickles(marker)["plain"])
    assert marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"),
                                         ("torch._utils", "_rebuild_device_tensor_from_numpy"),
                                         ("torch.storage", "_load_from_bytes"), ("numpy", "load"),
                                         ("_codecs", "encode"), ("numpy.core.multiarray", "scalar")])
def test_only_the_allow_list_resolves(module, name):
    pickled = tf.dumps(tf.Reduce(tf.Global(module, name), ("x",)))[0]
    with pytest.raises(ForbiddenGlobalError, match=f"'{module}.{name}'"):
        read_weights(tf.torch_zip({}, pickled=pickled))


def test_the_allow_lists_are_per_format():
    ordered = tf.dumps(tf.Reduce(tf.Global("collections", "OrderedDict"), ()))[0]  # fine in a torch pickle
    with pytest.raises(ForbiddenGlobalError, match="collections.OrderedDict"):
        read_weights(ordered, format="vggface2")
    with pytest.raises(ForbiddenGlobalError, match="numpy.dtype"):
        read_weights(tf.torch_zip({}, pickled=pickle.dumps(np.dtype("f4"), protocol=2)))


def test_build_cannot_alter_a_checked_tensor():
    storage = tf.Storage("0", "FloatStorage", 2, np.ones(2, np.float32).tobytes())
    tensor = tf.rebuild(storage, 0, (2,), (1,))
    tensor.state = (None, {"size": (1 << 40,)})  # BUILD with slot state after the checks
    with pytest.raises(WeightsError, match="sets the state of a Tensor"):
        read_weights(tf.torch_zip({"w": tensor}))


def test_storage_larger_than_its_entry():
    storage = tf.Storage("0", "FloatStorage", 1000, np.ones(10, np.float32).tobytes())
    with pytest.raises(WeightsError, match=r"storage 0 of 1000 x FloatStorage needs 4000 bytes, its entry holds 40"):
        read_weights(tf.torch_zip({"w": tf.rebuild(storage, 0, (10,), (1,))}))


@pytest.mark.parametrize("offset,size,stride,message", [
    (0, (11,), (1,), "reaches past its storage '0' of 10 elements"),
    (5, (2, 3), (3, 1), "reaches past"),
    (0, (2, 2), (9, 1), "reaches past"),
    (-1, (2,), (1,), "not a valid strided layout"),
    (0, (2,), (-1,), "not a valid strided layout"),
    (0, (2, 2), (1,), "not a valid strided layout"),
    (0, (1 << 70,), (0,), "not a valid strided layout"),
    (0, (1,) * 40, (1,) * 40, "not a valid strided layout"),
    (0, (2.0,), (1,), "not a valid strided layout"),
    (0, (1 << 40,), (0,), "more than this"),  # a stride-0 expansion of one element to 4 TiB
])
def test_bad_tensor_layouts(offset, size, stride, message):
    storage = tf.Storage("0", "FloatStorage", 10, np.zeros(10, np.float32).tobytes())
    with pytest.raises(WeightsError, match=message):
        read_weights(tf.torch_zip({"w": tf.rebuild(storage, offset, size, stride)}))


def test_one_tensor_referenced_many_times_is_bounded():
    # 64 names for one 1 MiB tensor: a 1 MiB file that would materialise 64 MiB
    storage = tf.Storage("0", "FloatStorage", 1 << 18, bytes(1 << 20))
    tensor = tf.rebuild(storage, 0, (1 << 18,), (1,))
    data = tf.torch_zip({f"w{i}": tensor for i in range(64)})
    assert len(data) < (1 << 20) + 4096
    with pytest.raises(WeightsError, match="64 tensors needs 67108864 bytes"):
        read_weights(data)


def test_malformed_storage_ids():
    for pid in [("storage", tf.Global("torch", "FloatStorage"), "0", "cpu"),
                ("storage", "FloatStorage", "0", "cpu", 1),
                ("module", tf.Global("torch", "FloatStorage"), "0", "cpu", 1),
                ("storage", tf.Global("torch", "FloatStorage"), "../../etc/passwd", "cpu", 1),
                ("storage", tf.Global("torch", "FloatStorage"), "0", "cpu", -1)]:
        storage = tf.Storage("0", "FloatStorage", 1, bytes(4), pid=pid)
        with pytest.raises(WeightsError):
            read_weights(tf.torch_zip({"w": tf.rebuild(storage, 0, (1,), (1,))}))


def test_missing_storage_entry():
    storage = tf.Storage("7", "FloatStorage", 1, bytes(4))
    data = tf.torch_zip({"w": tf.rebuild(storage, 0, (1,), (1,))})
    data = data.replace(b"archive/data/7", b"archive/data/8")  # both headers: the entry is renamed
    with pytest.raises(WeightsError, match="no entry archive/data/7"):
        read_weights(data)


def test_zip_bomb_is_refused_before_inflating():
    # 64 MiB of zeros deflate to ~64 KiB; torch never compresses, so an entry declaring more than the
    # whole archive's size is refused from its header, before anything is inflated
    storage = tf.Storage("0", "FloatStorage", 1 << 24, bytes(1 << 26))
    data = tf.torch_zip({"w": tf.rebuild(storage, 0, (1 << 24,), (1,))}, compress=zipfile.ZIP_DEFLATED)
    assert len(data) < 1 << 18
    with pytest.raises(WeightsError, match="declares 67108864 bytes, more than the"):
        read_weights(data)


def test_entry_that_lies_about_its_size():
    storage = tf.Storage("0", "FloatStorage", 4, bytes(16))
    data = bytearray(tf.torch_zip({"w": tf.rebuild(storage, 0, (4,), (1,))}, compress=zipfile.ZIP_DEFLATED))
    # data/0's central-directory record says 8 bytes; it inflates to 16
    pos = data.index(b"PK\x01\x02")
    while data[pos + 46:pos + 46 + struct.unpack_from("<H", data, pos + 28)[0]] != b"archive/data/0":
        pos = data.index(b"PK\x01\x02", pos + 4)
    struct.pack_into("<I", data, pos + 24, 8)
    with pytest.raises(WeightsError, match="needs 16 bytes, its entry holds 8"):
        read_weights(bytes(data))


def test_length_prefixes_and_memo_indices_are_checked_before_unpickling():
    # the C unpickler allocates what these claim before reading: a 32 GiB memo, 1 TiB of bytes
    long_put = b"\x80\x02]r\xff\xff\xff\xff."  # EMPTY_LIST, LONG_BINPUT 2**32-1
    bytes8 = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc."  # BINBYTES8
    unicode8 = b"\x80\x04\x8d" + struct.pack("<Q", 1 << 39) + b"abc."  # BINUNICODE8
    for pickled, message in ((long_put, "memo index 4294967295"), (bytes8, "expected 1099511627776 bytes"),
                             (unicode8, "expected 549755813888 bytes")):
        for container in ("torch", "vggface2"):
            data = tf.torch_zip({}, pickled=pickled) if container == "torch" else pickled
            with pytest.raises(WeightsError, match=message):
                read_weights(data, format=container)


def test_deep_nesting_is_not_recursion():
    depth = 200_000
    nested = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."  # lists nested 200,000 deep
    as_value = b"\x80\x02}X\x01\x00\x00\x00w" + b"]" * depth + b"a" * (depth - 1) + b"s."
    for pickled, message in ((nested, "holds a list"), (as_value, "entry 'w' is a list")):
        with pytest.raises(WeightsError, match=message):
            read_weights(tf.torch_zip({}, pickled=pickled))
        with pytest.raises(WeightsError, match=message):
            read_weights(pickled, format="vggface2")


@pytest.mark.parametrize("fixture", ["torch_zip.pth", "torch_legacy.pth", "torch_module.pth"])
def test_truncations_and_bit_flips_raise_only_weights_errors(fixture):
    data = open(os.path.join(DATA, fixture), "rb").read()
    rng = np.random.default_rng(len(data))
    variants = [data[:n] for n in rng.integers(0, len(data), 60)]
    for _ in range(300):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), int(rng.integers(1, 4))):
            flipped[pos] = int(rng.integers(0, 256))
        variants.append(bytes(flipped))
    for variant in variants:
        try:
            read_weights(variant)
        except (WeightsError, ForbiddenGlobalError):
            pass


def test_numpy_pickle_hostile_shapes_and_dtypes():
    def array(shape, dtype_spec, raw, state=(3, "<", None, None, None, -1, -1, 0)):
        dtype = tf.Reduce(tf.Global("numpy", "dtype"), (dtype_spec, 0, 1), state)
        return tf.Reduce(tf.Global("numpy.core.multiarray", "_reconstruct"),
                         (tf.Global("numpy", "ndarray"), (0,), b"b"),
                         (1, shape, dtype, False, raw))
    cases = [({"w": array((1 << 40,), "f4", b"\0" * 8)}, "with 8 bytes of data"),
             ({"w": array((2,), "O", b"")}, "NumPy dtype 'O'"),
             ({"w": array((2,), "f4", b"\0" * 8, (3, "<", None, ("a",), {"a": 1}, -1, -1, 0))}, "dtype state"),
             ({"w": array((-1,), "f4", b"")}, "array shape"),
             ({"w": tf.Reduce(tf.Global("numpy.core.multiarray", "_reconstruct"),
                              (tf.Global("numpy", "ndarray"), (1 << 40,), b"b"))}, "not a plain array")]
    for obj, message in cases:
        with pytest.raises(WeightsError, match=message):
            read_weights(tf.dumps(obj, py2_bytes=True)[0], format="vggface2")


def test_legacy_stream_mismatches():
    good = tf.torch_legacy(tf.tensors_to_objects({"w": np.arange(4, dtype=np.float32)}))
    with pytest.raises(WeightsError, match="holds 4 elements at byte"):
        read_weights(good[:-1])
    numel_at = len(good) - 16 - 8
    assert struct.unpack_from("<q", good, numel_at)[0] == 4
    bad = bytearray(good)
    struct.pack_into("<q", bad, numel_at, 1 << 60)
    with pytest.raises(WeightsError, match="the pickle says 4"):
        read_weights(bytes(bad))
