"""affectfer.checkpoint: exact reload, atomic writes, clear errors on corrupt files, torch interop."""
import os
import struct

import numpy as np
import pytest

import affectfer as af
from affectfer import checkpoint, nn, optim


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_weights_and_training_state_reload_bit_exact(tmp_path):
    af.manual_seed(3)
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = af.randn(2, 3, 8, 8), af.tensor([1, 4])
    for _ in range(2):
        opt.zero_grad()
        af.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    path = tmp_path / "m.safetensors"
    checkpoint.save(model, path, optimizer=opt, config={"classes": ["a", "b"]}, epoch=7)
    rng_after_save = af._C.rng_state()

    af.manual_seed(99)
    fresh = _model()
    fresh_opt = optim.Adam(fresh.parameters(), lr=1e-3)
    ck = checkpoint.load(path, model=fresh, optimizer=fresh_opt)
    assert ck.config == {"classes": ["a", "b"]} and ck.epoch == 7
    assert af._C.rng_state() == rng_after_save
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    # one more identical step on both gives identical weights: the optimizer state came back too
    for m, o in ((model, opt), (fresh, fresh_opt)):
        o.zero_grad()
        af.nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_file_is_plain_safetensors_readable_by_the_reference_package(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    checkpoint.save_file(arrays, tmp_path / "x.safetensors", {"k": "v"})
    loaded = safetensors_numpy.load_file(str(tmp_path / "x.safetensors"))
    for k in arrays:
        assert np.array_equal(loaded[k], arrays[k])
    safetensors_numpy.save_file(arrays, str(tmp_path / "y.safetensors"))
    ours, _ = checkpoint.load_file(tmp_path / "y.safetensors")
    for k in arrays:
        assert np.array_equal(ours[k], arrays[k])


def test_corrupt_truncated_and_missing_files(tmp_path):
    path = tmp_path / "w.safetensors"
    checkpoint.save_file({"w": np.ones((4, 4), np.float32)}, path)
    data = path.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        checkpoint.load_file(tmp_path / "t.safetensors")
    (tmp_path / "h.safetensors").write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        checkpoint.load_file(tmp_path / "h.safetensors")
    (tmp_path / "j.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(ValueError, match="corrupt header"):
        checkpoint.load_file(tmp_path / "j.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"abc")
    with pytest.raises(ValueError, match="truncated"):
        checkpoint.load_file(tmp_path / "e.safetensors")
    with pytest.raises(FileNotFoundError):
        checkpoint.load_file(tmp_path / "missing.safetensors")


def test_failed_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "w.safetensors"
    checkpoint.save_file({"w": np.zeros(3, np.float32)}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="complex"):
        checkpoint.save_file({"w": np.zeros(3, np.float32), "bad": np.zeros(2, np.complex64)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


def test_strict_loading_reports_missing_keys(tmp_path):
    path = tmp_path / "m.safetensors"
    checkpoint.save_file({"0.weight": np.zeros((4, 3, 3, 3), np.float32)}, path)
    with pytest.raises((KeyError, ValueError, RuntimeError)):
        checkpoint.load(path, model=_model())


def _trained_pair(folder, seed):
    af.manual_seed(seed)
    model = _model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    opt.zero_grad()
    af.nn.functional.cross_entropy(model(af.randn(2, 3, 8, 8)), af.tensor([1, 4])).backward()
    opt.step()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "m.safetensors")
    checkpoint.save(model, path, optimizer=opt, epoch=seed)
    return path


@pytest.mark.parametrize("interrupted_after", ["train", "weights"])
def test_a_pair_from_two_saves_is_refused(tmp_path, interrupted_after):
    # save A completes; save B is interrupted after writing one of its two files (simulated by
    # copying that file of a complete save B over A's)
    a = _trained_pair(tmp_path / "a", 1)
    b = _trained_pair(tmp_path / "b", 2)
    src = checkpoint._train_path(b) if interrupted_after == "train" else b
    dst = checkpoint._train_path(a) if interrupted_after == "train" else a
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    fresh = _model()
    before = {k: np.asarray(v).copy() for k, v in fresh.state_dict().items()}
    fresh_opt = optim.Adam(fresh.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="different saves") as info:
        checkpoint.load(a, model=fresh, optimizer=fresh_opt)
    assert a in str(info.value) and checkpoint._train_path(a) in str(info.value)
    for k, v in fresh.state_dict().items():  # refused before anything was loaded
        assert np.array_equal(np.asarray(v), before[k]), k
    checkpoint.load(a, model=fresh)  # the weights alone are still a valid checkpoint


KILL_LOOP = r"""
import sys
import numpy as np
from affectfer import checkpoint, nn, optim
model = nn.Linear(64, 64)
opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
i = 0
while True:
    i += 1
    model.load_state_dict({k: np.full(v.shape, i, np.float32) for k, v in model.state_dict().items()})
    checkpoint.save(model, sys.argv[1], optimizer=opt, epoch=i)
    print("saved", i, flush=True)
"""


def test_kill_9_during_saves_never_yields_a_mixed_pair(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    path = str(tmp_path / "m.safetensors")
    for delay in (0.0, 0.02, 0.05, 0.1):  # kills land before, between and inside the two replaces
        child = subprocess.Popen([sys.executable, "-c", KILL_LOOP, path], stdout=subprocess.PIPE,
                                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        assert child.stdout.readline().startswith(b"saved")  # one complete pair first, however slow the machine
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        model = nn.Linear(64, 64)
        try:
            ck = checkpoint.load(path, model=model, optimizer=optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        except ValueError as exc:
            assert "different saves" in str(exc)
            continue
        # a pair that loads is one save: its weights hold that save's epoch number
        assert np.all(np.asarray(model.weight) == ck.epoch), (ck.epoch, np.asarray(model.weight)[0, 0])
    # the killed writes' temporaries go away with the next save of the same path
    checkpoint.save(nn.Linear(2, 2), path, optimizer=optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "m.train.safetensors"]


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_save(tmp_path):
    import subprocess
    import sys
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".w.safetensors.{dead.pid}-x1y2.tmp"
    live = tmp_path / f".w.safetensors.{os.getppid()}-a1b2.tmp"  # a writer that is still running
    other = tmp_path / f".v.safetensors.{dead.pid}-x1y2.tmp"  # another file's: not this save's business
    for p in (stale, live, other):
        p.write_bytes(b"half a file")
    checkpoint.save_file({"w": np.zeros(3, np.float32)}, tmp_path / "w.safetensors")
    assert not stale.exists() and live.exists() and other.exists()


def _raw(path, header, body=b""):
    blob = header if isinstance(header, bytes) else header.encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + body)
    return path


F32x2 = '"dtype":"F32","shape":[2]'
CRAFTED = {
    "infinite offset": ('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,Infinity]}}', "not a JSON number"),
    "infinite shape": ('{"a":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,8]}}', "not a JSON number"),
    "nan shape": ('{"a":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}', "not a JSON number"),
    "deep nesting": ('{"a":' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply|corrupt"),
    "overflowing product": ('{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}', "needs"),
    "100 dims": ('{"a":{"dtype":"F32","shape":[' + ",".join(["1"] * 100) + '],"data_offsets":[0,4]}}', "invalid shape"),
    "negative dim": ('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', "invalid shape"),
    "fractional shape": ('{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', "invalid shape"),
    "string shape": ('{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}', "invalid shape"),
    "boolean shape": ('{"a":{"dtype":"F32","shape":[true, true],"data_offsets":[0,4]}}', "invalid shape"),
    "fractional offset": ('{"a":{' + F32x2 + ',"data_offsets":[0,8.0]}}', "invalid data_offsets"),
    "reversed offsets": ('{"a":{' + F32x2 + ',"data_offsets":[8,0]}}', "invalid data_offsets"),
    "three offsets": ('{"a":{' + F32x2 + ',"data_offsets":[0,8,8]}}', "invalid data_offsets"),
    "overlapping tensors": ('{"a":{' + F32x2 + ',"data_offsets":[0,8]},"b":{' + F32x2 + ',"data_offsets":[4,12]}}', "overlaps"),
    "same bytes twice": ('{"a":{' + F32x2 + ',"data_offsets":[0,8]},"b":{' + F32x2 + ',"data_offsets":[0,8]}}', "overlaps"),
    "hole": ('{"a":{' + F32x2 + ',"data_offsets":[0,8]},"b":{' + F32x2 + ',"data_offsets":[12,20]}}', "gap"),
    "unindexed tail": ('{"a":{' + F32x2 + ',"data_offsets":[0,8]}}', "cover 8 bytes of a 24-byte"),
    "duplicate key": ('{"a":{' + F32x2 + ',"data_offsets":[0,8]},"a":{' + F32x2 + ',"data_offsets":[8,16]}}', "duplicate key 'a'"),
    "list metadata": ('{"__metadata__":["x"],"a":{' + F32x2 + ',"data_offsets":[0,24]}}', "__metadata__"),
    "non-string metadata": ('{"__metadata__":{"k":1},"a":{' + F32x2 + ',"data_offsets":[0,24]}}', "__metadata__"),
    "unknown dtype": ('{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}', "dtype 'Q7'"),
    "entry not an object": ('{"a":[1,2]}', "corrupt entry"),
    "missing field": ('{"a":{"dtype":"F32","shape":[2]}}', "corrupt entry"),
    "header is a list": ("[]", "not a JSON object"),
    "not utf-8": (b'{"\xff":1}', "corrupt header"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_raise_value_error_naming_the_file(tmp_path, case):
    header, message = CRAFTED[case]
    path = _raw(tmp_path / f"crafted-{case.replace(' ', '_')}.safetensors", header, bytes(24))
    with pytest.raises(ValueError, match=message) as info:
        checkpoint.load_file(path)
    assert str(path) in str(info.value)


def test_contiguous_zero_size_and_out_of_order_entries_are_valid(tmp_path):
    path = _raw(tmp_path / "ok.safetensors", '{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},'
                '"e":{"dtype":"I64","shape":[0,3],"data_offsets":[8,8]},'
                '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}',
                np.array([1, 2, 3], np.float32).tobytes())
    tensors, meta = checkpoint.load_file(path)
    assert meta == {"k": "v"} and list(tensors) == ["b", "e", "a"]
    assert tensors["a"].tolist() == [1, 2] and tensors["b"].tolist() == [3] and tensors["e"].shape == (0, 3)


@pytest.mark.parametrize("key,value,message", [
    ("config", "{not json", "'config' is not valid JSON"),
    ("rng", "[1]", "'rng' must be"),
    ("rng", '["a", 2]', "'rng' must be"),
    ("rng", "[1, -2]", "'rng' must be"),
    ("rng", "nope", "'rng' is not valid JSON"),
    ("scalars", "[]", "'scalars' is not a JSON object"),
    ("param_groups", "{", "'param_groups' is not valid JSON"),
])
def test_malformed_checkpoint_metadata_raises_value_error_naming_file_and_key(tmp_path, key, value, message):
    path = _trained_pair(tmp_path, 1)
    target = path if key == "config" else checkpoint._train_path(path)
    tensors, meta = checkpoint.load_file(target)
    meta[key] = value
    checkpoint.save_file(tensors, target, meta)
    model = _model()
    with pytest.raises(ValueError, match=message) as info:
        checkpoint.load(path, model=model, optimizer=optim.Adam(model.parameters(), lr=1e-3))
    assert str(target) in str(info.value)
