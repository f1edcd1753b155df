"""affectfer.nn.transformer: MultiheadAttention and TransformerEncoderLayer against torch (float64,
seeded weights: outputs, attention weights, input and parameter gradients), torch's names and
init, the fused path equal to the explicit one, attention dropout, and DropPath / F.drop_path (trunc_normal_ is
tested in test_layers.py)."""
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
from affectfer.testing import assert_close
from tests import reference


def _mha(case):
    embed, heads = 8, (4 if case == "mha-cross-heads" else 2)
    return nn.MultiheadAttention(embed, heads, batch_first="bf1" in case or "cross" in case)


def _layer(case):
    return nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, activation=case.rsplit("-", 1)[1],
                                      norm_first="nf1" in case, batch_first=True)


def _call(case, m, xs):
    if case.startswith("layer"):
        return m(xs[0])
    if case == "mha-cross-heads":
        return m(*xs, need_weights=True, average_attn_weights=False)
    return m(xs[0], xs[0], xs[0], need_weights=case.endswith("w1"))


@pytest.mark.parametrize("case", reference.cases("nn_transformer"))
def test_matches_torch(case):
    build = _layer if case.startswith("layer") else _mha
    m, d = reference.seeded_model("nn_transformer", case, build(case))
    m.double().train()
    n_in = sum(1 for k in d if k.startswith("x"))
    xs = [af.tensor(d[f"x{i}"], dtype="float64", requires_grad=True) for i in range(n_in)]
    res = _call(case, m, xs)
    outs = res if isinstance(res, tuple) else (res,)
    loss = None
    for i, o in enumerate(outs):
        if f"out{i}" not in d:
            assert o is None, f"{case}: output {i} should be None (need_weights=False)"
            continue
        assert_close(o, d[f"out{i}"], rtol=1e-10, atol=1e-12, name=f"{case} out{i}")
        term = (o * af.tensor(d[f"g{i}"])).sum()
        loss = term if loss is None else loss + term
    loss.backward()
    for i, x in enumerate(xs):
        assert_close(x.grad, d[f"dx{i}"], rtol=1e-10, atol=1e-12, name=f"{case} dx{i}")
    params = dict(m.named_parameters())
    assert sorted(params) == sorted(k[len("grad."):] for k in d if k.startswith("grad."))
    for k, p in params.items():
        assert_close(p.grad, d[f"grad.{k}"], rtol=1e-10, atol=1e-12, name=f"{case} grad {k}")


def test_mha_names_and_init():
    af.manual_seed(0)
    m = nn.MultiheadAttention(64, 4)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    w = m.in_proj_weight.numpy()
    bound = math.sqrt(6 / (64 + 192))  # xavier_uniform over (3E, E)
    assert w.shape == (192, 64) and np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert not m.in_proj_bias.numpy().any() and not m.out_proj.bias.numpy().any()
    assert np.abs(m.out_proj.weight.numpy()).max() <= 1 / 8  # Linear's default U(+-1/sqrt(E))
    layer = nn.TransformerEncoderLayer(16, 2, 32)
    assert list(layer.state_dict()) == [
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
        "norm2.weight", "norm2.bias"]
    assert layer.dropout.p == 0.1 and layer.self_attn.dropout == 0.1


def test_fused_path_equals_explicit_and_unbatched(rng):
    af.manual_seed(1)
    m = nn.MultiheadAttention(12, 3, batch_first=True)
    x = af.tensor(rng.standard_normal((2, 7, 12)), dtype="float32")
    fused, none = m(x, x, x, need_weights=False)
    explicit, w = m(x, x, x)
    assert none is None and w.shape == (2, 7, 7)
    assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
    assert_close(w.numpy().sum(-1), np.ones((2, 7)), rtol=1e-5, atol=1e-6)
    single, w1 = m(x[0], x[0], x[0])
    assert single.shape == (7, 12) and w1.shape == (7, 7)
    assert_close(single, explicit.numpy()[0], rtol=1e-5, atol=1e-6)


def test_attention_dropout_only_in_training(rng):
    af.manual_seed(2)
    m = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = af.tensor(rng.standard_normal((2, 6, 8)).astype(np.float32))
    m.eval()
    ref = m(x, x, x, need_weights=False)[0].numpy()
    m.train()
    af.manual_seed(3)
    a = m(x, x, x, need_weights=False)[0].numpy()
    af.manual_seed(3)
    b = m(x, x, x, need_weights=False)[0].numpy()
    assert np.array_equal(a, b) and not np.allclose(a, ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"embed_dim \(10\) must be divisible by num_heads \(4\)"):
        nn.MultiheadAttention(10, 4)
    m = nn.MultiheadAttention(8, 2)
    x = af.zeros(3, 2, 8)
    with pytest.raises(ValueError, match="attn_mask is not supported"):
        m(x, x, x, attn_mask=af.zeros(3, 3))
    with pytest.raises(ValueError, match=r"'key' must be \(L, 8\)"):
        m(x, af.zeros(3, 2, 7), x)
    with pytest.raises(ValueError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.DropPath(1.5)


def test_drop_path_drops_whole_samples_and_scales_survivors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 2, 3)) + 3.0
    p = 0.3
    t = af.tensor(x)
    assert F.drop_path(t, p, training=False) is t and F.drop_path(t, 0.0, training=True) is t
    af.manual_seed(5)
    y = F.drop_path(t, p, training=True).numpy()
    ratio = (y / x).reshape(len(x), -1)
    assert np.allclose(ratio, ratio[:, :1])  # one decision per sample
    kept = ratio[:, 0] != 0
    assert np.allclose(ratio[kept, 0], 1 / (1 - p), rtol=1e-12)
    assert abs(1 - kept.mean() - p) < 4 * math.sqrt(p * (1 - p) / len(x))
    af.manual_seed(5)
    plain = F.drop_path(t, p, training=True, scale_by_keep=False).numpy()
    assert np.array_equal(plain[kept], x[kept]) and not plain[~kept].any()
    assert not F.drop_path(t, 1.0, training=True).numpy().any()
    module = nn.DropPath(p).train()
    af.manual_seed(5)
    assert np.array_equal(module(t).numpy(), y) and module.p == p
    assert np.array_equal(module.eval()(t).numpy(), x)


def test_drop_path_gradient():
    x = af.tensor(np.ones((6, 3)), dtype="float64", requires_grad=True)
    af.manual_seed(7)
    y = F.drop_path(x, 0.5, training=True)
    y.sum().backward()
    assert np.array_equal(x.grad.numpy(), y.numpy())  # d(x * mask)/dx = mask

