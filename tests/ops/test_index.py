"""index.c: gather, index_select and one_hot against NumPy, float64 gradchecks (repeated indices
included), thread invariance and malformed arguments."""
import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64



def _i64(a):
    return af.tensor(np.asarray(a, dtype=np.int64))


# (input shape, dim, index shape); index sizes never exceed input's on the other dims
GATHER_CASES = [((5,), 0, (7,)), ((3, 4), 0, (6, 4)), ((3, 4), 1, (2, 9)), ((2, 3, 4), 1, (2, 5, 3)),
                ((2, 3, 4), 2, (1, 2, 4)), ((1, 2, 3, 2, 3), 4, (1, 2, 1, 2, 5)), ((4, 3), 0, (0, 3)), ((), 0, ())]


def _gather_ref(x, dim, idx):
    if x.ndim == 0:
        return x.copy()
    sub = x[tuple(slice(0, n) if d != dim else slice(None) for d, n in enumerate(idx.shape))]
    return np.take_along_axis(sub, idx, axis=dim)


@pytest.mark.reference("gather")
@pytest.mark.parametrize("shape,dim,ishape", GATHER_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gather_matches_numpy(shape, dim, ishape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    idx = rng.integers(0, shape[dim] if shape else 1, ishape)
    out = call("gather", [af.tensor(x), _i64(idx)], (dim,))
    assert out.dtype == dtype and out.shape == ishape
    assert_close(out, _gather_ref(x, dim, idx), rtol=0, atol=0)


@pytest.mark.gradcheck("gather")
@pytest.mark.parametrize("shape,dim,ishape", GATHER_CASES)
def test_gather_gradcheck(shape, dim, ishape, rng):
    idx = _i64(rng.integers(0, shape[dim] if shape else 1, ishape))  # repeats: gradients add up
    gradcheck(lambda t: call("gather", [t, idx], (dim,)), [t64(rng.standard_normal(shape))])


INDEX_SELECT_CASES = [((5,), 0, 7), ((3, 4), 0, 5), ((3, 4), 1, 2), ((2, 3, 4), 1, 6), ((2, 1, 3, 5), 3, 1),
                      ((4, 3), 0, 0)]


@pytest.mark.reference("index_select")
@pytest.mark.parametrize("shape,dim,n", INDEX_SELECT_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_index_select_matches_numpy(shape, dim, n, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    idx = rng.integers(0, shape[dim], n)
    out = call("index_select", [af.tensor(x), _i64(idx)], (dim,))
    assert_close(out, np.take(x, idx, axis=dim), rtol=0, atol=0)


@pytest.mark.gradcheck("index_select")
@pytest.mark.parametrize("shape,dim,n", INDEX_SELECT_CASES)
def test_index_select_gradcheck(shape, dim, n, rng):
    idx = _i64(rng.integers(0, shape[dim], n))
    gradcheck(lambda t: call("index_select", [t, idx], (dim,)), [t64(rng.standard_normal(shape))])


def test_repeated_indices_accumulate():
    x = t64([1.0, 2.0, 3.0])
    call("index_select", [x, _i64([2, 2, 0, 2])], (0,)).sum().backward()
    assert x.grad.numpy().tolist() == [1.0, 0.0, 3.0]
    y = t64([[1.0, 2.0], [3.0, 4.0]])
    call("gather", [y, _i64([[1, 1, 1], [0, 0, 1]])], (1,)).sum().backward()
    assert y.grad.numpy().tolist() == [[0.0, 3.0], [2.0, 1.0]]


@pytest.mark.reference("one_hot")
@pytest.mark.parametrize("shape", [(5,), (2, 3), (), (0,), (1, 2, 1, 2)])
def test_one_hot_matches_numpy(shape, rng):
    v = rng.integers(0, 6, shape)
    out = call("one_hot", [_i64(v)], (6,))
    assert out.dtype == "int64" and out.shape == tuple(shape) + (6,)
    assert_close(out, np.eye(6, dtype=np.int64)[v], rtol=0, atol=0)
    assert not out.requires_grad


def test_one_hot_functional():
    v = _i64([[0, 3], [2, 1]])
    assert_close(F.one_hot(v), np.eye(4, dtype=np.int64)[v.numpy()])
    assert F.one_hot(v, num_classes=7).shape == (2, 2, 7)
    with pytest.raises(ValueError, match="cannot infer num_classes from an empty tensor"):
        F.one_hot(_i64(np.zeros(0)))
    with pytest.raises(TypeError, match="one_hot: argument 'tensor' must be int64, got float32"):
        F.one_hot(af.zeros(3))


def test_index_thread_invariant(rng):
    x = rng.standard_normal((40, 50, 30)).astype(np.float32)
    idx = _i64(rng.integers(0, 50, (40, 70, 30)))
    assert_thread_invariant(lambda t: call("gather", [t, idx], (1,)), [x], name="gather")
    idx0 = _i64(rng.integers(0, 40, (90, 50, 30)))
    assert_thread_invariant(lambda t: call("gather", [t, idx0], (0,)), [x], name="gather dim 0")
    sel = _i64(rng.integers(0, 50, 80))
    assert_thread_invariant(lambda t: call("index_select", [t, sel], (1,)), [x], name="index_select")
    sel0 = _i64(rng.integers(0, 40, 90))
    assert_thread_invariant(lambda t: call("index_select", [t, sel0], (0,)), [x], name="index_select dim 0")


def test_index_bad_input():
    x = af.zeros(3, 4)
    with pytest.raises(IndexError, match="gather: argument 'index' holds 4, out of range for dim 1 of size 4"):
        call("gather", [x, _i64([[0, 4]])], (1,))
    with pytest.raises(IndexError, match="gather: argument 'index' holds -1"):
        call("gather", [x, _i64([[-1]])], (0,))
    with pytest.raises(ValueError, match=r"gather: argument 'index' must have as many dims as 'input' \(3, 4\)"):
        call("gather", [x, _i64([0])], (0,))
    with pytest.raises(ValueError, match=r"gather: argument 'index' \(4, 1\) is larger than 'input' \(3, 4\) in dim 0"):
        call("gather", [x, _i64(np.zeros((4, 1)))], (1,))
    with pytest.raises(TypeError, match="gather: argument 'index' must be int64, got float32"):
        call("gather", [x, af.zeros(3, 4)], (0,))
    with pytest.raises(IndexError, match="index_select: argument 'dim' 2 out of range for a 2-D input"):
        call("index_select", [x, _i64([0])], (2,))
    with pytest.raises(IndexError, match="index_select: argument 'index' holds 3, out of range for dim 0 of size 3"):
        call("index_select", [x, _i64([0, 3])], (0,))
    with pytest.raises(ValueError, match=r"index_select: argument 'index' must be 1-D \(or 0-D\), got shape \(1, 1\)"):
        call("index_select", [x, _i64([[0]])], (0,))
    with pytest.raises(IndexError, match=r"one_hot: argument 'tensor' holds 5, outside \[0, num_classes = 5\)"):
        call("one_hot", [_i64([0, 5])], (5,))
    with pytest.raises(ValueError, match="one_hot: argument 'num_classes' must be >= 1, got 0"):
        call("one_hot", [_i64([0])], (0,))
    with pytest.raises(IndexError, match="argument 'dim' 2 out of range"):
        x.gather(2, _i64([[0]]))


def test_index_methods(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    t = af.tensor(x)
    idx = rng.integers(0, 4, (3, 2))
    assert_close(t.gather(-1, _i64(idx)), np.take_along_axis(x, idx, axis=1))
    assert_close(F.gather(t, 1, _i64(idx)), np.take_along_axis(x, idx, axis=1))
    assert_close(F.index_select(t, 0, _i64([2, 0])), x[[2, 0]])
    assert_close(t.index_select(-1, _i64([3])), x[:, [3]])
