"""models.create / list_models / reset_classifier / forward_features."""
import numpy as np
import pytest

import affectfer as af
from affectfer import checkpoint, models


def test_list_and_unknown_names():
    assert {"resnet18", "resnet50", "dan"} <= set(models.list_models())
    assert models.list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]
    with pytest.raises(ValueError, match="unknown model 'resnet19'; available: "):
        models.create("resnet19")


def test_pretrained_file_loads_with_the_head_skipped(tmp_path):
    af.manual_seed(0)
    source = models.resnet18(num_classes=10)
    path = tmp_path / "r18.safetensors"
    checkpoint.save(source, path)
    model = models.create("resnet18", num_classes=3, pretrained=path)
    assert set(model.pretrained_report.skipped) == {"fc.weight", "fc.bias"}
    np.testing.assert_array_equal(model.conv1.weight.numpy(), source.conv1.weight.numpy())
    np.testing.assert_array_equal(model.layer4[1].bn2.running_var.numpy(), source.layer4[1].bn2.running_var.numpy())
    assert model.fc.weight.shape == (3, 512)


def test_in_chans_adapts_the_stem(rng):
    af.manual_seed(1)
    rgb = models.create("resnet18", num_classes=4).eval()
    gray = models.create("resnet18", num_classes=4).eval()
    gray.load_state_dict(rgb.state_dict())
    from affectfer.models.factory import _adapt_input_conv
    _adapt_input_conv(gray, 1)
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    # summed RGB filters on one channel == the RGB model on that channel repeated three times
    np.testing.assert_allclose(gray(af.tensor(x)).numpy(), rgb(af.tensor(np.repeat(x, 3, 1))).numpy(), rtol=1e-4, atol=1e-5)
    five = models.create("resnet18", num_classes=4, in_chans=5).eval()
    assert five.conv1.weight.shape == (64, 5, 7, 7) and five.conv1.in_channels == 5
    assert five(af.tensor(rng.standard_normal((1, 5, 32, 32)).astype(np.float32))).shape == (1, 4)


def test_reset_classifier_and_forward_features(rng):
    model = models.create("resnet50", num_classes=7).eval()
    x = af.tensor(rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert model.forward_features(x).shape == (1, 2048)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.get_classifier().out_features == 3
    model.reset_classifier(0)
    assert model(x).shape == (1, 2048)
    d = models.create("dan", num_classes=8, num_head=2)
    d.reset_classifier(6)
    assert d.fc.weight.shape == (6, 512) and d.bn.weight.shape == (6,)
