"""group_norm.c: against a NumPy reference, float64 gradchecks for input, weight and bias, thread
invariance, malformed arguments and nn.GroupNorm."""
import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64



def _ref(x, G, w=None, b=None, eps=1e-5):
    N, C = x.shape[:2]
    xg = x.reshape(N, G, -1)
    mean = xg.mean(-1, keepdims=True)
    var = xg.var(-1, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, C) + (1,) * (x.ndim - 2)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y


CASES = [((2, 6, 3, 4), 3), ((1, 4, 5), 2), ((3, 8), 8), ((2, 6, 2, 3), 1), ((1, 3, 1, 1), 3), ((2, 4, 1, 2, 3), 2)]


@pytest.mark.reference("group_norm")
@pytest.mark.parametrize("shape,G", CASES)
@pytest.mark.parametrize("affine", ["none", "weight", "both"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_group_norm_matches_numpy(shape, G, affine, dtype, rng):
    x = (rng.standard_normal(shape) * 2 + 1).astype(dtype)
    C = shape[1]
    w = rng.standard_normal(C).astype(dtype) if affine != "none" else None
    b = rng.standard_normal(C).astype(dtype) if affine == "both" else None
    out = call("group_norm", [af.tensor(x), None if w is None else af.tensor(w), None if b is None else af.tensor(b)],
               (G,), (1e-3,))
    ref = _ref(x.astype(np.float64), G, w, b, 1e-3)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(out, ref.astype(dtype), rtol=tol, atol=tol)


@pytest.mark.gradcheck("group_norm")
@pytest.mark.parametrize("shape,G", CASES[:4])
def test_group_norm_gradcheck(shape, G, rng):
    C = shape[1]
    x, w, b = t64(rng.standard_normal(shape)), t64(rng.standard_normal(C)), t64(rng.standard_normal(C))
    gradcheck(lambda *t: call("group_norm", list(t), (G,), (1e-5,)), [x, w, b])
    gradcheck(lambda t: call("group_norm", [t], (G,), (1e-5,)), [t64(rng.standard_normal(shape))])


def test_group_norm_thread_invariant(rng):
    x = rng.standard_normal((4, 32, 16, 16)).astype(np.float32)
    w, b = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    assert_thread_invariant(lambda *t: call("group_norm", list(t), (8,), (1e-5,)), [x, w, b], name="group_norm")


def test_group_norm_module(rng):
    m = nn.GroupNorm(2, 6)
    assert m.weight.shape == (6,) and m.bias.shape == (6,) and np.all(m.weight.numpy() == 1)
    assert repr(m) == "GroupNorm(2, 6, eps=1e-05, affine=True)"
    x = rng.standard_normal((2, 6, 3, 3)).astype(np.float32)
    assert_close(m(af.tensor(x)), _ref(x.astype(np.float64), 2).astype(np.float32), rtol=1e-5, atol=1e-5)
    assert nn.GroupNorm(3, 6, affine=False).weight is None
    assert_close(F.group_norm(af.tensor(x), 3, eps=0.1), _ref(x.astype(np.float64), 3, eps=0.1).astype(np.float32),
                 rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_channels \\(6\\) must be divisible by num_groups \\(4\\)"):
        nn.GroupNorm(4, 6)


def test_group_norm_bad_input():
    x = af.zeros(2, 6, 3)
    with pytest.raises(ValueError, match="group_norm: argument 'num_groups' must be >= 1 and divide the 6 channels, got 4"):
        call("group_norm", [x], (4,), (1e-5,))
    with pytest.raises(ValueError, match=r"group_norm: argument 'weight' must have shape \(6,\), got \(3,\)"):
        call("group_norm", [x, af.zeros(3)], (2,), (1e-5,))
    with pytest.raises(TypeError, match="'bias' is float64"):
        call("group_norm", [x, None, af.zeros(6, dtype="float64")], (2,), (1e-5,))
    with pytest.raises(ValueError, match="group_norm: argument 'eps' must be finite and >= 0, got -1"):
        call("group_norm", [x], (2,), (-1.0,))
    with pytest.raises(ValueError, match=r"group_norm: argument 'input' must be \(N, C, \*\), got shape \(6,\)"):
        call("group_norm", [af.zeros(6)], (2,), (1e-5,))
    with pytest.raises(TypeError, match="group_norm: argument 'num_groups' must be an int"):
        F.group_norm(x, 2.0)
