"""affectfer.nn.utils.clip_grad_norm_: the total norm over all gradients, and the scaling, as torch."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.nn.utils import clip_grad_norm_
from affectfer.testing import assert_close
from tests import reference


def params_with_grads(rng, scale=1.0):
    ps = []
    for shape in [(3, 4), (5,), (2, 2, 2)]:
        p = af.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
        p.grad = af.tensor((rng.standard_normal(shape) * scale).astype(np.float32))
        ps.append(p)
    return ps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_total_norm_and_scaling(norm_type, max_norm, rng):
    ps = params_with_grads(rng)
    grads = [p.grad.numpy().astype(np.float64).ravel() for p in ps]
    flat = np.concatenate(grads)
    expect = np.abs(flat).max() if math.isinf(norm_type) else (np.abs(flat) ** norm_type).sum() ** (1 / norm_type)
    total = clip_grad_norm_(ps, max_norm, norm_type)
    assert total.item() == pytest.approx(expect, rel=1e-5)
    coef = min(max_norm / (expect + 1e-6), 1.0)
    for p, g in zip(ps, grads):
        assert_close(p.grad.numpy().ravel(), g * coef, rtol=1e-5, atol=1e-7)


def test_matches_torch():
    ref = reference.load("nn_utils")
    params = [ref.case(f"param{k}") for k in range(3)]
    ps = []
    for d in params:
        p = af.tensor(d["p"], requires_grad=True)
        p.grad = af.tensor(d["grad"])
        ps.append(p)
    clip = ref.case("clip")
    ours = clip_grad_norm_(ps, float(clip["max_norm"]))
    assert ours.item() == pytest.approx(float(clip["total_norm"]), rel=1e-6)
    for p, d in zip(ps, params):
        assert_close(p.grad, d["grad_after"], rtol=1e-6, atol=1e-7)


def test_nonfinite_and_empty(rng):
    p = af.tensor(np.ones(3, np.float32), requires_grad=True)
    p.grad = af.tensor(np.array([1.0, np.inf, 0.0], np.float32))
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert clip_grad_norm_([af.zeros(2, requires_grad=True)], 1.0).item() == 0.0


def test_clip_scales_the_gradients_in_place(rng):
    """torch's clip_grad_norm_ multiplies each .grad in place: a reference taken before clipping
    (and the gradient arena behind it) sees the scaled values; the .grad objects stay the same."""
    ps = params_with_grads(rng, scale=5.0)
    held = [p.grad for p in ps]
    before = [g.numpy().copy() for g in held]
    total = clip_grad_norm_(ps, 1.0).item()
    coef = 1.0 / (total + 1e-6)
    assert coef < 1
    for p, g, b in zip(ps, held, before):
        assert p.grad._shares_memory(g)
        assert_close(g, b * np.float32(coef), rtol=1e-6, atol=1e-7)
    net = af.nn.Linear(3, 2)
    arena = af.nn.utils.flatten_parameters(net)["float32"]
    net(af.tensor(rng.standard_normal((4, 3)).astype(np.float32) * 10)).sum().backward()
    flat = arena.grad.numpy().copy()
    total = clip_grad_norm_(net.parameters(), 0.5).item()
    assert_close(arena.grad, flat * np.float32(0.5 / (total + 1e-6)), rtol=1e-6, atol=1e-7)
    assert arena.status() == af._C.ARENA_INTACT
