"""affectfer.models.inception_v3: torchvision's structure (parameter count, state_dict names and
shapes, init), the same logits and gradients as torchvision for the same weights at 299 and 139
pixels, the Mixed_6e feature mode, auxiliary keys skipped on load, and it trains."""
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
def with_aux():
    af.manual_seed(0)
    return models.inception_v3()


def test_parameter_count_and_factory(with_aux):
    assert count(with_aux) == 27_161_264 == int(reference.case("inception", "names-aux1")["params"])
    aux_head = sum(p.numel() for p in with_aux.AuxLogits.parameters())
    assert count(with_aux) - aux_head == int(reference.case("inception", "names-aux0")["params"]) == 23_834_568
    assert "inception_v3" in models.list_models()
    assert isinstance(models.create("inception_v3", num_classes=7, aux_logits=False), models.Inception3)


@pytest.mark.parametrize("aux", [0, 1])
def test_names_and_shapes_equal_torchvision(aux, with_aux):
    theirs = reference.case("inception", f"names-aux{aux}")
    modules = json.loads(theirs["modules"])
    state = json.loads(theirs["state"])
    ours = [[k, list(v.shape)] for k, v in with_aux.state_dict().items()]
    names = [n for n, _ in with_aux.named_modules()]
    if not aux:  # the same model without the head: torchvision drops exactly these
        ours = [e for e in ours if not e[0].startswith("AuxLogits.")]
        names = [n for n in names if not n.startswith("AuxLogits")]
    assert ours == state and names == modules


def test_init_follows_torchvision(with_aux):
    w = with_aux.Mixed_6c.branch7x7dbl_3.conv.weight.numpy()  # 160 x 160 x 1 x 7: N(0, 0.1^2) in [-2, 2]
    assert abs(w.std() - 0.1) < 0.003 and abs(w.mean()) < 0.003
    aux_fc = with_aux.AuxLogits.fc.weight.numpy()
    assert abs(aux_fc.std() - 0.001) < 0.0001  # torchvision's stddev 0.001 on the auxiliary fc only
    assert abs(with_aux.AuxLogits.conv1.conv.weight.numpy().std() - 0.1) < 0.003
    assert abs(with_aux.fc.weight.numpy().std() - 0.1) < 0.003
    bn = with_aux.Mixed_7b.branch_pool.bn
    assert (bn.weight.numpy() == 1).all() and not bn.bias.numpy().any() and bn.eps == 1e-3


def test_shapes_feature_mode_and_reset_classifier():
    af.manual_seed(0)
    model = models.inception_v3(num_classes=5, aux_logits=False)
    with af.no_grad():
        x = af.randn(1, 3, 299, 299)
        assert model.eval().forward_features(x, stop="Mixed_6e").shape == (1, 768, 17, 17)
        x = af.randn(2, 3, 75, 75)
        assert model(x).shape == (2, 5) and model.forward_features(x, stop="Mixed_5d").shape == (2, 288, 7, 7)
        assert model.features(x).shape == (2, 2048, 1, 1) and model.forward_features(x).shape == (2, 2048)
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3
        model.reset_classifier(0)
        assert model(x).shape == (2, 2048)
    with pytest.raises(ValueError, match=r"H, W >= 75, got shape \(2, 3, 74, 80\)"):
        model(af.randn(2, 3, 74, 80))
    with pytest.raises(ValueError, match="stop must be one of .* got 'Mixed_6f'"):
        model.forward_features(x, stop="Mixed_6f")
    aux = models.inception_v3(num_classes=4).train()
    with pytest.raises(ValueError, match=r"auxiliary head needs .* got \(3, 3\).*aux_logits=False"):
        aux(x)


def _seeded(case, **kwargs):
    ours, d = reference.seeded_model("inception", case, models.inception_v3(num_classes=10, dropout=0.0, **kwargs))
    size = int(case.split("-")[1]) if case.startswith("train") else 139
    x = reference.seeded_input((2, 3, size, size), reference.SEED + size)
    assert reference.checksum({"x": x}) == pytest.approx(float(d["x_checksum"]), rel=1e-12)
    return ours, x, d


def test_eval_logits_with_transform_input_match_torchvision():
    ours, x, d = _seeded("eval-transform", aux_logits=False, transform_input=True)
    with af.no_grad():
        got = ours.eval()(af.tensor(x))
    assert_close(got, d["logits"], rtol=1e-4, atol=1e-4 * np.abs(d["logits"]).max(), name="transform_input logits")


@pytest.mark.parametrize("case", reference.cases("inception", "train-"))
def test_logits_and_gradients_match_torchvision(case):
    """Eval logits, then a train-mode step (dropout 0, batch statistics; at 299 with the auxiliary
    head, loss + 0.3 x its loss): logits, loss, gradients, running statistics. float32: 1e-4 on
    logits, 1e-3 on the classifier gradients; float64: gradients across the net and the head."""
    dtype = case.split("-")[2]
    ours, x, d = _seeded(case, aux_logits=bool(d_aux := int(reference.case("inception", case)["aux"])))
    if dtype == "float64":
        ours.double()
    rtol, grad_rtol = (1e-4, 1e-3) if dtype == "float32" else (1e-10, 1e-8)
    x = af.tensor(x.astype(dtype))
    with af.no_grad():
        got = ours.eval()(x)
    assert_close(got, d["eval_logits"], rtol=rtol, atol=rtol * np.abs(d["eval_logits"]).max(), name="eval logits")
    out = ours.train()(x)
    logits, aux = (out.logits, out.aux_logits) if d_aux else (out, None)
    assert isinstance(out, models.InceptionOutputs) == bool(d_aux)
    assert_close(logits, d["train_logits"], rtol=rtol, atol=rtol * np.abs(d["train_logits"]).max(),
                 name=f"{case} train logits")
    if d_aux:  # in float32 10x looser: the head's last BN normalises 2 values a channel (1 x 1 map, batch 2)
        tol = 10 * rtol if dtype == "float32" else rtol
        assert_close(aux, d["aux_logits"], rtol=tol, atol=tol * np.abs(d["aux_logits"]).max(), name=f"{case} aux")
    y = af.tensor(d["y"])
    loss = F.cross_entropy(logits, y) + (0.3 * F.cross_entropy(aux, y) if d_aux else 0.0)
    loss.backward()
    assert loss.item() == pytest.approx(float(d["loss"]), rel=rtol)
    assert reference.assert_step_matches(ours, d, grad_rtol, rtol, case) >= 2


def test_aux_weights_are_skipped_without_the_aux_head(tmp_path, with_aux):
    """A torchvision-style file (AuxLogits included) loads into aux_logits=False, the head reported."""
    path = tmp_path / "inception_v3.safetensors"
    save_file({k: v.numpy() for k, v in with_aux.state_dict().items()}, path)
    af.manual_seed(1)
    model = models.inception_v3(aux_logits=False)
    report = load_weights(model, path)
    aux = sorted(k for k in with_aux.state_dict() if k.startswith("AuxLogits."))
    assert sorted(report.skipped) == aux and len(aux) == 2 * 6 + 2
    assert not report.missing_keys and not report.unexpected_keys
    np.testing.assert_array_equal(model.Mixed_7c.branch3x3dbl_3b.conv.weight.numpy(),
                                  with_aux.Mixed_7c.branch3x3dbl_3b.conv.weight.numpy())


def test_trains_on_synthetic_faces():
    af.manual_seed(0)
    x, y, classes = synthetic_batch(8, size=75)
    losses = adam_losses(models.inception_v3(num_classes=classes, aux_logits=False), x, y, steps=20)
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < 0.3 * losses[0], losses
