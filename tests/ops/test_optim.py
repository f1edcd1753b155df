"""optim.c: sgd_step and adam_step (in-place, no backward) over several steps against an independent
NumPy re-implementation of torch.optim's formulas, against torch.optim itself when importable, and
with malformed arguments."""
import json
import math

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close
from tests import reference
from tests.conftest import call


SHAPES = [(1,), (7,), (3, 5), (2, 3, 4)]
SGD_CONFIGS = [
    dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.0, nesterov=False),
    dict(lr=0.02, momentum=0.8, dampening=0.0, weight_decay=5e-3, nesterov=True),
]
ADAM_CONFIGS = [
    dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=False, decoupled=False),
    dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, amsgrad=True, decoupled=False),
    dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, amsgrad=False, decoupled=True),
    dict(lr=2e-3, betas=(0.6, 0.9), eps=1e-7, weight_decay=0.01, amsgrad=True, decoupled=True),
]
STEPS = 5


def sgd_reference(p, grads, lr, momentum, dampening, weight_decay, nesterov):
    """Sutskever-style momentum as torch.optim.SGD documents it, in float64."""
    p, buf = p.astype(np.float64).copy(), None
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p, buf


def adam_reference(p, grads, lr, betas, eps, weight_decay, amsgrad, decoupled):
    """Adam / AdamW as in torch.optim's documentation (Kingma & Ba, Loshchilov & Hutter), float64."""
    b1, b2 = betas
    p = p.astype(np.float64).copy()
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr / (1 - b1 ** t) * m / (np.sqrt(vhat) + eps)
    return p, m, v, vmax


def run_sgd(p, grads, cfg):
    tp = af.tensor(p)
    buf = af.zeros(p.shape, dtype=tp.dtype)
    for k, g in enumerate(grads):
        inputs = [tp, af.tensor(g.astype(p.dtype))] + ([buf] if cfg["momentum"] else [])
        out = call("sgd_step", inputs, (int(cfg["nesterov"]), int(k == 0)),
                   (cfg["lr"], cfg["momentum"], cfg["dampening"], cfg["weight_decay"]))
        assert out == ()  # no outputs: the update is in place
    return tp, buf


def run_adam(p, grads, cfg):
    tp = af.tensor(p)
    m, v, vmax = (af.zeros(p.shape, dtype=tp.dtype) for _ in range(3))
    for t, g in enumerate(grads, start=1):
        inputs = [tp, af.tensor(g.astype(p.dtype)), m, v] + ([vmax] if cfg["amsgrad"] else [])
        call("adam_step", inputs, (t, int(cfg["amsgrad"]), int(cfg["decoupled"])),
             (cfg["lr"], cfg["betas"][0], cfg["betas"][1], cfg["eps"], cfg["weight_decay"]))
    return tp, m, v, vmax


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", ["adam_step", "sgd_step"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_matches_numpy(op, shape, dtype, rng):
    p = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    grads64 = [g.astype(np.float64) for g in grads]
    if op == "sgd_step":
        for cfg in SGD_CONFIGS:
            tp, buf = run_sgd(p, grads, cfg)
            p_ref, buf_ref = sgd_reference(p, grads64, **cfg)
            assert_close(tp, p_ref, **tol(dtype), name=f"param {cfg}")
            if cfg["momentum"]:
                assert_close(buf, buf_ref, **tol(dtype), name=f"momentum_buffer {cfg}")
    else:
        for cfg in ADAM_CONFIGS:
            tp, m, v, vmax = run_adam(p, grads, cfg)
            p_ref, m_ref, v_ref, vmax_ref = adam_reference(p, grads64, **cfg)
            assert_close(tp, p_ref, **tol(dtype), name=f"param {cfg}")
            assert_close(m, m_ref, **tol(dtype), name=f"exp_avg {cfg}")
            assert_close(v, v_ref, **tol(dtype), name=f"exp_avg_sq {cfg}")
            if cfg["amsgrad"]:
                assert_close(vmax, vmax_ref, **tol(dtype), name=f"max_exp_avg_sq {cfg}")


def test_adam_first_step_moves_every_element_by_lr(rng):
    """Bias correction: with eps ~ 0, Adam's first step is exactly -lr * sign(grad)."""
    p = rng.standard_normal(6)
    g = rng.standard_normal(6)
    tp, *_ = run_adam(p, [g], dict(lr=0.01, betas=(0.9, 0.999), eps=1e-300, weight_decay=0.0, amsgrad=False,
                                  decoupled=False))
    assert_close(tp, p - 0.01 * np.sign(g), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", reference.cases("optim_step"))
def test_update_matches_torch_optim(case):
    """torch.optim.SGD / Adam / AdamW (foreach=False) over 5 steps, configs in make_fixtures.py."""
    d = reference.case("optim_step", case)
    cfg = json.loads(d["config"])
    run = run_sgd if "momentum" in cfg else run_adam
    ours, *_ = run(d["p"], list(d["grads"]), cfg)
    assert_close(ours, d["p_after"], rtol=1e-6, atol=1e-7, name="param after 5 steps vs torch")


def test_zero_gradient_sgd_without_decay_leaves_param_unchanged(rng):
    p = rng.standard_normal(5).astype(np.float32)
    tp, _ = run_sgd(p, [np.zeros(5, np.float32)] * 3, SGD_CONFIGS[0])
    assert np.array_equal(tp.numpy(), p)


def test_bad_arguments_raise_naming_them():
    p, g = af.zeros(3), af.zeros(3)
    with pytest.raises(ValueError, match="momentum_buffer"):
        call("sgd_step", [p, g], (0, 1), (0.1, 0.9, 0.0, 0.0))
    with pytest.raises(ValueError, match="'grad' has shape"):
        call("sgd_step", [p, af.zeros(4)], (0, 1), (0.1, 0.0, 0.0, 0.0))
    with pytest.raises(TypeError, match="grad"):
        call("sgd_step", [p, af.zeros(3, dtype="float64")], (0, 1), (0.1, 0.0, 0.0, 0.0))
    with pytest.raises(TypeError, match="param"):
        call("sgd_step", [af.zeros(3, dtype="int64"), g], (0, 1), (0.1, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="nesterov"):
        call("sgd_step", [p, g, af.zeros(3)], (1, 1), (0.1, 0.9, 0.5, 0.0))
    with pytest.raises(ValueError, match="lr must be finite"):
        call("sgd_step", [p, g], (0, 1), (math.nan, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="integer and"):
        call("sgd_step", [p, g], (0,), (0.1, 0.0, 0.0, 0.0))
    m, v = af.zeros(3), af.zeros(3)
    with pytest.raises(ValueError, match="step must be >= 1"):
        call("adam_step", [p, g, m, v], (0, 0, 0), (0.1, 0.9, 0.999, 1e-8, 0.0))
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        call("adam_step", [p, g, m, v], (1, 1, 0), (0.1, 0.9, 0.999, 1e-8, 0.0))
    with pytest.raises(ValueError, match="betas"):
        call("adam_step", [p, g, m, v], (1, 0, 0), (0.1, 1.0, 0.999, 1e-8, 0.0))
    with pytest.raises(ValueError, match="'exp_avg_sq' is required"):
        call("adam_step", [p, g, m], (1, 0, 0), (0.1, 0.9, 0.999, 1e-8, 0.0))
