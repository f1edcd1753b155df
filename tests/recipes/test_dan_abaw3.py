"""The DAN ABAW3 recipe (paper 004): a tiny run of the bagged ensemble, and what each switch changes
(focal vs CE, affinity, partition, the VA head with CCC, bagging with soft voting, sampling)."""
import dataclasses
import json
import os

import numpy as np
import pytest

import affectfer as af
from affectfer import nn, tensor
from affectfer.data import BaggingSampler, RandomSampler, WeightedRandomSampler
from affectfer.losses import ccc_loss, focal_loss
from affectfer.models import DAN
from affectfer.nn import functional as F
from affectfer.recipes import dan_abaw3 as D
from tests.recipes.inference import assert_predicts


def test_tiny_run_trains_two_bagged_members_and_soft_votes(tmp_path):
    result = D.run(D.Config.tiny(), out=str(tmp_path), progress=False, log=None)
    assert len(result["member_macro_f1"]) == 2 and 0 <= result["macro_f1"] <= 1
    assert len(result["f1_per_class"]) == 8 and list(result["f1_per_class"])[-1] == "other"
    assert -1 <= result["va_ccc"] <= 1
    assert {"dan_abaw3_member0.safetensors", "dan_abaw3_member1.safetensors", "metrics.json"} <= set(os.listdir(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["members"] == 2
    assert_predicts(tmp_path / "dan_abaw3_member1.safetensors", D.CLASSES, tmp_path)


def outputs(va=True, B=6, heads=2, seed=0):
    rng = np.random.default_rng(seed)
    t = lambda *s: tensor(rng.normal(size=s).astype(np.float32), requires_grad=True)
    logits, fmap, h = t(B, 8), t(B, 512, 1, 1), t(B, heads, 512)
    return ((logits, t(B, 2), fmap, h) if va else (logits, fmap, h)), rng


def test_loss_terms_follow_the_switches():
    out, rng = outputs()
    labels = tensor(np.array([1, 2, 3, 4, 5, 6]))
    va_true = rng.uniform(-1, 1, (6, 2)).astype(np.float32)
    va_true[0, 0] = -5  # an unannotated valence is skipped
    terms = D.Loss(D.Config())(out, labels, tensor(va_true))
    assert set(terms) == {"expression", "va", "affinity", "partition"}
    assert terms["expression"].item() == pytest.approx(focal_loss(out[0], labels, gamma=2.0).item(), rel=1e-6)
    mask = tensor(va_true[:, 0] != -5)
    expected_va = ccc_loss(out[1][:, 0], tensor(np.ascontiguousarray(va_true[:, 0])), mask).item() + \
        ccc_loss(out[1][:, 1], tensor(np.ascontiguousarray(va_true[:, 1]))).item()
    assert terms["va"].item() == pytest.approx(expected_va, rel=1e-5)
    # the detached modulator: same value, the gradient of focal_loss(detach_modulator=True)
    detached = D.Loss(D.Config(focal_detach_modulator=True))(out, labels, tensor(va_true))["expression"]
    assert detached.item() == pytest.approx(terms["expression"].item(), rel=1e-6)
    detached.backward()
    got = out[0].grad.numpy().copy()
    out[0].grad = None
    focal_loss(out[0], labels, gamma=2.0, detach_modulator=True).backward()
    np.testing.assert_allclose(got, out[0].grad.numpy(), rtol=1e-6)
    out[0].grad = None
    focal_loss(out[0], labels, gamma=2.0).backward()
    assert not np.allclose(got, out[0].grad.numpy(), rtol=1e-3)
    off = D.Loss(D.Config(focal=False, affinity=False, partition=False))(out, labels, tensor(va_true))
    assert set(off) == {"expression", "va"}
    assert off["expression"].item() == pytest.approx(F.cross_entropy(out[0], labels).item(), rel=1e-6)
    no_va, _ = outputs(va=False)
    assert set(D.Loss(D.Config(va_head=False))(no_va, labels, tensor(va_true))) == {"expression", "affinity", "partition"}
    # data without VA targets: the expression terms only
    assert "va" not in D.Loss(D.Config())(out, labels)
    # the centres are trainable parameters the optimizer receives
    assert len(D.Loss(D.Config()).parameters()) == 1 and D.Loss(D.Config(affinity=False)).parameters() == []


def test_va_head_switch_changes_the_model():
    x = tensor(np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32))
    with_va = D.build_model(D.Config(num_head=2)).eval()
    logits, va, fmap, heads = with_va(x)
    assert tuple(logits.shape) == (2, 8) and tuple(va.shape) == (2, 2) and np.abs(va.numpy()).max() <= 1
    assert tuple(heads.shape) == (2, 2, 512)
    plain = D.build_model(D.Config(num_head=2, va_head=False))
    assert isinstance(plain, DAN) and len(plain.eval()(x)) == 3


class Fake(nn.Module):
    """A cheap stand-in for a trained member: fixed logits per member, VA outputs."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        B = x.shape[0]
        logits = np.zeros((B, 8), np.float32)
        logits[:, 1 + self.k] = 3.0
        zeros = tensor(np.zeros((B, 1), np.float32))
        return tensor(logits), tensor(np.full((B, 2), 0.1 * self.k, np.float32)), zeros, zeros


def test_bagging_switch_trains_members_on_subsets_and_soft_votes(monkeypatch):
    samplers = []

    def fake_train(cfg, data, sampler, *args, **kwargs):
        samplers.append(sampler)
        return Fake(len(samplers) - 1)

    monkeypatch.setattr(D, "_train_one", fake_train)
    cfg = dataclasses.replace(D.Config.tiny(), members=3, bag_fraction=0.25)
    result = D.run(cfg, progress=False, log=None)
    assert [type(s) for s in samplers] == [BaggingSampler] * 3 and [s.model for s in samplers] == [0, 1, 2]
    assert all(len(s) == 8 for s in samplers)
    # members say anger, disgust, fear with equal confidence: soft voting ties, argmax takes anger,
    # so the ensemble scores as member 0; their averaged VA is a constant (CCC 0)
    assert len(result["member_macro_f1"]) == 3 and result["macro_f1"] == result["member_macro_f1"][0]
    assert result["f1_per_class"]["anger"] > 0 and result["f1_per_class"]["disgust"] == 0
    assert result["va_ccc"] == pytest.approx(0.0, abs=1e-6)
    samplers.clear()
    single = D.run(dataclasses.replace(cfg, bagging=False), progress=False, log=None)
    assert [type(s) for s in samplers] == [WeightedRandomSampler] and len(single["member_macro_f1"]) == 1
    samplers.clear()
    D.run(dataclasses.replace(cfg, bagging=False, weighted_sampling=False), progress=False, log=None)
    assert [type(s) for s in samplers] == [RandomSampler]


def test_defaults_follow_dans_affectnet_script_and_bad_values():
    cfg = D.Config()
    assert (cfg.lr, cfg.weight_decay, cfg.gamma, cfg.batch_size, cfg.num_head, cfg.focal_gamma) == \
        (1e-4, 0.0, 0.6, 256, 4, 2.0)
    with pytest.raises(ValueError, match="bag_fraction must be in"):
        D.run(dataclasses.replace(D.Config.tiny(), bag_fraction=0.0), log=None)
