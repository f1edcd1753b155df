"""shape.c: reshape (a view), permute, cat, split, slice and cast against NumPy (and torch when
importable) for every dtype they move, float64 gradchecks, and the Python sugar built on them:
Tensor.__getitem__, affectfer.cat / stack / split."""
import itertools

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests import reference
from tests.conftest import call, t64


DTYPES = ["float32", "float64", "float16", "bfloat16", "uint8", "int32", "int64", "bool"]
NUMPY_DTYPES = ["float32", "float64", "uint8", "int32", "int64", "bool"]  # dtypes np.asarray can view
DTYPE_ID = {d: i for i, d in enumerate(DTYPES)}


def _array(rng, shape, dtype):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("uint8", "int32", "int64"):
        return rng.integers(0, 200, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- reshape

@pytest.mark.reference("reshape")
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("shape,target", [((2, 3, 4), (6, 4)), ((6,), (1, 2, 3, 1, 1)), ((), (1,)), ((1,), ()),
                                          ((0, 3), (3, 0, 2)), ((2, 3, 4), (24,))])
def test_reshape_matches_numpy(dtype, shape, target, rng):
    x = _array(rng, shape, dtype)
    y = call("reshape", [af.tensor(x)], target)
    assert y.shape == target and y.dtype == dtype
    assert_close(y, x.reshape(target))


@pytest.mark.gradcheck("reshape")
def test_reshape_is_a_view_and_its_gradient_flows():
    base = np.arange(6, dtype=np.float32)
    t = af.from_numpy(base)
    v = t.reshape(2, 3)
    base[4] = 100.0
    assert v.numpy()[1, 1] == 100.0
    assert v._data_ptr == t._data_ptr
    x = t64(np.arange(6.0))
    (x.reshape(3, 2) * t64(np.arange(6.0).reshape(3, 2), requires_grad=False)).sum().backward()
    assert_close(x.grad, np.arange(6.0))
    gradcheck(lambda a: call("reshape", [a], (3, 1, 2)), [t64(np.arange(6.0))])


def test_reshape_methods():
    t = af.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    assert t.reshape(2, -1).shape == (2, 12)
    assert t.view(-1).shape == (24,)
    assert t.flatten(1).shape == (2, 12)
    assert t.unsqueeze(1).shape == (2, 1, 3, 4) and t.unsqueeze(-1).squeeze(-1).shape == (2, 3, 4)


def test_reshape_bad_input():
    with pytest.raises(ValueError, match=r"cannot reshape 'input' of shape \(2, 3\) \(6 elements\) into shape \(4,\)"):
        call("reshape", [af.zeros(2, 3)], (4,))
    with pytest.raises(ValueError, match="negative size"):
        call("reshape", [af.zeros(2, 3)], (-1, 6))
    with pytest.raises(ValueError, match="'shape' must have 0 to 5 entries"):
        call("reshape", [af.zeros(1)], (1,) * 6)
    with pytest.raises(ValueError, match="cannot reshape"):
        call("reshape", [af.zeros(2)], (2 ** 40, 2 ** 40, 2 ** 40))


# ---------------------------------------------------------------- permute

PERMUTE_CASES = [((2, 3, 4), p) for p in itertools.permutations(range(3))] + [
    ((2, 3, 5, 7), (0, 2, 3, 1)), ((2, 5, 7, 3), (0, 3, 1, 2)), ((3, 70, 45), (0, 2, 1)), ((67, 33), (1, 0)),
    ((1, 4, 1, 3), (3, 2, 1, 0)), ((2, 3, 1, 4, 5), (4, 0, 3, 2, 1)), ((2, 3, 4, 5, 2), (1, 0, 2, 4, 3)),
    ((0, 3, 2), (2, 0, 1)), ((), ()), ((5,), (0,)), ((2, 1, 3), (1, 0, 2))]


@pytest.mark.reference("permute")
@pytest.mark.parametrize("shape,perm", PERMUTE_CASES)
def test_permute_matches_numpy(shape, perm, rng):
    x = rng.standard_normal(shape)
    y = call("permute", [af.tensor(x, dtype="float64")], perm)
    assert_close(y, np.transpose(x, perm))


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_permute_every_element_size(dtype, rng):
    for shape, perm in [((3, 40, 37), (0, 2, 1)), ((2, 3, 4, 5), (0, 2, 3, 1)), ((2, 3, 4), (2, 0, 1))]:
        x = _array(rng, shape, dtype)
        assert_close(call("permute", [af.tensor(x)], perm), np.transpose(x, perm))


def test_permute_float16_moves_bits(rng):
    x = rng.standard_normal((5, 6, 7))
    h = call("cast", [af.tensor(x, dtype="float64")], (DTYPE_ID["float16"],))
    back = call("cast", [call("permute", [h], (2, 0, 1))], (DTYPE_ID["float64"],))
    assert_close(back, np.transpose(x.astype(np.float16), (2, 0, 1)).astype(np.float64), rtol=0, atol=0)


@pytest.mark.gradcheck("permute")
@pytest.mark.parametrize("shape,perm", [((2, 3, 4), (2, 0, 1)), ((2, 3, 2, 3), (0, 2, 3, 1)), ((3, 4), (1, 0))])
def test_permute_gradcheck(shape, perm, rng):
    gradcheck(lambda t: call("permute", [t], perm), [t64(rng.standard_normal(shape))])


def test_permute_methods(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    t = af.tensor(x)
    assert_close(t.T, x.T)
    assert_close(t.transpose(0, 2), np.swapaxes(x, 0, 2))
    assert_close(t.permute(-1, 0, 1), np.transpose(x, (2, 0, 1)))


def test_permute_threads_bitwise_identical(rng):
    x = rng.standard_normal((4, 32, 33, 35)).astype(np.float32)
    for p in [(0, 2, 3, 1), (0, 1, 3, 2), (3, 1, 0, 2)]:
        assert_thread_invariant(lambda t: call("permute", [t], p), [x], name=f"permute {p}")


def test_permute_bad_input():
    with pytest.raises(ValueError, match="must list all 3 dims"):
        call("permute", [af.zeros(2, 3, 4)], (0, 1))
    with pytest.raises(ValueError, match="must be a permutation of 0..2, got 1 at position 2"):
        call("permute", [af.zeros(2, 3, 4)], (0, 1, 1))
    with pytest.raises(IndexError, match="must be a permutation of 0..2, got 3 at position 1"):
        call("permute", [af.zeros(2, 3, 4)], (0, 3, 1))


# ---------------------------------------------------------------- cat

@pytest.mark.reference("cat")
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2])
def test_cat_matches_numpy(dtype, dim, rng):
    shapes = [[2, 3, 4] for _ in range(3)]
    for s, n in zip(shapes, (1, 0, 5)):
        s[dim] = n
    xs = [_array(rng, s, dtype) for s in shapes]
    out = call("cat", [af.tensor(x) for x in xs], (dim,))
    assert_close(out, np.concatenate(xs, dim))


def test_cat_32_inputs_and_module_function(rng):
    xs = [rng.standard_normal((1, 3)) for _ in range(32)]
    assert_close(call("cat", [af.tensor(x) for x in xs], (0,)), np.concatenate(xs, 0))
    xs = [rng.standard_normal((2, k % 3 + 1)).astype(np.float32) for k in range(70)]
    assert_close(af.cat([af.tensor(x) for x in xs], dim=-1), np.concatenate(xs, -1))
    assert_close(af.cat([af.tensor(xs[0])]), xs[0])


@pytest.mark.gradcheck("cat")
def test_cat_gradcheck(rng):
    a, b = t64(rng.standard_normal((2, 3))), t64(rng.standard_normal((2, 1)))
    c = t64(rng.standard_normal((2, 2)), requires_grad=False)
    gradcheck(lambda x, y, z: call("cat", [x, y, z], (1,)), [a, b, c])
    gradcheck(lambda x, y: af.cat([x, y, x], 0), [t64(rng.standard_normal((1, 2, 2))), t64(rng.standard_normal((2, 2, 2)))])


def test_cat_bad_input():
    with pytest.raises(TypeError, match="entry 1 is float64 but entry 0 is float32"):
        call("cat", [af.zeros(2), af.zeros(2, dtype="float64")], (0,))
    with pytest.raises(ValueError, match=r"entry 1 has shape \(3, 2\), which does not match entry 0's \(2, 2\) outside dim 1"):
        call("cat", [af.zeros(2, 2), af.zeros(3, 2)], (1,))
    with pytest.raises(IndexError, match="'dim' 2 out of range"):
        call("cat", [af.zeros(2, 2)], (2,))
    with pytest.raises(ValueError, match="at least 1-D"):
        call("cat", [af.zeros(())], (0,))
    with pytest.raises(ValueError, match="entry 1 is None"):
        call("cat", [af.zeros(2), None], (0,))
    with pytest.raises(ValueError, match="non-empty"):
        af.cat([])


# ---------------------------------------------------------------- stack

def test_stack(rng):
    xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(4)]
    for dim in (0, 1, 2, -1):
        assert_close(af.stack([af.tensor(x) for x in xs], dim), np.stack(xs, dim))
    gradcheck(lambda a, b: af.stack([a, b], 1), [t64(rng.standard_normal((2, 3))), t64(rng.standard_normal((2, 3)))])
    with pytest.raises(ValueError, match="entry 1 has shape"):
        af.stack([af.zeros(2), af.zeros(3)])


# ---------------------------------------------------------------- split

@pytest.mark.reference("split")
@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_split_matches_numpy(dtype, rng):
    x = _array(rng, (3, 10, 2), dtype)
    sizes = (1, 0, 4, 5)
    outs = call("split", [af.tensor(x)], (1, *sizes))
    refs = np.split(x, np.cumsum(sizes)[:-1], axis=1)
    assert len(outs) == 4
    for o, r in zip(outs, refs):
        assert_close(o, r)
    one = call("split", [af.tensor(x)], (0, 3))
    assert_close(one, x)


def test_split_15_pieces_and_module_function(rng):
    x = rng.standard_normal((15, 2))
    outs = call("split", [af.tensor(x)], (0,) + (1,) * 15)
    assert len(outs) == 15 and all(np.array_equal(o.numpy(), x[i:i + 1]) for i, o in enumerate(outs))
    y = rng.standard_normal((2, 41)).astype(np.float32)
    pieces = af.split(af.tensor(y), 1, dim=1)
    assert len(pieces) == 41 and all(np.array_equal(p.numpy(), y[:, i:i + 1]) for i, p in enumerate(pieces))
    pieces = af.tensor(y).split(10, -1)
    assert [p.shape[1] for p in pieces] == [10, 10, 10, 10, 1]
    pieces = af.split(af.tensor(y), [3, 0, 38], 1)
    assert [p.shape for p in pieces] == [(2, 3), (2, 0), (2, 38)]


@pytest.mark.gradcheck("split")
def test_split_gradcheck(rng):
    gradcheck(lambda t: call("split", [t], (1, 2, 1, 1)), [t64(rng.standard_normal((2, 4)))])
    gradcheck(lambda t: af.split(t, 1, 0), [t64(rng.standard_normal((20, 2)))])  # 20 pieces: two calls


def test_split_bad_input():
    with pytest.raises(ValueError, match="'split_sizes' must be non-negative and sum to 4"):
        call("split", [af.zeros(4)], (0, 1, 2))
    with pytest.raises(ValueError, match="1 to 15 sizes"):
        call("split", [af.zeros(16)], (0,))
    with pytest.raises(ValueError, match="too many attributes"):
        call("split", [af.zeros(16)], (0,) + (1,) * 16)
    with pytest.raises(IndexError, match="'dim' 1 out of range"):
        call("split", [af.zeros(4)], (1, 4))
    with pytest.raises(ValueError, match="sum to 4"):
        af.split(af.zeros(4), [1, 2])


# ---------------------------------------------------------------- slice

SLICES = [(0, 0, 5, 1), (0, 1, 4, 2), (1, 0, 7, 3), (1, 6, 7, 1), (1, 2, 2, 1), (2, 1, 3, 5), (1, 0, 7, 100)]


@pytest.mark.reference("slice")
@pytest.mark.parametrize("dim,start,stop,step", SLICES)
@pytest.mark.parametrize("dtype", ["float64", "uint8", "bool"])
def test_slice_matches_numpy(dim, start, stop, step, dtype, rng):
    x = _array(rng, (5, 7, 3), dtype)
    index = [slice(None)] * 3
    index[dim] = slice(start, stop, step)
    assert_close(call("slice", [af.tensor(x)], (dim, start, stop, step)), x[tuple(index)])


@pytest.mark.gradcheck("slice")
@pytest.mark.parametrize("dim,start,stop,step", [(0, 1, 4, 2), (1, 0, 3, 1), (2, 1, 4, 2)])
def test_slice_gradcheck(dim, start, stop, step, rng):
    gradcheck(lambda t: call("slice", [t], (dim, start, stop, step)), [t64(rng.standard_normal((4, 3, 4)))])


def test_slice_bad_input():
    x = af.zeros(5, 3)
    with pytest.raises(IndexError, match="'start' 2 and 'stop' 6 must satisfy"):
        call("slice", [x], (0, 2, 6, 1))
    with pytest.raises(ValueError, match="'step' must be >= 1"):
        call("slice", [x], (0, 0, 5, 0))
    with pytest.raises(IndexError, match="'dim' 2 out of range"):
        call("slice", [x], (2, 0, 1, 1))
    with pytest.raises(ValueError, match="takes 4 integer"):
        call("slice", [x], (0, 1))


# ---------------------------------------------------------------- __getitem__

KEYS = [1, -1, slice(1, 3), (slice(None), 1), (Ellipsis, 2), (None, slice(1, None), slice(None, None, 2)),
        (1, 2, 3), (slice(None, None, 3), slice(-2, None)), slice(5, 2), (Ellipsis,), (0, None, Ellipsis, -1),
        (slice(-100, 100),), ()]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_getitem_matches_numpy(key, rng):
    x = rng.standard_normal((4, 3, 5))
    t = af.tensor(x, dtype="float64")
    assert_close(t[key], x[key])


def test_getitem_gradient(rng):
    gradcheck(lambda t: t[1:, ::2, -1], [t64(rng.standard_normal((3, 4, 2)))])
    gradcheck(lambda t: t[0] * t[2], [t64(rng.standard_normal((3, 2)))])


def test_getitem_bad_input():
    t = af.zeros(3, 4)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        t[3]
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(ValueError, match="step must be >= 1"):
        t[::-1]
    with pytest.raises(TypeError, match="unsupported index"):
        t[1.5]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., ...]


# ---------------------------------------------------------------- cast

CAST_VALUES = np.array([0.0, -0.0, 0.1, -0.5, 1.5, 2.5, -3.7, 255.9, 300.0, -256.5, 65504.0, 65520.0, 1e5, 3.4e38,
                        1e-8, 6e-8, 1e10, -1e10, 2.5e9, np.nan, np.inf, -np.inf, 1 + 2 ** -11 + 2 ** -40, 123456789.0,
                        -2147483648.7, 9.3e18, 1 + 2 ** -8 + 2 ** -30])


def _cast(t, dtype):
    return call("cast", [t], (DTYPE_ID[dtype],))


def _as_f64(t):
    """Values of any tensor as float64 NumPy (float16/bfloat16 through the cast op itself, which is
    exact in that direction)."""
    return (_cast(t, "float64") if t.dtype in ("float16", "bfloat16") else t).numpy().astype(np.float64)


@pytest.mark.reference("cast")
def test_cast_matches_numpy(rng):
    x = np.concatenate([rng.standard_normal(50) * 100, [0.0, -7.9, 7.9, 250.0]])
    t = af.tensor(x, dtype="float64")
    assert_close(_cast(t, "float32"), x.astype(np.float32), rtol=0, atol=0)
    assert_close(_cast(t, "int64"), np.trunc(x).astype(np.int64))
    assert_close(_cast(t, "int32"), np.trunc(x).astype(np.int32))
    assert_close(_cast(t, "uint8"), np.trunc(x).astype(np.int64).astype(np.uint8))
    assert_close(_cast(t, "bool"), x != 0)
    assert_close(_as_f64(_cast(t, "float16")), x.astype(np.float32).astype(np.float16).astype(np.float64), rtol=0, atol=0)
    i = np.array([0, 1, -1, 255, 256, 2 ** 40 + 5, -2 ** 63, 2 ** 63 - 1])
    ti = af.tensor(i, dtype="int64")
    assert_close(_cast(ti, "uint8"), i.astype(np.uint8))
    assert_close(_cast(ti, "int32"), i.astype(np.int32))
    assert_close(_cast(ti, "float32"), i.astype(np.float32), rtol=0, atol=0)
    assert_close(_cast(ti, "bool"), i != 0)
    b = af.tensor(np.array([True, False, True]))
    assert_close(_cast(b, "float32"), np.array([1, 0, 1], np.float32))
    assert _cast(b, "int64").numpy().tolist() == [1, 0, 1]


def test_cast_all_pairs_match_torch():
    d = reference.case("shape", "cast")
    np.testing.assert_array_equal(d["values"], CAST_VALUES)
    src64 = af.tensor(CAST_VALUES, dtype="float64")
    for src in DTYPES:
        ours = _cast(src64, src)
        # exact, with NaN == NaN and inf == inf (assert_close's relative bound is NaN at inf)
        np.testing.assert_array_equal(_as_f64(ours), d[f"float64_to_{src}"], err_msg=f"float64 -> {src}")
        for dst in DTYPES:
            got = _cast(ours, dst)
            assert got.dtype == dst and got.shape == ours.shape
            np.testing.assert_array_equal(_as_f64(got), d[f"{src}_to_{dst}"], err_msg=f"{src} -> {dst}")


@pytest.mark.gradcheck("cast")
def test_cast_gradients(rng):
    # float64 -> float32 -> float64: a step function at float32 resolution, so a wide difference step
    gradcheck(lambda t: _cast(_cast(t, "float32"), "float64"), [t64(rng.standard_normal(5))], eps=1e-2, atol=1e-4, rtol=1e-3)
    gradcheck(lambda t: _cast(t, "float64"), [t64(rng.standard_normal(5))])
    x = af.tensor(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    y = x.to("float64")
    (y * af.tensor(np.arange(4.0), dtype="float64")).sum().backward()
    assert_close(x.grad, np.arange(4, dtype=np.float32))
    assert x.to("float32") is x
    assert not x.to("int64").requires_grad and x.double().requires_grad


def test_cast_bad_input():
    with pytest.raises(TypeError, match="'dtype' must be a dtype id 0..7, got 8"):
        call("cast", [af.zeros(2)], (8,))
    with pytest.raises(ValueError, match="takes 1 integer"):
        call("cast", [af.zeros(2)])
    with pytest.raises(TypeError, match="unknown dtype"):
        af.zeros(2).to("float128")


def test_shape_ops_match_torch_forward_and_backward():
    """The chain make_fixtures.py runs in torch: views, split, cat, a product, a sum."""
    d = reference.case("shape", "chain")
    xa, xb = t64(d["a"]), t64(d["b"])
    parts = af.split(xa[1:, ::2].permute(2, 0, 1).reshape(5, -1), [1, 2, 0, 1], 1)
    out = af.cat([parts[1], xb.permute(0, 2, 1).reshape(5, 8)[:, 1:4] * parts[3][:, :1], parts[0]], 1).sum(dim=0)
    out.backward(af.tensor(d["g"], dtype="float64"))
    assert_close(out, d["y"], rtol=1e-12, atol=1e-12)
    assert_close(xa.grad, d["da"], rtol=1e-12, atol=1e-12, name="d a")
    assert_close(xb.grad, d["db"], rtol=1e-12, atol=1e-12, name="d b")
