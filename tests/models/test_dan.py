"""DAN: the released checkpoints' key table loads strictly, output shapes, a float64 gradient check
of one cross-attention head, the head fusion rule, and a short training run with its three losses."""
import numpy as np
import pytest

import affectfer as af
from affectfer import losses, models, nn, optim
from affectfer.testing import gradcheck

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def released_checkpoint_shapes(num_classes=8, num_head=4):
    """Keys and shapes of the released DAN checkpoints (github.com/yaoing/DAN), written out from the
    reference module tree: features.N are torchvision ResNet-18's children 0..7."""
    shapes = {}
    resnet = models.resnet18().state_dict()
    rename = {"conv1": "features.0", "bn1": "features.1", "layer1": "features.4", "layer2": "features.5",
              "layer3": "features.6", "layer4": "features.7"}
    for key, value in resnet.items():
        head, _, rest = key.partition(".")
        if head in rename:
            shapes[f"{rename[head]}.{rest}"] = value.shape
    assert shapes["features.0.weight"] == (64, 3, 7, 7)
    assert shapes["features.5.0.downsample.0.weight"] == (128, 64, 1, 1)

    def bn(prefix, n):
        for k in BN:
            shapes[f"{prefix}.{k}"] = () if k == "num_batches_tracked" else (n,)

    for i in range(num_head):
        p = f"cat_head{i}"
        shapes[f"{p}.sa.conv1x1.0.weight"], shapes[f"{p}.sa.conv1x1.0.bias"] = (256, 512, 1, 1), (256,)
        bn(f"{p}.sa.conv1x1.1", 256)
        for name, k in (("conv_3x3", (3, 3)), ("conv_1x3", (1, 3)), ("conv_3x1", (3, 1))):
            shapes[f"{p}.sa.{name}.0.weight"], shapes[f"{p}.sa.{name}.0.bias"] = (512, 256, *k), (512,)
            bn(f"{p}.sa.{name}.1", 512)
        shapes[f"{p}.ca.attention.0.weight"], shapes[f"{p}.ca.attention.0.bias"] = (32, 512), (32,)
        bn(f"{p}.ca.attention.1", 32)
        shapes[f"{p}.ca.attention.3.weight"], shapes[f"{p}.ca.attention.3.bias"] = (512, 32), (512,)
    shapes["fc.weight"], shapes["fc.bias"] = (num_classes, 512), (num_classes,)
    bn("bn", num_classes)
    return shapes


@pytest.mark.parametrize("num_classes", [7])
def test_released_key_table_loads_strictly(num_classes, rng):
    expected = released_checkpoint_shapes(num_classes)
    model = models.dan(num_classes=num_classes)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == {k: tuple(v) for k, v in expected.items()}
    state = {}
    for k, shape in expected.items():
        dtype = np.int64 if k.endswith("num_batches_tracked") else np.float32
        state[k] = af.tensor(rng.standard_normal(shape).astype(dtype) if dtype == np.float32 else np.array(7))
    model.load_state_dict(state, strict=True)
    np.testing.assert_array_equal(model.fc.weight.numpy(), state["fc.weight"].numpy())


def test_outputs_and_fusion_rule(rng):
    af.manual_seed(0)
    model = models.dan(num_classes=6, num_head=3).eval()
    x = af.tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    logits, fmap, heads = model(x)
    assert logits.shape == (2, 6) and fmap.shape == (2, 512, 2, 2) and heads.shape == (2, 3, 512)
    # heads are log-softmaxed across the head axis: exp sums to 1 per channel
    np.testing.assert_allclose(np.exp(heads.numpy()).sum(1), 1.0, rtol=1e-5)
    # logits = bn(fc(sum over heads)) in eval mode
    s = heads.numpy().sum(1)
    fc = s @ model.fc.weight.numpy().T + model.fc.bias.numpy()
    bn = model.bn
    expected = (fc - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps) * bn.weight.numpy() + bn.bias.numpy()
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-5)
    raw = models.dan(num_classes=6, num_head=3, log_softmax_heads=False).eval()
    raw.load_state_dict(model.state_dict())
    np.testing.assert_allclose(raw(x)[0].numpy() * 0, 0)  # same weights, finite outputs
    assert not np.allclose(raw(x)[2].numpy(), heads.numpy(), atol=1e-3)


def test_head_init_and_gradcheck(rng):
    af.manual_seed(1)
    head = models.CrossAttentionHead(channels=4, hidden=3)
    assert np.all(head.sa.conv1x1[0].bias.numpy() == 0)
    assert np.abs(head.ca.attention[0].weight.numpy()).max() < 0.01  # N(0, 0.001^2)
    head = head.double().train()
    x = af.tensor(rng.standard_normal((3, 4, 3, 3)), dtype="float64", requires_grad=True)
    params = [head.sa.conv1x1[0].weight, head.sa.conv_1x3[0].weight, head.sa.conv_3x1[1].bias,
              head.ca.attention[1].weight, head.ca.attention[3].weight]
    gradcheck(lambda x, *params: head(x), [x] + params)  # gradcheck perturbs the parameters in place


def test_custom_backbone_gets_the_adaptor(rng):
    class Tiny(nn.Module):
        out_channels = 2048

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2048, 3, stride=4)

        def forward(self, x):
            return self.conv(x)

    model = models.dan(num_classes=5, num_head=2, backbone=Tiny()).eval()
    assert model.conv1x1_1[0].weight.shape == (1024, 2048, 1, 1)
    logits, fmap, heads = model(af.tensor(rng.standard_normal((1, 3, 16, 16)).astype(np.float32)))
    assert logits.shape == (1, 5) and fmap.shape == (1, 512, 4, 4)
    with pytest.raises(TypeError, match="out_channels"):
        models.dan(backbone=nn.Identity())


def test_training_with_the_three_losses_lowers_the_loss(rng):
    af.manual_seed(2)
    model = models.dan(num_classes=3, num_head=2)
    affinity = losses.AffinityLoss(num_classes=3, feat_dim=512)
    opt = optim.Adam(list(model.parameters()) + list(affinity.parameters()), lr=1e-3)
    x = af.tensor(rng.standard_normal((6, 3, 32, 32)).astype(np.float32))
    y = af.tensor(np.array([0, 1, 2, 0, 1, 2]))
    history = []
    for _ in range(8):
        opt.zero_grad()
        logits, fmap, heads = model(x)
        loss = nn.functional.cross_entropy(logits, y) + affinity(fmap, y) + losses.partition_loss(heads)
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < history[0]
