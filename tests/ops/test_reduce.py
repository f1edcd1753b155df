"""reduce.c: sum and mean over dims against NumPy (and torch when importable), float64 gradchecks,
determinism across thread counts, float32 accuracy."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests import reference
from tests.conftest import call, t64

OPS = {"sum": np.sum, "mean": np.mean}

# (shape, dims) with dims = None for all dims
CASES = [((7,), None), ((7,), (0,)), ((3, 5), (0,)), ((3, 5), (1,)), ((2, 3, 4), (0, 2)), ((2, 3, 4), (1,)),
         ((2, 1, 3, 5), (1, 2)), ((2, 3, 4, 5), (0, 2)), ((2, 3, 4, 5), (1, 3)), ((1, 2, 3, 2, 3), (0, 1, 3)),
         ((2, 3, 2, 3, 2), (0, 2, 4)), ((1, 3, 1), (0, 2)), ((4, 600), (0,)), ((), None), ((3, 1), (1,))]


def _ref(op, x, dims, keepdim):
    axis = None if dims is None else tuple(dims)
    return OPS[op](x, axis=axis, keepdims=keepdim)


def _run(op, t, dims, keepdim):
    return call(op, [t], (int(keepdim),) + (() if dims is None else tuple(dims)))


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("shape,dims", CASES)
@pytest.mark.parametrize("keepdim", [False, True])
def test_matches_numpy(op, shape, dims, keepdim, rng):
    x = rng.standard_normal(shape)
    out = _run(op, af.tensor(x, dtype="float64"), dims, keepdim)
    ref = _ref(op, x, dims, keepdim)
    assert out.shape == np.shape(ref)
    assert_close(out, np.asarray(ref), rtol=1e-12, atol=1e-12)
    out32 = _run(op, af.tensor(x, dtype="float32"), dims, keepdim)
    assert out32.dtype == "float32"
    assert_close(out32, np.asarray(ref).astype(np.float32), rtol=1e-6, atol=1e-6)


@pytest.mark.gradcheck(param="op")
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("shape,dims", [((2, 3, 4), (0, 2)), ((3, 4), None), ((2, 3, 2, 2), (1,)), ((4, 3), (0,)), ((), None)])
def test_gradcheck(op, shape, dims, rng):
    gradcheck(lambda t: _run(op, t, dims, False), [t64(rng.standard_normal(shape))])
    gradcheck(lambda t: _run(op, t, dims, True), [t64(rng.standard_normal(shape))])


def test_zero_size(rng):
    x = af.zeros(2, 0, 3)
    assert _run("sum", x, (1,), False).numpy().tolist() == [[0.0] * 3] * 2
    assert np.isnan(_run("mean", x, (1,), False).numpy()).all()
    assert _run("sum", x, (0,), True).shape == (1, 0, 3)
    assert _run("sum", x, None, False).item() == 0.0
    t = t64(np.zeros((0, 3)))
    _run("sum", t, (0,), False).sum().backward()
    assert t.grad.shape == (0, 3)


def test_float32_accuracy():
    # a float32 running sum of 2^24 + ones loses them all; double accumulation keeps them
    x = np.full(1 << 20, 0.1, dtype=np.float32)
    exact = float(np.sum(x.astype(np.float64)))
    assert abs(call("sum", [af.tensor(x)], (0,)).item() - exact) <= 1e-7 * exact
    cols = np.full((1 << 16, 4), 0.1, dtype=np.float32)
    got = call("sum", [af.tensor(cols)], (0, 0)).numpy()
    assert np.all(np.abs(got - exact / 16) <= 1e-7 * exact / 16)


@pytest.mark.parametrize("dims", [None, (0,), (1,), (0, 2)])
def test_threads_bitwise_identical(dims, rng):
    x = rng.standard_normal((64, 257, 9)).astype(np.float32)
    assert_thread_invariant(lambda t: _run("sum", t, dims, False), [x], name=f"sum dims={dims}")


def test_tensor_methods(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t = af.tensor(x)
    assert_close(t.sum(), np.sum(x, dtype=np.float64).astype(np.float32), rtol=1e-6, atol=1e-6)
    assert_close(t.mean(dim=-1), x.mean(-1), rtol=1e-6, atol=1e-6)
    assert_close(t.sum(dim=(0, 2), keepdim=True), x.sum((0, 2), keepdims=True), rtol=1e-6, atol=1e-6)


def test_bad_input():
    x = af.zeros(2, 3)
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        call("sum", [af.zeros(3, dtype="int64")], (0,))
    with pytest.raises(IndexError, match="'dim' 2 out of range"):
        call("sum", [x], (0, 2))
    with pytest.raises(ValueError, match="'dim' must be sorted and unique"):
        call("mean", [x], (0, 1, 0))
    with pytest.raises(ValueError, match="'keepdim' must be 0 or 1"):
        call("sum", [x], (5,))
    with pytest.raises(ValueError, match="takes integer attributes"):
        call("sum", [x])


@pytest.mark.parametrize("case", reference.cases("reduce"))
def test_matches_torch(case):
    d = reference.case("reduce", case)
    got = _run(d["op"], af.tensor(d["x"]), tuple(int(i) for i in d["dims"]), bool(d["keepdim"]))
    assert_close(got, d["y"], rtol=1e-5, atol=1e-6)
