"""affectfer.models.resnet: torchvision's structure (parameter counts, state_dict names and shapes,
init), and the same logits, loss and gradients as torchvision for the same weights."""
import json
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
from affectfer import models
from affectfer.testing import assert_close
from tests import reference

# torchvision resnet18's state_dict (num_classes=1000): every 15th key, and the first/last few.
RESNET18_KEY_SAMPLE = [
    "conv1.weight", "layer1.0.bn2.running_mean", "layer2.0.conv1.weight", "layer2.0.downsample.1.running_mean",
    "layer3.0.conv1.weight", "layer3.0.downsample.1.running_mean", "layer4.0.conv1.weight",
    "layer4.0.downsample.1.running_mean", "fc.weight"]
RESNET18_FIRST = ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                  "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer1.0.bn1.weight"]
RESNET50_SHAPES = {"layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3),
                   "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                   "layer2.0.conv2.weight": (128, 128, 3, 3), "layer3.5.bn3.running_var": (1024,),
                   "layer4.2.conv3.weight": (2048, 512, 1, 1), "fc.weight": (1000, 2048), "fc.bias": (1000,)}


@pytest.fixture(scope="module")
def r18():
    af.manual_seed(0)
    return models.resnet18()


@pytest.fixture(scope="module")
def r50():
    af.manual_seed(0)
    return models.resnet50()


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts(r18, r50):
    assert count(r18) == 11_689_512
    assert count(r50) == 25_557_032
    assert count(models.resnet18(num_classes=7)) == 11_689_512 - 993 * 512 - 993
    assert count(models.resnet34()) == 21_797_672


def test_reachable_from_the_package_root():
    assert af.models.resnet18 is models.resnet18 and af.nn.Conv2d is nn.Conv2d and af.optim.SGD


def test_state_dict_names(r18, r50):
    keys18 = list(r18.state_dict())
    assert len(keys18) == 122 and keys18[::15] == RESNET18_KEY_SAMPLE and keys18[:8] == RESNET18_FIRST
    assert keys18[-2:] == ["fc.weight", "fc.bias"]
    sd50 = r50.state_dict()
    assert len(sd50) == 320
    for k, shape in RESNET50_SHAPES.items():
        assert tuple(sd50[k].shape) == shape, k
    assert "layer1.1.downsample.0.weight" not in sd50 and "layer1.0.downsample.0.weight" in sd50


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_names_and_shapes_equal_torchvision(name, r18, r50):
    theirs = reference.case("resnet", f"names-{name}")
    ours = r18 if name == "resnet18" else r50
    assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == json.loads(theirs["state"])
    assert [n for n, _ in ours.named_modules()] == json.loads(theirs["modules"])


def test_init_follows_torchvision(r50):
    w = r50.layer3[0].conv2.weight.numpy()
    std = math.sqrt(2 / (3 * 3 * 256))  # kaiming_normal, fan_out = KH*KW*Cout
    assert abs(w.std() - std) < 0.02 * std and abs(w.mean()) < 0.02 * std
    assert (r50.layer2[1].bn3.weight.numpy() == 1).all() and not r50.bn1.bias.numpy().any()
    bound = 1 / math.sqrt(2048)  # fc keeps Linear's default init
    assert np.abs(r50.fc.weight.numpy()).max() <= bound
    zr = models.resnet18(zero_init_residual=True)
    assert not zr.layer2[1].bn2.weight.numpy().any() and (zr.layer2[1].bn1.weight.numpy() == 1).all()


def test_stride_on_1x1_moves_the_stride():
    block = models.Bottleneck(256, 128, stride=2, stride_on="1x1")
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    block = models.Bottleneck(256, 128, stride=2)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    with pytest.raises(ValueError, match="stride_on"):
        models.Bottleneck(64, 64, stride_on="3x1")


def test_forward_shapes_and_eval_determinism(rng):
    model = models.resnet18(num_classes=5).eval()
    x = af.tensor(rng.standard_normal((2, 3, 40, 36)).astype(np.float32))
    y = model(x)
    assert y.shape == (2, 5)
    assert np.array_equal(model(x).numpy(), y.numpy())
    assert model.features(x).shape == (2, 512, 2, 2)


def _seeded(name, num_classes, case):
    """Our model with the weights make_fixtures.py gave torchvision's (same NumPy seed, no weights
    stored), and that case's torchvision numbers."""
    return reference.seeded_model("resnet", case, getattr(models, name)(num_classes=num_classes))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_eval_logits_match_torchvision(name):
    ours, d = _seeded(name, 10, f"eval-{name}")
    expect = d["logits"]
    ours.eval()
    with af.no_grad():
        got = ours(af.tensor(d["x"].astype(np.float32)))
    assert_close(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max(), name=f"{name} eval logits")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_train_step_matches_torchvision(dtype):
    """Train mode: batch statistics, loss, gradients, updated running stats. In float64 every
    gradient agrees to ~1e-12 (the fixture holds the small ones whole and summaries of the big
    ones); in float32, BN weight gradients (sums of dy * xhat with cancellation) legitimately
    differ by up to ~1e-2 relative, so float32 checks the loss, the fc gradient and the running
    statistics."""
    ours, d = _seeded("resnet18", 6, f"train-{dtype}")
    if dtype == "float64":
        ours.double()
    ours.train()
    loss = F.cross_entropy(ours(af.tensor(d["x"].astype(dtype))), af.tensor(d["y"]), label_smoothing=0.1)
    loss.backward()
    tight = dtype == "float64"
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-12 if tight else 1e-5)
    ours_p = dict(ours.named_parameters())
    names = list(ours_p) if tight else ["fc.weight", "fc.bias"]
    assert sorted(k[len("grad."):] for k in d if k.startswith("grad.")) == sorted(names)
    for k in names:
        gt = d[f"grad.{k}"]
        scale = gt.abs_max if isinstance(gt, reference.Summary) else np.abs(gt).max()
        reference.assert_close(ours_p[k].grad, gt, rtol=1e-8 if tight else 1e-3,
                               atol=(1e-10 if tight else 1e-4) * scale, name=f"grad {k}")
    sd = ours.state_dict()
    for k in ["bn1.running_mean", "layer2.0.bn1.running_var", "layer4.1.bn2.running_var", "bn1.num_batches_tracked"]:
        assert_close(sd[k], d[f"state.{k}"], rtol=1e-10 if tight else 1e-4, atol=1e-12 if tight else 1e-5, name=k)
