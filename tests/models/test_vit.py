"""affectfer.models.vit: torchvision's ViT-B/16 structure (parameter count, module tree, state_dict
names and shapes, init), the same logits and gradients as torchvision for the same weights at 224
and 112, a float64 tiny configuration to rounding, position embeddings resampled on load as timm
does, and a short fine-tuning run."""
import json
import math

import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer import checkpoint, models, weights
from affectfer.models.vit import VisionTransformer
from affectfer.testing import assert_close
from tests import reference
from tests.models.training import adam_losses, synthetic_batch

VIT_TINY = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=12)


@pytest.fixture(scope="module")
def b16():
    af.manual_seed(0)
    return models.vit_b_16()


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count(b16):
    assert count(b16) == 86_567_656 == int(reference.case("vit", "names")["params"])
    # the head and the position embeddings are the only parts that depend on classes and size
    assert count(models.vit_b_16(num_classes=7, image_size=112)) == 86_567_656 - 993 * 769 - 147 * 768


def test_names_and_shapes_equal_torchvision(b16):
    theirs = reference.case("vit", "names")
    assert [[k, list(v.shape)] for k, v in b16.state_dict().items()] == json.loads(theirs["state"])
    assert [n for n, _ in b16.named_modules()] == json.loads(theirs["modules"])


def test_init_follows_torchvision(b16):
    assert not b16.class_token.numpy().any()
    assert not b16.heads.head.weight.numpy().any() and not b16.heads.head.bias.numpy().any()
    pos = b16.encoder.pos_embedding.numpy()
    assert abs(pos.std() - 0.02) < 0.001
    w = b16.conv_proj.weight.numpy()
    std = math.sqrt(1 / (3 * 16 * 16))
    assert abs(w.std() - std) < 0.02 * std and np.abs(w).max() <= 2.0 and not b16.conv_proj.bias.numpy().any()
    block = b16.encoder.layers.encoder_layer_3
    fc1 = block.mlp[0].weight.numpy()
    bound = math.sqrt(6 / (768 + 3072))  # xavier_uniform
    assert np.abs(fc1).max() <= bound and np.abs(fc1).max() > 0.99 * bound
    assert 0 < np.abs(block.mlp[0].bias.numpy()).max() < 1e-5  # N(0, 1e-6)
    qkv = block.self_attention.in_proj_weight.numpy()
    assert np.abs(qkv).max() <= math.sqrt(6 / (768 + 2304))
    assert not block.self_attention.in_proj_bias.numpy().any() and not block.self_attention.out_proj.bias.numpy().any()
    assert block.ln_1.eps == 1e-6 and b16.encoder.ln.eps == 1e-6


def test_registered_in_the_factory_and_reset_classifier():
    assert "vit_b_16" in models.list_models("vit*")
    af.manual_seed(1)
    m = models.create("vit_b_16", num_classes=5, image_size=32)
    assert m.heads.head.out_features == 5 and m.encoder.pos_embedding.shape == (1, 5, 768)
    x = af.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    m.eval()
    feats = m.forward_features(x)
    assert feats.shape == (2, 768) and m(x).shape == (2, 5)
    m.reset_classifier(9)
    assert m.get_classifier().out_features == 9 and m(x).shape == (2, 9)
    m.reset_classifier(0)
    assert_close(m(x), feats)


def test_bad_sizes():
    with pytest.raises(ValueError, match="image_size must be a positive multiple of the patch size 16, got 100"):
        models.vit_b_16(image_size=100)
    m = VisionTransformer(image_size=32, **VIT_TINY)
    with pytest.raises(ValueError, match="built for 32x32 images got 48x48"):
        m(af.zeros(1, 3, 48, 48))


def _seeded(case, **kwargs):
    return reference.seeded_model("vit", case, models.vit_b_16(**kwargs))


@pytest.mark.slow
@pytest.mark.parametrize("size", [224, 112])
def test_logits_and_gradients_match_torchvision(size):
    """Eval and train mode logits (float32, 1e-4 relative), the loss and a few gradients (1e-3)."""
    ours, d = _seeded(str(size), num_classes=10, image_size=size)
    x224 = reference.case("vit", "input")["x"].astype(np.float32)
    x = af.tensor(np.ascontiguousarray(x224 if size == 224 else x224[:, :, ::2, ::2]))
    y = af.tensor(reference.case("vit", "input")["y"])
    with af.no_grad():
        got = ours.eval()(x)
    scale = np.abs(d["eval_logits"]).max()
    assert_close(got, d["eval_logits"], rtol=1e-4, atol=1e-4 * scale, name=f"eval logits {size}")
    logits = ours.train()(x)
    assert_close(logits, d["train_logits"], rtol=1e-4, atol=1e-4 * scale, name=f"train logits {size}")
    loss = F.cross_entropy(logits, y)
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-4)
    params = dict(ours.named_parameters())
    names = [k[len("grad."):] for k in d if k.startswith("grad.")]
    assert len(names) == 9
    for k in names:
        gt = d[f"grad.{k}"]
        g_scale = gt.abs_max if isinstance(gt, reference.Summary) else np.abs(gt).max()
        reference.assert_close(params[k].grad, gt, rtol=1e-3, atol=1e-3 * g_scale, name=f"grad {k} at {size}")


def test_tiny_float64_train_step_matches_torchvision():
    """Every gradient of a 2-layer configuration to rounding in float64."""
    ours, d = reference.seeded_model("vit", "tiny", VisionTransformer(image_size=32, num_classes=3, **VIT_TINY))
    ours.double().train()
    loss = F.cross_entropy(ours(af.tensor(d["x"])), af.tensor(d["y"]))
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-12)
    params = dict(ours.named_parameters())
    names = [k[len("grad."):] for k in d if k.startswith("grad.")]
    assert sorted(names) == sorted(params)
    for k in names:
        assert_close(params[k].grad, d[f"grad.{k}"], rtol=1e-10, atol=1e-12, name=f"grad {k}")


def test_tiny_gradcheck():
    """Finite differences through the whole model (patch conv, tokens, attention, MLP, head)."""
    from affectfer.testing import gradcheck
    af.manual_seed(3)
    m = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=4, mlp_dim=6,
                          num_classes=2).double()
    for p in m.parameters():  # away from the zero / tiny torchvision init, so every path matters
        af.nn.init.normal_(p, std=0.5)
    x = af.tensor(np.random.default_rng(0).standard_normal((2, 3, 16, 16)), dtype="float64", requires_grad=True)
    qkv = m.encoder.layers.encoder_layer_0.self_attention.in_proj_weight
    gradcheck(lambda x, w, c: m(x), [x, qkv, m.class_token])


def test_224_state_dict_loads_into_112_with_resampled_position_embeddings():
    """A 224 checkpoint (seeded weights) in a 112 model: the class token slot kept, the 14x14 grid
    resized to 7x7 as torch's bicubic interpolate (align_corners=False) does; everything else
    unchanged."""
    d = reference.case("vit", "resample")
    names = json.loads(reference.case("vit", "names")["state"])  # torchvision's 224 names and shapes, 10 classes:
    shapes = [(k, (10,) + tuple(s[1:]) if k.startswith("heads.") else tuple(s)) for k, s in names]
    sd = reference.seeded_state_dict(shapes, reference.SEED)
    assert reference.checksum(sd) == pytest.approx(float(d["weights_checksum"]), rel=1e-12)
    small = models.vit_b_16(num_classes=10, image_size=112)
    small.load_state_dict(sd)
    reference.assert_close(small.encoder.pos_embedding, d["pos"], rtol=1e-5, atol=1e-5, name="resampled pos")
    assert np.array_equal(small.encoder.pos_embedding.numpy()[:, 0], sd["encoder.pos_embedding"][:, 0])
    assert np.array_equal(small.conv_proj.weight.numpy(), sd["conv_proj.weight"])


def test_load_weights_resamples_position_embeddings(tmp_path):
    """load_weights (torchvision or timm names) resamples like load_state_dict: a 2x2-grid
    checkpoint of a tiny configuration into a 4x4-grid model."""
    af.manual_seed(4)
    source = VisionTransformer(image_size=16, num_classes=3, **VIT_TINY)
    af.nn.init.normal_(source.encoder.pos_embedding)
    sd = {k: v.numpy() for k, v in source.state_dict().items()}
    path = tmp_path / "tiny16.safetensors"
    checkpoint.save_file(sd, path)
    expect = VisionTransformer(image_size=32, num_classes=3, **VIT_TINY)
    expect.load_state_dict(sd)
    pos = expect.encoder.pos_embedding.numpy()
    assert pos.shape == (1, 17, 8) and np.array_equal(pos[:, 0], sd["encoder.pos_embedding"][:, 0])
    assert_close(pos[:, 1:].mean(), sd["encoder.pos_embedding"][:, 1:].mean(), rtol=0.2, atol=0.05)
    model = VisionTransformer(image_size=32, num_classes=3, **VIT_TINY)
    weights.load_weights(model, path)
    assert np.array_equal(model.encoder.pos_embedding.numpy(), pos)
    timm = {k.replace("encoder.pos_embedding", "pos_embed").replace("class_token", "cls_token")
            .replace("conv_proj", "patch_embed.proj"): v for k, v in sd.items() if "layers" not in k}
    checkpoint.save_file(timm, tmp_path / "timm.safetensors")
    model = VisionTransformer(image_size=32, num_classes=3, **VIT_TINY)
    result = weights.load_weights(model, tmp_path / "timm.safetensors", strict=False)
    assert result.renamed["pos_embed"] == "encoder.pos_embedding"
    assert np.array_equal(model.encoder.pos_embedding.numpy(), pos)
    with pytest.raises(ValueError, match="not 1 prefix tokens and a square grid"):
        model.load_state_dict(dict(sd, **{"encoder.pos_embedding": np.zeros((1, 6, 8), np.float32)}))


@pytest.mark.slow
def test_fine_tuning_on_synthetic_faces_reduces_the_loss():
    x, y, num_classes = synthetic_batch(2, size=112)
    af.manual_seed(0)
    model = models.vit_b_16(num_classes=num_classes, image_size=112).train()
    losses = adam_losses(model, x, y, steps=20, lr=1e-4)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
