"""affectfer.models.se_resnet50 and resnet50(layout="vggface2"): the VGGFace2 models' structure and
names (their weight pickles load strictly), the same logits and gradients as a torch reference of
them for the same weights, the preprocessing presets, the shared squeeze-excitation block, and a
short fine-tuning run."""
import json

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
import affectfer.transforms as T
from affectfer import models
from affectfer.testing import assert_close
from affectfer.weights import load_weights
from tests import reference
from tests.models.training import adam_losses, synthetic_batch
from tests.weights import torchfile

VGGFACE2_CLASSES = 8631
# The parity weights: seeded_state_dict with these affine parameters halved (on both sides), so the
# residual branches stay small. Undamped, the eval-mode SE-ResNet is chaotic: torch's own float32
# and float64 logits differ by 7%.
DAMPED = ("bn3.weight", "bn3.bias")


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def senet():
    af.manual_seed(0)
    return models.se_resnet50(num_classes=VGGFACE2_CLASSES)


@pytest.fixture(scope="module")
def vgg_resnet():
    af.manual_seed(0)
    return models.resnet50(num_classes=VGGFACE2_CLASSES, layout="vggface2")


def vggface2_keys(se):
    """The (name, shape) table of the VGGFace2 pickles, written from the model description (stages
    [3, 4, 6, 3] of widths 64..512, expansion 4, a downsample on each stage's first block, SE convs
    conv4/conv5 with bias at reduction 16 after the downsample, fc to the 8631 identities), and
    without num_batches_tracked, which the Caffe conversions never had."""
    bn = lambda p, c: [(f"{p}.{k}", (c,)) for k in ("weight", "bias", "running_mean", "running_var")]  # noqa: E731
    table = [("conv1.weight", (64, 3, 7, 7))] + bn("bn1", 64)
    inplanes = 64
    for s, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], 1):
        for b in range(blocks):
            p, c = f"layer{s}.{b}", 4 * planes
            table += [(f"{p}.conv1.weight", (planes, inplanes, 1, 1))] + bn(f"{p}.bn1", planes)
            table += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn(f"{p}.bn2", planes)
            table += [(f"{p}.conv3.weight", (c, planes, 1, 1))] + bn(f"{p}.bn3", c)
            if b == 0:
                table += [(f"{p}.downsample.0.weight", (c, inplanes, 1, 1))] + bn(f"{p}.downsample.1", c)
            if se:
                table += [(f"{p}.conv4.weight", (c // 16, c, 1, 1)), (f"{p}.conv4.bias", (c // 16,)),
                          (f"{p}.conv5.weight", (c, c // 16, 1, 1)), (f"{p}.conv5.bias", (c,))]
            inplanes = c
    return table + [("fc.weight", (VGGFACE2_CLASSES, 2048)), ("fc.bias", (VGGFACE2_CLASSES,))]


# ---------------------------------------------------------------- the squeeze-excitation block

def test_squeeze_excitation_matches_numpy(rng):
    af.manual_seed(3)
    se = models.SqueezeExcitation(8, reduction=4)
    assert se.fc1.weight.shape == (2, 8, 1, 1) and se.fc2.weight.shape == (8, 2, 1, 1)
    assert [k for k in se.state_dict()] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    x = rng.standard_normal((2, 8, 5, 3)).astype(np.float32)
    w1, b1 = se.fc1.weight.numpy()[:, :, 0, 0], se.fc1.bias.numpy()
    w2, b2 = se.fc2.weight.numpy()[:, :, 0, 0], se.fc2.bias.numpy()
    s = np.maximum(x.mean((2, 3)) @ w1.T + b1, 0) @ w2.T + b2
    assert_close(se(af.tensor(x)), x / (1 + np.exp(-s))[:, :, None, None], rtol=1e-5, atol=1e-6)
    silu = models.SqueezeExcitation(8, 3, activation=nn.SiLU)
    assert isinstance(silu.activation, nn.SiLU) and silu.fc1.out_channels == 3
    with pytest.raises(ValueError, match="exactly one of squeeze_channels and reduction"):
        models.SqueezeExcitation(8, 2, reduction=4)
    with pytest.raises(ValueError, match="reduction must be a positive int, got 0"):
        models.SqueezeExcitation(8, reduction=0)


def test_efficientnet_uses_the_shared_block():
    se = models.efficientnet_b0().features[2][0].block[2]
    assert type(se) is models.SqueezeExcitation and isinstance(se.activation, nn.SiLU)


# ---------------------------------------------------------------- structure

def test_parameter_counts_and_factory(senet, vgg_resnet):
    assert count(senet) == 43_723_943 == int(reference.case("senet", "names-se_resnet50")["params"])
    assert count(vgg_resnet) == int(reference.case("senet", "names-resnet50_vggface2")["params"])
    head = (VGGFACE2_CLASSES - 1000) * 2049  # the fc beyond 1000 classes
    assert count(senet) - head == 28_088_024 and count(vgg_resnet) - head == 25_557_032
    assert "se_resnet50" in models.list_models()
    assert isinstance(models.create("se_resnet50", num_classes=7), models.SENet)
    with pytest.raises(ValueError, match="layout must be one of .* got 'caffe'"):
        models.resnet50(layout="caffe")


@pytest.mark.parametrize("name", ["se_resnet50", "resnet50_vggface2"])
def test_names_and_shapes_equal_the_reference(name, senet, vgg_resnet):
    theirs = json.loads(reference.case("senet", f"names-{name}")["state"])
    ours = senet if name == "se_resnet50" else vgg_resnet
    assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == theirs
    table = vggface2_keys(se=name == "se_resnet50")
    assert [[k, list(s)] for k, s in table] == [e for e in theirs if not e[0].endswith("num_batches_tracked")]


def test_vggface2_quirks(senet):
    """Stride on the 1x1 conv, a ceil-mode stem pool without padding, BN eps 1e-5, SE after bn3."""
    block = senet.layer2[0]
    assert block.conv1.stride in (2, (2, 2)) and block.conv2.stride in (1, (1, 1))
    assert senet.maxpool.ceil_mode and senet.maxpool.padding == 0 and senet.bn1.eps == 1e-5
    torchvision = models.resnet50()
    assert torchvision.layer2[0].conv2.stride in (2, (2, 2)) and not torchvision.maxpool.ceil_mode
    x = af.randn(1, 3, 57, 57)
    with af.no_grad():  # 57 -> 29 after conv1: floor-mode pool with padding 1 gives 15, ceil without gives 14
        assert senet.maxpool(senet.conv1(x)).shape[-1] == 14
        assert torchvision.maxpool(torchvision.conv1(x)).shape[-1] == 15
    w = senet.layer3[0].conv4.weight.numpy()  # N(0, 2 / (1 * 1 * 64)) as the VGGFace2 init
    assert abs(w.std() - np.sqrt(2 / 64)) < 0.03 * np.sqrt(2 / 64)


def test_forward_features_and_reset_classifier():
    af.manual_seed(0)
    model = models.se_resnet50(num_classes=5).eval()
    x = af.randn(2, 3, 64, 64)
    with af.no_grad():
        assert model(x).shape == (2, 5) and model.forward_features(x).shape == (2, 2048)
        assert model.features(x).shape == (2, 2048, 2, 2)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3
        model.reset_classifier(0)
        assert model(x).shape == (2, 2048)


# ---------------------------------------------------------------- parity with the torch reference

def _seeded(case):
    """The model of `case` ("<model>-<size>-<dtype>") with the generator's weights, its input and numbers."""
    name, size, dtype = case.split("-")
    model = models.se_resnet50(10) if name == "se_resnet50" else models.resnet50(10, layout="vggface2")
    model, d = reference.seeded_model("senet", case, model)
    model.load_state_dict({k: v.numpy() * 0.5 if k.endswith(DAMPED) else v.numpy()
                           for k, v in model.state_dict().items()})
    x = reference.seeded_input((2, 3, int(size), int(size)), reference.SEED + int(size))
    assert reference.checksum({"x": x}) == pytest.approx(float(d["x_checksum"]), rel=1e-12)
    if dtype == "float64":
        model.double()
    return model, af.tensor(x.astype(dtype)), d, dtype


@pytest.mark.parametrize("case", reference.cases("senet", "se_resnet50-") + reference.cases("senet", "resnet50_vggface2-"))
def test_logits_and_gradients_match_the_reference(case):
    """Eval logits, then a train-mode step (batch statistics): logits, loss, gradients, running
    statistics. float32: 1e-4 on logits, 1e-3 on the gradients float32 computes accurately
    (make_fixtures.py checks which); float64: gradients across the whole net."""
    ours, x, d, dtype = _seeded(case)
    rtol, grad_rtol = (1e-4, 1e-3) if dtype == "float32" else (1e-10, 1e-8)
    with af.no_grad():
        got = ours.eval()(x)
    for what, got in (("eval_logits", got), ("train_logits", logits := ours.train()(x))):
        expect = d[what]
        assert_close(got, expect, rtol=rtol, atol=rtol * np.abs(expect).max(), name=f"{case} {what}")
    loss = F.cross_entropy(logits, af.tensor(d["y"]))
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=rtol)
    assert reference.assert_step_matches(ours, d, grad_rtol, rtol, case) >= 3


# ---------------------------------------------------------------- the VGGFace2 weight files

@pytest.mark.parametrize("se", [True, False])
def test_vggface2_pickle_loads_strictly(tmp_path, se, senet, vgg_resnet):
    """A Python-2 pickle of name -> ndarray with exactly the published key table loads with
    strict=True (num_batches_tracked absent) and every array lands under its name."""
    rng = np.random.default_rng(5)
    table = vggface2_keys(se)
    arrays = {k: rng.standard_normal(shape).astype(np.float32) for k, shape in table}
    path = tmp_path / ("senet50_ft_weight.pkl" if se else "resnet50_ft_weight.pkl")
    path.write_bytes(torchfile.numpy_pickle_py2(arrays))
    model = senet if se else vgg_resnet
    report = load_weights(model, path, format="vggface2")
    assert not report.missing_keys and not report.unexpected_keys and not report.skipped
    state = model.state_dict()
    for k in ("conv1.weight", "layer3.4.bn2.running_var", "layer4.0.downsample.0.weight", "fc.bias") + \
            (("layer2.1.conv4.weight", "layer4.2.conv5.bias") if se else ()):
        np.testing.assert_array_equal(state[k].numpy(), arrays[k], err_msg=k)
    del arrays["layer1.1.conv2.weight"]
    path.write_bytes(torchfile.numpy_pickle_py2(arrays))
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in the file: layer1.1.conv2.weight"):
        load_weights(model, path, format="vggface2")


# ---------------------------------------------------------------- preprocessing presets

def test_vggface2_preset_is_the_reference_convention(rng, senet):
    """uint8 RGB -> BGR -> float32 -> minus the BGR mean (91.4953, 103.8827, 131.0912) -> CHW, no
    /255 (VGGFace2-pytorch datasets/vgg_face2.py), computed by ToTensor + Normalize + reorder."""
    img = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    expect = (img[:, :, ::-1].astype(np.float32) - np.array([91.4953, 103.8827, 131.0912], np.float32))
    expect = expect.transpose(2, 0, 1)
    pre = models.preprocessing("vggface2")
    assert pre.channel_order == "BGR" and senet.preprocessing is pre
    got = pre.reorder(T.Compose(pre.transforms())(img, seed=0, stream=0))
    np.testing.assert_allclose(got, expect, rtol=0, atol=2e-4)  # float32 rounding of (x/255 - m/255) * 255
    batch = pre.reorder(af.tensor(np.stack([got, got])))  # a batch tensor goes back to RGB
    np.testing.assert_array_equal(batch.numpy()[1], got[::-1])
    big = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
    assert pre.eval_transform()(big, seed=0, stream=0).shape == (3, 224, 224)


def test_imagenet_preset_and_unknown_names(rng):
    pre = models.preprocessing("imagenet")
    assert models.resnet18().preprocessing is pre and pre.channel_order == "RGB"
    img = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    expect = ((img / np.float32(255) - np.array(pre.mean, np.float32)) / np.array(pre.std, np.float32)).transpose(2, 0, 1)
    got = pre.reorder(T.Compose(pre.transforms())(img, seed=0, stream=0))
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="unknown preset 'caffe'"):
        models.preprocessing("caffe")
    with pytest.raises(ValueError, match=r"reorder: expected .* got shape \(4, 5, 3\)"):
        models.preprocessing("vggface2").reorder(np.zeros((4, 5, 3), np.float32))


# ---------------------------------------------------------------- training

def test_se_resnet50_fine_tunes_on_synthetic_faces():
    af.manual_seed(0)
    x, y, classes = synthetic_batch(8, size=32)
    losses = adam_losses(models.se_resnet50(num_classes=classes), x, y, steps=20)
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.3 * losses[0], losses
