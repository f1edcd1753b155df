"""nn.utils.fuse_conv_bn / fuse_conv_bn_eval: eval-mode conv + batch norm folded into one conv gives
the unfused outputs (within float32 rounding), on single layers and on whole ResNets."""
import numpy as np
import pytest

import affectfer as af
from affectfer import models, nn
from affectfer.nn.utils import fuse_conv_bn, fuse_conv_bn_eval
from affectfer.testing import assert_close


def _randomise_bn(model, rng):
    """Non-trivial running statistics and affine parameters in every batch norm (init has 0 / 1)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            for name, values in (("running_mean", rng.standard_normal(c) * 0.1),
                                 ("running_var", rng.uniform(0.5, 2.0, c)),
                                 ("weight", rng.uniform(0.5, 1.5, c)), ("bias", rng.standard_normal(c) * 0.1)):
                getattr(m, name).numpy()[...] = values


def _fold_whole_model(model, x, rng, forward=None):
    """model's output on x in eval mode with random batch-norm statistics, before and after
    fuse_conv_bn (which must leave no BatchNorm2d): (unfused, fused)."""
    forward = forward or model
    _randomise_bn(model, rng)
    model.eval()
    ref = forward(x).numpy()
    fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    return ref, forward(x)


@pytest.mark.parametrize("bias,groups,stride,padding", [(False, 1, 1, 1), (True, 1, 2, 0), (True, 2, 1, 1)])
def test_single_pair_matches_unfused(bias, groups, stride, padding, rng):
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=padding, groups=groups, bias=bias)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    _randomise_bn(bn, rng)
    conv.eval(), bn.eval()
    x = af.tensor(rng.standard_normal((2, 4, 7, 9)).astype(np.float32))
    ref = bn(conv(x)).numpy()
    w_before = conv.weight.numpy().copy()
    fused = fuse_conv_bn_eval(conv, bn)
    assert_close(fused(x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(conv.weight.numpy(), w_before)  # the inputs are left alone
    assert (conv.bias is None) == (not bias) and fused.bias is not None


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_eval_matches_unfused(arch, rng):
    af.manual_seed(0)
    model = getattr(models, arch)(num_classes=5)
    ref, out = _fold_whole_model(model, af.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)), rng)
    assert not any(k.startswith("bn1") or ".bn" in k for k in model.state_dict())
    assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_efficientnet_eval_matches_unfused_in_float64(rng):
    """EfficientNet's Conv2dNormActivation is a Sequential conv -> BN -> SiLU: folding replaces its BN in
    place (a replaced child once moved to the end, so the SiLU ran first and the fused net was wrong
    by the size of its outputs). In float64 the folding is exact up to rounding."""
    af.manual_seed(0)
    model = models.create("efficientnet_b0", num_classes=5).to(dtype="float64")
    x = af.tensor(rng.standard_normal((1, 3, 32, 32)), dtype="float64")
    ref, out = _fold_whole_model(model, x, rng, forward=model.forward_features)
    assert [type(m).__name__ for m in model.features[0]] == ["Conv2d", "Identity", "SiLU"]
    assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_mobilevit_eval_matches_unfused(rng):
    """MobileViT's BatchNormAct2d holds its SiLU inside the batch norm module: the folding keeps it."""
    af.manual_seed(0)
    model = models.create("mobilevitv2_050", num_classes=5)
    ref, out = _fold_whole_model(model, af.tensor(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)), rng)
    assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_explicit_pairs_and_errors(rng):
    seq = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))  # not adjacent: not folded by default
    seq.eval()
    fuse_conv_bn(seq)
    assert isinstance(seq[2], nn.BatchNorm2d)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        fuse_conv_bn(seq, pairs=[("0", "nope")])
    seq.train()
    with pytest.raises(ValueError, match="training mode"):
        fuse_conv_bn(seq)
    with pytest.raises(ValueError, match="bn has 5 features but conv has 4"):
        fuse_conv_bn_eval(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))
    with pytest.raises(TypeError, match="expected a Conv2d and a BatchNorm2d"):
        fuse_conv_bn_eval(nn.Conv2d(3, 4, 1), nn.ReLU())
    with pytest.raises(ValueError, match="no running statistics"):
        fuse_conv_bn_eval(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
