"""freeze_residual_blocks: the spec's 80% rule (floor: 12 of ResNet-50's 16 blocks), BN stats option."""
import numpy as np
import pytest

import affectfer as af
from affectfer.models import freeze_residual_blocks, residual_blocks, resnet18, resnet50


def _trainable_prefixes(model):
    return sorted({".".join(n.split(".")[:2]) if n.startswith("layer") else n.split(".")[0]
                   for n, p in model.named_parameters() if p.requires_grad})


def test_resnet50_floor_rule_freezes_stem_and_first_12_blocks():
    model = resnet50(num_classes=6)
    assert [n for n, _ in residual_blocks(model)][11:13] == ["layer3.4", "layer3.5"]
    assert freeze_residual_blocks(model, 0.8) == 12
    # floor(0.8 * 16) = 12 blocks frozen (stem included): trainable = layer3.5, layer4, fc
    assert _trainable_prefixes(model) == ["fc", "layer3.5", "layer4.0", "layer4.1", "layer4.2"]
    assert freeze_residual_blocks(model, blocks=13) == 13
    assert _trainable_prefixes(model) == ["fc", "layer4.0", "layer4.1", "layer4.2"]
    with pytest.raises(ValueError, match="blocks must be"):
        freeze_residual_blocks(model, blocks=17)


def test_frozen_parameters_get_no_gradient_and_bn_stats_option():
    af.manual_seed(0)
    model = resnet18(num_classes=3)
    assert freeze_residual_blocks(model, 0.8, freeze_bn_stats=True) == 6
    frozen_bn = model.layer1[0].bn1
    before = frozen_bn.running_mean.numpy().copy()
    live_bn = model.layer4[1].bn2
    live_before = live_bn.running_mean.numpy().copy()
    model.train()
    loss = af.nn.functional.cross_entropy(model(af.randn(4, 3, 32, 32)), af.tensor([0, 1, 2, 0]))
    loss.backward()
    assert model.conv1.weight.grad is None and model.layer3[1].conv2.weight.grad is None
    assert model.layer4[1].conv2.weight.grad is not None and model.fc.weight.grad is not None
    assert np.array_equal(frozen_bn.running_mean.numpy(), before)  # frozen statistics
    assert not np.array_equal(live_bn.running_mean.numpy(), live_before)


def test_non_resnet_is_refused():
    with pytest.raises(ValueError, match="ResNet-style"):
        freeze_residual_blocks(af.nn.Linear(2, 2))
