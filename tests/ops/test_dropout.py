"""dropout.c: the mask against an independent reading of Philox (the _C.philox block function),
keep rate, reproducibility from (seed, stream), float64 gradcheck, identity cases, bad input,
thread-count determinism."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests.conftest import call, t64


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def dropout(x, p, seed, stream, training=True):
    return call("dropout", [x], (int(training), signed64(seed), signed64(stream)), (p,))


def ref_keep(n, p, seed, stream):
    """Element i is kept iff word i % 4 of the Philox block at counter i // 4 is >= floor(p * 2^32)."""
    key = (seed & 0xFFFFFFFF, seed >> 32)
    words = []
    for b in range((n + 3) // 4):
        words += af._C.philox((b & 0xFFFFFFFF, b >> 32, stream & 0xFFFFFFFF, stream >> 32), key)
    return np.array(words[:n], dtype=np.uint64) >= math.floor(p * 2 ** 32)


@pytest.mark.reference("dropout")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,p,seed,stream", [((7,), 0.5, 0, 0), ((3, 5, 2), 0.3, 12345, 7), ((1, 1, 9, 1), 0.9, 2 ** 63 + 5, 2 ** 40 + 3),
                                                 ((101,), 0.05, 2 ** 64 - 1, 2 ** 64 - 2)])
def test_matches_philox_reference(shape, p, seed, stream, dtype, rng):
    x = (rng.standard_normal(shape) + 3).astype(dtype)  # nonzero, so a zero in y means dropped
    y = dropout(af.tensor(x), p, seed, stream).numpy()
    keep = ref_keep(x.size, p, seed, stream).reshape(shape)
    scale = np.array(1 / (1 - p)).astype(dtype)
    expected = np.where(keep, x * scale, 0).astype(dtype)
    assert y.dtype == dtype and y.shape == shape
    assert np.array_equal(y, expected)


def test_keep_rate_and_scale(rng):
    n, p = 200_000, 0.3
    y = dropout(af.ones(n), p, 99, 3).numpy()
    kept = y != 0
    rate = kept.mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(rate - (1 - p)) < 5 * sigma, f"keep rate {rate} vs {1 - p} (sigma {sigma:.2e})"
    assert np.all(y[kept] == np.float32(1 / (1 - p)))
    # neighbours (same Philox block or not) are independent: P(both of a disjoint pair kept) = (1-p)^2
    both, q = (kept[0::2] & kept[1::2]).mean(), (1 - p) ** 2
    assert abs(both - q) < 5 * math.sqrt(q * (1 - q) / (n // 2))


def test_same_stream_same_mask_other_stream_other_mask():
    x = af.ones(4, 50)
    a, b = dropout(x, 0.5, 11, 4).numpy(), dropout(x, 0.5, 11, 4).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, dropout(x, 0.5, 11, 5).numpy())
    assert not np.array_equal(a, dropout(x, 0.5, 12, 4).numpy())
    # the mask is a function of the flat index: a longer tensor extends it
    longer = dropout(af.ones(300), 0.5, 11, 4).numpy()
    assert np.array_equal(a.reshape(-1), longer[:200])


def test_backward_regenerates_mask(rng):
    x = af.tensor(rng.standard_normal((6, 7)) + 3, dtype="float32", requires_grad=True)
    g = rng.standard_normal((6, 7)).astype(np.float32)
    y = dropout(x, 0.4, 5, 9)
    y.backward(af.tensor(g))
    keep = y.numpy() != 0
    assert_close(x.grad, np.where(keep, g / np.float32(0.6), 0).astype(np.float32))


@pytest.mark.gradcheck("dropout")
@pytest.mark.parametrize("p,training", [(0.3, True), (0.0, True), (0.7, False)])
def test_gradcheck(p, training, rng):
    gradcheck(lambda x: dropout(x, p, 3, 1, training), [t64(rng.standard_normal((4, 5)))])


@pytest.mark.parametrize("p,training", [(0.0, True), (0.5, False), (0.999, False)])
def test_identity_cases(p, training, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    ax = af.tensor(x, requires_grad=True)
    y = dropout(ax, p, 1, 2, training)
    assert np.array_equal(y.numpy(), x)
    y.backward(af.tensor(np.full((3, 4), 2.0, np.float32)))
    assert np.array_equal(ax.grad.numpy(), np.full((3, 4), 2.0, np.float32))


def test_p_one_drops_everything():
    x = af.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = dropout(x, 1.0, 1, 2)
    assert np.array_equal(y.numpy(), np.zeros((2, 3)))
    y.backward(af.ones(2, 3))
    assert np.array_equal(x.grad.numpy(), np.zeros((2, 3)))


def test_empty():
    assert dropout(af.zeros(0, 3), 0.5, 1, 1).shape == (0, 3)


def test_rejects_bad_input():
    x = af.zeros(3)
    with pytest.raises(ValueError, match="'p' must be a probability"):
        dropout(x, 1.5, 0, 0)
    with pytest.raises(ValueError, match="'p' must be a probability"):
        dropout(x, -0.1, 0, 0)
    with pytest.raises(ValueError, match="'p' must be a probability"):
        dropout(x, float("nan"), 0, 0)
    with pytest.raises(ValueError, match="'training' must be 0 or 1"):
        call("dropout", [x], (2, 0, 0), (0.5,))
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        dropout(af.zeros(3, dtype="uint8"), 0.5, 0, 0)
    with pytest.raises(ValueError, match="takes 3 integer and 1 float"):
        call("dropout", [x], (1,), (0.5,))


def test_threads_bitwise_identical(rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    assert_thread_invariant(lambda t: dropout(t, 0.25, 77, 8), [x], name="dropout")
