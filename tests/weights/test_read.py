"""affectfer.weights.read_weights on well-formed files: genuine torch.save output (committed fixtures
made by data/make_torch_fixtures.py), files from our own writer of the same layout, VGGFace2-style
pickles and safetensors, with bit-exact values."""
import os
import pickle

import numpy as np
import pytest

from affectfer import checkpoint
from affectfer.weights import WeightsError, read_weights

from . import torchfile as tf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
EXPECTED = np.load(os.path.join(DATA, "expected.npz"))


def assert_same(got, want, name):
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.array_equal(got, want), (name, got, want)


@pytest.mark.parametrize("fixture", ["torch_zip.pth", "torch_legacy.pth"])
def test_genuine_checkpoint_every_dtype_and_layout(fixture):
    state = read_weights(os.path.join(DATA, fixture))  # {'epoch', 'arch', 'state_dict'} unwrapped
    names = [k[len("ckpt/"):] for k in EXPECTED.files if k.startswith("ckpt/")]
    assert list(state) == names  # file order, 'module.' kept: read_weights does not rename
    for name in names:
        assert_same(state[name], EXPECTED["ckpt/" + name], name)
    # the layouts that exercise strides, offsets and shared storage
    assert state["module.transposed"].tolist() == [[0, 3], [1, 4], [2, 5]]
    assert state["module.offset"].tolist() == [3, 4, 5, 6] and state["module.shared"].tolist() == [5, 6, 7, 8, 9]
    assert state["module.count"].shape == () and state["module.bf16"].dtype == np.float32
    assert state["module.u16"].tolist() == [1, 65535]  # _rebuild_tensor_v3 over an UntypedStorage


def test_genuine_module_state_dict():
    state = read_weights(os.path.join(DATA, "torch_module.pth"))  # torch's OrderedDict with _metadata
    assert list(state) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                           "1.num_batches_tracked"]
    for name, value in state.items():
        assert_same(value, EXPECTED["module/" + name], name)
    assert state["1.num_batches_tracked"].shape == () and int(state["1.num_batches_tracked"]) == 1


def test_arrays_are_writable_copies():
    state = read_weights(os.path.join(DATA, "torch_zip.pth"))
    offset, shared = state["module.offset"], state["module.shared"]
    offset[0] = 100.0  # the two views of one storage must not alias after reading
    assert shared[0] == 5.0 and offset.flags.c_contiguous and offset.flags.writeable


def sample_state():
    rng = np.random.default_rng(0)
    return {"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "bn.running_var": rng.random(4).astype(np.float64), "bn.num_batches_tracked": np.array(5, np.int64),
            "half": np.array([0.5, -1.0], np.float16), "mask": np.array([True, False]),
            "idx": np.array([-3, 7], np.int32), "bytes": np.array([1, 250], np.uint8)}


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("wrap", [None, "state_dict", "model_state_dict", "model"])
def test_writer_round_trip(tmp_path, legacy, wrap):
    path = tmp_path / "w.pth"
    tf.save_state_dict(path, sample_state(), wrap=wrap, legacy=legacy)
    state = read_weights(path)
    want = sample_state()
    assert list(state) == list(want)
    for name in want:
        assert_same(state[name], want[name], name)


def test_explicit_key(tmp_path):
    path = tmp_path / "w.pth"
    obj = {"state_dict_ema": tf.tensors_to_objects({"a": np.ones(2, np.float32)}),
           "state_dict": tf.tensors_to_objects({"a": np.zeros(2, np.float32)})}
    path.write_bytes(tf.torch_zip(obj))
    assert read_weights(path)["a"].tolist() == [0, 0]
    assert read_weights(path, key="state_dict_ema")["a"].tolist() == [1, 1]
    with pytest.raises(WeightsError, match="no entry 'nope'"):
        read_weights(path, key="nope")


def test_non_tensor_entry_is_named(tmp_path):
    obj = {"a": tf.tensors_to_objects({"a": np.ones(2, np.float32)})["a"], "epoch": 3}
    with pytest.raises(WeightsError, match="entry 'epoch' is a int, not a tensor"):
        read_weights(tf.torch_zip(obj))


def test_big_endian_archive():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    storage = tf.Storage("0", "FloatStorage", 6, arr.astype(">f4").tobytes())
    data = tf.torch_zip({"w": tf.rebuild(storage, 0, (2, 3), (3, 1))}, byteorder="big")
    assert_same(read_weights(data)["w"], arr, "w")


def test_vggface2_pickle_needs_the_opt_in(tmp_path):
    state = sample_state()
    path = tmp_path / "resnet50_ft_weight.pkl"
    path.write_bytes(tf.numpy_pickle_py2(state))
    with pytest.raises(WeightsError, match="format='vggface2'"):
        read_weights(path)
    got = read_weights(path, format="vggface2")
    for name in state:
        assert_same(got[name], state[name], name)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickles_of_python3(protocol):
    state = sample_state()
    state["fortran"] = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    got = read_weights(pickle.dumps(state, protocol=protocol), format="vggface2")
    for name in state:
        assert_same(got[name], state[name], name)


def test_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    checkpoint.save_file(sample_state(), path)
    got = read_weights(path)
    for name, want in sample_state().items():
        assert_same(got[name], want, name)
    assert read_weights(path.read_bytes())["half"].tolist() == [0.5, -1.0]


def test_format_checks(tmp_path):
    path = tmp_path / "w.pth"
    tf.save_state_dict(path, sample_state())
    with pytest.raises(WeightsError, match="format 'torch-legacy' requested, but the content looks like torch"):
        read_weights(path, format="torch-legacy")
    with pytest.raises(ValueError, match="format must be None or one of"):
        read_weights(path, format="pth")
    with pytest.raises(WeightsError, match="not a safetensors file, torch archive or pickle"):
        read_weights(b"GIF89a........")


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_weights(fifo)
