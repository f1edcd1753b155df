"""affectfer.models.googlenet: torchvision's structure (parameter count, state_dict names and shapes,
init), the same logits and gradients as torchvision for the same weights, and it trains."""
import json

import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer import models
from affectfer.checkpoint import save_file
from affectfer.testing import assert_close
from affectfer.weights import load_weights
from tests import reference
from tests.models.training import adam_losses, synthetic_batch


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def plain():
    af.manual_seed(0)
    return models.googlenet()


@pytest.fixture(scope="module")
def with_aux():
    af.manual_seed(0)
    return models.googlenet(aux_logits=True)


def test_parameter_count_and_factory(plain):
    assert count(plain) == 6_624_904
    assert count(models.googlenet(num_classes=7)) == 6_624_904 - 993 * 1024 - 993
    assert "googlenet" in models.list_models()
    assert isinstance(models.create("googlenet", num_classes=7), models.GoogLeNet)


@pytest.mark.parametrize("aux", [0, 1])
def test_names_and_shapes_equal_torchvision(aux, plain, with_aux):
    theirs = reference.case("googlenet", f"names-aux{aux}")
    ours = with_aux if aux else plain
    assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == json.loads(theirs["state"])
    assert [n for n, _ in ours.named_modules()] == json.loads(theirs["modules"])


def test_init_follows_torchvision(plain):
    w = plain.inception4c.branch2[1].conv.weight.numpy()  # 256 x 128 x 3 x 3
    assert abs(w.std() - 0.01) < 0.0005 and abs(w.mean()) < 0.0005
    assert np.abs(plain.fc.weight.numpy()).max() < 0.1  # N(0, 0.01^2), not Linear's U(+-1/32)
    bn = plain.inception3b.branch4[1].bn
    assert (bn.weight.numpy() == 1).all() and not bn.bias.numpy().any() and bn.eps == 1e-3


def test_forward_shapes_heads_and_reset_classifier():
    af.manual_seed(0)
    model = models.googlenet(num_classes=5, aux_logits=True)
    x = af.randn(2, 3, 64, 64)
    out = model.train()(x)
    assert isinstance(out, models.GoogLeNetOutputs) and [tuple(t.shape) for t in out] == [(2, 5)] * 3
    model.eval()
    assert model(x).shape == (2, 5) and model.forward_features(x).shape == (2, 1024)
    model.reset_classifier(3)
    assert model.train()(x).aux_logits1.shape == (2, 3) and model.get_classifier().out_features == 3
    model.reset_classifier(0)
    assert model.eval()(x).shape == (2, 1024)
    gray = models.create("googlenet", num_classes=2, in_chans=1, transform_input=True)
    with pytest.raises(ValueError, match=r"transform_input needs .* got shape \(2, 1, 64, 64\)"):
        gray(af.randn(2, 1, 64, 64))


def _seeded(case, **kwargs):
    """Our model with the weights make_fixtures.py gave torchvision's, and that case's numbers."""
    return reference.seeded_model("googlenet", case, models.googlenet(**kwargs))


@pytest.mark.parametrize("transform", [0, 1])
def test_eval_logits_match_torchvision(transform):
    ours, d = _seeded(f"eval-transform{transform}", num_classes=10, transform_input=bool(transform))
    expect = d["logits"]
    with af.no_grad():
        got = ours.eval()(af.tensor(d["x"].astype(np.float32)))
    assert_close(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max(), name="googlenet eval logits")


def test_train_step_with_aux_heads_matches_torchvision():
    """Train mode with both auxiliary heads (dropouts 0): the three outputs in torchvision's order,
    the loss, gradients of parameters across the net and both heads, a running statistic."""
    ours, d = _seeded("train", num_classes=6, aux_logits=True, dropout=0.0, dropout_aux=0.0)
    logits, aux2, aux1 = ours.train()(af.tensor(d["x"].astype(np.float32)))
    for name, got in (("logits", logits), ("aux1", aux1), ("aux2", aux2)):
        assert_close(got, d[name], rtol=1e-4, atol=1e-4 * np.abs(d[name]).max(), name=name)
    y = af.tensor(d["y"])
    loss = F.cross_entropy(logits, y) + 0.3 * (F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=1e-5)
    params = dict(ours.named_parameters())
    grads = sorted(k[len("grad."):] for k in d if k.startswith("grad."))
    assert len(grads) == 7
    for k in grads:
        gt = d[f"grad.{k}"]
        scale = gt.abs_max if isinstance(gt, reference.Summary) else np.abs(gt).max()
        reference.assert_close(params[k].grad, gt, rtol=1e-3, atol=1e-3 * scale, name=f"grad {k}")
    k = "inception3a.branch1.bn.running_var"
    assert_close(ours.state_dict()[k], d[f"state.{k}"], rtol=1e-4, atol=1e-5, name=k)


def test_trains_on_synthetic_faces():
    af.manual_seed(0)
    x, y, _ = synthetic_batch(16)
    losses = adam_losses(models.googlenet(num_classes=7), x, y)
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.3 * losses[0], losses


def test_aux_weights_are_skipped_without_aux_heads(tmp_path, with_aux):
    """A torchvision-style file (aux1/aux2 included) loads into aux_logits=False, the heads reported."""
    path = tmp_path / "googlenet.safetensors"
    save_file({k: v.numpy() for k, v in with_aux.state_dict().items()}, path)
    af.manual_seed(1)
    model = models.googlenet()
    report = load_weights(model, path)
    aux = sorted(k for k in with_aux.state_dict() if k.startswith(("aux1.", "aux2.")))
    assert sorted(report.skipped) == aux and len(aux) == 2 * 10
    assert not report.missing_keys and not report.unexpected_keys
    assert np.array_equal(model.inception5b.branch3[1].conv.weight.numpy(),
                          with_aux.inception5b.branch3[1].conv.weight.numpy())
