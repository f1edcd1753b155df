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


# ---- flat arenas: one C call per group segment, bitwise the per-tensor loop ----

OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.SGD, dict(lr=0.1)),
    (optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
]
SHAPES = [((3, 2), "float32"), ((4,), "float32"), ((2, 2), "float64"), ((5,), "float32"), ((3,), "float64")]


def grads_through_backward(params, grads):
    """Gradients that arrive the way training produces them: backward of sum(p * g), whose
    gradient is exactly g, accumulated into each parameter's arena slot."""
    for p, g in zip(params, grads):
        (p * af.tensor(g)).sum().backward()


def count_calls(monkeypatch, module):
    calls = []
    real = module._call
    monkeypatch.setattr(module, "_call", lambda op, ins, *a: (calls.append((op, ins[0].shape)), real(op, ins, *a))[1])
    return calls


@pytest.mark.parametrize("cls,kw", OPTIMIZERS)
def test_arena_step_is_bitwise_the_per_tensor_step(cls, kw, rng, monkeypatch):
    start = [rng.standard_normal(s).astype(d) for s, d in SHAPES]
    grads = [[rng.standard_normal(s).astype(d) for s, d in SHAPES] for _ in range(4)]
    groups = lambda ps: [{"params": ps[:3]}, {"params": ps[3:], "lr": kw["lr"] * 3}]
    fast = [af.tensor(s, requires_grad=True) for s in start]
    slow = [af.tensor(s, requires_grad=True) for s in start]
    opt_fast, opt_slow = cls(groups(fast), **kw), cls(groups(slow), **kw)
    calls = count_calls(monkeypatch, af.optim.optimizer)
    for step in range(4):
        opt_fast.zero_grad()
        grads_through_backward(fast, grads[step])
        for p, g in zip(slow, grads[step]):
            p.grad = af.tensor(g)  # a gradient from elsewhere: the optimizer updates tensor by tensor
        del calls[:]
        opt_fast.step()
        # one call per (group, dtype) segment; group 0's float64 segment is one tensor
        assert [shape for _, shape in calls] == [(10,), (2, 2), (5,), (3,)]
        opt_slow.step()
        assert len(calls) == 4 + 5
    for p, q in zip(fast, slow):
        assert np.array_equal(p.numpy(), q.numpy())
    for p, q in zip(fast, slow):
        for key, value in opt_slow.state.get(q, {}).items():
            ours = opt_fast.state[p][key]
            assert np.array_equal(np.asarray(ours), np.asarray(value)), key
    # the moments of a segment live in one arena too
    if opt_fast.state.get(fast[0]):
        key = "momentum_buffer" if cls is optim.SGD else "exp_avg"
        assert opt_fast.state[fast[0]][key]._shares_memory(opt_fast.state[fast[1]][key])


def test_arena_step_skips_parameters_without_gradient(rng, monkeypatch):
    """A parameter that got no gradient (frozen) is not touched (torch skips it: no weight decay,
    no momentum); it splits its segment into runs, one call each, single tensors on their own."""
    params = [af.tensor(rng.standard_normal(k + 1).astype(np.float32), requires_grad=True) for k in range(6)]
    opt = optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    before = [p.numpy().copy() for p in params]
    params[2].requires_grad = False
    params[4].requires_grad = False
    sum(p.sum() for p in params).backward()
    assert opt.arenas["float32"].status() == af._C.ARENA_NO_GRAD
    calls = count_calls(monkeypatch, af.optim.optimizer)
    opt.step()
    assert [shape for _, shape in calls] == [(1 + 2,), (4,), (6,)]
    for k in (2, 4):
        assert np.array_equal(params[k].numpy(), before[k]) and params[k] not in opt.state
    for k in (0, 1, 3, 5):  # first step: buf = g = 1 + weight_decay * p
        assert_close(params[k], before[k] - 0.1 * (1 + 0.1 * before[k]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls,kw", OPTIMIZERS[1:2] + OPTIMIZERS[3:])
def test_arena_state_dict_round_trip_resumes_exactly(cls, kw, rng):
    start = [rng.standard_normal(s).astype(d) for s, d in SHAPES]
    grads = [[rng.standard_normal(s).astype(d) for s, d in SHAPES] for _ in range(5)]
    params = [af.tensor(s, requires_grad=True) for s in start]
    opt = cls(params, **kw)
    for step in range(5):
        opt.zero_grad()
        grads_through_backward(params, grads[step])
        opt.step()
        if step == 1:
            saved, saved_params = opt.state_dict(), [p.numpy().copy() for p in params]
    resumed = [af.tensor(s, requires_grad=True) for s in saved_params]
    opt2 = cls(resumed, **kw)
    opt2.load_state_dict(saved)
    for step in range(2, 5):
        opt2.zero_grad()
        grads_through_backward(resumed, grads[step])
        opt2.step()
    for p, q in zip(params, resumed):
        assert np.array_equal(p.numpy(), q.numpy())
    key = "momentum_buffer" if cls is optim.SGD else "exp_avg"
    assert opt2.state[resumed[0]][key]._shares_memory(opt2.state[resumed[1]][key])  # repacked


def test_optimizer_packs_its_parameters_and_model_training_uses_them(rng):
    net = af.nn.Sequential(af.nn.Linear(3, 4), af.nn.Linear(4, 2))
    opt = optim.AdamW(net.parameters(), lr=1e-2)
    arena = opt.arenas["float32"]
    assert all(p._shares_memory(arena.data) for p in net.parameters())
    x = af.tensor(rng.standard_normal((6, 3)).astype(np.float32))
    before = arena.data.numpy().copy()
    for _ in range(2):
        opt.zero_grad()
        net(x).sum().backward()
        assert arena.status() == af._C.ARENA_INTACT
        opt.step()
    assert not np.array_equal(arena.data.numpy(), before)
    assert all(p._shares_memory(arena.data) for p in net.parameters())


def test_add_param_group_repacks_and_the_new_group_is_a_segment(rng, monkeypatch):
    backbone = [af.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True) for _ in range(2)]
    head = [af.tensor(rng.standard_normal(2).astype(np.float32), requires_grad=True) for _ in range(2)]
    opt = optim.SGD(head, lr=0.1, momentum=0.9)
    grads_through_backward(head, [np.ones(2, np.float32)] * 2)
    opt.step()
    buf = opt.state[head[0]]["momentum_buffer"].numpy().copy()
    opt.add_param_group({"params": backbone, "lr": 0.01})
    arena = opt.arenas["float32"]
    assert [id(p) for p in arena.params] == [id(p) for p in head + backbone]
    calls = count_calls(monkeypatch, af.optim.optimizer)
    opt.zero_grad()
    grads_through_backward(head + backbone, [np.ones(2, np.float32)] * 2 + [np.ones(3, np.float32)] * 2)
    opt.step()
    assert [shape for _, shape in calls] == [(4,), (6,)]
    assert_close(opt.state[head[0]]["momentum_buffer"], 0.9 * buf + 1, rtol=1e-6, atol=0)
