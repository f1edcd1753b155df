"""models.multitask: MultiTaskIXL (IXLab ABAW4) and SMMEmotionNet (HUST-ANT ABAW4 MTL)."""
import numpy as np
import pytest

import affectfer as af
from affectfer import models, nn
from affectfer.testing import gradcheck


class TinyMap(nn.Module):
    """A stand-in backbone: images -> a (B, 8, h/4, w/4) map."""

    out_channels = 8

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)

    def forward(self, x):
        return self.conv(x).relu()


class TinyFeatures(nn.Module):
    """An appearance backbone whose forward_features keeps the map, as timm's do."""

    num_features = 5

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)

    def forward_features(self, x):
        return self.conv(x)


def _x(rng, *shape, dtype="float32"):
    return af.tensor(rng.standard_normal(shape).astype(dtype))


@pytest.fixture(scope="module")
def ixl():
    af.manual_seed(0)
    return models.MultiTaskIXL(6, emotion_backbone="resnet18", appearance="resnet18", num_head=2)


def test_multitask_ixl_outputs_and_two_view_input(ixl, rng):
    a, b = _x(rng, 2, 3, 32, 32), _x(rng, 2, 3, 32, 32)
    ixl.eval()
    logits, landmarks, fmap, heads = ixl(a, b)
    assert logits.shape == (2, 6) and landmarks.shape == (2, 68, 2)
    assert fmap.shape == (2, 512, 1, 1) and heads.shape == (2, 2, 512)
    # a TwoViewLoader batch stacks the views on the channel axis; forward splits it again
    stacked = ixl(af.cat([a, b], dim=1))
    for got, want in zip(stacked, (logits, landmarks, fmap, heads)):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # the landmarks come from the second view only, the expression from the first only
    swapped = ixl(a, a)
    np.testing.assert_array_equal(swapped[0].numpy(), logits.numpy())
    assert not np.allclose(swapped[1].numpy(), landmarks.numpy())
    # the IXL code stacks the DAN heads without the log-softmax across heads
    assert not ixl.em_feature.log_softmax_heads
    assert heads.numpy().max() > 0  # a log-softmax is never positive


def test_multitask_ixl_structure_follows_the_reference(ixl):
    sd = ixl.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # the emotion branch is a DAN on the ResNet map with the 512 -> 1024 -> 512 adaptor skipped for
    # a 512-channel ResNet-18; a ResNet-50 gets the 2048 -> 1024 -> 512 one
    assert shapes["em_feature.features.0.weight"] == (64, 3, 7, 7)
    assert shapes["em_feature.cat_head1.sa.conv_3x3.0.weight"] == (512, 256, 3, 3)
    assert not any(k.startswith("em_feature.conv1x1_1") for k in sd)
    assert shapes["conv1x1_lm.0.weight"] == (512, 512, 1, 1) and shapes["conv1x1_lm.1.running_var"] == (512,)
    # the appearance backbone keeps only its features: its classifier is gone
    assert "lm_feature.conv1.weight" in sd and not any(k.startswith("lm_feature.fc.") for k in sd)
    assert isinstance(ixl.lm_feature.fc, nn.Identity)


def test_multitask_ixl_resnet50_branch_gets_the_adaptor():
    af.manual_seed(1)
    m = models.create("multitask_ixl", num_classes=6, emotion_backbone="resnet50", appearance=TinyFeatures(),
                      num_head=1)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["em_feature.conv1x1_1.0.weight"] == (1024, 2048, 1, 1)
    assert shapes["em_feature.conv1x1_2.0.weight"] == (512, 1024, 1, 1)
    assert shapes["conv1x1_lm.0.weight"] == (512, 5, 1, 1)
    with pytest.raises(TypeError, match="forward_features"):
        models.MultiTaskIXL(appearance=nn.Linear(3, 3), emotion_backbone=TinyMap())
    with pytest.raises(TypeError, match="backbone"):
        models.MultiTaskIXL(appearance=42)


def test_multitask_ixl_mobilevitv2_appearance_branch(rng):
    """The third appearance backbone of the reference: MobileViTv2 (the code's 2.0 width gives 1024
    channels, reduced to 512 by conv1x1_lm; the 0.5 width here gives 256)."""
    af.manual_seed(2)
    m = models.MultiTaskIXL(6, emotion_backbone="resnet18", appearance="mobilevitv2_050", num_head=1).eval()
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["conv1x1_lm.0.weight"] == (512, 256, 1, 1)
    assert "lm_feature.stem.conv.weight" in shapes
    x = _x(rng, 2, 3, 64, 64)
    logits, landmarks, _, _ = m(x, x)
    assert logits.shape == (2, 6) and landmarks.shape == (2, 68, 2)
    np.testing.assert_allclose(landmarks.numpy(), m.forward_landmarks(x).numpy(), rtol=1e-6, atol=1e-6)


# IXL's MTL_classfier (networks/models_tmp.py): parameter names and shapes, in registration order
_IXL_CLASSIFIER = {
    "sharedfc1.weight": (256, 512), "sharedfc1.bias": (256,),
    "sharedbn1.weight": (256,), "sharedbn1.bias": (256,), "sharedbn1.running_mean": (256,),
    "sharedbn1.running_var": (256,), "sharedbn1.num_batches_tracked": (),
    "sharedfc2.weight": (128, 256), "sharedfc2.bias": (128,),
    "sharedbn2.weight": (128,), "sharedbn2.bias": (128,), "sharedbn2.running_mean": (128,),
    "sharedbn2.running_var": (128,), "sharedbn2.num_batches_tracked": (),
    "encode1.weight": (68, 128), "encode1.bias": (68,), "encode2.weight": (68, 128), "encode2.bias": (68,),
    "fc.weight": (6, 128), "fc.bias": (6,),
    "bn.weight": (6,), "bn.bias": (6,), "bn.running_mean": (6,), "bn.running_var": (6,),
    "bn.num_batches_tracked": (),
}


def test_multitask_classifier_loads_the_reference_keys_strictly(rng):
    head = models.MultiTaskClassifier(6, 68)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == _IXL_CLASSIFIER
    assert list(head.state_dict()) == list(_IXL_CLASSIFIER)
    sd = {k: (np.asarray(7, np.int64) if k.endswith("num_batches_tracked")
              else np.abs(rng.standard_normal(s)).astype(np.float32) + 0.5) for k, s in _IXL_CLASSIFIER.items()}
    head.load_state_dict(sd, strict=True)
    np.testing.assert_array_equal(head.encode2.weight.numpy(), sd["encode2.weight"])
    with pytest.raises(RuntimeError, match="Unexpected"):
        head.load_state_dict({**sd, "classfier.fc.weight": sd["fc.weight"]}, strict=True)
    # eval forward against NumPy: shared trunk (no activation) then the two heads
    head.eval()
    e, l = rng.standard_normal((3, 512)).astype(np.float32), rng.standard_normal((3, 512)).astype(np.float32)

    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd[name + ".bias"]

    def bn(x, name):
        return (x - sd[name + ".running_mean"]) / np.sqrt(sd[name + ".running_var"] + 1e-5) * sd[name + ".weight"] \
            + sd[name + ".bias"]

    def trunk(x):
        return bn(lin(bn(lin(x, "sharedfc1"), "sharedbn1"), "sharedfc2"), "sharedbn2")

    logits, lm = head(af.tensor(e), af.tensor(l))
    np.testing.assert_allclose(logits.numpy(), bn(lin(trunk(e), "fc"), "bn"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lm.numpy()[:, :, 0], lin(trunk(l), "encode1"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lm.numpy()[:, :, 1], lin(trunk(l), "encode2"), rtol=1e-4, atol=1e-4)


def test_multitask_heads_gradcheck(rng):
    af.manual_seed(2)
    head = models.MultiTaskClassifier(3, 4, dims=(6, 5, 4)).double().train()
    e = af.tensor(rng.standard_normal((5, 6)), dtype="float64", requires_grad=True)
    l = af.tensor(rng.standard_normal((5, 6)), dtype="float64", requires_grad=True)
    gradcheck(lambda e, l: head(e, l), [e, l])
    # the appearance path: backbone features (a map here) pooled, then conv1x1_lm + BN + ReLU
    m = models.MultiTaskIXL(3, 4, emotion_backbone=TinyMap(), appearance=TinyFeatures(), num_head=1,
                            dims=(512, 5, 4))
    m.lm_feature.double()
    m.conv1x1_lm.double().train()
    x = af.tensor(rng.standard_normal((4, 3, 6, 6)), dtype="float64", requires_grad=True)
    gradcheck(lambda x: m.appearance_vector(x), [x])


# ---------------------------------------------------------------------------------------------------
# SMMEmotionNet


class TupleLayer(nn.Module):
    """A stand-in encoder layer returning (output, weights) like the reference's custom layer."""

    def __init__(self, dim):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return self.fc(x).tanh(), None


def _smm(dropout=0.3, **kw):
    af.manual_seed(3)
    return models.SMMEmotionNet(backbone=TinyMap(), encoder_layer=TupleLayer(16), dropout=dropout, **kw)


def test_smm_emotionnet_outputs_and_reference_keys(rng):
    net = _smm().eval()
    va, expr, au = net(_x(rng, 2, 3, 20, 20))
    assert va.shape == (2, 2) and expr.shape == (2, 8) and au.shape == (2, 12)
    sd = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    # MTL/SMM_EmotionNet.py's names (K = 17 AUs, metric dim 16, features_dim = the backbone's 8 here)
    assert sd["AU_attention_convs.0.weight"] == (68, 8, 3, 3) and sd["AU_attention_convs.3.weight"] == (17, 68, 1, 1)
    assert sd["AU_attention_convs.4.running_mean"] == (17,)
    assert sd["AU_attention_map_module.0.weight"] == (17, 17, 1, 1)
    assert sd["AU_attention_classification_module.0.weight"] == (17, 17, 1, 1)
    assert sd["AU_Metric_Modules.16.Conv1.0.weight"] == (16, 8, 3, 3)
    assert sd["AU_Metric_Modules.0.Conv2.1.running_var"] == (16,) and sd["AU_Metric_Modules.3.fc.weight"] == (16, 16)
    assert sd["positional_encoding.pos_embedding"] == (5000, 1, 16)
    assert sd["transformation_matrices.16.weight"] == (16, 16) and "transformation_matrices.0.bias" not in sd
    assert sd["emotion_classifiers.0.fc.weight"] == (12, 16)
    assert sd["emotion_classifiers.1.weight"] == (8, 16) and sd["emotion_classifiers.2.weight"] == (2, 16)
    assert sum(k.startswith("AU_Metric_Modules.") and k.endswith("fc.bias") for k in sd) == 17


def test_smm_heads_follow_the_reference_formulas(rng):
    net = _smm(dropout=0.0).eval()
    emb = _x(rng, 3, 17, 16)
    va, expr, au = net.heads(emb)
    e = emb.numpy()
    pe = net.positional_encoding.pos_embedding.numpy()[:17, 0]
    p, i = np.arange(17)[:, None], np.arange(0, 16, 2)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(p / 10000 ** (i / 16)), atol=1e-6)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(p / 10000 ** (i / 16)), atol=1e-6)
    layer = net.MHA.fc
    seq = np.tanh((e + pe) @ layer.weight.numpy().T + layer.bias.numpy())
    w, b = net.emotion_classifiers[0].fc.weight.numpy(), net.emotion_classifiers[0].fc.bias.numpy()
    np.testing.assert_allclose(au.numpy(), np.einsum("bkd,kd->bk", seq[:, :12], w) + b, rtol=1e-5, atol=1e-5)
    projected = np.stack([e[:, k] @ net.transformation_matrices[k].weight.numpy().T for k in range(17)], 1)
    expr_ref = (projected @ net.emotion_classifiers[1].weight.numpy().T + net.emotion_classifiers[1].bias.numpy())
    va_ref = (projected @ net.emotion_classifiers[2].weight.numpy().T + net.emotion_classifiers[2].bias.numpy())
    np.testing.assert_allclose(expr.numpy(), expr_ref.mean(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(va.numpy(), np.clip(va_ref.mean(1), -1, 1), rtol=1e-5, atol=1e-5)
    # VA is clipped at evaluation only (the reference clips at test time), and only when asked
    big = af.tensor(e * 50.0)
    assert np.abs(net.heads(big)[0].numpy()).max() <= 1.0
    assert np.abs(net.train().heads(big)[0].numpy()).max() > 1.0
    net.clip_va = False
    assert np.abs(net.eval().heads(big)[0].numpy()).max() > 1.0


def test_smm_au_attention_and_roi_gradcheck(rng):
    net = _smm(dropout=0.0).double().train()
    fmap = af.tensor(rng.standard_normal((2, 8, 3, 3)), dtype="float64", requires_grad=True)
    gradcheck(lambda f: net.attention_maps(f), [fmap])
    emb_module = net.AU_Metric_Modules[0]
    att = af.tensor(rng.uniform(0, 1, (2, 1, 3, 3)), dtype="float64", requires_grad=True)
    gradcheck(lambda f, a: emb_module(f, a), [fmap, att])
    gradcheck(lambda f: net.embeddings(f), [fmap])
    emb = af.tensor(rng.standard_normal((2, 17, 16)), dtype="float64", requires_grad=True)
    gradcheck(lambda e: net.heads(e), [emb])
    head = models.AUInnerProductHead(4, 3).double()
    seq = af.tensor(rng.standard_normal((2, 5, 4)), dtype="float64", requires_grad=True)
    gradcheck(lambda s: head(s), [seq])
    with pytest.raises(ValueError, match="AU embeddings"):
        head(af.zeros(2, 2, 4, dtype="float64"))


def test_smm_roi_embedding_uses_the_attention_residually(rng):
    m = models.AUEmbedding(8, 16).eval()
    f = _x(rng, 2, 8, 3, 3)
    zero = af.zeros(2, 1, 3, 3)
    one = af.ones(2, 1, 3, 3)
    # x * 0 + x = x and x * 1 + x = 2x: the map scales the features between 1x and 2x
    np.testing.assert_allclose(m(f, zero).numpy(), m.fc(m.GAP(m.Conv2(m.Conv1(f))).flatten(1)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(m(f, one).numpy(), m(f * 2.0, zero).numpy(), rtol=1e-5, atol=1e-6)


class FakeInception(nn.Module):
    """torchvision's Inception3 child names, with a 1x1 conv to 768 channels as Mixed_6e."""

    def __init__(self, num_classes=1000, drop=None):
        super().__init__()
        for name in models.multitask.INCEPTION_V3_MIXED_6E[:-1]:
            if name != drop:
                setattr(self, name, nn.Identity())
        self.Mixed_6e = nn.Conv2d(3, 768, 1)
        self.Mixed_7a = nn.Conv2d(768, 4, 1)  # past the cut
        self.fc = nn.Linear(4, num_classes)


def test_inception_mixed_6e_keeps_torchvisions_children_up_to_mixed_6e(monkeypatch, rng):
    from affectfer.models import factory

    monkeypatch.setitem(factory._MODELS, "inception_v3", FakeInception)
    seq = models.inception_v3_mixed_6e()
    assert seq.out_channels == 768 and len(seq) == 15
    assert sorted(seq.state_dict()) == ["14.bias", "14.weight"]  # HUST's backbone_CNN.14.* is Mixed_6e
    net = models.SMMEmotionNet(encoder_layer=TupleLayer(16))
    assert net.backbone_CNN[14] is not None and tuple(net.AU_attention_convs[0].weight.shape) == (68, 768, 3, 3)
    va, expr, au = net.eval()(_x(rng, 1, 3, 5, 5))
    assert au.shape == (1, 12)
    monkeypatch.setitem(factory._MODELS, "inception_v3", lambda num_classes=1000: FakeInception(drop="maxpool1"))
    with pytest.raises(TypeError, match="maxpool1"):
        models.inception_v3_mixed_6e()


def test_smm_default_parts_need_the_merged_backbone_and_layer():
    if "inception_v3" not in models.list_models():
        with pytest.raises(ImportError, match="backbone="):
            models.SMMEmotionNet(encoder_layer=TupleLayer(16))
    if not hasattr(nn, "TransformerEncoderLayer"):
        with pytest.raises(ImportError, match="encoder_layer="):
            models.SMMEmotionNet(backbone=TinyMap())
    else:
        net = models.SMMEmotionNet(backbone=TinyMap())
        assert isinstance(net.MHA, nn.TransformerEncoderLayer)
    with pytest.raises(TypeError, match="feature_dim"):
        models.SMMEmotionNet(backbone=nn.Sequential(nn.Conv2d(3, 4, 3)), encoder_layer=TupleLayer(16))
