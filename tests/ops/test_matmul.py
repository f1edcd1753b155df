"""matmul.c: every supported shape pairing, broadcast batch dims included, against NumPy (and torch),
float64 gradchecks for both inputs, empty dims, determinism across threads, and shape errors naming
both shapes."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests import reference
from tests.conftest import call, t64


CASES = [((3, 5), (5, 4)), ((1, 1), (1, 1)), ((1, 7), (7, 1)), ((2, 3, 5), (2, 5, 4)), ((1, 3, 5), (1, 5, 2)),
         ((2, 3, 5), (5, 4)), ((2, 2, 3, 4), (2, 2, 4, 3)), ((2, 3, 3, 4), (4, 2)), ((3, 0), (0, 4)), ((0, 3), (3, 4)),
         ((2, 0, 3), (2, 3, 4)), ((2, 3, 4), (4, 0))]
# torch.matmul's batch broadcasting: size-1 and missing dims stretch, on either side
BROADCAST = [((2, 3, 4, 5), (2, 3, 5, 2)), ((2, 1, 4, 5), (1, 3, 5, 2)), ((4, 5), (3, 5, 2)), ((3, 4, 5), (1, 5, 2)),
             ((1, 4, 5), (3, 5, 2)), ((2, 3, 4, 5), (3, 5, 2)), ((2, 1, 3, 4, 5), (1, 2, 1, 5, 2)),
             ((2, 1, 3, 4, 5), (3, 5, 2)), ((1, 2, 4, 5), (3, 1, 5, 2)), ((2, 3, 4, 5), (1, 1, 5, 2)),
             ((0, 4, 5), (1, 5, 2)), ((2, 1, 4, 5), (1, 0, 5, 2)), ((2, 3, 4, 5), (2, 1, 5, 2))]
CASES += BROADCAST


def _reduce_to(g, shape):
    """Sum a broadcast gradient back to an operand's shape (NumPy reference for backward)."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, n in enumerate(shape[:-2]) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


@pytest.mark.reference("matmul")
@pytest.mark.parametrize("sa,sb", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_numpy(sa, sb, dtype, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = call("matmul", [af.tensor(a, dtype=dtype), af.tensor(b, dtype=dtype)])
    assert out.dtype == dtype
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(out, (a @ b).astype(dtype), rtol=tol, atol=tol)


@pytest.mark.gradcheck("matmul")
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 2)), ((2, 3, 4), (4, 2)),
                                   ((2, 2, 2, 3), (2, 2, 3, 2)), ((1, 1), (1, 3))])
def test_gradcheck(sa, sb, rng):
    a, b = t64(rng.standard_normal(sa)), t64(rng.standard_normal(sb))
    gradcheck(lambda x, y: call("matmul", [x, y]), [a, b])


@pytest.mark.gradcheck("matmul")
@pytest.mark.parametrize("sa,sb", [((2, 1, 3, 4), (1, 3, 4, 2)), ((3, 4), (2, 4, 2)), ((2, 2, 3, 4), (2, 4, 2)),
                                   ((2, 1, 2, 3, 2), (2, 1, 2, 2)), ((2, 3, 2, 3), (1, 1, 3, 2))])
def test_gradcheck_broadcast(sa, sb, rng):
    a, b = t64(rng.standard_normal(sa)), t64(rng.standard_normal(sb))
    gradcheck(lambda x, y: af.matmul(x, y), [a, b])


@pytest.mark.reference("matmul")
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_broadcast_gradients_match_numpy(sa, sb, rng):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    ta, tb = t64(a), t64(b)
    y = af.matmul(ta, tb)
    g = rng.standard_normal(y.shape)
    y.backward(af.tensor(g, dtype="float64"))
    assert_close(ta.grad, _reduce_to(g @ np.swapaxes(b, -1, -2), sa), rtol=1e-12, atol=1e-12, name="da")
    assert_close(tb.grad, _reduce_to(np.swapaxes(a, -1, -2) @ g, sb), rtol=1e-12, atol=1e-12, name="db")


def test_gradient_of_one_input_only(rng):
    a, b = t64(rng.standard_normal((2, 3))), t64(rng.standard_normal((3, 4)), requires_grad=False)
    (a @ b).sum().backward()
    assert_close(a.grad, np.ones((2, 4)) @ b.numpy().T, rtol=1e-12, atol=1e-12)
    assert b.grad is None


def test_empty_inner_dim_gradients():
    a, b = t64(np.zeros((2, 0))), t64(np.zeros((0, 3)))
    out = a @ b
    assert out.numpy().tolist() == [[0.0] * 3] * 2
    out.sum().backward()
    assert a.grad.shape == (2, 0) and b.grad.shape == (0, 3)


def test_threads_bitwise_identical(rng):
    # OpenBLAS alone gives different last bits for these shapes with 1 and 2 threads (gemm_det.h)
    a = rng.standard_normal((4, 67, 129)).astype(np.float32)
    b = rng.standard_normal((129, 71)).astype(np.float32)
    c = rng.standard_normal((4, 71, 300)).astype(np.float32)
    assert_thread_invariant(lambda ta, tb, tc: (ta @ tb) @ tc, [a, b, c], name="matmul")
    # broadcast operands: their gradients are sums over the broadcast batch
    q = rng.standard_normal((3, 1, 67, 33)).astype(np.float32)
    k = rng.standard_normal((1, 4, 33, 70)).astype(np.float32)
    assert_thread_invariant(lambda tq, tk: af.matmul(tq, tk), [q, k], name="matmul broadcast")


def test_bad_input():
    with pytest.raises(ValueError, match=r"'input' of shape \(2, 3\) and 'other' of shape \(4, 5\) cannot be multiplied"):
        call("matmul", [af.zeros(2, 3), af.zeros(4, 5)])
    with pytest.raises(ValueError, match=r"'other' must be at least 2-D"):
        call("matmul", [af.zeros(2, 3), af.zeros(3)])
    with pytest.raises(ValueError, match=r"'input' must be at least 2-D"):
        call("matmul", [af.zeros(3), af.zeros(3, 2)])
    with pytest.raises(ValueError, match=r"'input' of shape \(2, 2, 3\) and 'other' of shape \(3, 3, 2\): the batch "
                                         "dims .* do not broadcast"):
        call("matmul", [af.zeros(2, 2, 3), af.zeros(3, 3, 2)])
    with pytest.raises(TypeError, match="'other' is float64"):
        call("matmul", [af.zeros(2, 3), af.zeros(3, 2, dtype="float64")])
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        call("matmul", [af.zeros(2, 3, dtype="int32"), af.zeros(3, 2)])


@pytest.mark.parametrize("case", reference.cases("matmul"))
def test_matches_torch(case):
    d = reference.case("matmul", case)
    xa, xb = t64(d["a"]), t64(d["b"])
    out = xa @ xb
    out.backward(af.tensor(d["g"], dtype="float64"))
    assert_close(out, d["y"], rtol=1e-12, atol=1e-12)
    assert_close(xa.grad, d["da"], rtol=1e-12, atol=1e-12, name="da")
    assert_close(xb.grad, d["db"], rtol=1e-12, atol=1e-12, name="db")
