"""elementwise.c: unary maps and broadcasting binary ops against NumPy, and float64 gradchecks."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


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



def _softplus(beta, threshold):
    return lambda x: np.where(x * beta > threshold, x, np.log1p(np.exp(beta * x)) / beta)


# Activations with kinks or attributes: (op, NumPy reference, ints, floats, kinks). Inputs span
# [-6, 6] so every piece of hardswish/hardsigmoid is hit; the gradchecks keep 0.05 from the kinks.
ACTIVATIONS = [
    ("abs", np.abs, (), (), (0.0,)),
    ("clamp", lambda x: np.clip(x, -0.5, 0.7), (1, 1), (-0.5, 0.7), (-0.5, 0.7)),
    ("clamp", lambda x: np.maximum(x, -0.25), (1, 0), (-0.25, 0.0), (-0.25,)),
    ("clamp", lambda x: np.minimum(x, 1.5), (0, 1), (0.0, 1.5), (1.5,)),
    ("softplus", _softplus(1.0, 20.0), (), (1.0, 20.0), ()),
    ("softplus", _softplus(2.0, 1.0), (), (2.0, 1.0), (0.5,)),  # linear above x = threshold / beta
    ("softplus", _softplus(-0.5, 20.0), (), (-0.5, 20.0), ()),
    ("log_sigmoid", lambda x: -np.logaddexp(0, -x), (), (), ()),
    ("hardswish", lambda x: x * np.clip(x + 3, 0, 6) / 6, (), (), (-3.0, 3.0)),
    ("hardsigmoid", lambda x: np.clip(x + 3, 0, 6) / 6, (), (), (-3.0, 3.0)),
]
ACTIVATION_IDS = [f"{a[0]}-{k}" for k, a in enumerate(ACTIVATIONS)]



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


BROADCAST_CASES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1, 3), (5, 1)), ((1,), (2, 2)), ((2, 1, 3, 1, 2), (3, 4, 1)), ((), (3,)),
                   # the model shapes whose dims coalesce: squeeze-excitation's per-(sample, channel) scale
                   # (rows of 35 values: two 16-lane blocks and a tail), a bias, drop-path's per-sample mask
                   ((2, 3, 5, 7), (2, 3, 1, 1)), ((2, 3, 1, 1), (2, 3, 5, 7)), ((2, 3, 4, 5), (3, 1, 1)),
                   ((2, 3, 4, 5), (2, 1, 1, 1)), ((1, 3, 1), (2, 3, 18))]


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


def test_broadcast_binary_thread_invariant(rng):
    """The coalesced broadcast paths, large enough to run on several threads: each gradient element
    of a broadcast side is summed by one thread."""
    x = rng.standard_normal((8, 24, 17, 19)).astype(np.float32)
    others = [rng.standard_normal((8, 24, 1, 1)), rng.standard_normal((24, 1, 1)) + 3.0,
              rng.standard_normal((8, 1, 1, 1)) + 3.0, rng.standard_normal((1, 24, 17, 1))]
    for op in ("add", "sub", "mul", "div", "maximum"):
        for o in others:
            assert_thread_invariant(lambda p, q: call(op, [p, q]), [x, o.astype(np.float32)], name=f"{op} {o.shape}")


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


def _away_from(x, kinks, margin=0.05):
    for k in kinks:
        x = np.where(np.abs(x - k) < margin, k + 2 * margin, x)
    return x


def _marked(cases, ids, marker):
    return [pytest.param(*c, id=i, marks=getattr(pytest.mark, marker)(c[0])) for c, i in zip(cases, ids)]


@pytest.mark.parametrize("op,ref,ints,floats,kinks", _marked(ACTIVATIONS, ACTIVATION_IDS, "reference"))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(101,), (3, 1, 5), (1,), (0, 2)])
def test_activation_matches_numpy(op, ref, ints, floats, kinks, dtype, shape, rng):
    x = (rng.uniform(-6, 6, shape)).astype(dtype)
    y = call(op, [af.tensor(x)], ints, floats)
    assert y.dtype == dtype and y.shape == shape
    tol = 1e-6 if dtype == "float32" else 1e-13
    assert_close(y, ref(x.astype(np.float64)).astype(dtype), rtol=tol, atol=tol)


@pytest.mark.parametrize("op,ref,ints,floats,kinks", _marked(ACTIVATIONS, ACTIVATION_IDS, "gradcheck"))
def test_activation_gradcheck(op, ref, ints, floats, kinks, rng):
    x = _away_from(rng.uniform(-5, 5, (4, 6)), kinks)
    gradcheck(lambda t: call(op, [t], ints, floats), [t64(x)])


@pytest.mark.reference("hardswish")
@pytest.mark.reference("hardsigmoid")
@pytest.mark.reference("clamp")
@pytest.mark.reference("abs")
def test_gradients_at_kinks_follow_torch():
    """At the kinks, the one-sided choices torch's backward formulas make (values from torch 2.15)."""
    x = t64([-3.0, 3.0, 0.0])
    for op, ints, floats, want in [("hardswish", (), (), [0, 1, 0.5]), ("hardsigmoid", (), (), [0, 0, 1 / 6]),
                                   ("abs", (), (), [-1, 1, 0]), ("clamp", (1, 1), (-3.0, 3.0), [0, 0, 1]),
                                   ("clamp", (1, 0), (-3.0, 0.0), [0, 1, 1]), ("clamp", (0, 1), (0.0, 3.0), [1, 0, 1]),
                                   ("clamp", (1, 1), (3.0, -3.0), [0, 0, 0])]:
        x.grad = None
        call(op, [x], ints, floats).sum().backward()
        assert_close(x.grad, np.array(want, dtype=np.float64), rtol=1e-15, atol=1e-15, name=op)


def test_clamp_edge_values():
    x = af.tensor(np.array([np.nan, -np.inf, np.inf, 0.5]))
    out = call("clamp", [x], (1, 1), (-1.0, 1.0)).numpy()
    assert np.isnan(out[0]) and out[1:].tolist() == [-1.0, 1.0, 0.5]
    # min > max gives max everywhere, as torch.clamp
    assert call("clamp", [x], (1, 1), (2.0, 1.0)).numpy()[1:].tolist() == [1.0, 1.0, 1.0]


def test_log_sigmoid_and_softplus_are_stable():
    x = af.tensor(np.array([-800.0, 800.0, -40.0]), dtype="float64")
    assert_close(call("log_sigmoid", [x]), np.array([-800.0, 0.0, -40.0 - np.log1p(np.exp(-40.0))]), rtol=1e-15, atol=0)
    assert_close(call("softplus", [x], (), (1.0, 1000.0)), np.array([0.0, np.inf, np.exp(-40.0)]), rtol=1e-15, atol=0)


MAXIMUM_CASES = [((2, 3), (2, 3)), ((4, 1, 3), (5, 1)), ((), (3,)), ((2, 1, 3, 1, 2), (3, 4, 1))]


@pytest.mark.reference("maximum")
@pytest.mark.parametrize("sa,sb", MAXIMUM_CASES)
def test_maximum_matches_numpy(sa, sb, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    assert_close(call("maximum", [t64(a, False), t64(b, False)]), np.maximum(a, b), rtol=0, atol=0)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    assert_close(call("maximum", [af.tensor(a32), af.tensor(b32)]), np.maximum(a32, b32), rtol=0, atol=0)


@pytest.mark.reference("maximum")
def test_maximum_nan_and_ties():
    a = t64([np.nan, 1.0, 2.0, 5.0])
    b = t64([0.0, np.nan, 2.0, 4.0])
    out = call("maximum", [a, b])
    got = out.numpy()
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2:].tolist() == [2.0, 5.0]
    call("maximum", [a, b]).sum().backward()
    # torch.maximum: a tie gives half of the gradient to each side
    assert a.grad.numpy()[2:].tolist() == [0.5, 1.0] and b.grad.numpy()[2:].tolist() == [0.5, 0.0]


@pytest.mark.gradcheck("maximum")
@pytest.mark.parametrize("sa,sb", MAXIMUM_CASES)
def test_maximum_gradcheck(sa, sb, rng):
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    b = np.where(np.abs(np.broadcast_to(b, np.broadcast_shapes(sa, sb)) - a).min() < 0.01, b + 0.5, b)
    gradcheck(lambda x, y: call("maximum", [x, y]), [t64(a), t64(b)])


WHERE_CASES = [((2, 3), (2, 3), (2, 3)), ((3,), (2, 3), ()), ((2, 1, 4), (3, 1), (4,)), ((1, 2, 1, 3, 1), (2, 1, 2), (1,))]


@pytest.mark.reference("where")
@pytest.mark.parametrize("sc,sx,sy", WHERE_CASES)
@pytest.mark.parametrize("cond_dtype", ["bool", "uint8"])
def test_where_matches_numpy(sc, sx, sy, cond_dtype, rng):
    cond = rng.random(sc) < 0.5
    x, y = rng.standard_normal(sx), rng.standard_normal(sy)
    out = call("where", [af.tensor(cond.astype(cond_dtype)), t64(x, False), t64(y, False)])
    assert_close(out, np.where(cond, x, y), rtol=0, atol=0)
    out32 = call("where", [af.tensor(cond.astype(cond_dtype)), af.tensor(x.astype(np.float32)),
                           af.tensor(y.astype(np.float32))])
    assert out32.dtype == "float32"
    assert_close(out32, np.where(cond, x, y).astype(np.float32), rtol=0, atol=0)


@pytest.mark.gradcheck("where")
@pytest.mark.parametrize("sc,sx,sy", WHERE_CASES)
def test_where_gradcheck(sc, sx, sy, rng):
    cond = af.tensor(rng.random(sc) < 0.5)
    gradcheck(lambda x, y: call("where", [cond, x, y]), [t64(rng.standard_normal(sx)), t64(rng.standard_normal(sy))])


def test_new_elementwise_thread_invariant(rng):
    x = rng.uniform(-6, 6, (64, 257)).astype(np.float32)
    for op, _, ints, floats, _ in ACTIVATIONS:
        assert_thread_invariant(lambda t: call(op, [t], ints, floats), [x], name=op)
    a, b = rng.standard_normal((64, 1, 700)).astype(np.float32), rng.standard_normal((5, 700)).astype(np.float32)
    assert_thread_invariant(lambda p, q: call("maximum", [p, q]), [a, b], name="maximum")
    cond = rng.random((64, 5, 1)) < 0.5
    assert_thread_invariant(lambda p, q: call("where", [af.tensor(cond), p, q]), [a, b], name="where")
    assert_thread_invariant(lambda p, q: call("where", [af.tensor(cond), p, q]), [b[None] * a, a], name="where")


def test_new_elementwise_rejects_bad_input():
    f32 = af.zeros(3)
    with pytest.raises(ValueError, match="clamp: at least one of 'min' or 'max'"):
        call("clamp", [f32], (0, 0), (0.0, 0.0))
    with pytest.raises(ValueError, match=r"clamp: attributes \(has_min, has_max\) must be 0 or 1, got \(2, 0\)"):
        call("clamp", [f32], (2, 0), (0.0, 0.0))
    with pytest.raises(ValueError, match="softplus: argument 'beta' must be finite and non-zero, got 0"):
        call("softplus", [f32], (), (0.0, 20.0))
    with pytest.raises(ValueError, match="softplus takes 0 integer and 2 float"):
        call("softplus", [f32], (), (1.0,))
    with pytest.raises(TypeError, match="where: argument 'condition' must be bool or uint8, got float32"):
        call("where", [f32, f32, f32])
    with pytest.raises(TypeError, match="'other' is float64"):
        call("where", [af.zeros(3, dtype="bool"), f32, af.zeros(3, dtype="float64")])
    with pytest.raises(ValueError, match=r"where: shapes \(2,\) \(condition\), \(3,\) \(input\) and \(3,\) \(other\) cannot"):
        call("where", [af.zeros(2, dtype="bool"), f32, f32])
    with pytest.raises(ValueError, match="where takes 3 tensors"):
        call("where", [af.zeros(3, dtype="bool"), f32])
    with pytest.raises(TypeError, match="'other' is float64"):
        call("maximum", [f32, af.zeros(3, dtype="float64")])
    with pytest.raises(TypeError, match="clamp: argument 'min' must be a number or None"):
        f32.clamp(min="a")


def test_python_api_of_new_elementwise(rng):
    import affectfer.nn as nn
    import affectfer.nn.functional as F

    x = rng.uniform(-5, 5, (3, 4)).astype(np.float32)
    t = af.tensor(x)
    assert_close(t.abs(), np.abs(x))
    assert_close(F.clamp(t, max=0.5), np.minimum(x, 0.5))
    assert_close(t.clip(-1, 1), np.clip(x, -1, 1))
    assert_close(F.maximum(t, af.tensor(x[0])), np.maximum(x, x[0]))
    assert_close(t.max(af.tensor(x[:, :1])), np.maximum(x, x[:, :1]))
    cond = af.tensor(x > 0)
    assert_close(F.where(cond, t, 0.0), np.where(x > 0, x, 0).astype(np.float32))
    assert_close(F.where(cond, -1, t), np.where(x > 0, -1, x).astype(np.float32))
    assert_close(t.where(cond, 2.0), np.where(x > 0, x, 2).astype(np.float32))
    assert_close(nn.Softplus(2.0, 3.0)(t), _softplus(2.0, 3.0)(x), rtol=1e-6, atol=1e-6)
    assert_close(nn.LogSigmoid()(t), -np.logaddexp(0, -x), rtol=1e-6, atol=1e-6)
    assert_close(nn.Hardswish()(t), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-6)
    assert_close(nn.Hardsigmoid()(t), np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-6)
    assert repr(nn.Softplus(2.0, 3.0)) == "Softplus(beta=2.0, threshold=3.0)"


def _float32_sweep():
    """Every regime of the float32 exp family: a dense grid over [-120, 100] (past both ends of expf's
    range), the subnormals, the largest and smallest normals, signed zeros, infinities and NaN."""
    tiny = np.finfo(np.float32).tiny
    sub = np.array([1, 2, 3, 1000, 2 ** 22, 2 ** 23 - 1], dtype=np.uint32).view(np.float32)
    special = np.array([0.0, -0.0, tiny, -tiny, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                        87.3365, 88.7228, 88.7229, -87.3365, -103.97, -103.98, np.inf, -np.inf, np.nan],
                       dtype=np.float32)
    grid = np.linspace(-120, 100, 200_001, dtype=np.float32)
    return np.concatenate([grid, sub, -sub, special, np.nextafter(grid[::97], np.float32(np.inf))])


def _spacing32(want):
    """the float32 spacing at float64 values (the smallest subnormal's at least)"""
    with np.errstate(over="ignore"):
        return np.maximum(np.spacing(np.abs(want.astype(np.float32))).astype(np.float64), 2.0 ** -149)


def _ulp_error(got, want):
    """|got - want| in units of the float32 spacing at want"""
    with np.errstate(over="ignore"):
        w32 = want.astype(np.float32)
    spacing = _spacing32(want)
    same = (got.astype(np.float64) == w32.astype(np.float64)) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        return np.where(same, 0.0, np.abs(got.astype(np.float64) - want) / spacing)


def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


# op -> (float64 reference of f, of f', ulps allowed on f); the float32 kernels go through af_expf.
# gelu's 1 + erf(z) cancels near z = -1 (0.18 left of 1, an ulp of 1 is 8 of gelu's), as torch's does
EXP_FAMILY = {
    "exp": (np.exp, np.exp, 2),
    "sigmoid": (_sigmoid64, lambda x: _sigmoid64(x) * _sigmoid64(-x), 3),
    "silu": (lambda x: x * _sigmoid64(x), lambda x: _sigmoid64(x) * (1 + x * _sigmoid64(-x)), 4),
    "gelu": (lambda x: 0.5 * x * _erfc(-x / np.sqrt(2)),
             lambda x: 0.5 * _erfc(-x / np.sqrt(2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi), 10),
}


@pytest.mark.reference("exp", "sigmoid", "silu", "gelu")
@pytest.mark.parametrize("op", sorted(EXP_FAMILY))
def test_float32_exp_family_sweeps_the_range(op):
    """float32 within a few ulp of the float64 reference everywhere; for silu and gelu the product
    with x also scales the CDF's own rounding in the subnormal range (|x| * 2^-149 on top)."""
    ref, dref, ulps = EXP_FAMILY[op]
    x = _float32_sweep()
    with np.errstate(over="ignore", invalid="ignore"):
        want = ref(x.astype(np.float64))
    ints = (0,) if op == "gelu" else ()
    got = call(op, [af.tensor(x)], ints).numpy()
    err = _ulp_error(got, want)
    if op in ("silu", "gelu"):
        err = np.where(np.isfinite(x), err - np.abs(x) * 2.0 ** -149 / _spacing32(want), err)
    worst = int(np.argmax(np.nan_to_num(err, nan=np.inf)))
    assert err[worst] <= ulps, f"{op}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r} ({err[worst]:.2f} ulp)"
    # the gradient through the tape: dy = 1, finite inputs (inf * 0 forms have no useful reference).
    # sigmoid's y (1 - y), torch's formula, cancels where y is near 1: absolute accuracy ulp(1)
    finite = x[np.isfinite(x) & (np.abs(x) < 1e30)]
    t = af.tensor(finite, requires_grad=True)
    call(op, [t], ints).sum().backward()
    with np.errstate(over="ignore", invalid="ignore"):
        dwant = dref(finite.astype(np.float64)).astype(np.float32)
    assert_close(t.grad, dwant, rtol=4 * 2.0 ** -24, atol=2.0 ** -23, name=f"d{op}")


def test_exp_family_thread_invariant(rng):
    x = (rng.standard_normal((64, 257)) * 30).astype(np.float32)
    for op in ("exp", "sigmoid", "silu", "gelu"):
        assert_thread_invariant(lambda t: call(op, [t], (0,) if op == "gelu" else ()), [x], name=op)
