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
# ---- var, std: ints (keepdim, dims...), floats (correction,) ----
VAR_OPS = {"var": np.var, "std": np.std}


def _run_var(op, t, dims, keepdim, correction):
    return call(op, [t], (int(keepdim),) + (() if dims is None else tuple(dims)), (float(correction),))


@pytest.mark.parametrize("op", [pytest.param(o, marks=pytest.mark.reference(o)) for o in sorted(VAR_OPS)])
@pytest.mark.parametrize("shape,dims", CASES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("correction", [0, 1, 0.5])
def test_var_matches_numpy(op, shape, dims, keepdim, correction, rng):
    x = rng.standard_normal(shape) + 3.0
    axis = None if dims is None else tuple(dims)
    n = x.size if axis is None else int(np.prod([shape[d] for d in axis]))
    with np.errstate(divide="ignore", invalid="ignore"):  # n <= correction: m2 / 0, inf or NaN as torch
        ref = np.asarray(VAR_OPS[op](x, axis=axis, keepdims=keepdim, ddof=correction) if n > correction else
                         np.var(x, axis=axis, keepdims=keepdim) * n / 0.0)
    out = _run_var(op, af.tensor(x, dtype="float64"), dims, keepdim, correction)
    assert out.shape == ref.shape
    assert_close(out, ref, rtol=1e-12, atol=1e-12)
    out32 = _run_var(op, af.tensor(x, dtype="float32"), dims, keepdim, correction)
    assert_close(out32, ref.astype(np.float32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", [pytest.param(o, marks=pytest.mark.gradcheck(o)) for o in sorted(VAR_OPS)])
@pytest.mark.parametrize("shape,dims", [((2, 3, 4), (0, 2)), ((3, 4), None), ((2, 3, 2, 2), (1,)), ((4, 3), (0,))])
@pytest.mark.parametrize("correction", [0, 1])
def test_var_gradcheck(op, shape, dims, correction, rng):
    gradcheck(lambda t: _run_var(op, t, dims, False, correction), [t64(rng.standard_normal(shape))])
    gradcheck(lambda t: _run_var(op, t, dims, True, correction), [t64(rng.standard_normal(shape))])


def test_var_degenerate_cases():
    # torch: a divisor n - correction <= 0 gives inf (or NaN for 0/0); std of a constant has gradient 0
    x = t64([1.0, 2.0, 4.0])
    assert _run_var("std", x, None, False, 3).item() == np.inf
    assert np.isnan(_run_var("var", af.zeros(0, 3), (0,), False, 1).numpy()).all()
    c = t64(np.ones(3))
    _run_var("std", c, None, False, 1).backward()
    assert c.grad.numpy().tolist() == [0.0, 0.0, 0.0]


def test_var_accuracy_with_a_large_mean():
    # the two-pass form keeps float32 accurate where E[x^2] - E[x]^2 would cancel
    x = (np.float32(1e4) + np.random.default_rng(0).standard_normal(4096).astype(np.float32))
    got = _run_var("var", af.tensor(x), None, False, 1).item()
    assert abs(got - np.var(x.astype(np.float64), ddof=1)) < 1e-5


# ---- max, argmax: ints (dim, keepdim) ----
MAX_CASES = [((7,), 0), ((3, 5), 0), ((3, 5), 1), ((2, 3, 4), 1), ((2, 1, 3, 5), 3), ((1, 2, 3, 2, 3), 2), ((), 0)]


@pytest.mark.reference("max")
@pytest.mark.reference("argmax")
@pytest.mark.parametrize("shape,dim", MAX_CASES)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_matches_numpy(shape, dim, keepdim, dtype, rng):
    x = rng.integers(0, 4, shape).astype(dtype)  # small integers: ties, where the first index must win
    values, indices = call("max", [af.tensor(x)], (dim, int(keepdim)))
    ref_i = np.argmax(x, axis=dim if x.ndim else None)
    ref_v = np.max(x, axis=dim if x.ndim else None)
    if keepdim and x.ndim:
        ref_i, ref_v = np.expand_dims(ref_i, dim), np.expand_dims(ref_v, dim)
    assert values.dtype == dtype and indices.dtype == "int64"
    assert_close(values, np.asarray(ref_v), rtol=0, atol=0)
    assert_close(indices, np.asarray(ref_i), rtol=0, atol=0)
    assert_close(call("argmax", [af.tensor(x)], (dim, int(keepdim))), np.asarray(ref_i), rtol=0, atol=0)


@pytest.mark.reference("max")
@pytest.mark.reference("argmax")
def test_max_nan_wins_first():
    x = af.tensor(np.array([[1.0, np.nan, 3.0, np.nan], [0.0, 2.0, 2.0, -1.0]]))
    values, indices = call("max", [x], (1, 0))
    assert np.isnan(values.numpy()[0]) and values.numpy()[1] == 2.0
    assert indices.numpy().tolist() == [1, 1]
    assert call("argmax", [x], (1, 0)).numpy().tolist() == [1, 1]


@pytest.mark.gradcheck("max")
@pytest.mark.parametrize("shape,dim", MAX_CASES)
def test_max_gradcheck(shape, dim, rng):
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1  # distinct values: max is smooth there
    gradcheck(lambda t: call("max", [t], (dim, 0))[0], [t64(x)])
    gradcheck(lambda t: call("max", [t], (dim, 1))[0], [t64(x)])


def test_max_gradient_goes_to_the_first_maximum():
    x = t64([[2.0, 5.0, 5.0], [1.0, 1.0, 1.0]])
    values, indices = call("max", [x], (1, 0))
    assert not indices.requires_grad and values.requires_grad
    values.sum().backward()
    assert x.grad.numpy().tolist() == [[0, 1, 0], [1, 0, 0]]


def test_var_max_thread_invariant(rng):
    x = rng.standard_normal((64, 129, 9)).astype(np.float32)
    for dims in [(1,), (0, 2), (2,)]:
        for op in VAR_OPS:
            assert_thread_invariant(lambda t: _run_var(op, t, dims, False, 1), [x], name=f"{op} {dims}")
    for dim in (0, 1, 2):
        assert_thread_invariant(lambda t: call("max", [t], (dim, 0)), [x], name=f"max {dim}")
        assert_thread_invariant(lambda t: call("argmax", [t], (dim, 0)), [x], name=f"argmax {dim}")


def test_var_max_bad_input():
    x = af.zeros(2, 3)
    with pytest.raises(ValueError, match="var takes integer attributes .* and one float"):
        call("var", [x], (0,))
    with pytest.raises(ValueError, match="std: argument 'correction' must be finite, got inf"):
        call("std", [x], (0,), (float("inf"),))
    with pytest.raises(IndexError, match="max: argument 'dim' 2 out of range for a 2-D input"):
        call("max", [x], (2, 0))
    with pytest.raises(ValueError, match="argmax: argument 'keepdim' must be 0 or 1, got 3"):
        call("argmax", [x], (0, 3))
    with pytest.raises(ValueError, match="max: argument 'dim' 1 has size 0"):
        call("max", [af.zeros(2, 0)], (1, 0))
    with pytest.raises(TypeError, match="argmax: argument 'input' must be float32 or float64, got int64"):
        call("argmax", [af.zeros(3, dtype="int64")], (0, 0))
    with pytest.raises(IndexError, match="argument 'dim' -3 out of range"):
        x.max(-3)
    with pytest.raises(ValueError, match="either 'unbiased' or 'correction'"):
        x.var(0, unbiased=True, correction=1)


def test_var_max_tensor_methods(rng):
    import affectfer.nn.functional as F

    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t = af.tensor(x)
    assert_close(t.var(), np.var(x.astype(np.float64), ddof=1).astype(np.float32), rtol=1e-5, atol=1e-6)
    assert_close(t.var(False), np.var(x.astype(np.float64)).astype(np.float32), rtol=1e-5, atol=1e-6)
    assert_close(F.std(t, dim=(0, -1), keepdim=True), np.std(x, axis=(0, 2), ddof=1, keepdims=True), rtol=1e-5,
                 atol=1e-6)
    assert_close(t.std(1, correction=0), np.std(x, axis=1), rtol=1e-5, atol=1e-6)
    assert_close(t.var(-1, unbiased=False), np.var(x, axis=-1), rtol=1e-5, atol=1e-6)
    assert t.max().item() == x.max() and t.max().shape == ()
    values, indices = t.max(-1, keepdim=True)
    r = t.max(1)
    assert_close(r.values, x.max(1))
    assert_close(r.indices, x.argmax(1))
    assert_close(values, x.max(-1, keepdims=True))
    assert_close(indices, x.argmax(-1)[..., None])
    assert t.argmax().item() == x.argmax() and t.argmax(keepdim=True).shape == (1, 1, 1)
    assert_close(F.argmax(t, 0), x.argmax(0))
    assert_close(F.max(t, 2)[0], x.max(2))
