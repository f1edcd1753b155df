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
