"""CUDA == CPU for every op with a CUDA twin, the transfers, the caching allocator and out-of-memory
recovery. Needs a CUDA build and a visible GPU (make gpu-check runs it there)."""
import numpy as np
import pytest

import affectfer as af
from tests.conftest import call

if not af.cuda.is_built():
    pytest.skip("affectfer was built without CUDA", allow_module_level=True)
if not af.cuda.is_available():
    pytest.skip("no CUDA device visible", allow_module_level=True)

RTOL = 1e-5


def cpu_and_cuda(array):
    t = af.tensor(array)
    return t, t.to("cuda")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8", "bool"])
def test_round_trip_and_fill(dtype):
    a = (np.arange(37) % 2).astype(dtype)
    t, g = cpu_and_cuda(a)
    assert g.device == "cuda:0" and g.dtype == dtype and g.shape == t.shape
    assert np.array_equal(g.cpu().numpy(), a)
    call("fill_", [g], (), (1.0,))
    call("fill_", [t], (), (1.0,))
    assert np.array_equal(g.cpu().numpy(), t.numpy())


def test_copy_between_float_dtypes():
    src = np.random.default_rng(0).standard_normal(1001)
    for dst_dtype, src_dtype in (("float32", "float64"), ("float64", "float32"), ("float32", "float32")):
        s_cpu, s_gpu = cpu_and_cuda(src.astype(src_dtype))
        d_cpu, d_gpu = af.zeros(1001, dtype=dst_dtype), af.zeros(1001, dtype=dst_dtype, device="cuda")
        call("copy_", [d_cpu, s_cpu])
        call("copy_", [d_gpu, s_gpu])
        assert np.array_equal(d_gpu.cpu().numpy(), d_cpu.numpy())


@pytest.mark.parametrize("op,a,b", [("uniform_", -2.0, 3.0), ("normal_", 0.5, 2.0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_draws_equal_the_cpu_streams(op, a, b, dtype):
    t, g = af.zeros(4099, dtype=dtype), af.zeros(4099, dtype=dtype, device="cuda")
    call(op, [t], (1234, 7), (a, b))
    call(op, [g], (1234, 7), (a, b))
    np.testing.assert_allclose(g.cpu().numpy(), t.numpy(), rtol=RTOL, atol=1e-6)


def test_add_and_nonfinite_index():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(3000).astype(np.float32), rng.standard_normal(3000).astype(np.float32)
    (xc, xg), (yc, yg) = cpu_and_cuda(x), cpu_and_cuda(y)
    call("add_", [xc, yc])
    call("add_", [xg, yg])
    np.testing.assert_allclose(xg.cpu().numpy(), xc.numpy(), rtol=RTOL)
    assert call("nonfinite_index", [xg]).cpu().numpy()[0] == -1
    x[2500], x[1700] = np.inf, np.nan
    assert call("nonfinite_index", [af.tensor(x).cuda()]).cpu().numpy()[0] == 1700


def test_module_to_cuda_moves_parameters_in_place():
    net = af.nn.Linear(4, 3)
    weight = net.weight
    before = weight.detach().numpy().copy()
    assert net.cuda() is net
    assert net.weight is weight and weight.device == "cuda:0" and weight.requires_grad
    assert np.array_equal(weight.cpu().numpy(), before)
    net.to("cpu")
    assert weight.device == "cpu"


def test_caching_allocator_reuses_blocks_and_empties():
    af.cuda.synchronize()
    t = af.zeros(1 << 20, device="cuda")
    stats = af.cuda.memory_stats()
    assert stats["allocated_bytes"] >= 4 << 20
    del t
    hits = af.cuda.memory_stats()["num_cache_hits"]
    t = af.zeros(1 << 20, device="cuda")
    if stats["caching"]:
        assert af.cuda.memory_stats()["num_cache_hits"] == hits + 1
    del t
    af.cuda.empty_cache()
    assert af.cuda.memory_stats()["reserved_bytes"] == af.cuda.memory_stats()["allocated_bytes"]


def test_out_of_memory_raises_and_the_next_call_works():
    with pytest.raises(af.OutOfMemoryError, match="out of memory"):
        af.empty(1 << 46, dtype="float32", device="cuda")  # 256 TiB
    assert af.cuda.memory_stats()["num_ooms"] >= 1
    t = af.ones(10, device="cuda")
    assert np.array_equal(t.cpu().numpy(), np.ones(10, np.float32))
