"""affectfer.nn layers and functional: argument mapping onto the ops, torch's parameter names, shapes
and default initialisation, and the same outputs as torch.nn for the same weights (torch's numbers
from tests/reference/data)."""
import json
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
from affectfer.nn import init
from affectfer.testing import assert_close
from tests import reference


# ---- parameter names, shapes, init ----
@pytest.mark.parametrize("make,shapes", [
    (lambda: nn.Conv2d(4, 6, 3), {"weight": (6, 4, 3, 3), "bias": (6,)}),
    (lambda: nn.Conv2d(4, 6, (1, 5), groups=2, bias=False), {"weight": (6, 2, 1, 5)}),
    (lambda: nn.Linear(5, 3), {"weight": (3, 5), "bias": (3,)}),
    (lambda: nn.BatchNorm2d(4), {"weight": (4,), "bias": (4,)}),
    (lambda: nn.BatchNorm1d(4, affine=False), {}),
    (lambda: nn.LayerNorm((2, 3)), {"weight": (2, 3), "bias": (2, 3)}),
])
def test_parameter_names_and_shapes(make, shapes):
    m = make()
    assert {n: tuple(p.shape) for n, p in m.named_parameters()} == shapes


def test_batchnorm_buffers():
    bn = nn.BatchNorm2d(5)
    sd = bn.state_dict()
    assert list(sd) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert sd["num_batches_tracked"].dtype == "int64" and sd["num_batches_tracked"].shape == ()
    assert np.array_equal(sd["running_var"].numpy(), np.ones(5, np.float32))
    assert list(nn.BatchNorm2d(5, track_running_stats=False).state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("make,fan_in", [(lambda: nn.Conv2d(16, 64, 3), 16 * 9), (lambda: nn.Linear(200, 300), 200)])
def test_default_init_is_torch_kaiming_uniform_a_sqrt5(make, fan_in):
    """kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias has the same bound."""
    af.manual_seed(3)
    m = make()
    bound = 1 / math.sqrt(fan_in)
    w = m.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound
    assert abs(w.mean()) < 0.03 * bound
    assert np.abs(m.bias.numpy()).max() <= bound
    af.manual_seed(3)
    assert np.array_equal(make().weight.numpy(), w)  # repeatable under manual_seed
    assert not np.array_equal(make().weight.numpy(), w)


def test_init_functions():
    af.manual_seed(0)
    w = af.zeros(256, 64, 3, 3)
    init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / (256 * 9))) < 0.01 * math.sqrt(2 / (256 * 9))
    init.kaiming_uniform_(w, a=0, mode="fan_in", nonlinearity="relu")
    bound = math.sqrt(3) * math.sqrt(2 / (64 * 9))
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    init.normal_(w, 2.0, 0.5)
    assert abs(w.numpy().mean() - 2) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    init.uniform_(w, -1, 3)
    assert w.numpy().min() >= -1 and w.numpy().max() < 3
    init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    init.zeros_(w)
    assert not w.numpy().any()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(2 / 6))
    with pytest.raises(ValueError, match="Mode"):
        init.kaiming_normal_(w, mode="fan_avg")
    with pytest.raises(ValueError, match="fewer than 2"):
        init.kaiming_normal_(af.zeros(3))


def test_trunc_normal_matches_the_truncated_distribution():
    """Moments of N(mu, sigma^2) restricted to [a, b] (the standard formulas, e.g. Johnson, Kotz and
    Balakrishnan, "Continuous Univariate Distributions", ch. 13); in-range first draws are kept."""
    mu, sigma, a, b = 0.5, 2.0, -0.5, 1.5
    alpha, beta = (a - mu) / sigma, (b - mu) / sigma
    pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    mass = 0.5 * (math.erf(beta / math.sqrt(2)) - math.erf(alpha / math.sqrt(2)))
    mean = mu + sigma * (pdf(alpha) - pdf(beta)) / mass
    var = sigma ** 2 * (1 + (alpha * pdf(alpha) - beta * pdf(beta)) / mass - ((pdf(alpha) - pdf(beta)) / mass) ** 2)
    for dtype in ("float32", "float64"):
        af.manual_seed(5)
        first = init.normal_(af.zeros(200, 500, dtype=dtype), mu, sigma).numpy().copy()
        af.manual_seed(5)
        w = init.trunc_normal_(af.zeros(200, 500, dtype=dtype), mu, sigma, a, b).numpy()
        assert w.dtype == dtype and w.min() >= a and w.max() <= b
        assert abs(w.mean() - mean) < 0.005 and abs(w.std() - math.sqrt(var)) < 0.005
        kept = (first >= a) & (first <= b)
        assert np.array_equal(w[kept], first[kept]) and not np.array_equal(w, first)
    with pytest.raises(ValueError, match="a < b"):
        init.trunc_normal_(af.zeros(3), a=1.0, b=1.0)
    with pytest.raises(ValueError, match="1e-6"):
        init.trunc_normal_(af.zeros(3), std=0.01, a=1.0, b=2.0)
    with pytest.raises(TypeError, match="float32/float64"):
        init.trunc_normal_(af.zeros(3, dtype="int64"))


# ---- functional argument mapping ----
def test_conv2d_padding_forms(rng):
    x = af.tensor(rng.standard_normal((1, 2, 6, 7)).astype(np.float32))
    w = af.tensor(rng.standard_normal((3, 2, 3, 5)).astype(np.float32))
    assert_close(F.conv2d(x, w, padding="same"), F.conv2d(x, w, padding=(1, 2)))
    assert_close(F.conv2d(x, w, padding="valid"), F.conv2d(x, w, padding=0))
    assert F.conv2d(x, w, stride=2, padding=1).shape == (1, 3, 3, 3)
    with pytest.raises(ValueError, match="strided"):
        F.conv2d(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="odd effective kernel"):
        F.conv2d(x, af.zeros(3, 2, 2, 2), padding="same")
    with pytest.raises(ValueError, match="padding must be"):
        F.conv2d(x, w, padding="full")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(2, 3, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError):  # a C-side check, naming the argument
        F.conv2d(af.zeros(1, 5, 6, 6), w)


def test_activation_and_softmax_arguments(rng):
    x = af.tensor(rng.standard_normal((2, 3, 4)).astype(np.float32))
    assert_close(F.softmax(x, -1), F.softmax(x, 2))
    assert_close(F.log_softmax(x, dim=-2), F.log_softmax(x, 1))
    with pytest.raises(IndexError, match="out of range"):
        F.softmax(x, 3)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(x, approximate="erf")
    xs = x.numpy()
    assert_close(nn.ReLU()(x), np.maximum(xs, 0))
    assert_close(nn.Sigmoid()(x), 1 / (1 + np.exp(-xs)))
    assert_close(nn.Tanh()(x), np.tanh(xs))
    assert_close(nn.SiLU()(x), xs / (1 + np.exp(-xs)))
    assert_close(nn.GELU("tanh")(x), 0.5 * xs * (1 + np.tanh(math.sqrt(2 / math.pi) * (xs + 0.044715 * xs ** 3))))
    assert nn.Identity(3, foo=1)(x) is x


def test_softmax_dtype_argument(rng):
    x = af.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    e = np.exp(x.numpy().astype(np.float64))
    assert_close(F.softmax(x, 0, dtype="float64"), e / e.sum(0), rtol=1e-12, atol=1e-12)


def test_dropout_module_seeded_and_eval_identity():
    x = af.ones(4, 50)
    d = nn.Dropout(0.3)
    af.manual_seed(7)
    a = d(x).numpy()
    af.manual_seed(7)
    b = d(x).numpy()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, d(x).numpy())  # next stream, new mask
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.7)}
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_batchnorm_module_running_stats_and_cumulative_momentum(rng):
    bn = nn.BatchNorm2d(3, momentum=None)
    xs = [rng.standard_normal((4, 3, 2, 2)).astype(np.float32) * 2 + 1 for _ in range(3)]
    for x in xs:
        bn(af.tensor(x))
    assert bn.num_batches_tracked.item() == 3
    # momentum=None: running stats are the plain average of the batch statistics
    mean = np.mean([x.mean(axis=(0, 2, 3)) for x in xs], axis=0)
    var = np.mean([x.var(axis=(0, 2, 3), ddof=1) for x in xs], axis=0)
    assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    bn.eval()
    x = xs[0]
    expect = (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var.reshape(1, 3, 1, 1) + 1e-5)
    assert_close(bn(af.tensor(x)), expect, rtol=1e-5, atol=1e-5)
    assert bn.num_batches_tracked.item() == 3
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(af.zeros(2, 3))
    # no running stats: batch statistics in eval too
    free = nn.BatchNorm1d(3, track_running_stats=False).eval()
    y = free(af.tensor(xs[0][:, :, 0, 0])).numpy()
    assert_close(y.mean(0), np.zeros(3), atol=1e-6)


@pytest.mark.parametrize("activation", [None, "relu", "silu"])
def test_batchnorm_forward_act_is_the_module_then_the_activation(activation, rng):
    """forward_act (the fused ops) gives the bits of the module followed by the activation, and
    updates the running statistics the same way."""
    x = af.tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32) * 2 + 1)
    fused, plain = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    then = {None: lambda t: t, "relu": F.relu, "silu": F.silu}[activation]
    for train in (True, False):
        fused.train(train), plain.train(train)
        np.testing.assert_array_equal(fused.forward_act(x, activation).numpy(), then(plain(x)).numpy())
    np.testing.assert_array_equal(fused.running_var.numpy(), plain.running_var.numpy())
    assert fused.num_batches_tracked.item() == 1
    with pytest.raises(ValueError, match="activation must be one of"):
        fused.forward_act(x, "gelu")


def test_layer_norm_shape_check():
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(af.zeros(2, 3), (4,))
    ln = nn.LayerNorm(3)
    assert_close(ln(af.tensor([[1.0, 2.0, 3.0]])), np.array([[-1.2247, 0.0, 1.2247]], np.float32), atol=1e-4)


def test_cross_entropy_arguments(rng):
    logits = af.tensor(rng.standard_normal((5, 4)).astype(np.float32))
    target = af.tensor(np.array([0, 3, 1, 1, 2]))
    none = F.cross_entropy(logits, target, reduction="none").numpy()
    ls = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    assert_close(none, -ls[np.arange(5), target.numpy()], rtol=1e-5, atol=1e-6)
    assert F.cross_entropy(logits, target).item() == pytest.approx(none.mean(), rel=1e-5)
    assert F.cross_entropy(logits, target, reduction="sum").item() == pytest.approx(none.sum(), rel=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(logits, target, reduction="avg")
    with pytest.raises(ValueError):
        F.cross_entropy(logits, af.tensor(np.array([0, 9, 1, 1, 2])))


def test_cross_entropy_spatial_and_single_sample(rng):
    logits = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    target = rng.integers(0, 3, (2, 2, 2))
    out = F.cross_entropy(af.tensor(logits), af.tensor(target), reduction="none").numpy()
    ls = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expect = -np.take_along_axis(ls, target[:, None], 1)[:, 0]
    assert_close(out, expect, rtol=1e-5, atol=1e-6)
    one = F.cross_entropy(af.tensor(logits[0, :, 0, 0]), af.tensor(np.array(target[0, 0, 0])), reduction="none")
    assert one.shape == () and one.item() == pytest.approx(expect[0, 0, 0], rel=1e-5)


def test_mse_loss(rng):
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    assert F.mse_loss(af.tensor(a), af.tensor(b)).item() == pytest.approx(((a - b) ** 2).mean(), rel=1e-5)
    assert F.mse_loss(af.tensor(a), af.tensor(b), reduction="sum").item() == pytest.approx(((a - b) ** 2).sum(), rel=1e-5)
    assert_close(F.mse_loss(af.tensor(a), af.tensor(b), reduction="none"), (a - b) ** 2)


def test_pool_arguments(rng):
    x = af.tensor(rng.standard_normal((1, 2, 7, 6)).astype(np.float32))
    assert nn.MaxPool2d(3, 2, 1)(x).shape == (1, 2, 4, 3)
    assert nn.MaxPool2d(2)(x).shape == (1, 2, 3, 3)  # stride defaults to the kernel
    assert nn.MaxPool2d(2, ceil_mode=True)(x).shape == (1, 2, 4, 3)
    assert nn.AvgPool2d(2)(x).shape == (1, 2, 3, 3)
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (1, 2, 1, 1)
    assert nn.AdaptiveAvgPool2d((None, 2))(x).shape == (1, 2, 7, 2)
    assert_close(nn.AdaptiveAvgPool2d(1)(x).numpy()[..., 0, 0], x.numpy().mean((2, 3)), rtol=1e-5, atol=1e-6)
    assert_close(F.avg_pool2d(x, 2, divisor_override=1), F.avg_pool2d(x, 2).numpy() * 4, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="return_indices"):
        nn.MaxPool2d(2, return_indices=True)


def test_linear_and_flatten(rng):
    lin = nn.Linear(4, 3)
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    assert_close(lin(af.tensor(x)), x @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-5, atol=1e-5)
    assert nn.Linear(4, 3, bias=False).bias is None
    assert nn.Flatten()(af.zeros(2, 3, 4, 5)).shape == (2, 60)
    assert nn.Flatten(0, 2)(af.zeros(2, 3, 4, 5)).shape == (24, 5)


# ---- the same numbers as torch.nn for the same weights ----
def test_conv_bn_stack_matches_torch_train_and_eval():
    """torch.nn's same stack with the same seeded weights (tests/reference/make_fixtures.py):
    two train steps (batch statistics, running-stat updates), then eval."""
    ref = reference.load("nn_layers")
    ours = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1, groups=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False), nn.BatchNorm2d(4, momentum=0.3),
                         nn.GELU(), nn.MaxPool2d(2))
    weights = reference.seeded_state_dict([(k, v.shape) for k, v in ours.state_dict().items()], reference.SEED)
    assert reference.checksum(weights) == pytest.approx(float(ref.case("stack")["weights_checksum"]), rel=1e-12), \
        "NumPy's stream changed"
    ours.load_state_dict(weights)
    for step in range(2):
        d = ref.case(f"stack_train{step}")
        assert_close(ours(af.tensor(d["x"])), d["y"], rtol=1e-4, atol=1e-5, name=f"train output, step {step}")
    state = ref.case("stack_state")
    for k, v in ours.state_dict().items():
        assert_close(v, state[k.replace(".", "_")], rtol=1e-5, atol=1e-6, name=k)
    ours.eval()
    d = ref.case("stack_eval")
    assert_close(ours(af.tensor(d["x"])), d["y"], rtol=1e-4, atol=1e-5, name="eval")


def test_functional_matches_torch():
    ref = reference.load("nn_layers")
    d = ref.case("functional")
    x, t, w = af.tensor(d["x"]), af.tensor(d["target"]), af.tensor(d["weight"])
    for case in ref.cases("cross_entropy"):
        c = ref.case(case)
        kw = json.loads(c["kwargs"])
        kw["weight"] = w if kw.get("weight") else None
        assert F.cross_entropy(x, t, **kw).item() == pytest.approx(float(c["loss"]), rel=1e-5), kw
    assert F.cross_entropy(x, af.tensor(d["probs"])).item() == pytest.approx(float(d["probs_loss"]), rel=1e-5)
    assert_close(F.layer_norm(x, (6,), af.tensor(d["ln_w"]), af.tensor(d["ln_b"])), d["layer_norm"],
                 rtol=1e-5, atol=1e-5)
    assert_close(F.gelu(x, approximate="tanh"), d["gelu_tanh"])
    assert_close(F.log_softmax(x, 0), d["log_softmax0"], rtol=1e-5, atol=1e-6)


def test_init_draws_what_rand_and_randn_draw():
    """uniform_/normal_ initialisers take the next Philox stream of the global generator, so they
    fill the values affectfer.rand / randn of that shape draw (as before the in-place ops replaced
    the NumPy writes): a + (b - a) * u and mean + std * z, computed in double, rounded once."""
    for dtype, rtol in (("float32", 0), ("float64", 1e-15)):
        af.manual_seed(11)
        u, z = af.rand(3, 7, dtype="float64").numpy(), af.randn(3, 7, dtype="float64").numpy()
        af.manual_seed(11)
        w, v = af.zeros(3, 7, dtype=dtype), af.zeros(3, 7, dtype=dtype)
        assert init.uniform_(w, -2.0, 3.0) is w and init.normal_(v, 1.0, 0.5) is v
        assert np.array_equal(w.numpy(), (-2.0 + 5.0 * u).astype(dtype))
        assert_close(v, (1.0 + 0.5 * z).astype(dtype), rtol=rtol, atol=1e-6 if dtype == "float32" else 1e-15)
        af.manual_seed(11)
        assert np.array_equal(init.uniform_(af.zeros(3, 7, dtype=dtype)).numpy(), u.astype(dtype))
    with pytest.raises(TypeError, match="float32/float64"):
        init.uniform_(af.zeros(3, dtype="int64"))


def test_batchnorm_counter_counts_in_place(rng):
    bn = nn.BatchNorm2d(2)
    counter = bn.num_batches_tracked  # whoever holds the buffer sees it move
    x = af.tensor(rng.standard_normal((3, 2, 4, 4)).astype(np.float32))
    for _ in range(3):
        bn(x)
    assert counter.item() == 3 and bn.num_batches_tracked is counter and counter.dtype == "int64"
    bn.eval()(x)
    assert counter.item() == 3
    bn.reset_running_stats()
    assert counter.item() == 0
