"""affectfer.models.efficientnet: torchvision's EfficientNet-B0 structure (parameter count, module
tree, state_dict names and shapes, init), the same logits and gradients as torchvision for the same
weights, stochastic depth, and a short training run."""
import json
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer import checkpoint, models
from affectfer.testing import assert_close, assert_thread_invariant
from tests import reference
from tests.models.training import adam_losses, synthetic_batch


@pytest.fixture(scope="module")
def b0():
    af.manual_seed(0)
    return models.efficientnet_b0()


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count(b0):
    assert count(b0) == 5_288_548 == int(reference.case("efficientnet", "names")["params"])
    assert count(models.efficientnet_b0(num_classes=7)) == 5_288_548 - 993 * 1280 - 993


def test_names_and_shapes_equal_torchvision(b0):
    theirs = reference.case("efficientnet", "names")
    assert [[k, list(v.shape)] for k, v in b0.state_dict().items()] == json.loads(theirs["state"])
    assert [n for n, _ in b0.named_modules()] == json.loads(theirs["modules"])


def test_registered_in_the_factory():
    assert "efficientnet_b0" in models.list_models("efficientnet*")
    m = models.create("efficientnet_b0", num_classes=5, dropout=0.5, stochastic_depth_prob=0.1)
    assert m.classifier[1].out_features == 5 and m.classifier[0].p == 0.5
    # the probability grows linearly with the block index: block 15 of 16 gets 0.1 * 15 / 16
    assert m.features[1][0].stochastic_depth.p == 0.0
    assert m.features[7][0].stochastic_depth.p == pytest.approx(0.1 * 15 / 16)
    assert m.features[3][1].stochastic_depth.p == pytest.approx(0.1 * 4 / 16)


def test_factory_loads_a_file_with_the_head_skipped_and_adapts_the_stem(tmp_path):
    af.manual_seed(2)
    source = models.efficientnet_b0(num_classes=10)
    path = tmp_path / "b0.safetensors"
    checkpoint.save(source, path)
    model = models.create("efficientnet_b0", num_classes=3, pretrained=path, in_chans=1)
    assert set(model.pretrained_report.skipped) == {"classifier.1.weight", "classifier.1.bias"}
    assert model.classifier[1].weight.shape == (3, 1280)
    stem = model.features[0][0]
    assert stem.weight.shape == (32, 1, 3, 3) and stem.in_channels == 1
    rgb = source.features[0][0].weight.numpy().astype(np.float64)
    np.testing.assert_array_equal(stem.weight.numpy(), rgb.sum(1, keepdims=True).astype(np.float32))
    np.testing.assert_array_equal(model.features[6][2].block[2].fc1.weight.numpy(),
                                  source.features[6][2].block[2].fc1.weight.numpy())
    x = af.tensor(np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32))
    assert model.eval()(x).shape == (1, 3)


def test_init_follows_torchvision(b0):
    w = b0.features[6][1].block[0][0].weight.numpy()  # 1x1 expand 192 -> 1152
    std = math.sqrt(2 / 1152)  # kaiming_normal, fan_out = KH*KW*Cout
    assert abs(w.std() - std) < 0.02 * std and abs(w.mean()) < 0.02 * std
    se = b0.features[2][0].block[2]
    assert not se.fc1.bias.numpy().any() and not se.fc2.bias.numpy().any()
    assert (b0.features[8][1].weight.numpy() == 1).all() and not b0.features[0][1].bias.numpy().any()
    head = b0.classifier[1]
    bound = 1 / math.sqrt(1000)  # U(+-1/sqrt(out_features)), not Linear's default
    wh = head.weight.numpy()
    assert np.abs(wh).max() <= bound and np.abs(wh).max() > 0.9 * bound and not head.bias.numpy().any()


def test_reset_classifier_and_forward_features():
    af.manual_seed(1)
    m = models.efficientnet_b0(num_classes=4).eval()
    x = af.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    feats = m.forward_features(x)
    assert feats.shape == (2, 1280) and m(x).shape == (2, 4)
    m.reset_classifier(9)
    assert m.get_classifier().out_features == 9 and m(x).shape == (2, 9)
    assert np.abs(m.get_classifier().weight.numpy()).max() <= 1 / 3
    m.reset_classifier(0)
    assert_close(m(x), feats)


def _seeded(case, **kwargs):
    return reference.seeded_model("efficientnet", case, models.efficientnet_b0(**kwargs))


def test_eval_logits_match_torchvision():
    ours, d = _seeded("eval", num_classes=10)
    ours.eval()
    with af.no_grad():
        got = ours(af.tensor(d["x"].astype(np.float32)))
    expect = d["logits"]
    assert_close(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max(), name="efficientnet_b0 eval logits")


def test_train_step_matches_torchvision():
    """Train mode (batch statistics) without the random parts, in float64: the loss, gradients of
    the stem, squeeze-excitation, depthwise, head and classifier parameters, and running stats."""
    ours, d = _seeded("train", num_classes=6, dropout=0.0, stochastic_depth_prob=0.0)
    ours.double().train()
    loss = F.cross_entropy(ours(af.tensor(d["x"])), af.tensor(d["y"]))
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-10)
    params = dict(ours.named_parameters())
    names = [k[len("grad."):] for k in d if k.startswith("grad.")]
    assert len(names) == 7
    for k in names:
        gt = d[f"grad.{k}"]
        scale = gt.abs_max if isinstance(gt, reference.Summary) else np.abs(gt).max()
        reference.assert_close(params[k].grad, gt, rtol=1e-6, atol=1e-8 * scale, name=f"grad {k}")
    sd = ours.state_dict()
    for k in [k[len("state."):] for k in d if k.startswith("state.")]:
        assert_close(sd[k], d[f"state.{k}"], rtol=1e-10, atol=1e-12, name=k)


def test_stochastic_depth_is_identity_in_eval_and_at_p0():
    x = af.tensor(np.random.default_rng(0).standard_normal((6, 3, 2, 2)).astype(np.float32))
    assert models.stochastic_depth(x, 0.7, training=False) is x
    assert models.stochastic_depth(x, 0.0, training=True) is x
    block = models.MBConv(6, 3, 1, 8, 8, stochastic_depth_prob=0.9).eval()
    y = af.tensor(np.random.default_rng(1).standard_normal((4, 8, 5, 5)).astype(np.float32))
    expect = block.block(y) + y
    assert np.array_equal(block(y).numpy(), expect.numpy())


def test_mbconv_in_training_drops_the_branch_per_sample():
    """Each sample's output is either its input (branch dropped) or input + branch / (1 - p)."""
    block = models.MBConv(6, 3, 1, 8, 8, stochastic_depth_prob=0.5).train()
    y = af.tensor(np.random.default_rng(2).standard_normal((16, 8, 4, 4)).astype(np.float32))
    branch = block.block(y).numpy()
    af.manual_seed(3)
    out, x = block(y).numpy(), y.numpy()
    dropped = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert 0 < dropped.sum() < len(x)
    np.testing.assert_allclose(out[~dropped], x[~dropped] + 2 * branch[~dropped], rtol=1e-5, atol=1e-6)


def test_stochastic_depth_drops_whole_samples_and_scales_survivors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 2, 3)) + 3.0
    p = 0.3
    af.manual_seed(5)
    y = models.stochastic_depth(af.tensor(x), p, training=True).numpy()
    ratio = y / x
    per_sample = ratio.reshape(len(x), -1)
    # one decision per sample: every element of a row is either dropped or kept
    assert np.allclose(per_sample, per_sample[:, :1])
    kept = per_sample[:, 0] != 0
    assert np.allclose(per_sample[kept, 0], 1 / (1 - p), rtol=1e-12)
    assert abs(1 - kept.mean() - p) < 4 * math.sqrt(p * (1 - p) / len(x))
    # Philox stream, so the seed makes it repeatable
    af.manual_seed(5)
    assert np.array_equal(models.stochastic_depth(af.tensor(x), p, training=True).numpy(), y)
    assert not models.stochastic_depth(af.tensor(x), 1.0, training=True).numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        models.stochastic_depth(af.tensor(x), 1.5)
    with pytest.raises(ValueError, match="mode"):
        models.StochasticDepth(0.1, "batch")


def test_training_reduces_the_loss():
    x, y, num_classes = synthetic_batch(14)
    af.manual_seed(0)
    losses = adam_losses(models.efficientnet_b0(num_classes=num_classes).train(), x, y)
    assert all(np.isfinite(losses))
    # below half the first loss and below chance (log of the class count)
    assert np.mean(losses[-3:]) < min(0.5 * losses[0], math.log(num_classes)), losses


def test_training_step_is_thread_invariant():
    """Stochastic depth on, train mode: the logits and the input gradient have the same bits with 1
    or 2 threads (the mask comes from the seeded Philox stream, not from a thread's state)."""
    af.manual_seed(4)
    model = models.efficientnet_b0(num_classes=5, stochastic_depth_prob=0.5).train()

    def step(x):
        af.manual_seed(6)
        return model(x)

    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    assert_thread_invariant(step, [x], name="efficientnet_b0 train step")
