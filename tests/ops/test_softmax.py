"""softmax.c: softmax and log_softmax over every dim against NumPy and torch, float64 gradchecks,
numerical stability, bad input, thread-count determinism."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


def ref_log_softmax(x, dim):
    x = x.astype(np.float64)
    m = x.max(axis=dim, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=dim, keepdims=True))


REFS = {"softmax": lambda x, dim: np.exp(ref_log_softmax(x, dim)), "log_softmax": ref_log_softmax}

CASES = [((7,), 0), ((3, 5), 0), ((3, 5), 1), ((2, 3, 4), 1), ((2, 3, 4), 2), ((1, 4, 1, 3), 1), ((2, 1, 3, 2, 2), 4),
         ((2, 3, 2, 2), 0), ((1,), 0)]


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", sorted(REFS))
@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_numpy(op, shape, dim, dtype, rng):
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = call(op, [af.tensor(x)], (dim,))
    assert y.dtype == dtype and y.shape == shape
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-14)
    assert_close(y, REFS[op](x, dim), **tol)


@pytest.mark.parametrize("op", sorted(REFS))
def test_large_logits_are_stable(op):
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1001.0]], dtype=np.float32)
    y = call(op, [af.tensor(x)], (1,))
    assert np.isfinite(y.numpy()).all()
    assert_close(y, REFS[op](x, 1).astype(np.float32))


@pytest.mark.parametrize("op", sorted(REFS))
def test_scalar_and_empty(op):
    assert_close(call(op, [af.tensor(np.array(2.5))], (0,)), np.array(1.0 if op == "softmax" else 0.0))
    assert call(op, [af.zeros(2, 0, 3)], (1,)).shape == (2, 0, 3)
    assert call(op, [af.zeros(0, 3)], (1,)).shape == (0, 3)


@pytest.mark.gradcheck(param="op")
@pytest.mark.parametrize("op", sorted(REFS))
@pytest.mark.parametrize("shape,dim", [((4,), 0), ((3, 4), 1), ((2, 3, 2), 1), ((3, 2, 2), 0)])
def test_gradcheck(op, shape, dim, rng):
    gradcheck(lambda x: call(op, [x], (dim,)), [t64(rng.standard_normal(shape))])


@pytest.mark.parametrize("case", reference.cases("softmax"))
def test_matches_torch(case):
    d = reference.case("softmax", case)
    ax = t64(d["x"])
    ay = call(d["op"], [ax], (int(d["dim"]),))
    ay.backward(af.tensor(d["g"], dtype="float64"))
    assert_close(ay, d["y"], rtol=1e-12, atol=1e-14, name=f"{case} y")
    assert_close(ax.grad, d["dx"], rtol=1e-10, atol=1e-13, name=f"{case} dx")


@pytest.mark.parametrize("op", sorted(REFS))
def test_rejects_bad_input(op):
    with pytest.raises(IndexError, match=r"'dim' must be in \[0, 2\)"):
        call(op, [af.zeros(2, 3)], (2,))
    with pytest.raises(IndexError, match="'dim'"):
        call(op, [af.zeros(2, 3)], (-1,))
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        call(op, [af.zeros(2, 3, dtype="int64")], (1,))
    with pytest.raises(ValueError, match="takes 1 integer"):
        call(op, [af.zeros(2, 3)])


@pytest.mark.parametrize("op", sorted(REFS))
def test_threads_bitwise_identical(op, rng):
    x = rng.standard_normal((64, 10, 9)).astype(np.float32)
    assert_thread_invariant(lambda t: call(op, [t], (1,)), [x], name=op)
