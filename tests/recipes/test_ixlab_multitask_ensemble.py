"""recipes.ixlab_multitask_ensemble (paper 001): one tiny run, and what each ablation switch changes."""
import dataclasses
import json

import numpy as np
import pytest

import affectfer as af
from affectfer import models, nn, recipes
from affectfer.nn import functional as F
from affectfer.recipes import ixlab_multitask_ensemble as R
from affectfer.train import History
from tests.models.test_multitask import TinyFeatures, TinyMap
from tests.recipes.inference import assert_predicts


def test_tiny_run_trains_bagged_members_and_votes(tmp_path):
    out = tmp_path / "run"
    r = recipes.run("ixlab_multitask_ensemble", tiny=True, out=str(out), progress=False)
    assert 0.0 <= r["macro_f1"] <= 1.0 and 0.0 <= r["accuracy"] <= 1.0
    assert set(r["f1_per_class"]) == set(R.CLASSES)
    assert len(r["members_macro_f1"]) == 2 and len(r["landmark_mse"]) == 2
    assert r["history_terms"] == ["affinity", "landmarks", "mixaugment", "partition"]
    assert (out / "member0.safetensors").exists() and (out / "member1.safetensors").exists()
    assert json.loads((out / "metrics.json").read_text())["macro_f1"] == r["macro_f1"]
    assert json.loads((out / "config.json").read_text())["members"] == 2
    assert_predicts(out / "member1.safetensors", R.CLASSES, tmp_path)


# ---------------------------------------------------------------------------------- the step module

@pytest.fixture(scope="module")
def model():
    af.manual_seed(5)
    return models.MultiTaskIXL(6, emotion_backbone=TinyMap(), appearance=TinyFeatures(), num_head=2)


@pytest.fixture
def batch():
    rng = np.random.default_rng(3)
    x = af.tensor(rng.standard_normal((6, 6, 8, 8)).astype(np.float32))
    labels = af.tensor(np.array([0, 1, 2, 3, 4, 0]))
    landmarks = af.tensor(rng.uniform(0, 1, (6, 136)).astype(np.float32))
    return x, labels, landmarks


def _cfg(**changes):
    return dataclasses.replace(R.Config.tiny(), **changes)


def _ce(logits, y, w=None):
    z = np.asarray(logits, np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    w = np.ones(z.shape[1]) if w is None else np.asarray(w, np.float64)
    return float(-(w[y] * logp[np.arange(len(y)), y]).sum() / w[y].sum())


def test_mixaugment_switch_runs_three_passes_and_the_variant_a_loss(model, batch):
    x, labels, lm = batch
    y = labels.numpy()
    weight = R.loss_weights(R.Config(), np.array([0, 0, 0, 1, 2, 3, 4, 5]))
    np.testing.assert_allclose(weight, 1 - np.array([3, 1, 1, 1, 1, 1]) / 8, rtol=1e-6)
    af.manual_seed(0)
    step = R.MultiTaskStep(model, _cfg(dan_losses=False, multitask=False), weight).train()
    out = step(x)
    assert len(out.passes) == 3 and out.mix is not None
    # the passes see the mixed, real and permuted emotion views (channels 0-2), never the landmark view
    np.testing.assert_allclose(out.mix.mixed.numpy(),
                               out.mix.lam * x.numpy()[:, :3] + (1 - out.mix.lam) * x.numpy()[out.mix.perm, :3],
                               rtol=1e-5, atol=1e-6)
    terms = step.loss(out, labels, lm)
    assert set(terms) == {"mixaugment"}
    mixed, real, permuted = (p[0].numpy() for p in out.passes)
    perm, lam = out.mix.perm, out.mix.lam
    want = (lam * _ce(mixed, y, weight) + (1 - lam) * _ce(mixed, y[perm], weight) + _ce(real, y, weight)
            + _ce(permuted, y[perm], weight))
    np.testing.assert_allclose(terms["mixaugment"].item(), want, rtol=1e-4)
    # off: one pass on the real emotion view and the weighted CE
    plain = R.MultiTaskStep(model, _cfg(mixaugment=False, dan_losses=False, multitask=False), weight).train()
    out = plain(x)
    assert len(out.passes) == 1 and out.mix is None
    terms = plain.loss(out, labels, lm)
    assert set(terms) == {"ce"}
    np.testing.assert_allclose(terms["ce"].item(), _ce(out.passes[0][0].numpy(), y, weight), rtol=1e-4)
    unweighted = R.MultiTaskStep(model, _cfg(mixaugment=False, dan_losses=False, multitask=False), None).train()
    assert R.loss_weights(_cfg(class_weights=False), y) is None
    assert abs(unweighted.loss(out, labels, lm)["ce"].item() - terms["ce"].item()) > 1e-4


def test_multitask_switch_trains_the_appearance_branch_only_when_on(model, batch):
    x, labels, lm = batch
    for on in (True, False):
        step = R.MultiTaskStep(model, _cfg(multitask=on, mixaugment=False, dan_losses=False)).train()
        model.zero_grad()
        out = step(x)
        terms = step.loss(out, labels, lm)
        assert ("landmarks" in terms) is on
        sum(terms.values(), start=terms["ce"] * 0.0).backward()
        lm_grads = [p.grad for p in model.lm_feature.parameters()]
        assert all(g is not None for g in lm_grads) if on else all(g is None for g in lm_grads)
        if on:
            # the landmark term is the MSE of the landmark view's landmarks (channels 3-5)
            pred = model.forward_landmarks(x[:, 3:]).numpy()
            np.testing.assert_allclose(terms["landmarks"].item(), np.mean((pred - lm.numpy().reshape(6, 68, 2)) ** 2),
                                       rtol=1e-4)
        assert model.em_feature.cat_head0.sa.conv1x1[0].weight.grad is not None


def test_dan_losses_switch_adds_affinity_and_partition_per_pass(model, batch):
    x, labels, lm = batch
    af.manual_seed(1)
    step = R.MultiTaskStep(model, _cfg(multitask=False)).train()
    out = step(x)
    terms = step.loss(out, labels, lm)
    assert set(terms) == {"mixaugment", "affinity", "partition"}
    from affectfer.losses import partition_loss

    want = sum(partition_loss(h).item() for _, _, h in out.passes)
    np.testing.assert_allclose(terms["partition"].item(), want, rtol=1e-5)
    terms["affinity"].backward()
    assert step.affinity.centers.grad is not None  # the centres are trained with the model
    assert any(n.startswith("affinity.") for n, _ in step.named_parameters())
    off = R.MultiTaskStep(model, _cfg(multitask=False, dan_losses=False)).train()
    assert set(off.loss(off(x), labels, lm)) == {"mixaugment"} and off.affinity is None


def test_evaluation_forward_and_loss(model, batch):
    x, labels, lm = batch
    step = R.MultiTaskStep(model, _cfg()).eval()
    logits, landmarks = step(x[:, :3])
    assert logits.shape == (6, 6) and landmarks.shape == (6, 68, 2)
    assert set(step.loss((logits, landmarks), labels, lm)) == {"ce", "landmarks"}
    single = R.MultiTaskStep(model, _cfg(multitask=False)).eval()
    assert single(x[:, :3]).shape == (6, 6)
    with pytest.raises(ValueError, match="two stacked views"):
        step.train()(x[:, :3])


# ------------------------------------------------------------------------------------------- views

def test_augmentation_switches_change_the_emotion_view_only():
    img = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    emotion, landmark, evaluation = R.transforms(_cfg(color_jitter=False, augment=False))
    ref = evaluation(img, seed=1, stream=2)
    np.testing.assert_array_equal(emotion(img, seed=1, stream=2), ref)
    np.testing.assert_array_equal(landmark(img, seed=1, stream=2), ref)
    # colour jitter: both views get the same draw (the same stream), and it changes the pixels
    emotion, landmark, _ = R.transforms(_cfg(color_jitter=True, augment=False))
    jittered = emotion(img, seed=1, stream=2)
    np.testing.assert_array_equal(landmark(img, seed=1, stream=2), jittered)
    assert not np.allclose(jittered, ref)
    # flips, warps and erasing: the emotion view only; the landmark view keeps its geometry
    emotion, landmark, _ = R.transforms(_cfg(color_jitter=False, augment=True))
    np.testing.assert_array_equal(landmark(img, seed=1, stream=2), ref)
    assert any(not np.array_equal(emotion(img, seed=1, stream=s), ref) for s in range(4))


# ------------------------------------------------------------------------------ bagging and voting

class Constant(nn.Module):
    """A stand-in member: logits from the images' per-channel means through a fixed linear map."""

    def __init__(self, k):
        super().__init__()
        self.fc = nn.Linear(3, 6)
        self.k = k

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_bagging_switch_sets_the_members_training_sets(monkeypatch):
    seen = []

    def fake_member(cfg, k, sampler, data, weight, val_loader, progress=True, log=print):
        seen.append((len(data.train), sampler.indices(0).tolist()))
        af.manual_seed(k)
        return Constant(k).eval(), History()

    monkeypatch.setattr(R, "train_member", fake_member)
    cfg = _cfg(members=3, bag_fraction=0.25, train_size=40, multitask=False)
    r = R.run(cfg, progress=False, log=None)
    assert len(r["members_macro_f1"]) == 3
    assert [len(s) for _, s in seen] == [10, 10, 10]
    assert len({tuple(sorted(s)) for _, s in seen}) == 3  # each member its own bag
    seen.clear()
    R.run(dataclasses.replace(cfg, bagging=False), progress=False, log=None)
    assert all(sorted(s) == list(range(40)) for _, s in seen)


def test_soft_voting_switch_averages_probabilities_instead_of_summing_logits():
    a = np.array([[10.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.5]])
    c = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 1.5]])
    soft = R.combine([a, b, c], soft_voting=True)
    np.testing.assert_allclose(soft.sum(1), 1.0)
    np.testing.assert_allclose(soft, np.mean([F.softmax(af.tensor(m), dim=1).numpy() for m in (a, b, c)], 0),
                               rtol=1e-6)
    np.testing.assert_allclose(R.combine([a, b, c], soft_voting=False), a + b + c)
    # one confident member outvotes two mild ones on summed logits, not on averaged probabilities
    assert soft.argmax(1).tolist() == [1, 2]
    assert R.combine([a, b, c], soft_voting=False).argmax(1).tolist() == [0, 2]


def test_landmark_targets_are_required_and_normalised():
    d = R.load(_cfg(train_size=12, val_size=6), None)
    assert d.train.targets.shape == (12, 136) and -0.1 < d.train.targets.min() and d.train.targets.max() < 1.1
    raw = R.load(_cfg(train_size=12, val_size=6, normalize_landmarks=False), None)
    np.testing.assert_allclose(raw.train.targets / 32, d.train.targets, rtol=1e-6)
    assert R.load(_cfg(train_size=12, val_size=6, multitask=False), None).train.targets is None
    from affectfer.data import ArrayDataset

    faces = ArrayDataset(np.zeros((10, 8, 8, 3), np.uint8), np.arange(10) % 6, classes=list(R.CLASSES))
    with pytest.raises(ValueError, match="136 target columns"):
        R.load(_cfg(), {"train": faces, "val": faces})
