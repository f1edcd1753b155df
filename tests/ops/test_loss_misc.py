"""loss_misc.c: bce_with_logits, focal_loss, ccc_loss, affinity_loss, partition_loss against the
published vectors (torch's documented formulas, worked by hand or in float64), NumPy references,
float64 gradchecks, bad input and thread-count determinism."""
import sys

import numpy as np
import pytest

import affectfer as af
from affectfer import losses
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import t64

Z = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]]  # logits and labels of torch's cross-entropy example vectors
Y = [0, 2]


def idx(a):
    return af.tensor(np.asarray(a, dtype=np.int64))


# ---- bce_with_logits ----
def ref_bce(x, t, w=None, p=None, reduction="mean"):
    x, t = x.astype(np.float64), t.astype(np.float64)
    p = np.ones(x.shape[-1]) if p is None else p
    w = np.ones_like(x) if w is None else np.broadcast_to(w, x.shape)
    log_sig = -np.logaddexp(0, -x)
    loss = w * ((1 - t) * x - (1 + (p - 1) * t) * log_sig)
    return {"none": loss, "mean": np.array(loss.mean()), "sum": np.array(loss.sum())}[reduction]


@pytest.mark.reference("bce_with_logits")
def test_bce_vector_with_pos_weight():
    # nn.BCEWithLogitsLoss(pos_weight=[2, 3, 0.5]) on X, T: 0.9433482876 and its gradient
    x = t64([[0.5, -1.0, 2.0], [-0.3, 0.0, 1.5]])
    t = af.tensor(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float64))
    loss = losses.binary_cross_entropy_with_logits(x, t, pos_weight=[2.0, 3.0, 0.5])
    assert loss.item() == pytest.approx(0.9433482876, abs=1e-10)
    loss.backward()
    assert_close(x.grad, [[-0.12584689, 0.04482357, -0.00993358], [0.07092625, -0.25, 0.13626241]], atol=1e-8, rtol=0)


@pytest.mark.reference("bce_with_logits")
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weight", [None, "column", "full"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_matches_numpy(reduction, weight, dtype, rng):
    x = (rng.standard_normal((5, 4)) * 30).astype(dtype)   # large logits: the stable form matters
    t = rng.random((5, 4)).astype(dtype)
    p = (rng.random(4) + 0.5).astype(dtype)
    w = None if weight is None else (rng.random(4) if weight == "column" else rng.random((5, 4))).astype(dtype)
    out = losses.binary_cross_entropy_with_logits(af.tensor(x), af.tensor(t), None if w is None else af.tensor(w),
                                                  af.tensor(p), reduction)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == "float32" else dict(rtol=1e-12, atol=1e-10)
    assert out.dtype == dtype
    assert_close(out, ref_bce(x, t, w, p, reduction).astype(dtype), **tol)


@pytest.mark.gradcheck("bce_with_logits")
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bce_gradcheck(reduction, rng):
    x, t = t64(rng.standard_normal((3, 4))), t64(rng.random((3, 4)))
    w, p = af.tensor(rng.random(4) + 0.5), af.tensor(rng.random(4) + 0.5)
    gradcheck(lambda x, t: losses.binary_cross_entropy_with_logits(x, t, w, p, reduction), [x, t])


# ---- focal_loss ----
def ref_focal(z, y, gamma, alpha=None, reduction="mean"):
    z = z.astype(np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    lpt = logp[np.arange(len(y)), y]
    a = np.ones(z.shape[1]) if alpha is None else alpha
    loss = -a[y] * (1 - np.exp(lpt)) ** gamma * lpt
    return {"none": loss, "mean": np.array(loss.mean()), "sum": np.array(loss.sum())}[reduction]


@pytest.mark.reference("focal_loss")
def test_focal_vectors_exact_and_detached_gradient():
    a = [0.25, 0.5, 1.0]
    z = t64(Z)
    loss = losses.focal_loss(z, idx(Y), gamma=2.0, alpha=a)
    assert loss.item() == pytest.approx(0.2020154441, abs=1e-10)
    loss.backward()
    assert_close(z.grad, [[-0.00341058, 0.00278841, 0.00062218], [0.13017785, 0.14386878, -0.27404663]],
                 atol=1e-8, rtol=0)
    z = t64(Z)
    losses.focal_loss(z, idx(Y), gamma=2.0, alpha=a, detach_modulator=True).backward()
    assert_close(z.grad, [[-0.00123198, 0.00100723, 0.00022474], [0.06019401, 0.06652467, -0.12671868]],
                 atol=1e-8, rtol=0)
    # gamma = 0 without alpha is plain cross-entropy
    assert losses.focal_loss(t64(Z), idx(Y), gamma=0.0).item() == pytest.approx(0.6216270724, abs=1e-10)


@pytest.mark.reference("focal_loss")
@pytest.mark.gradcheck("focal_loss")
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_numpy_and_gradcheck(reduction, gamma, rng):
    z = rng.standard_normal((6, 5)) * 2
    y = rng.integers(0, 5, 6)
    alpha = rng.random(5) + 0.2
    out = losses.focal_loss(af.tensor(z.astype(np.float32)), idx(y), gamma, alpha.astype(np.float32), reduction)
    assert_close(out, ref_focal(z, y, gamma, alpha, reduction).astype(np.float32), rtol=1e-5, atol=1e-6)
    gradcheck(lambda z: losses.focal_loss(z, idx(y), gamma, af.tensor(alpha), reduction), [t64(z)])


def test_focal_certain_prediction_has_finite_gradient():
    z = t64([[60.0, 0.0, 0.0]])  # p_y rounds to 1: the modulator's derivative must not be 0 * inf
    losses.focal_loss(z, idx([0]), gamma=0.5).backward()
    assert np.all(np.isfinite(z.grad.numpy()))


# ---- ccc_loss ----
def ref_ccc(x, y, unbiased=False, eps=0.0):
    q = len(x) - unbiased
    mx, my = x.mean(), y.mean()
    sxy = ((x - mx) * (y - my)).sum() / q
    return 1 - 2 * sxy / (((x - mx) ** 2).sum() / q + ((y - my) ** 2).sum() / q + (mx - my) ** 2 + eps)


@pytest.mark.reference("ccc_loss")
def test_ccc_vectors():
    x, y = t64([0.1, 0.4, -0.2, 0.8]), t64([0.0, 0.5, -0.5, 0.6], requires_grad=False)
    loss = losses.ccc_loss(x, y, eps=0.0)
    assert loss.item() == pytest.approx(1 - 0.891304347826, abs=1e-12)
    loss.backward()
    assert_close(x.grad, [0.1528040328, -0.1843100189, 0.4899180844, 0.1874606175], atol=1e-10, rtol=0)
    assert losses.ccc_loss(t64([0.1, 0.4, -0.2, 0.8]), y, unbiased=True, eps=0.0).item() == \
        pytest.approx(1 - 0.901511681173, abs=1e-12)
    assert losses.ccc_loss(t64([2.5, 0, 2, 8]), t64([3, -0.5, 2, 7]), eps=0.0).item() == \
        pytest.approx(1 - 0.97678916827853, abs=1e-12)


def test_ccc_mask_drops_unannotated_pairs(rng):
    x, y = rng.standard_normal(9), rng.standard_normal(9)
    mask = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    out = losses.ccc_loss(af.tensor(x), af.tensor(y), af.tensor(mask), eps=1e-8)
    assert out.item() == pytest.approx(ref_ccc(x[mask], y[mask], eps=1e-8), abs=1e-12)
    xa = t64(x)
    losses.ccc_loss(xa, af.tensor(y), af.tensor(mask)).backward()
    assert np.all(xa.grad.numpy()[~mask] == 0)
    none = t64(x)
    empty = losses.ccc_loss(none, af.tensor(y), af.tensor(np.zeros(9, dtype=bool)))
    assert empty.item() == 0.0
    empty.backward()
    assert np.all(none.grad.numpy() == 0)


@pytest.mark.reference("ccc_loss")
@pytest.mark.gradcheck("ccc_loss")
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_ccc_gradcheck(unbiased, masked, rng):
    x, y = t64(rng.standard_normal(7)), t64(rng.standard_normal(7))
    mask = af.tensor(np.array([1, 0, 1, 1, 1, 0, 1], dtype=np.uint8)) if masked else None
    assert losses.ccc_loss(x, y, mask, unbiased, 1e-8).item() == pytest.approx(
        ref_ccc(x.numpy()[[0, 2, 3, 4, 6]] if masked else x.numpy(), y.numpy()[[0, 2, 3, 4, 6]] if masked else y.numpy(),
                unbiased, 1e-8), abs=1e-12)
    gradcheck(lambda x, y: losses.ccc_loss(x, y, mask, unbiased, 1e-8), [x, y])


# ---- affinity_loss ----
def ref_affinity(x, y, c):
    B, K = len(y), c.shape[0]
    S = c.var(axis=0, ddof=1).sum()
    dist = (x ** 2).sum(1) + (c[y] ** 2).sum(1) - 2 * (x * c[y]).sum(1)
    return (np.clip(dist / S, 1e-12, 1e12).sum() + B * (K - 1) * 1e-12) / B


@pytest.mark.reference("affinity_loss")
@pytest.mark.gradcheck("affinity_loss")
def test_affinity_matches_numpy_and_gradcheck(rng):
    x, c = rng.standard_normal((5, 6)), rng.standard_normal((4, 6))
    y = np.array([0, 3, 3, 1, 0])
    out = losses.affinity_loss(af.tensor(x), idx(y), af.tensor(c))
    assert out.item() == pytest.approx(ref_affinity(x, y, c), rel=1e-12)
    out32 = losses.affinity_loss(af.tensor(x.astype(np.float32)), idx(y), af.tensor(c.astype(np.float32)))
    assert out32.item() == pytest.approx(ref_affinity(x, y, c), rel=1e-5)
    gradcheck(lambda x, c: losses.affinity_loss(x, idx(y), c), [t64(x), t64(c)])


def test_affinity_module_pools_feature_maps(rng):
    af.manual_seed(3)
    module = losses.AffinityLoss(num_classes=3, feat_dim=4)
    assert module.centers.shape == (3, 4) and module.centers.requires_grad
    fmap = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    out = module(af.tensor(fmap), idx([2, 0]))
    expected = ref_affinity(fmap.mean((2, 3)).astype(np.float64), np.array([2, 0]), module.centers.numpy().astype(np.float64))
    assert out.item() == pytest.approx(expected, rel=1e-5)


# ---- partition_loss ----
def ref_partition(h, eps=sys.float_info.epsilon, paper=False):
    v = h.var(axis=1, ddof=1)
    k = h.shape[1]
    return np.log1p(k / (v + eps)).mean() if paper else np.log1p(k / (v.mean() + eps))


@pytest.mark.reference("partition_loss")
@pytest.mark.gradcheck("partition_loss")
@pytest.mark.parametrize("paper", [False, True])
def test_partition_matches_numpy_and_gradcheck(paper, rng):
    h = rng.standard_normal((3, 4, 5))
    out = losses.partition_loss(af.tensor(h), paper_form=paper)
    assert out.item() == pytest.approx(ref_partition(h, paper=paper), rel=1e-12)
    gradcheck(lambda h: losses.partition_loss(h, paper_form=paper), [t64(h)])


def test_partition_single_head_is_zero():
    h = t64(np.ones((2, 1, 3)))
    out = losses.partition_loss(h)
    assert out.item() == 0.0
    out.backward()
    assert np.all(h.grad.numpy() == 0)


# ---- errors and threads ----
def test_bad_input_names_the_argument():
    z = af.zeros(2, 3)
    with pytest.raises(ValueError, match="'target' holds class 3 at position 1"):
        losses.focal_loss(z, idx([0, 3]))
    with pytest.raises(ValueError, match="'gamma' must be finite and >= 0"):
        losses.focal_loss(z, idx([0, 1]), gamma=-1.0)
    with pytest.raises(ValueError, match=r"'alpha' must have shape \(3,\)"):
        losses.focal_loss(z, idx([0, 1]), alpha=[1.0, 2.0])
    with pytest.raises(TypeError, match="'target' must be int64"):
        losses.focal_loss(z, af.zeros(2))
    with pytest.raises(ValueError, match="'target' has shape"):
        losses.binary_cross_entropy_with_logits(z, af.zeros(3, 2))
    with pytest.raises(ValueError, match=r"'pos_weight' must have shape \(3,\)"):
        losses.binary_cross_entropy_with_logits(z, af.zeros(2, 3), pos_weight=[1.0, 2.0])
    with pytest.raises(TypeError, match="'mask' must be bool or uint8"):
        losses.ccc_loss(af.zeros(3), af.zeros(3), af.zeros(3))
    with pytest.raises(ValueError, match="'centers' must have shape"):
        losses.affinity_loss(af.zeros(2, 4), idx([0, 0]), af.zeros(1, 4))
    with pytest.raises(ValueError, match="'target' holds class 5"):
        losses.affinity_loss(af.zeros(2, 4), idx([0, 5]), af.zeros(3, 4))
    with pytest.raises(ValueError, match="'input' must be 3-D"):
        losses.partition_loss(af.zeros(2, 4))
    with pytest.raises(ValueError, match="num_classes >= 2"):
        losses.AffinityLoss(num_classes=1)


def test_threads_bitwise_identical(rng):
    x = rng.standard_normal((300, 12)).astype(np.float32)
    t = (rng.random((300, 12)) > 0.5).astype(np.float32)
    assert_thread_invariant(lambda x, t: losses.binary_cross_entropy_with_logits(x, t), [x, t], name="bce_with_logits")
    z = rng.standard_normal((300, 8)).astype(np.float32)
    y = rng.integers(0, 8, 300)
    assert_thread_invariant(lambda z, y: losses.focal_loss(z, y), [z, y], name="focal_loss")
    a, b = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    assert_thread_invariant(lambda a, b: losses.ccc_loss(a, b), [a, b], name="ccc_loss")
    c = rng.standard_normal((8, 12)).astype(np.float32)
    assert_thread_invariant(lambda x, c: losses.affinity_loss(x, af.tensor(y[:300]), c), [x, c], name="affinity_loss")
    h = rng.standard_normal((30, 4, 16)).astype(np.float32)
    assert_thread_invariant(lambda h: losses.partition_loss(h), [h], name="partition_loss")


def test_focal_ignore_index(rng):
    z = rng.standard_normal((5, 4))
    y = np.array([1, -1, 3, -1, 0])
    keep = y != -1
    out = losses.focal_loss(t64(z), idx(y), gamma=2.0, ignore_index=-1)
    assert out.item() == pytest.approx(ref_focal(z[keep], y[keep], 2.0).item(), rel=1e-12)
    za = t64(z)
    losses.focal_loss(za, idx(y), gamma=2.0, ignore_index=-1).backward()
    assert np.all(za.grad.numpy()[~keep] == 0)
    gradcheck(lambda z: losses.focal_loss(z, idx(y), 2.0, reduction="sum", ignore_index=-1), [t64(z)])
    none = losses.focal_loss(t64(z), idx(y), gamma=2.0, reduction="none", ignore_index=-1).numpy()
    assert none[1] == 0 and none[3] == 0
