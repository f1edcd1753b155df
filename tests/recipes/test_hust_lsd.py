"""recipes.hust_lsd (paper 002, learning from synthetic data): one tiny run, and what each ablation
switch changes."""
import dataclasses
import json

import numpy as np
import pytest

import affectfer as af
from affectfer import models, nn, recipes, train
from affectfer.nn import functional as F
from affectfer.recipes import hust_lsd as R
from affectfer.train import History
from tests.recipes.inference import assert_predicts


def test_tiny_run_trains_two_stages_per_backbone_and_votes(tmp_path):
    out = tmp_path / "run"
    r = recipes.run("hust_lsd", tiny=True, out=str(out), progress=False)
    assert 0.0 <= r["macro_f1"] <= 1.0 and set(r["f1_per_class"]) == set(R.CLASSES)
    assert list(r["members_macro_f1"]) == ["resnet18", "efficientnet_b0"] == list(r["stage1_macro_f1"])
    assert (out / "deviation_resnet18.safetensors").exists() and (out / "deviation_efficientnet_b0.safetensors").exists()
    assert json.loads((out / "config.json").read_text())["backbones"] == ["resnet18", "efficientnet_b0"]
    for name in ("resnet18", "efficientnet_b0"):
        assert_predicts(out / f"deviation_{name}.safetensors", R.CLASSES, tmp_path)


def _cfg(**changes):
    return dataclasses.replace(R.Config.tiny(), **changes)


def test_label_smoothing_switch_smooths_the_training_loss_only():
    rng = np.random.default_rng(0)
    logits = af.tensor(rng.standard_normal((5, 6)).astype(np.float32))
    y = af.tensor(np.array([0, 1, 2, 3, 5]))
    w = R.Config().deviation_weights
    model = nn.Linear(2, 2)
    smooth = R.loss_fn(_cfg(), model, w)
    plain = F.cross_entropy(logits, y, weight=af.tensor(np.float32(w))).item()
    smoothed = F.cross_entropy(logits, y, weight=af.tensor(np.float32(w)), label_smoothing=0.2).item()
    assert abs(plain - smoothed) > 1e-3
    np.testing.assert_allclose(smooth(logits, y).item(), smoothed, rtol=1e-6)
    model.eval()  # validation and model selection: the plain CE
    np.testing.assert_allclose(smooth(logits, y).item(), plain, rtol=1e-6)
    model.train()
    np.testing.assert_allclose(R.loss_fn(_cfg(label_smoothing=False), model, w)(logits, y).item(), plain, rtol=1e-6)


def test_oversampling_switch_tops_up_minority_classes_with_randaugment_copies():
    cfg = _cfg(train_size=40, val_size=6)
    d = R.load(cfg, None)
    counts = np.bincount(d.train.labels, minlength=6)
    assert counts.max() > counts.min()  # the synthetic training set is imbalanced, like the LSD set
    train_loader, _ = R.loaders(cfg, d)
    assert len(train_loader.sampler) == 6 * counts.max()
    assert int(train_loader.sampler.copy_flags(0).sum()) == 6 * counts.max() - len(d.train)
    ra = train_loader.augment_copies
    assert isinstance(ra, af.transforms.RandAugment) and (ra.num_ops, ra.magnitude) == (2, 9)
    assert "Solarize" not in ra.ops and "Equalize" not in ra.ops and len(ra.ops) == 12
    plain, _ = R.loaders(dataclasses.replace(cfg, oversampling=False), d)
    assert len(plain.sampler) == len(d.train) and plain.augment_copies is None
    every_op = R.randaugment(dataclasses.replace(cfg, randaugment_exclude=()))
    assert len(every_op.ops) == 14  # the released data_aug.py


# ------------------------------------------------------------------------- stages, with stand-ins

class TinyNet(nn.Module):
    """A stand-in backbone with the classifier interface the recipe uses."""

    def __init__(self, num_classes=6):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward_features(self, x):
        return self.bn(self.conv(x)).relu().mean(dim=(2, 3))

    def forward(self, x):
        return self.fc(self.forward_features(x))

    def get_classifier(self):
        return self.fc

    def reset_classifier(self, num_classes):
        self.fc = nn.Identity()


@pytest.fixture
def stand_ins(monkeypatch):
    """Tiny backbones and a fit that records what it trains and shifts the trainable weights."""
    calls = []

    def build(name, num_classes, weights="", image_size=224):
        return TinyNet(num_classes)

    def fake_fit(model, train_loader, optimizer, epochs, loss_fn=None, **kw):
        params = [p for g in optimizer.param_groups for p in g["params"]]
        calls.append({"model": model, "lr": optimizer.param_groups[0]["lr"], "params": {id(p) for p in params},
                      "epochs": epochs, "metric": kw.get("metric")})
        for p in params:
            p.numpy()[...] += 0.5
        return History()

    monkeypatch.setattr(R, "build_backbone", build)
    monkeypatch.setattr(train, "fit", fake_fit)
    return calls


def test_deviation_switch_adds_stage_two_on_frozen_and_trainable_twins(stand_ins):
    calls = stand_ins
    r = R.run(_cfg(backbones=("a", "b")), progress=False, log=None)
    assert list(r["members_macro_f1"]) == ["a", "b"]
    assert [type(c["model"]).__name__ for c in calls] == ["TinyNet", "DeviationModule"] * 2
    assert [c["lr"] for c in calls] == [1e-5, 1e-6] * 2 and all(c["metric"] == "val_loss" for c in calls)
    dev = calls[1]["model"]
    assert isinstance(dev, models.DeviationModule)
    # stage 2 trains the face twin and the classifier, never the identity twin
    face = {id(p) for p in dev.face.parameters()} | {id(p) for p in dev.classifier.parameters()}
    assert calls[1]["params"] == face
    assert not calls[1]["params"] & {id(p) for p in dev.identity.parameters()}
    # identity_init="pretrained": the identity twin holds the backbone's initial weights, not stage 1's
    assert not np.allclose(dev.identity.model.conv.weight.numpy(), dev.face.model.conv.weight.numpy())
    calls.clear()
    R.run(_cfg(backbones=("a",), identity_init="stage1"), progress=False, log=None)
    twin = calls[1]["model"]
    np.testing.assert_allclose(twin.identity.model.conv.weight.numpy() + 0.5, twin.face.model.conv.weight.numpy(),
                               rtol=1e-6)
    calls.clear()
    R.run(_cfg(backbones=("a", "b"), deviation=False), progress=False, log=None)
    assert [type(c["model"]).__name__ for c in calls] == ["TinyNet", "TinyNet"]


def test_ensemble_and_train_all_switches(stand_ins):
    calls = stand_ins
    R.run(_cfg(backbones=("a", "b", "c"), ensemble=False, deviation=False), progress=False, log=None)
    assert len(calls) == 1  # backbones[0] alone
    calls.clear()
    R.run(_cfg(backbones=("a",), train_all=False, deviation=False), progress=False, log=None)
    head = calls[0]["model"].fc
    assert calls[0]["params"] == {id(head.weight), id(head.bias)}
    calls.clear()
    R.run(_cfg(backbones=("a",), deviation=False), progress=False, log=None)
    assert calls[0]["params"] == {id(p) for p in calls[0]["model"].parameters()}


def test_deviation_module_keeps_the_googlenet_quirk_and_the_feature_width():
    af.manual_seed(0)
    g = models.create("googlenet", num_classes=6, transform_input=True)
    extractor = R.PooledFeatures(g)
    assert extractor.num_features == 1024 and not g.transform_input
    assert isinstance(g.fc, nn.Identity)
    with pytest.raises(ValueError, match="identity_init"):
        _cfg(identity_init="imagenet").validate()
    with pytest.raises(ValueError, match="one file per backbone"):
        _cfg(weights=("x.safetensors",) * 3).validate()
