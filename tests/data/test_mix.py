import numpy as np
import pytest

import affectfer as af
from affectfer import _C
from affectfer.data import MixAugment, Mixup, mixaugment_loss, mixup_loss

# Mixup (Zhang et al., arXiv 1710.09412) and MixAugment (Psaroudakis & Kollias, arXiv 2205.04442) vectors, worked by hand
Z = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
ZM = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.2]])
W = np.array([1.0, 3.0, 5.0])


def ce_np(z, y, w=None):
    """Mean cross-entropy by hand: -log softmax(z)[y], weighted mean divides by the sum of weights."""
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    nll = -logp[np.arange(len(y)), y]
    if w is None:
        return nll.mean()
    return (w[y] * nll).sum() / w[y].sum()


def batch(lam=0.7, cls=MixAugment):
    return cls()(np.zeros((2, 3), np.float32), [0, 2], lam=lam, perm=[1, 0])


def t(a, grad=False):
    return af.tensor(np.asarray(a, np.float64), dtype="float64", requires_grad=grad)


def test_mixaugment_variant_a_matches_hand_computation():
    b = batch()
    by_hand = 0.7 * ce_np(ZM, [0, 2]) + 0.3 * ce_np(ZM, [2, 0]) + ce_np(Z, [0, 2]) + ce_np(Z[::-1], [2, 0])
    got = mixaugment_loss(t(ZM), t(Z), t(Z[::-1]), b).item()
    assert abs(got - by_hand) < 1e-12 and abs(got - 2.3870397204) < 1e-9


def test_mixaugment_variant_b_and_bad_variant():
    b = batch()
    by_hand = 0.5 * (0.7 * ce_np(ZM, [0, 2]) + 0.3 * ce_np(ZM, [2, 0]) + ce_np(Z, [0, 2]))
    got = mixaugment_loss(t(ZM), t(Z), None, b, variant="B").item()
    assert abs(got - by_hand) < 1e-12 and abs(got - 0.8827063240) < 1e-9
    with pytest.raises(ValueError, match="variant"):
        mixaugment_loss(t(ZM), t(Z), t(Z), b, variant="C")


def test_mixup_loss_index_and_soft_forms():
    b = batch(cls=Mixup)
    assert b.permuted is None
    # the mixup vectors use the logits Z of the cross-entropy tests and w = [1, 3, 5]
    idx = mixup_loss(t(Z), b).item()
    assert abs(idx - (0.7 * ce_np(Z, [0, 2]) + 0.3 * ce_np(Z, [2, 0]))) < 1e-12
    assert abs(idx - 1.1016270724) < 1e-9
    assert abs(mixup_loss(t(Z), b, soft=True).item() - idx) < 1e-12  # soft targets through cross_entropy
    weighted = mixup_loss(t(Z), b, weight=t(W)).item()
    assert abs(weighted - (0.7 * ce_np(Z, [0, 2], W) + 0.3 * ce_np(Z, [2, 0], W))) < 1e-12
    assert abs(weighted - 1.4830446127) < 1e-9
    assert abs(mixup_loss(t(Z), b, weight=t(W), soft=True).item() - 4.4491338380) < 1e-9
    assert np.allclose(np.asarray(b.soft_targets(3)), [[0.7, 0, 0.3], [0.3, 0, 0.7]])


def test_mixaugment_loss_gradient_reaches_all_logits():
    zm, zr, zp = t(ZM, True), t(Z, True), t(Z[::-1], True)
    mixaugment_loss(zm, zr, zp, batch()).backward()

    def dce(z, y):
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        return p / len(y)
    assert np.allclose(np.asarray(zm.grad), 0.7 * dce(ZM, [0, 2]) + 0.3 * dce(ZM, [2, 0]), atol=1e-12)
    assert np.allclose(np.asarray(zr.grad), dce(Z, [0, 2]), atol=1e-12)
    assert np.allclose(np.asarray(zp.grad), dce(Z[::-1], [2, 0]), atol=1e-12)


def test_mix_batch_pixels(rng):
    x = rng.standard_normal((5, 3, 4, 7)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 4])
    af.manual_seed(11)
    b = MixAugment(alpha=0.4)(af.from_numpy(x), y)
    lam, perm = b.lam, b.perm
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(5))
    ref = np.float32(lam) * x + np.float32(1.0 - lam) * x[perm]
    assert np.array_equal(np.asarray(b.mixed), ref)  # float32, no FMA: bitwise
    assert np.array_equal(np.asarray(b.permuted), x[perm])
    assert np.asarray(b.labels_b).tolist() == y[perm].tolist()
    af.manual_seed(11)
    again = MixAugment(alpha=0.4)(x, y)
    assert again.lam == lam and np.array_equal(again.perm, perm)  # repeatable from the global seed


def test_alpha_zero_means_no_mixing(rng):
    x = rng.standard_normal((3, 2)).astype(np.float32)
    b = Mixup(alpha=0.0)(x, [0, 1, 0])
    assert b.lam == 1.0 and np.array_equal(np.asarray(b.mixed), x)


@pytest.mark.parametrize("a,b", [(0.1, 0.1), (1.0, 1.0), (2.0, 3.0)])
def test_beta_sampler_moments(a, b):
    v = _C.beta_samples(3, 5, a, b, 20000)
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    assert np.all((v >= 0) & (v <= 1))
    assert abs(v.mean() - mean) < 0.01 and abs(v.var() - var) < 0.01


def test_bad_inputs():
    with pytest.raises(ValueError, match="labels"):
        Mixup()(np.zeros((2, 3), np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match="perm"):
        _C.mix_batch(af.zeros(2, 3), np.array([0, 5]), 0.5, False)
    with pytest.raises(ValueError, match="lam"):
        _C.mix_batch(af.zeros(2, 3), np.array([0, 1]), 1.5, False)
    with pytest.raises(TypeError, match="images"):
        _C.mix_batch(af.zeros(2, 3, dtype="float64"), np.array([0, 1]), 0.5, False)
    with pytest.raises(ValueError, match="alpha"):
        Mixup(float("nan"))
    with pytest.raises(ValueError):
        _C.beta_samples(0, 0, -1.0, 1.0, 3)


def test_float_messages_show_the_value():
    """PyErr_Format has no %g: these printed a literal '%g' instead of the value."""
    x = af.tensor(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"'lam' must be in \[0, 1\], got 1.5"):
        af._C.mix_batch(x, np.array([1, 0]), 1.5, False)
    with pytest.raises(ValueError, match=r"got \(-1.0, 2.0\)"):
        af._C.beta_samples(0, 0, -1.0, 2.0, 3)
