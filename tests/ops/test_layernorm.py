"""layernorm.c: layer_norm over the last k dims against NumPy and torch, float64 gradchecks, bad
input, thread-count determinism."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


def layer_norm(x, k, weight=None, bias=None, eps=1e-5):
    return call("layer_norm", [x, weight, bias], (k,), (eps,))


def ref_layer_norm(x, k, w, b, eps):
    x = x.astype(np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


CASES = [((5,), 1), ((3, 7), 1), ((2, 3, 4), 2), ((1, 4, 5), 1), ((2, 3, 2, 3), 3), ((4, 130), 1), ((2, 2, 3), 3)]


@pytest.mark.reference("layer_norm")
@pytest.mark.parametrize("shape,k", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_matches_numpy(shape, k, dtype, affine, rng):
    x = (rng.standard_normal(shape) * 3 - 1).astype(dtype)
    norm = shape[len(shape) - k:]
    w = (rng.standard_normal(norm) + 1).astype(dtype) if affine in ("both", "weight") else None
    b = rng.standard_normal(norm).astype(dtype) if affine in ("both", "bias") else None
    t = lambda a: None if a is None else af.tensor(a)
    y = layer_norm(af.tensor(x), k, t(w), t(b), 1e-3)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, ref_layer_norm(x, k, w, b, 1e-3), **tol)


@pytest.mark.gradcheck("layer_norm")
@pytest.mark.parametrize("shape,k", [((3, 4), 1), ((2, 2, 3), 2), ((5,), 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck(shape, k, affine, rng):
    x = t64(rng.standard_normal(shape))
    norm = shape[len(shape) - k:]
    if affine:
        w, b = t64(rng.standard_normal(norm) + 1), t64(rng.standard_normal(norm))
        gradcheck(lambda x, w, b: layer_norm(x, k, w, b), [x, w, b])
    else:
        gradcheck(lambda x: layer_norm(x, k), [x])


def test_gradcheck_weight_only_wide(rng):
    """More columns than one backward column block (64), weight without bias, x not requiring grad."""
    x = af.tensor(rng.standard_normal((3, 70)), dtype="float64")
    w = t64(rng.standard_normal(70))
    gradcheck(lambda w: layer_norm(x, 1, w), [w])


@pytest.mark.parametrize("case", reference.cases("layernorm"))
def test_matches_torch(case):
    d = reference.case("layernorm", case)
    ax, aw, ab = t64(d["x"]), t64(d["w"]), t64(d["b"])
    ay = layer_norm(ax, int(d["k"]), aw, ab, 1e-6)
    ay.backward(af.tensor(d["g"], dtype="float64"))
    for name, a in [("y", ay), ("dx", ax.grad), ("dw", aw.grad), ("dbias", ab.grad)]:
        assert_close(a, d[name], rtol=1e-10, atol=1e-12, name=f"{name} {case}")


def test_empty_rows():
    assert layer_norm(af.zeros(0, 4), 1, af.ones(4)).shape == (0, 4)


def test_rejects_bad_input():
    x = af.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="'normalized_shape' must cover 1 to 3"):
        layer_norm(x, 4)
    with pytest.raises(ValueError, match="'normalized_shape'"):
        layer_norm(x, 0)
    with pytest.raises(ValueError, match=r"'weight' must have the normalized shape \(3, 4\), got \(4,\)"):
        layer_norm(x, 2, af.ones(4))
    with pytest.raises(ValueError, match=r"'bias' must have the normalized shape \(4,\)"):
        layer_norm(x, 1, None, af.ones(3))
    with pytest.raises(TypeError, match="'weight' is float64"):
        layer_norm(x, 1, af.ones(4, dtype="float64"))
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        layer_norm(af.zeros(2, 3, dtype="int32"), 1)
    with pytest.raises(ValueError, match="'eps'"):
        layer_norm(x, 1, eps=float("nan"))


def test_threads_bitwise_identical(rng):
    x = rng.standard_normal((64, 300)).astype(np.float32)
    w, b = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    assert_thread_invariant(lambda ax, aw, ab: layer_norm(ax, 1, aw, ab), [x, w, b], name="layer_norm")
