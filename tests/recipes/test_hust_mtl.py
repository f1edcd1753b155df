"""recipes.hust_mtl (paper 002, multi-task learning): one tiny run, and what each ablation switch changes."""
import dataclasses
import json

import numpy as np
import pytest

import affectfer as af
from affectfer import losses, metrics, nn, recipes
from affectfer.nn import functional as F
from affectfer.recipes import hust_mtl as R
from tests.recipes.inference import assert_predicts

needs_layer = pytest.mark.skipif(not hasattr(nn, "TransformerEncoderLayer"),
                                 reason="nn.TransformerEncoderLayer comes with the ViT branch")


def _cfg(**changes):
    return dataclasses.replace(R.Config.tiny(), **changes)


@needs_layer
def test_tiny_run_selects_on_the_abaw_mtl_score(tmp_path):
    out = tmp_path / "run"
    r = recipes.run("hust_mtl", tiny=True, out=str(out), progress=False)
    assert r["history_terms"] == ["au", "expr", "va"]
    np.testing.assert_allclose(r["abaw_mtl"], r["va_ccc"] + r["expr_macro_f1"] + r["au_macro_f1"], rtol=1e-9)
    assert -1.0 <= r["va_ccc"] <= 1.0 and 0.0 <= r["au_macro_f1"] <= 1.0
    assert (out / "smm_emotionnet.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["abaw_mtl"] == r["abaw_mtl"]
    assert_predicts(out / "smm_emotionnet.safetensors", R.CLASSES, tmp_path)  # the expression head's probabilities


def test_tiny_run_without_the_transformer_layer():
    r = R.run(_cfg(transformer=False, early_stopping=False), progress=False, log=None)
    assert r["history_terms"] == ["au", "expr", "va"] and not r["stopped_early"]
    np.testing.assert_allclose(r["abaw_mtl"], r["va_ccc"] + r["expr_macro_f1"] + r["au_macro_f1"], rtol=1e-9)


def test_synthetic_labels_carry_the_abaw_invalid_markers():
    d = R.load(_cfg(train_size=200, val_size=6, missing=0.25), None)
    assert d.train.targets.shape == (200, 14)
    for marked in ((d.train.labels == -1).mean(), (d.train.targets[:, 0] == -5).mean(),
                   (d.train.targets[:, 2:] == -1).mean()):
        assert 0.15 < marked < 0.35
    assert np.array_equal(d.train.targets[:, 0] == -5, d.train.targets[:, 1] == -5)  # a frame has VA or not
    assert set(np.unique(d.train.targets[:, 2:])) <= {-1.0, 0.0, 1.0}
    clean = R.load(_cfg(train_size=20, val_size=6, missing=0.0), None)
    assert (clean.train.labels >= 0).all() and (clean.train.targets != -5).all()
    assert set(clean.train.labels) <= set(range(1, 7))  # the six basic expressions in the 8-class order


def _batch(rng, n=8):
    va_t = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    va_t[1] = -5
    labels = np.array([1, 2, -1, 4, 5, 6, 1, 3])[:n]
    aus = rng.integers(0, 2, (n, 12)).astype(np.float32)
    aus[0, :3] = -1
    outputs = (af.tensor(rng.uniform(-1, 1, (n, 2)).astype(np.float32)),
               af.tensor(rng.standard_normal((n, 8)).astype(np.float32)),
               af.tensor(rng.standard_normal((n, 12)).astype(np.float32)))
    return outputs, af.tensor(labels), af.tensor(np.concatenate([va_t, aus], 1))


def test_losses_mask_invalid_labels_and_apply_the_weights():
    rng = np.random.default_rng(0)
    outputs, labels, targets = _batch(rng)
    train_labels = np.array([1, 1, 1, 2, 4, 4, -1, 7])
    train_aus = np.array([[1] * 12, [0] * 12, [0] * 12, [-1] * 12], np.float32)
    w = R.expression_weights(train_labels)
    np.testing.assert_allclose(w, [1, 1 / 3, 1, 1, 1 / 2, 1, 1, 1])  # n_other / n_c; absent classes 1
    np.testing.assert_allclose(R.expression_weights([1, 1, 2]), [1, 1, 2, 1, 1, 1, 1, 1])  # no "other": n_max / n_c
    np.testing.assert_allclose(R.au_pos_weights(train_aus), [2.0] * 12)
    train_targets = np.concatenate([np.zeros((4, 2), np.float32), train_aus], 1)
    terms = R.loss_fn(_cfg(), train_labels, train_targets)(outputs, labels, targets)
    va, expr, au = (o.numpy() for o in outputs)
    t = targets.numpy()
    keep = t[:, 0] != -5
    want_va = sum(losses.ccc_loss(af.tensor(np.ascontiguousarray(va[keep, k])), af.tensor(np.ascontiguousarray(t[keep, k])),
                                  unbiased=True).item() for k in range(2))
    np.testing.assert_allclose(terms["va"].item(), want_va, rtol=1e-5)
    y = labels.numpy()
    want_expr = F.cross_entropy(af.tensor(expr[y >= 0]), af.tensor(y[y >= 0]), weight=af.tensor(w)).item()
    np.testing.assert_allclose(terms["expr"].item(), want_expr, rtol=1e-5)
    a, valid = t[:, 2:], t[:, 2:] != -1
    x = au.astype(np.float64)
    bce = -(2.0 * a * np.log(1 / (1 + np.exp(-x))) + (1 - a) * np.log(1 - 1 / (1 + np.exp(-x))))
    np.testing.assert_allclose(terms["au"].item(), bce[valid].mean(), rtol=1e-5)
    # switches: unweighted CE and BCE, and the masked MSE for VA
    off = R.loss_fn(_cfg(expr_class_weights=False, au_pos_weight=False, ccc_loss=False), train_labels,
                    train_targets)(outputs, labels, targets)
    np.testing.assert_allclose(off["expr"].item(), F.cross_entropy(af.tensor(expr[y >= 0]), af.tensor(y[y >= 0])).item(),
                               rtol=1e-5)
    plain = -(a * np.log(1 / (1 + np.exp(-x))) + (1 - a) * np.log(1 - 1 / (1 + np.exp(-x))))
    np.testing.assert_allclose(off["au"].item(), plain[valid].mean(), rtol=1e-5)
    np.testing.assert_allclose(off["va"].item(), np.mean((va[keep] - t[keep, :2]) ** 2), rtol=1e-5)


def test_scores_are_the_abaw_mtl_criterion():
    rng = np.random.default_rng(1)
    outputs, labels, targets = _batch(rng)
    out = tuple(o.numpy() for o in outputs)
    t = targets.numpy()
    s = R.scores(out, labels.numpy(), t)
    want = metrics.abaw_mtl_score(t[:, :2], out[0], labels.numpy(), out[1].argmax(1), t[:, 2:],
                                  1 / (1 + np.exp(-out[2])), num_expressions=8)
    np.testing.assert_allclose(s["abaw_mtl"], want, rtol=1e-9)
    np.testing.assert_allclose(s["abaw_mtl"], s["va_ccc"] + s["expr_macro_f1"] + s["au_macro_f1"], rtol=1e-9)
    # train.fit's "abaw_mtl" selection metric reads the same layout: (va, expression, AU) outputs and the
    # batch's (labels, targets)
    from affectfer.train import _metric_value

    np.testing.assert_allclose(_metric_value("abaw_mtl", out, (labels.numpy(), t), 8, 1), s["abaw_mtl"], rtol=1e-9)


def test_the_default_backbone_is_the_factorys_inception_v3_cut_after_mixed_6e():
    """The paper's backbone (config default "inception_v3"): the real Inception-v3 up to Mixed_6e, HUST's
    backbone_CNN keys 0..14, at the smallest input Inception-v3 takes (75 x 75; the paper's 299 gives 17 x 17)."""
    from affectfer.models.multitask import INCEPTION_V3_MIXED_6E

    cfg = R.Config(image_size=75)
    assert cfg.backbone == "inception_v3"
    model = R.build_model(cfg).eval()
    assert len(model.backbone_CNN) == len(INCEPTION_V3_MIXED_6E) == 15
    keys = [k for k in model.state_dict() if k.startswith("backbone_CNN.")]
    assert keys[0] == "backbone_CNN.0.conv.weight" and keys[-1].startswith("backbone_CNN.14.")
    x = af.tensor(np.random.default_rng(0).normal(size=(2, 3, 75, 75)).astype(np.float32))
    with af.no_grad():
        assert tuple(model.backbone_CNN(x).shape) == (2, 768, 3, 3)
        va, expr, au = model(x)
    assert (tuple(va.shape), tuple(expr.shape), tuple(au.shape)) == ((2, 2), (2, 8), (2, 12))
    assert np.abs(va.numpy()).max() <= 1.0  # clipped in eval mode


def test_transformer_and_augment_switches():
    if hasattr(nn, "TransformerEncoderLayer"):
        assert isinstance(R.build_model(_cfg(image_size=32)).MHA, nn.TransformerEncoderLayer)
    without = R.build_model(_cfg(transformer=False, image_size=32))
    assert isinstance(without.MHA, nn.Identity)
    assert without.backbone_CNN.out_channels == 512
    img = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    train_tf, eval_tf = R.transforms(_cfg(augment=False))
    np.testing.assert_array_equal(train_tf(img, seed=0, stream=1), eval_tf(img, seed=0, stream=1))
    train_tf, eval_tf = R.transforms(_cfg())
    assert train_tf(img, seed=0, stream=1).shape == eval_tf(img, seed=0, stream=1).shape == (3, 64, 64)
    assert any(not np.array_equal(train_tf(img, seed=0, stream=s), eval_tf(img, seed=0, stream=s)) for s in range(3))


def test_early_stopping_switch(monkeypatch):
    from affectfer import train

    seen = {}
    real_fit = train.fit

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", spy)
    monkeypatch.setattr(R, "build_model", lambda cfg: _Tiny())
    R.run(_cfg(epochs=3), progress=False, log=None)
    assert seen["patience"] == 3 and seen["metric"] == "abaw_mtl" and seen["scheduler_interval"] == "step"
    R.run(_cfg(epochs=3, early_stopping=False), progress=False, log=None)
    assert seen["patience"] is None


class _Tiny(nn.Module):
    """A stand-in multi-task model: (va, expression logits, AU logits) from pooled pixels."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 22)

    def forward(self, x):
        z = self.fc(x.mean(dim=(2, 3)))
        return z[:, :2], z[:, 2:10], z[:, 10:]
