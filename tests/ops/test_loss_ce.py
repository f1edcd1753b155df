"""loss_ce.c: cross_entropy with index and probability targets, class weights, ignore_index, label
smoothing and the three reductions: hand-computed values, the spec's vectors, a NumPy reference,
torch, float64 gradchecks, bad input, thread-count determinism."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def cross_entropy(logits, target, weight=None, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    return call("cross_entropy", [logits, target, weight], (REDUCTIONS[reduction], ignore_index), (label_smoothing,))


def idx(a):
    return af.tensor(np.asarray(a, dtype=np.int64))


def ref_cross_entropy(z, target, w, reduction, ignore_index, e):
    """NumPy, written from torch's documentation: smoothed target distribution (1-e)*onehot + e/C."""
    z = z.astype(np.float64)
    N, C = z.shape
    logp = z - z.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    w = np.ones(C) if w is None else w.astype(np.float64)
    if target.dtype.kind == "f":
        q = (1 - e) * target.astype(np.float64) + e / C
        loss = -(q * w * logp).sum(axis=1)
        denominator = N
    else:
        keep = target != ignore_index
        y = np.where(keep, target, 0)
        nll = -w[y] * logp[np.arange(N), y]
        smooth = -(logp * w).sum(axis=1)
        loss = np.where(keep, (1 - e) * nll + e / C * smooth, 0.0)
        denominator = w[y][keep].sum()
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.array(loss.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.array(loss.sum() / denominator)


# Hand-computed case. Logits chosen so softmax is exact:
#   row 0: z = [0, 0, ln 2]  -> p = [1/4, 1/4, 1/2], log p = [-ln 4, -ln 4, -ln 2]
#   row 1: z = [ln 3, 0, 0]  -> p = [3/5, 1/5, 1/5], log p = [ln(3/5), -ln 5, -ln 5]
# y = [2, 0], w = [1, 2, 3] (S_w = 6), e = 0.3, C = 3 (so e/C = 0.1):
#   row 0: nll = -w_2 log p_2 = 3 ln 2; smooth = -(1(-ln 4) + 2(-ln 4) + 3(-ln 2)) = 9 ln 2
#          loss_0 = 0.7 * 3 ln 2 + 0.1 * 9 ln 2 = 3 ln 2
#   row 1: nll = -ln(3/5) = ln 5 - ln 3; smooth = -(ln 3 - ln 5 - 2 ln 5 - 3 ln 5) = 6 ln 5 - ln 3
#          loss_1 = 0.7 (ln 5 - ln 3) + 0.1 (6 ln 5 - ln 3) = 1.3 ln 5 - 0.8 ln 3
#   mean divides by W = w_2 + w_0 = 4.
# Gradient of the mean, (1/W)[(1-e) w_y (p - onehot) + (e/C)(S_w p - w)]:
#   row 0: 2.1 [1/4, 1/4, -1/2] + 0.1 ([1.5, 1.5, 3] - [1, 2, 3]) = [0.575, 0.475, -1.05] -> /4
#   row 1: 0.7 [-0.4, 0.2, 0.2] + 0.1 ([3.6, 1.2, 1.2] - [1, 2, 3]) = [-0.02, 0.06, -0.04] -> /4
HAND_Z = [[0.0, 0.0, math.log(2)], [math.log(3), 0.0, 0.0]]
HAND_LOSS = [3 * math.log(2), 1.3 * math.log(5) - 0.8 * math.log(3)]
HAND_GRAD = np.array([[0.575, 0.475, -1.05], [-0.02, 0.06, -0.04]]) / 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hand_computed_weighted_smoothed(dtype):
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-13)
    w = af.tensor(np.array([1.0, 2.0, 3.0]), dtype=dtype)
    y = idx([2, 0])
    assert_close(cross_entropy(af.tensor(np.array(HAND_Z), dtype=dtype), y, w, "none", label_smoothing=0.3), np.array(HAND_LOSS), **tol)
    assert_close(cross_entropy(af.tensor(np.array(HAND_Z), dtype=dtype), y, w, "sum", label_smoothing=0.3), np.array(sum(HAND_LOSS)), **tol)
    z = af.tensor(np.array(HAND_Z), dtype=dtype, requires_grad=True)
    loss = cross_entropy(z, y, w, "mean", label_smoothing=0.3)
    assert loss.shape == ()
    assert_close(loss, np.array(sum(HAND_LOSS) / 4), **tol)
    loss.backward()
    assert_close(z.grad, HAND_GRAD, **tol)


def test_hand_computed_ignore_index():
    # y = [2, ignored], no weights, e = 0: only row 0 counts and W = 1:
    #   loss = -log p_2 = ln 2; gradient row 0 = p - onehot_2 = [1/4, 1/4, -1/2], row 1 = 0.
    z = t64(HAND_Z)
    loss = cross_entropy(z, idx([2, -100]))
    assert_close(loss, np.array(math.log(2)), rtol=1e-14, atol=1e-14)
    loss.backward()
    assert_close(z.grad, np.array([[0.25, 0.25, -0.5], [0, 0, 0]]), rtol=1e-14, atol=1e-14)


def test_hand_computed_probability_targets_weighted():
    # t = [[0.5, 0, 0.5], [0, 1, 0]], w = [1, 2, 3], e = 0:
    #   loss_0 = -(1 * 0.5 * (-ln 4) + 3 * 0.5 * (-ln 2)) = ln 2 + 1.5 ln 2 = 2.5 ln 2
    #   loss_1 = -(2 * (-ln 5)) = 2 ln 5
    #   mean divides by N = 2 (not by the weights).
    t = np.array([[0.5, 0, 0.5], [0, 1, 0]])
    loss = cross_entropy(t64(HAND_Z), t64(t, False), af.tensor(np.array([1.0, 2.0, 3.0])))
    assert_close(loss, np.array((2.5 * math.log(2) + 2 * math.log(5)) / 2), rtol=1e-14, atol=1e-14)


SPEC_Z = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]
SPEC_CASES = [  # augment-losses.md section 5.1 vectors: (weight, e, loss, dL/dZ)
    (None, 0.0, 0.6216270724, [[-0.10720148, 0.0876452, 0.01955629], [0.1503048, 0.1661125, -0.3164173]]),
    (None, 0.2, 0.7816270724, [[-0.04053482, 0.05431186, -0.01377705], [0.11697147, 0.13277916, -0.24975063]]),
    ([1, 3, 5], 0.0, 0.8751709230, [[-0.03573383, 0.02921507, 0.00651876], [0.250508, 0.27685416, -0.52736217]]),
    ([1, 3, 5], 0.2, 1.0466843751, [[0.03886153, 0.00756776, -0.04642929], [0.21935625, 0.2213725, -0.44072875]]),
    ([10, 30, 50], 0.2, 1.0466843751, None),
]


@pytest.mark.parametrize("weight,e,expected,grad", SPEC_CASES)
def test_spec_vectors(weight, e, expected, grad):
    z = t64(SPEC_Z)
    w = None if weight is None else af.tensor(np.array(weight, dtype=np.float64))
    loss = cross_entropy(z, idx([0, 2]), w, label_smoothing=e)
    assert_close(loss, np.array(expected), rtol=1e-9, atol=1e-9)
    if grad is not None:
        loss.backward()
        assert_close(z.grad, np.array(grad), rtol=1e-6, atol=1e-7)


def test_spec_vector_soft_onehot_weighted_smoothed():
    onehot = np.eye(3)[[0, 2]]
    loss = cross_entropy(t64(SPEC_Z), t64(onehot, False), af.tensor(np.array([1.0, 3.0, 5.0])), label_smoothing=0.2)
    assert_close(loss, np.array(3.1400531253), rtol=1e-9, atol=1e-9)


CONFIGS = [  # (N, C, weighted, e, ignore some)
    (1, 1, False, 0.0, False), (5, 4, False, 0.0, False), (7, 3, True, 0.0, False), (6, 5, True, 0.15, True),
    (4, 7, False, 0.4, True), (1, 2, True, 1.0, False),
]


@pytest.mark.reference("cross_entropy")
@pytest.mark.parametrize("N,C,weighted,e,ignore", CONFIGS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_matches_numpy(N, C, weighted, e, ignore, reduction, dtype, kind, rng):
    z = (rng.standard_normal((N, C)) * 3).astype(dtype)
    w = (rng.random(C) + 0.2).astype(dtype) if weighted else None
    if kind == "index":
        y = rng.integers(0, C, N)
        if ignore:
            y[::2] = 3 if C <= 3 else -1  # ignore_index below: -1 or an in-range class
        target = y
        ii = (3 if C <= 3 else -1) if ignore else -100
    else:
        target = rng.dirichlet(np.ones(C), N).astype(dtype)
        ii = -100
    out = cross_entropy(af.tensor(z), af.tensor(target), None if w is None else af.tensor(w), reduction, ii, e)
    expected = ref_cross_entropy(z, target, w, reduction, ii, e)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    assert out.dtype == dtype and out.shape == expected.shape
    assert_close(out, expected.astype(dtype), **tol)


@pytest.mark.gradcheck("cross_entropy")
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted,e", [(False, 0.0), (True, 0.0), (False, 0.25), (True, 0.25)])
def test_gradcheck_index_targets(reduction, weighted, e, rng):
    z = t64(rng.standard_normal((4, 3)))
    w = af.tensor(rng.random(3) + 0.5) if weighted else None
    y = idx([0, 2, -100, 1])
    gradcheck(lambda z: cross_entropy(z, y, w, reduction, -100, e), [z])


@pytest.mark.gradcheck("cross_entropy")
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted,e", [(False, 0.0), (True, 0.3)])
def test_gradcheck_probability_targets(reduction, weighted, e, rng):
    z = t64(rng.standard_normal((3, 4)))
    t = t64(rng.dirichlet(np.ones(4), 3))
    w = af.tensor(rng.random(4) + 0.5) if weighted else None
    gradcheck(lambda z, t: cross_entropy(z, t, w, reduction, -100, e), [z, t])


def test_all_ignored_and_empty_batch():
    z = t64(HAND_Z)
    loss = cross_entropy(z, idx([-100, -100]))
    assert np.isnan(loss.item())
    loss.backward()
    assert_close(z.grad, np.zeros((2, 3)))  # torch: ignored samples get no gradient, not NaN
    assert np.isnan(cross_entropy(t64(HAND_Z), idx([-100, -100]), label_smoothing=0.1).item())
    assert cross_entropy(t64(HAND_Z), idx([-100, -100]), reduction="sum").item() == 0
    empty = af.zeros(0, 3, dtype="float64")
    assert np.isnan(cross_entropy(empty, af.zeros(0, dtype="int64")).item())
    assert cross_entropy(empty, af.zeros(0, dtype="int64"), reduction="sum").item() == 0
    assert cross_entropy(empty, af.zeros(0, dtype="int64"), reduction="none").shape == (0,)
    assert np.isnan(cross_entropy(empty, af.zeros(0, 3, dtype="float64")).item())
    assert cross_entropy(empty, af.zeros(0, 3, dtype="float64"), reduction="sum").item() == 0


@pytest.mark.parametrize("case", reference.cases("loss_ce", prefix=tuple(REDUCTIONS)))
def test_matches_torch(case):
    """Every reduction, with and without class weights and label smoothing, index targets (with
    ignore_index hits) and probability targets, against torch's recorded loss and gradients."""
    d = reference.case("loss_ce", case)
    kind = "prob" if d["target"].dtype.kind == "f" else "index"
    a_t = t64(d["target"]) if kind == "prob" else idx(d["target"])
    az = t64(d["z"])
    aw = af.tensor(d["weight"]) if "weight" in d else None
    al = cross_entropy(az, a_t, aw, d["reduction"], int(d["ignore_index"]), float(d["label_smoothing"]))
    assert_close(al, d["loss"], rtol=1e-12, atol=1e-12, name=case)
    al.backward(af.tensor(d["g"], dtype="float64"))
    assert_close(az.grad, d["dz"], rtol=1e-10, atol=1e-12, name=f"dlogits {case}")
    if kind == "prob":
        assert_close(a_t.grad, d["dtarget"], rtol=1e-10, atol=1e-12, name=f"dtarget {case}")


def test_all_ignored_is_nan_like_torch():
    assert math.isnan(float(reference.case("loss_ce", "all_ignored")["loss"]))
    assert math.isnan(cross_entropy(af.zeros(2, 3), idx([1, 1]), ignore_index=1).item())


def test_rejects_bad_input():
    z = af.zeros(2, 3)
    with pytest.raises(ValueError, match="'target' holds class 3 at position 1"):
        cross_entropy(z, idx([0, 3]))
    with pytest.raises(ValueError, match="'target' holds class -1"):
        cross_entropy(z, idx([-1, 0]))
    with pytest.raises(TypeError, match="'target' must be int64 class indices or float32 probabilities"):
        cross_entropy(z, af.zeros(2, dtype="int32"))
    with pytest.raises(TypeError, match="'target' must be int64"):
        cross_entropy(z, af.zeros(2, 3, dtype="float64"))
    with pytest.raises(ValueError, match=r"'target' \(class indices\) must have shape \(N,\) = \(2,\)"):
        cross_entropy(z, idx([0, 1, 2]))
    with pytest.raises(ValueError, match=r"'target' \(probabilities\) must have the logits' shape"):
        cross_entropy(z, af.zeros(2, 4))
    with pytest.raises(ValueError, match=r"'weight' must have shape \(C,\) = \(3,\)"):
        cross_entropy(z, idx([0, 1]), af.ones(2))
    with pytest.raises(TypeError, match="'weight' is float64"):
        cross_entropy(z, idx([0, 1]), af.ones(3, dtype="float64"))
    with pytest.raises(ValueError, match="'input' must be logits of shape"):
        cross_entropy(af.zeros(3), idx([0]))
    with pytest.raises(ValueError, match="'reduction'"):
        call("cross_entropy", [z, idx([0, 1])], (3, -100), (0.0,))
    with pytest.raises(ValueError, match="'label_smoothing'"):
        cross_entropy(z, idx([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="'target' is required"):
        call("cross_entropy", [z], (1, -100), (0.0,))


def test_threads_bitwise_identical(rng):
    z = rng.standard_normal((2048, 7)).astype(np.float32)
    y = rng.integers(0, 7, 2048)
    w = (rng.random(7) + 0.5).astype(np.float32)
    assert_thread_invariant(lambda az, ay, aw: cross_entropy(az, ay, aw, label_smoothing=0.1), [z, y, w],
                            name="cross_entropy")
