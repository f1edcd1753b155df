"""linear.c: y = x W^T + b against NumPy (and torch), any leading dims, with and without bias,
float64 gradchecks for input, weight and bias, determinism across threads, errors."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests import reference
from tests.conftest import call, t64


SHAPES = [((5,), 3), ((1, 4), 2), ((3, 7), 5), ((2, 3, 4), 6), ((2, 1, 2, 3, 4), 3), ((0, 4), 3), ((3, 0), 2), ((3, 4), 0)]


@pytest.mark.reference("linear")
@pytest.mark.parametrize("xshape,out", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_numpy(xshape, out, bias, dtype, rng):
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((out, xshape[-1]))
    b = rng.standard_normal(out)
    inputs = [af.tensor(x, dtype=dtype), af.tensor(w, dtype=dtype)] + ([af.tensor(b, dtype=dtype)] if bias else [])
    y = call("linear", inputs)
    ref = x @ w.T + (b if bias else 0)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert y.dtype == dtype
    assert_close(y, ref.astype(dtype), rtol=tol, atol=tol)


def test_bias_none_entry(rng):
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    y = call("linear", [af.tensor(x, dtype="float64"), af.tensor(w, dtype="float64"), None])
    assert_close(y, x @ w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.gradcheck("linear")
@pytest.mark.parametrize("xshape", [(3,), (2, 3), (2, 2, 3)])
def test_gradcheck(xshape, rng):
    x, w, b = t64(rng.standard_normal(xshape)), t64(rng.standard_normal((4, 3))), t64(rng.standard_normal(4))
    gradcheck(lambda x_, w_, b_: call("linear", [x_, w_, b_]), [x, w, b])
    gradcheck(lambda x_, w_: call("linear", [x_, w_]), [x, w])


def test_threads_bitwise_identical(rng):
    x = rng.standard_normal((300, 40)).astype(np.float32)
    w = rng.standard_normal((520, 40)).astype(np.float32)
    b = rng.standard_normal(520).astype(np.float32)
    assert_thread_invariant(lambda *t: call("linear", list(t)), [x, w, b], name="linear")


def test_bad_input():
    x, w = af.zeros(2, 3), af.zeros(4, 3)
    with pytest.raises(ValueError, match=r"'input' of shape \(2, 5\) has 5 features but 'weight' of shape \(4, 3\)"):
        call("linear", [af.zeros(2, 5), w])
    with pytest.raises(ValueError, match=r"'bias' must have shape \(4,\)"):
        call("linear", [x, w, af.zeros(3)])
    with pytest.raises(ValueError, match="'weight' must be 2-D"):
        call("linear", [x, af.zeros(3)])
    with pytest.raises(TypeError, match="'weight' is float64"):
        call("linear", [x, af.zeros(4, 3, dtype="float64")])
    with pytest.raises(ValueError, match="'input' must be at least 1-D"):
        call("linear", [af.zeros(()), w])
    with pytest.raises(ValueError, match="linear takes"):
        call("linear", [x])


def test_matches_torch():
    d = reference.case("linear", "bias")
    ax, aw, ab = t64(d["x"]), t64(d["w"]), t64(d["b"])
    y = call("linear", [ax, aw, ab])
    y.backward(af.tensor(d["g"], dtype="float64"))
    assert_close(y, d["y"], rtol=1e-12, atol=1e-12)
    for name, mine in [("dx", ax), ("dw", aw), ("dbias", ab)]:
        assert_close(mine.grad, d[name], rtol=1e-12, atol=1e-12, name=name)
