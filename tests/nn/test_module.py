"""affectfer.nn.Module / Parameter: registration, traversal, torch-style state_dict names and
loading, train/eval, requires_grad_, zero_grad, repr."""
from collections import OrderedDict

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Block()
        self.blocks = nn.ModuleList([Block() for _ in range(2)])
        self.scale = nn.Parameter(af.ones(1))
        self.register_buffer("calls", af.zeros(1))
        self.register_buffer("scratch", af.zeros(2), persistent=False)


def test_parameter_is_a_leaf_that_requires_grad_and_shares_memory():
    data = af.zeros(3)
    p = nn.Parameter(data)
    assert isinstance(p, af.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and not data.requires_grad
    p.numpy()[0] = 5
    assert data.numpy()[0] == 5
    assert not nn.Parameter(af.zeros(2), requires_grad=False).requires_grad
    assert "Parameter containing" in repr(p)
    with pytest.raises(TypeError, match="affectfer.Tensor"):
        nn.Parameter(np.zeros(3))


def test_names_order_and_traversal():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "stem.conv.weight", "stem.bn.weight", "stem.bn.bias", "blocks.0.conv.weight",
                     "blocks.0.bn.weight", "blocks.0.bn.bias", "blocks.1.conv.weight", "blocks.1.bn.weight",
                     "blocks.1.bn.bias"]
    keys = list(net.state_dict())
    assert keys[:2] == ["scale", "calls"]  # own params, then own persistent buffers, then children
    assert keys[2:8] == ["stem.conv.weight", "stem.bn.weight", "stem.bn.bias", "stem.bn.running_mean",
                         "stem.bn.running_var", "stem.bn.num_batches_tracked"]
    assert "scratch" not in keys and len(keys) == 2 + 3 * 6
    assert [n for n, _ in net.named_modules()][:5] == ["", "stem", "stem.conv", "stem.bn", "stem.act"]
    assert [n for n, _ in net.named_children()] == ["stem", "blocks"]
    assert len(list(net.buffers())) == 2 + 3 * 3
    assert net.get_submodule("blocks.1.bn") is net.blocks[1].bn


def test_shared_module_counted_once():
    lin = nn.Conv2d(1, 1, 1)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2


def test_state_dict_values_share_memory_and_load_copies_in_place(rng):
    a, b = Net(), Net()
    sd = a.state_dict()
    assert sd["stem.conv.weight"]._shares_memory(a.stem.conv.weight)
    assert not sd["stem.conv.weight"].requires_grad
    w_before = b.stem.conv.weight
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.stem.conv.weight is w_before  # same Parameter object (an optimizer keeps working)
    for k, v in a.state_dict().items():
        assert np.array_equal(b.state_dict()[k].numpy(), v.numpy()), k
    # numpy arrays load too, with a dtype cast
    arr = rng.standard_normal((3, 2, 3, 3))
    b.load_state_dict({"stem.conv.weight": arr}, strict=False)
    assert np.allclose(b.stem.conv.weight.numpy(), arr.astype(np.float32))


def test_load_state_dict_errors_name_the_keys():
    net = Net()
    sd = OrderedDict(net.state_dict())
    del sd["blocks.0.conv.weight"]
    sd["extra.weight"] = af.zeros(1)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "blocks.0.conv.weight"') as e:
        net.load_state_dict(sd)
    assert '"extra.weight"' in str(e.value)
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["blocks.0.conv.weight"] and res.unexpected_keys == ["extra.weight"]
    bad = net.state_dict()
    bad["stem.conv.weight"] = af.zeros(3, 2, 1, 1)
    with pytest.raises(RuntimeError, match="size mismatch for stem.conv.weight"):
        net.load_state_dict(bad)


def test_old_checkpoint_without_num_batches_tracked_loads_strictly():
    net = Net()
    sd = {k: v for k, v in Net().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert net.load_state_dict(sd).missing_keys == []


def test_train_eval_requires_grad_zero_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert net.blocks[1].bn.training
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_(True)
    x = af.randn(2, 2, 4, 4)
    net.stem(x).backward(af.ones(2, 3, 4, 4))
    assert net.stem.conv.weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert not net.stem.conv.weight.grad.numpy().any()
    net.zero_grad()
    assert net.stem.conv.weight.grad is None


def test_setattr_rules():
    net = Net()
    with pytest.raises(TypeError, match="as parameter 'scale'"):
        net.scale = af.ones(1)
    net.scale = None
    assert "scale" not in dict(net.named_parameters())
    net.calls = af.ones(1)
    assert net.state_dict()["calls"].numpy()[0] == 1
    del net.blocks
    assert [n for n, _ in net.named_children()] == ["stem"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        net.nope


def test_reassigning_keeps_the_place_of_a_name():
    """As in torch: replacing a registered child, parameter or buffer keeps its position, which is the
    state_dict's key order and a Sequential's order of execution."""
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    seq[1] = nn.Identity()
    setattr(seq, "0", nn.Linear(2, 3, bias=False))
    assert [(n, type(m).__name__) for n, m in seq.named_children()] == [("0", "Linear"), ("1", "Identity"),
                                                                          ("2", "Linear")]
    x = af.ones((1, 2))
    ref = seq[2](seq[0](x)).numpy()
    np.testing.assert_array_equal(seq(x).numpy(), ref)
    with pytest.raises(IndexError, match="out of range"):
        seq[3] = nn.ReLU()
    lin = nn.Linear(2, 3)
    lin.weight = nn.Parameter(af.zeros((3, 2)))
    lin.register_parameter("weight", nn.Parameter(af.zeros((3, 2))))
    assert list(lin.state_dict()) == ["weight", "bias"]
    bn = nn.BatchNorm2d(2)
    bn.register_buffer("running_mean", af.ones(2))
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ml = nn.ModuleList([nn.ReLU(), nn.Tanh()])
    ml[0] = nn.Sigmoid()
    assert [type(m).__name__ for m in ml] == ["Sigmoid", "Tanh"]


def test_repr_is_torch_like():
    r = repr(Block())
    assert r == ("Block(\n  (conv): Conv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
                 "  (bn): BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
                 "  (act): ReLU()\n)")


def test_to_double_converts_parameters_and_float_buffers():
    net = Block().double()
    assert net.conv.weight.dtype == "float64" and isinstance(net.conv.weight, nn.Parameter)
    assert net.bn.running_mean.dtype == "float64" and net.bn.num_batches_tracked.dtype == "int64"


def test_sequential_and_modulelist_containers():
    seq = nn.Sequential(OrderedDict([("a", nn.ReLU()), ("b", nn.Identity())]))
    assert [n for n, _ in seq.named_children()] == ["a", "b"]
    assert isinstance(seq[-1], nn.Identity) and len(seq[:1]) == 1
    ml = nn.ModuleList([nn.ReLU()])
    ml.append(nn.Sigmoid())
    ml.insert(0, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Tanh", "ReLU", "Sigmoid"]
    with pytest.raises(IndexError):
        ml[3]


def test_to_works_in_place_and_keeps_the_parameter_objects(rng):
    """torch's Module.to: the same Parameter objects (an optimizer built before keeps them), the
    values cast, integer buffers untouched; devices checked."""
    net = Block()
    weight, mean, counter = net.conv.weight, net.bn.running_mean, net.bn.num_batches_tracked
    values = weight.numpy().copy()
    opt = af.optim.SGD(net.parameters(), lr=0.1)
    assert net.to("float64") is net
    assert net.conv.weight is weight and weight.dtype == "float64" and weight.requires_grad
    assert np.array_equal(weight.numpy(), values.astype(np.float64))
    assert net.bn.running_mean is mean and mean.dtype == "float64"
    assert net.bn.num_batches_tracked is counter and counter.dtype == "int64"
    x = af.tensor(rng.standard_normal((1, 2, 4, 4)))
    net(x).sum().backward()
    assert weight.grad.dtype == "float64"
    opt.step()  # the optimizer follows its parameters into float64
    assert not np.array_equal(weight.numpy(), values.astype(np.float64))
    assert net.to("cpu") is net and net.cpu() is net and weight.dtype == "float64"
    net.to("cpu", "float32")
    assert weight.dtype == "float32" and weight.grad is None  # a cast drops the stale gradient
    net.to(af.zeros(1, dtype="float64"))
    assert weight.dtype == "float64"
    with pytest.raises(RuntimeError, match=r"affectfer\.cuda\.is_available\(\)"):
        net.to("cuda")
    with pytest.raises(TypeError, match="only floating point"):
        net.to("int32")


def test_load_state_dict_writes_in_place_and_casts(rng):
    src, dst = Block(), Block()
    weight = dst.conv.weight
    arena = af.nn.utils.flatten_parameters(dst)["float32"]
    sd = {k: v.numpy().astype(np.float64) if v.dtype == "float32" else v for k, v in src.state_dict().items()}
    dst.load_state_dict(sd)
    assert dst.conv.weight is weight and weight._shares_memory(arena.data)  # still in its arena
    assert np.array_equal(weight.numpy(), src.conv.weight.numpy())
    assert arena.status() & af._C.ARENA_MOVED == 0


def test_deepcopy_of_a_module_is_independent_and_keeps_parameters():
    import copy

    af.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    x = af.randn(5, 4)
    model(x).sum().backward()
    clone = copy.deepcopy(model)
    for (name, a), b in zip(model.state_dict().items(), clone.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
        assert not a._shares_memory(b), name
    w, cw = model[0].weight, clone[0].weight
    assert type(cw) is type(w) and cw.requires_grad and cw.is_leaf
    np.testing.assert_array_equal(cw.grad.numpy(), w.grad.numpy())
    af.nn.init.zeros_(cw)
    assert np.abs(w.numpy()).sum() > 0
    tied = nn.Sequential(model[0], model[0])  # one module twice: copied once, still shared
    tied_copy = copy.deepcopy(tied)
    assert tied_copy[0] is tied_copy[1] and tied_copy[0].weight is tied_copy[1].weight
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(model(x))


def test_deepcopy_keeps_the_memo_keys_alive():
    """.grad returns a fresh wrapper on each access. deepcopy's memo is keyed by id(), so a wrapper
    that died while its id was still a key let a later tensor at the same address be "found" there:
    a copy took another parameter's gradient (CI once saw it as a shape error). Every key must belong
    to a live object until the copy ends, so no new tensor can ever have a key's id."""
    import copy

    af.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    model(af.randn(5, 4)).sum().backward()
    memo = {}
    copy.deepcopy(model[0].weight, memo)
    fresh = [model[0].bias.grad for _ in range(100)] + [af.zeros(3) for _ in range(100)]
    assert not [t for t in fresh if id(t) in memo]
    clone = copy.deepcopy(model)
    for a, b in zip(model.parameters(), clone.parameters()):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())
