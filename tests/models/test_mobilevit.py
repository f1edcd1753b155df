"""affectfer.models.mobilevit: timm's MobileViTv2 structure for every width (parameter count, module
tree, state_dict names and shapes, init), the same logits and gradients as timm for the same
weights at 256x256 and 112x112, gradchecks of the separable attention and the block, the patch
unfold/fold, and a short training run."""
import json
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer import models
from affectfer.models import mobilevit
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests import reference
from tests.models.training import adam_losses, synthetic_batch

VARIANTS = ("050", "075", "100", "125", "150", "175", "200")
PARAMS = {"050": 1_370_593, "075": 2_866_009, "100": 4_901_841, "125": 7_478_089, "150": 10_594_753,
          "175": 14_251_833, "200": 18_449_329}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_structure_equals_timm(variant):
    """Parameter count, state_dict names and shapes and the module tree of timm's model."""
    af.manual_seed(0)
    model = getattr(models, f"mobilevitv2_{variant}")()
    theirs = reference.case("mobilevit", f"names-{variant}")
    assert count(model) == PARAMS[variant] == int(theirs["params"])
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == json.loads(theirs["state"])
    assert [n for n, _ in model.named_modules()] == json.loads(theirs["modules"])
    assert model.num_features == 512 * int(variant) // 100
    assert model.forward_features(af.zeros(1, 3, 64, 64)).shape == (1, model.num_features)


def test_registered_in_the_factory():
    assert models.list_models("mobilevitv2*") == [f"mobilevitv2_{v}" for v in VARIANTS]
    m = models.create("mobilevitv2_075", num_classes=5, drop_rate=0.3, drop_path_rate=0.1, in_chans=1)
    assert m.head.fc.out_features == 5 and m.head.drop.p == 0.3 and m.stem.conv.weight.shape == (24, 1, 3, 3)
    # drop-path rates grow linearly over the 9 blocks, as timm's calculate_drop_path_rates: the
    # bottleneck of stage 3 is block 5 of 0..8, the transformer layers of stage 4 share block 8's
    assert isinstance(m.stages[0][0].drop_path, af.nn.Identity)
    assert m.stages[3][0].drop_path.drop_prob == pytest.approx(0.1 * 5 / 8)
    assert m.stages[4][1].transformer[2].drop_path2.drop_prob == pytest.approx(0.1)
    x = af.tensor(np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32))
    assert m.eval()(x).shape == (2, 5)


def test_init_follows_timm():
    af.manual_seed(1)
    m = models.mobilevitv2_100()
    qkv = m.stages[3][1].transformer[0].attn.qkv_proj  # 1x1, 192 -> 385
    std = math.sqrt(2 / 385)  # N(0, 2 / fan_out), fan_out = KH*KW*Cout / groups
    w = qkv.weight.numpy()
    assert abs(w.std() - std) < 0.02 * std and abs(w.mean()) < 0.02 * std and not qkv.bias.numpy().any()
    dw = m.stages[1][0].conv2_kxk.conv.weight.numpy()  # depthwise 3x3 over 128 channels: fan_out 9
    assert abs(dw.std() - 1 / math.sqrt(4.5)) < 0.05 / math.sqrt(4.5)
    fc = m.head.fc.weight.numpy()
    assert abs(fc.std() - 0.01) < 0.0005 and not m.head.fc.bias.numpy().any()
    # zero_init_last: only bottlenecks with a residual start with a zero last scale
    assert not m.stages[1][1].conv3_1x1.bn.weight.numpy().any()
    assert (m.stages[1][0].conv3_1x1.bn.weight.numpy() == 1).all() and m.stages[1][0].shortcut is None
    norm = m.stages[2][1].transformer[1].norm2
    assert isinstance(norm, af.nn.GroupNorm) and norm.num_groups == 1 and norm.eps == 1e-5
    assert (norm.weight.numpy() == 1).all() and not norm.bias.numpy().any()


def test_reset_classifier_and_forward_features():
    af.manual_seed(2)
    m = models.mobilevitv2_050(num_classes=4).eval()
    x = af.tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32))
    feats = m.forward_features(x)
    assert feats.shape == (2, 256) and m(x).shape == (2, 4)
    assert m.forward_feature_map(x).shape == (2, 256, 2, 2)
    m.reset_classifier(9)
    assert m.get_classifier().out_features == 9 and m(x).shape == (2, 9) and m.num_classes == 9
    assert np.abs(m.get_classifier().weight.numpy()).max() <= 1 / 16  # torch's Linear default, as timm
    m.reset_classifier(0)
    assert_close(m(x), feats)


def test_unfold_and_fold_patches():
    """(B, C, H, W) -> (B, C, P, N): P indexes the pixel within a 2x2 patch, N the patch in raster
    order (timm's layout, which the attention's softmax over N depends on); fold inverts it."""
    x = np.arange(2 * 3 * 4 * 6, dtype=np.float64).reshape(2, 3, 4, 6)
    patches = mobilevit.unfold_patches(af.tensor(x), 2, 2).numpy()
    expect = x.reshape(2, 3, 2, 2, 3, 2).transpose(0, 1, 3, 5, 2, 4).reshape(2, 3, 4, 6)
    np.testing.assert_array_equal(patches, expect)
    assert patches[0, 0, 1, 2] == x[0, 0, 0, 5]  # pixel (0, 1) of patch (row 0, column 2)
    np.testing.assert_array_equal(mobilevit.fold_patches(af.tensor(patches), 2, 2, 2, 3).numpy(), x)


def _numpy_attention(x, w, b, wo, bo):
    """Separable self-attention in NumPy (arXiv:2206.02680, eq. 4-6) on (B, d, P, N)."""
    d = x.shape[1]
    qkv = np.einsum("oc,bcpn->bopn", w, x) + b[None, :, None, None]
    q, k, v = qkv[:, :1], qkv[:, 1:1 + d], qkv[:, 1 + d:]
    scores = np.exp(q - q.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    context = (k * scores).sum(-1, keepdims=True)
    return np.einsum("oc,bcpn->bopn", wo, np.maximum(v, 0) * context) + bo[None, :, None, None]


def test_linear_self_attention_against_numpy_and_gradcheck():
    af.manual_seed(3)
    attn = models.LinearSelfAttention(3).double()
    rng = np.random.default_rng(4)
    for p in attn.parameters():  # nonzero biases so every term matters
        p.numpy()[...] = rng.standard_normal(p.shape)
    x = rng.standard_normal((2, 3, 4, 5))
    expect = _numpy_attention(x, attn.qkv_proj.weight.numpy()[:, :, 0, 0], attn.qkv_proj.bias.numpy(),
                              attn.out_proj.weight.numpy()[:, :, 0, 0], attn.out_proj.bias.numpy())
    assert_close(attn(af.tensor(x)), expect, rtol=1e-12, atol=1e-12)
    xt = af.tensor(x, requires_grad=True)
    params = list(attn.parameters())
    gradcheck(lambda x, *ps: attn(x), [xt] + params)


def test_mobilevitv2_block_gradcheck_with_the_bilinear_resize():
    """The whole block in float64 on a 5x3 map, which is resized to 6x4 before the patches."""
    af.manual_seed(5)
    block = models.MobileVitV2Block(4, 4, transformer_depth=1).double().train()
    rng = np.random.default_rng(6)
    for name, p in block.named_parameters():
        if name.endswith("bias") or "norm" in name or ".bn." in name:
            p.numpy()[...] = rng.uniform(0.5, 1.5, p.shape) if name.endswith("weight") else rng.uniform(-.2, .2, p.shape)
    x = af.tensor(rng.standard_normal((2, 4, 5, 3)), requires_grad=True)
    assert block(x).shape == (2, 4, 6, 4)
    gradcheck(lambda x, *ps: block(x), [x] + list(block.parameters()), atol=1e-5)


def _seeded(case, variant="050"):
    return reference.seeded_model("mobilevit", case, getattr(models, f"mobilevitv2_{variant}")(num_classes=10))


def _input(size, dtype=np.float32):
    d = reference.case("mobilevit", "inputs")
    if size == 256:  # stored at 128x128, each pixel repeated 2x2 (as make_fixtures.py builds it)
        return d["x256"].repeat(2, axis=2).repeat(2, axis=3).astype(dtype)
    return d["x112"].astype(dtype)


@pytest.mark.parametrize("variant,size", [("050", 256), ("050", 112), ("100", 256)])
def test_eval_logits_match_timm(variant, size):
    ours, d = _seeded(f"eval-{variant}-{size}", variant)
    with af.no_grad():
        got = ours.eval()(af.tensor(_input(size)))
    expect = d["logits"]
    assert_close(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max(), name=f"mobilevitv2_{variant} {size} logits")


@pytest.mark.parametrize("dtype,size", [("float32", 256), ("float32", 112), ("float64", 112)])
def test_train_step_matches_timm(dtype, size):
    """Train mode (batch statistics): logits, loss, gradients of the stem, a depthwise conv, the
    attention, group norms, the MLP, the head, and the running statistics the step updated; float32
    within 1e-4 (logits) and 1e-3 (gradients), float64 within 1e-10."""
    ours, d = _seeded(f"train-{dtype}-{size}")
    if dtype == "float64":
        ours.double()
    ours.train()
    logits = ours(af.tensor(_input(size, dtype)))
    loss = F.cross_entropy(logits, af.tensor(d["y"]))
    loss.backward()
    tight = dtype == "float64"
    expect = d["logits"]
    assert_close(logits, expect, rtol=1e-10 if tight else 1e-4, atol=(1e-10 if tight else 1e-4) * np.abs(expect).max(),
                 name="train logits")
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-10 if tight else 1e-5)
    params = dict(ours.named_parameters())
    names = [k[len("grad."):] for k in d if k.startswith("grad.")]
    assert len(names) == 8
    for k in names:
        gt = d[f"grad.{k}"]
        scale = gt.abs_max if isinstance(gt, reference.Summary) else np.abs(gt).max()
        rtol = 1e-10 if tight else 1e-3
        reference.assert_close(params[k].grad, gt, rtol=rtol, atol=rtol * scale, name=f"grad {k}")
    sd = ours.state_dict()
    for k in [k[len("state."):] for k in d if k.startswith("state.")]:
        assert_close(sd[k], d[f"state.{k}"], rtol=1e-10 if tight else 1e-5, atol=1e-7, name=k)


def test_a_timm_state_dict_loads_strictly_and_a_wrong_one_does_not():
    """timm's names (the seeded weights are drawn from timm's state_dict) load strictly; a missing
    or unexpected name fails."""
    ours, d = _seeded("eval-050-112")
    weights = reference.seeded_state_dict([(k, v.shape) for k, v in ours.state_dict().items()], reference.SEED)
    ours.load_state_dict(weights, strict=True)
    np.testing.assert_array_equal(ours.stages[4][1].transformer[2].attn.out_proj.weight.numpy(),
                                  weights["stages.4.1.transformer.2.attn.out_proj.weight"])
    broken = dict(weights)
    broken["stages.2.1.transformer.0.attn.qkv.weight"] = broken.pop("stages.2.1.transformer.0.attn.qkv_proj.weight")
    with pytest.raises(RuntimeError, match="Missing key.*attn.qkv_proj.weight(.|\n)*Unexpected key.*attn.qkv.weight"):
        ours.load_state_dict(broken, strict=True)


def test_training_reduces_the_loss():
    x, y, num_classes = synthetic_batch(8, size=64)
    af.manual_seed(0)
    losses = adam_losses(models.mobilevitv2_050(num_classes=num_classes).train(), x, y, steps=20)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < min(0.5 * losses[0], math.log(num_classes)), losses


def test_training_step_is_thread_invariant():
    """Drop path on, train mode, odd-sized maps that take the bilinear resize: the logits have the
    same bits with 1 or 2 threads."""
    af.manual_seed(4)
    model = models.mobilevitv2_050(num_classes=5, drop_path_rate=0.5).train()

    def step(x):
        af.manual_seed(6)
        return model(x)

    x = np.random.default_rng(3).standard_normal((2, 3, 48, 48)).astype(np.float32)
    assert_thread_invariant(step, [x], name="mobilevitv2_050 train step")
