"""elementwise.c: unary maps and broadcasting binary ops against NumPy, and float64 gradchecks."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck
from tests.conftest import call, t64

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# op -> (NumPy reference, ints, floats, input domain)
UNARY = {
    "neg": (lambda x: -x, (), (), "any"),
    "exp": (np.exp, (), (), "any"),
    "log": (np.log, (), (), "positive"),
    "sqrt": (np.sqrt, (), (), "positive"),
    "relu": (lambda x: np.maximum(x, 0), (), (), "nonzero"),
    "sigmoid": (_sigmoid, (), (), "any"),
    "tanh": (np.tanh, (), (), "any"),
    "silu": (lambda x: x * _sigmoid(x), (), (), "any"),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / np.sqrt(2))), (0,), (), "any"),
    "scale": (lambda x: 2.5 * x, (), (2.5,), "any"),
    "add_scalar": (lambda x: x - 1.25, (), (-1.25,), "any"),
    "pow_scalar": (lambda x: x ** 1.7, (), (1.7,), "positive"),
}
BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}
GELU_TANH = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _input(rng, shape, domain):
    x = rng.standard_normal(shape)
    if domain == "positive":
        x = np.abs(x) + 0.2
    elif domain == "nonzero":  # keep away from relu's kink for finite differences
        x = np.where(np.abs(x) < 0.05, 0.3, x)
    return x


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", sorted(UNARY))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 5), (1,), (0, 4)])
def test_unary_matches_numpy(op, dtype, shape, rng):
    ref, ints, floats, domain = UNARY[op]
    x = _input(rng, shape, domain).astype(dtype)
    y = call(op, [af.tensor(x)], ints, floats)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, ref(x.astype(np.float64)).astype(dtype), rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6 if dtype == "float32" else 1e-12)


def test_gelu_tanh_approximation(rng):
    x = rng.standard_normal(50)
    assert_close(call("gelu", [af.tensor(x, dtype="float64")], (1,)), GELU_TANH(x), rtol=1e-12, atol=1e-12)
    gradcheck(lambda t: call("gelu", [t], (1,)), [t64(x[:10])])


@pytest.mark.gradcheck(param="op")
@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_gradcheck(op, rng):
    _, ints, floats, domain = UNARY[op]
    gradcheck(lambda t: call(op, [t], ints, floats), [t64(_input(rng, (3, 4), domain))])


BROADCAST_CASES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (5, 1)), ((1,), (2, 2)), ((2, 1, 3, 1, 2), (3, 4, 1)), ((), (3,))]


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST_CASES)
def test_binary_broadcast_matches_numpy(op, sa, sb, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb) + 3.0
    out = call(op, [af.tensor(a, dtype="float64"), af.tensor(b, dtype="float64")])
    assert_close(out, BINARY[op](a, b), rtol=1e-12, atol=1e-12)
    out32 = call(op, [af.tensor(a, dtype="float32"), af.tensor(b, dtype="float32")])
    assert_close(out32, BINARY[op](a.astype(np.float32), b.astype(np.float32)))


@pytest.mark.gradcheck(param="op")
@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("sa,sb", BROADCAST_CASES)
def test_binary_gradcheck(op, sa, sb, rng):
    a, b = t64(rng.standard_normal(sa)), t64(rng.standard_normal(sb) + 3.0)
    gradcheck(lambda x, y: call(op, [x, y]), [a, b])


def test_binary_rejects_bad_input():
    f32, f64 = af.zeros(3), af.zeros(3, dtype="float64")
    with pytest.raises(TypeError, match="'other' is float64"):
        call("add", [f32, f64])
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\) cannot be broadcast"):
        call("mul", [f32, af.zeros(2)])
    with pytest.raises(TypeError, match="'input' must be float32 or float64, got uint8"):
        call("add", [af.zeros(3, dtype="uint8"), f32])
    with pytest.raises(TypeError, match="must be an affectfer.Tensor"):
        call("add", [f32, np.zeros(3)])
    with pytest.raises(ValueError, match="takes 0 integer"):
        call("relu", [f32], (1,))


def test_operators_and_scalars(rng):
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) + 3
    ta, tb = af.tensor(a), af.tensor(b)
    assert_close(ta + tb * 2 - 1, a + b * 2 - 1)
    assert_close(2 / tb, 2 / b)
    assert_close(1 - ta, 1 - a)
    assert_close(-ta / tb, -a / b)
    assert_close(tb ** 2, b ** 2)
