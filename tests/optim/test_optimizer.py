"""affectfer.optim: param groups with their own lr, state_dict round trips, zero_grad, and the same
parameters as torch.optim over several steps (torch's numbers from tests/reference/data)."""
import json

import numpy as np
import pytest

import affectfer as af
from affectfer import optim
from affectfer.testing import assert_close
from tests import reference


def make_params(rng, shapes=((3, 2), (4,))):
    return [af.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]


def set_grads(params, rng):
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    for p, g in zip(params, grads):
        p.grad = af.tensor(g)
    return grads


@pytest.mark.parametrize("make", [
    lambda groups: optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda groups: optim.Adam(groups, lr=1e-2, weight_decay=1e-3),
    lambda groups: optim.AdamW(groups, lr=1e-2, amsgrad=True),
])
def test_param_groups_use_their_own_lr(make, rng):
    """The head at 10x the backbone lr: a group's own lr, the defaults for the rest."""
    backbone, head = make_params(rng), make_params(rng)
    opt = make([{"params": backbone}, {"params": head, "lr": 0.5, "weight_decay": 0.0}])
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[0]["lr"] == opt.defaults["lr"]
    assert opt.param_groups[1]["weight_decay"] == 0.0
    before = [p.numpy().copy() for p in backbone + head]
    set_grads(backbone + head, rng)
    opt.step()
    moved = [np.abs(p.numpy() - b).max() for p, b in zip(backbone + head, before)]
    assert all(m > 0 for m in moved)
    # a single-group optimizer with the head's settings reproduces the head's update exactly
    head2 = [af.tensor(b, requires_grad=True) for b in before[2:]]
    for p, q in zip(head, head2):
        q.grad = p.grad
    solo = make([{"params": head2, "lr": 0.5, "weight_decay": 0.0}])
    solo.step()
    for p, q in zip(head, head2):
        assert np.array_equal(p.numpy(), q.numpy())


def test_params_without_grad_are_skipped(rng):
    a, b = make_params(rng)
    opt = optim.SGD([a, b], lr=0.1)
    a_before, b_before = a.numpy().copy(), b.numpy().copy()
    a.grad = af.ones(a.shape)
    opt.step()
    assert np.array_equal(b.numpy(), b_before)
    assert_close(a, a_before - np.float32(0.1), rtol=0, atol=1e-7)


def test_zero_grad(rng):
    params = make_params(rng)
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, rng)
    held = params[0].grad
    opt.zero_grad(set_to_none=False)
    assert np.array_equal(held.numpy(), np.zeros(params[0].shape, np.float32))  # zeroed in place
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("cls,kw", [(optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
                                    (optim.Adam, dict(lr=1e-2, amsgrad=True)), (optim.AdamW, dict(lr=1e-2))])
def test_state_dict_round_trip_resumes_exactly(cls, kw, rng):
    params = make_params(rng)
    start = [p.numpy().copy() for p in params]
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(6)]
    opt = cls(params, **kw)
    for step in range(6):
        for p, g in zip(params, grads[step]):
            p.grad = af.tensor(g)
        opt.step()
        if step == 2:
            saved, saved_params = opt.state_dict(), [p.numpy().copy() for p in params]
    # resume from step 3 in a fresh optimizer over fresh tensors
    params2 = [af.tensor(s, requires_grad=True) for s in saved_params]
    opt2 = cls(params2, **kw)
    opt2.load_state_dict(saved)
    for step in range(3, 6):
        for p, g in zip(params2, grads[step]):
            p.grad = af.tensor(g)
        opt2.step()
    for p, q, s in zip(params, params2, start):
        assert np.array_equal(p.numpy(), q.numpy())
        assert not np.array_equal(p.numpy(), s)


def test_bad_construction():
    p = af.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2.0], lr=0.1)


@pytest.mark.parametrize("case", reference.cases("optimizer"))
def test_matches_torch_optim_with_param_groups(case):
    """torch.optim with two param groups (the second at 3x lr), 5 steps; cases in make_fixtures.py."""
    d = reference.case("optimizer", case)
    kw = json.loads(d["kwargs"])
    params = [af.tensor(d["p0"], requires_grad=True), af.tensor(d["p1"], requires_grad=True)]
    opt = getattr(optim, d["name"])([{"params": [params[0]]}, {"params": [params[1]], "lr": kw["lr"] * 3}], **kw)
    for step in range(5):
        for k, p in enumerate(params):
            p.grad = af.tensor(d[f"grads{k}"][step])
        opt.step()
    for k, p in enumerate(params):
        assert_close(p, d[f"p{k}_after"], rtol=1e-6, atol=1e-7, name=f"param {k}")
