"""Flat parameter arenas (affectfer.nn.utils.flatten_parameters, csrc/core/arena.c): Parameters are
views into one flat tensor per dtype, backward accumulates into the gradient arena, zero_grad is one
fill, and nothing that viewed the old memory dangles."""
import gc

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
from affectfer import _C
from affectfer.nn.utils import ParameterArena, flatten_parameters, zero_grad_


def small_net():
    af.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def loss_of(net, rng):
    x = af.tensor(rng.standard_normal((5, 3)).astype(np.float32))
    return (net(x) * net(x)).sum()


def test_parameters_are_views_of_the_arena(rng):
    net = small_net()
    params = list(net.parameters())
    before = [p.numpy().copy() for p in params]
    arenas = flatten_parameters(net)
    assert list(arenas) == ["float32"]
    arena = arenas["float32"]
    assert [id(p) for p in arena.params] == [id(p) for p in params]  # the same Parameter objects
    assert arena.data.shape == (sum(p.numel() for p in params),)
    flat = arena.data.numpy()
    for p, b, start in zip(params, before, arena.starts):
        assert p._shares_memory(arena.data)
        assert np.array_equal(p.numpy(), b)  # packing kept the values
        assert np.array_equal(flat[start:start + p.numel()].reshape(p.shape), b)
    # writing through the arena changes the parameters, and the other way round
    af.nn.init.constant_(arena.data, 0.25)
    assert all(np.all(p.numpy() == 0.25) for p in params)
    af.nn.init.constant_(params[1], -1.0)
    assert np.all(flat[arena.starts[1]:arena.starts[2]] == -1.0)
    assert arena.status() == _C.ARENA_NO_GRAD  # in place, no gradients yet


def test_backward_accumulates_into_the_gradient_arena(rng):
    plain, packed = small_net(), small_net()
    arena = flatten_parameters(packed)["float32"]
    seed = rng.integers(1 << 30)
    for _ in range(2):  # the second backward accumulates onto the first
        loss_of(plain, np.random.default_rng(seed)).backward()
        loss_of(packed, np.random.default_rng(seed)).backward()
    assert arena.status() == _C.ARENA_INTACT
    flat = arena.grad.numpy()
    for p, q, start in zip(plain.parameters(), packed.parameters(), arena.starts):
        assert q.grad._shares_memory(arena.grad)
        assert np.array_equal(p.grad.numpy(), q.grad.numpy())
        assert np.array_equal(flat[start:start + q.numel()].reshape(q.shape), p.grad.numpy())


def test_zero_grad_set_to_none_then_backward_adopts_the_slots_again(rng):
    net = small_net()
    arena = flatten_parameters(net)["float32"]
    loss_of(net, rng).backward()
    first = [p.grad.numpy().copy() for p in net.parameters()]
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert arena.status() == _C.ARENA_NO_GRAD
    loss_of(net, np.random.default_rng(1)).backward()
    assert arena.status() == _C.ARENA_INTACT  # back in the arena, zeroed before accumulating
    loss_of(net, np.random.default_rng(1)).backward()
    net.zero_grad()
    loss_of(net, np.random.default_rng(1)).backward()
    again = [p.grad.numpy() for p in net.parameters()]
    assert not all(np.array_equal(a, b) for a, b in zip(first, again))  # another input
    fresh = small_net()
    loss_of(fresh, np.random.default_rng(1)).backward()
    for p, q in zip(fresh.parameters(), net.parameters()):
        assert np.array_equal(p.grad.numpy(), q.grad.numpy())


def test_zero_grad_in_place_is_one_fill_of_the_arena(rng, monkeypatch):
    net = small_net()
    arena = flatten_parameters(net)["float32"]
    loss_of(net, rng).backward()
    held = net[0].weight.grad
    fills = []
    real_call = af.nn.utils._call
    monkeypatch.setattr(af.nn.utils, "_call", lambda op, ins, *a: (fills.append((op, ins[0].shape)),
                                                                    real_call(op, ins, *a))[1])
    net.zero_grad(set_to_none=False)
    assert fills == [("fill_", arena.grad.shape)]
    assert np.all(held.numpy() == 0) and np.all(arena.grad.numpy() == 0)
    # a gradient assigned from elsewhere is not in the arena: zeroed on its own, in place
    own = af.ones(2)
    net[2].bias.grad = own
    fills.clear()
    net.zero_grad(set_to_none=False)
    assert ("fill_", (2,)) in fills and np.all(own.numpy() == 0)
    # parameters without a gradient keep None, as torch
    net.zero_grad()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is None for p in net.parameters())


def test_module_and_optimizer_share_one_zero_grad(monkeypatch):
    net = small_net()
    opt = af.optim.SGD(net.parameters(), lr=0.1)
    seen = []
    monkeypatch.setattr(af.nn.module, "zero_grad_", lambda ps, s: seen.append(("module", len(list(ps)), s)))
    monkeypatch.setattr(af.optim.optimizer, "zero_grad_", lambda ps, s: seen.append(("optim", len(list(ps)), s)))
    net.zero_grad()
    opt.zero_grad(set_to_none=False)
    assert seen == [("module", 4, True), ("optim", 4, False)]
    assert zero_grad_ is af.nn.utils.zero_grad_


def test_status_reports_foreign_grads_and_moved_members(rng):
    net = small_net()
    arena = flatten_parameters(net)["float32"]
    loss_of(net, rng).backward()
    assert arena.status() == _C.ARENA_INTACT
    net[0].bias.grad = af.zeros(4)
    assert arena.status() == _C.ARENA_FOREIGN_GRAD
    values = [p.numpy().copy() for p in net.parameters()]
    grads = [p.grad.numpy().copy() for p in net.parameters()]
    newer = flatten_parameters(net)["float32"]  # packing again moves the members
    assert arena.status() == _C.ARENA_MOVED
    assert newer.status() == _C.ARENA_INTACT  # every gradient, the assigned one too, copied into its slot
    assert all(np.array_equal(p.numpy(), v) for p, v in zip(net.parameters(), values))
    assert all(np.array_equal(p.grad.numpy(), g) for p, g in zip(net.parameters(), grads))


def test_gradients_survive_packing(rng):
    net = small_net()
    loss_of(net, rng).backward()
    grads = [p.grad.numpy().copy() for p in net.parameters()]
    arena = flatten_parameters(net)["float32"]
    assert arena.status() == _C.ARENA_INTACT
    assert all(np.array_equal(p.grad.numpy(), g) for p, g in zip(net.parameters(), grads))


def test_mixed_dtypes_get_one_arena_each_and_other_dtypes_stay():
    a, b = af.zeros(3, requires_grad=True), af.zeros(2, dtype="float64", requires_grad=True)
    c, d = af.ones(4, requires_grad=True), af.zeros(2, dtype="int64")
    arenas = flatten_parameters([a, b, c, d])
    assert sorted(arenas) == ["float32", "float64"]
    assert arenas["float32"].data.shape == (7,) and arenas["float64"].data.shape == (2,)
    assert np.array_equal(arenas["float32"].data.numpy(), [0, 0, 0, 1, 1, 1, 1])
    assert not d._shares_memory(arenas["float32"].data)
    with pytest.raises(TypeError, match="one dtype"):
        ParameterArena([a, b])
    with pytest.raises(ValueError, match="same tensor twice"):
        ParameterArena([c, c])


def test_old_views_keep_the_old_memory_alive():
    """A NumPy array, memoryview or DLPack export taken before packing pins the old bytes: it never
    dangles (the parameter itself has moved on)."""
    p = af.tensor(np.arange(6, dtype=np.float32), requires_grad=True)
    arr, mv = p.numpy(), memoryview(p)
    cap = np.from_dlpack(p)
    flatten_parameters([p])
    af.nn.init.constant_(p, 7.0)
    gc.collect()
    junk = [af.ones(6) for _ in range(50)]  # reuse freed memory, if any was freed
    assert np.array_equal(arr, np.arange(6)) and np.array_equal(np.asarray(mv), np.arange(6))
    assert np.array_equal(cap, np.arange(6))
    assert np.all(p.numpy() == 7.0) and len(junk) == 50
    mv.release()


def test_set_data_and_view_at_check_their_arguments():
    p = af.zeros(4, requires_grad=True)
    y = p * 2.0  # the graph holds p
    with pytest.raises(RuntimeError, match="recorded graph"):
        _C.set_data(p, af.zeros(4, dtype="float64"))
    del y
    _C.set_data(p, af.ones(2, 2, dtype="float64"))
    assert p.shape == (2, 2) and p.dtype == "float64" and p.requires_grad
    base = af.zeros(6)
    assert _C.view_at(base, 2, (2, 2)).shape == (2, 2)
    with pytest.raises(ValueError, match="does not fit"):
        _C.view_at(base, 3, (2, 2))
    with pytest.raises(ValueError, match="does not fit"):
        _C.view_at(base, -1, (1,))
    with pytest.raises(TypeError, match=r"members\[1\]"):
        _C.arena_pack([base, 3])
    with pytest.raises(ValueError, match="does not live in this arena"):
        _C.arena_attach_grads([af.zeros(2)], base)


def test_backward_of_a_leaf_itself_lands_in_its_slot():
    p = af.zeros(3, requires_grad=True)
    arena = flatten_parameters([p])["float32"]
    p.backward(af.ones(3))
    p.backward(af.full((3,), 2.0))
    assert p.grad._shares_memory(arena.grad) and np.array_equal(arena.grad.numpy(), [3, 3, 3])


def test_a_graph_recorded_before_packing_still_runs_backward(rng):
    """Packing copies the values, so a graph that saved the parameters stays valid (the parameter's
    in-place version is carried over); writing the arena afterwards is an in-place change that the
    graph detects."""
    net = small_net()
    loss = loss_of(net, np.random.default_rng(5))
    flatten_parameters(net)
    loss.backward()
    fresh = small_net()
    loss_of(fresh, np.random.default_rng(5)).backward()
    for p, q in zip(fresh.parameters(), net.parameters()):
        assert np.array_equal(p.grad.numpy(), q.grad.numpy())
    arena = flatten_parameters(net)["float32"]
    loss = loss_of(net, rng)
    af.nn.init.constant_(arena.data, 0.5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
