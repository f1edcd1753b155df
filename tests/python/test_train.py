"""affectfer.train: fit's selection metrics, accumulation, validation every N steps, early stopping,
per-step and per-epoch schedulers, multi-output losses, bitwise resume, plots; predict."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer import nn, optim, train
from affectfer import transforms as T
from affectfer.data import ArrayDataset, Loader


def make_data(n=48, seed=0, size=8):
    """Three classes whose mean brightness differs: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = np.clip(rng.normal(60 + 60 * labels[:, None, None, None], 25, (n, size, size, 1)), 0, 255).astype(np.uint8)
    return ArrayDataset(images, labels)


def loader(ds, shuffle=True, batch_size=8):
    return Loader(ds, batch_size=batch_size, transform=T.Compose([T.RandomHorizontalFlip(), T.ToTensor()]),
                  workers=1, seed=3, shuffle=shuffle)


class Net(nn.Module):
    def __init__(self, two_heads=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)  # the pipeline widens gray images to RGB
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 1) if two_heads else None

    def forward(self, x):
        h = self.pool(self.conv(x).relu()).flatten(1)
        return (self.fc(h), self.aux(h)) if self.aux is not None else self.fc(h)


def snapshot(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_fit_learns_and_keeps_the_best_weights():
    af.manual_seed(0)
    model = Net()
    h = train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.05), 6,
                  val_loader=loader(make_data(seed=1), shuffle=False), progress=False, log=None)
    assert h.train_loss[-1] < h.train_loss[0]
    assert len(h.val_metric) == 6 and h.val_metric == h.val_macro_f1
    assert h.best_metric == max(h.val_macro_f1) and h.best_epoch == int(np.argmax(h.val_macro_f1))
    probs, labels = train.predict(model, loader(make_data(seed=1), shuffle=False))
    assert probs.shape == (48, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert af.metrics.macro_f1(labels, probs.argmax(1), 3) == pytest.approx(h.best_metric)  # best restored
    assert all(s > 0 for s in h.images_per_second)


def test_gradient_accumulation_equals_the_large_batch():
    af.manual_seed(1)
    a = Net()
    b = Net()
    b.load_state_dict(a.state_dict())
    data = make_data(n=16)
    no_aug = T.Compose([T.ToTensor()])
    big = Loader(data, batch_size=16, transform=no_aug, workers=1)
    small = Loader(data, batch_size=4, transform=no_aug, workers=1)
    train.fit(a, big, optim.SGD(a.parameters(), lr=0.1), 1, progress=False, log=None)
    train.fit(b, small, optim.SGD(b.parameters(), lr=0.1), 1, accumulate_steps=4, progress=False, log=None)
    for (k, va), vb in zip(snapshot(a).items(), snapshot(b).values()):
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6, err_msg=k)


def test_validation_every_n_steps_early_stopping_and_step_scheduler():
    af.manual_seed(2)
    model = Net()
    opt = optim.SGD(model.parameters(), lr=0.0)  # lr 0: the metric never improves after the first validation
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    h = train.fit(model, loader(make_data()), opt, 10, val_loader=loader(make_data(seed=1), shuffle=False),
                  val_every=2, patience=3, scheduler=sched, scheduler_interval="step", progress=False, log=None)
    assert h.stopped_early
    assert h.val_steps == [2, 4, 6, 8]          # 6 steps per epoch: validations at steps 2, 4, 6, 8
    assert len(h.train_loss) == 2               # stopped in the second epoch
    assert sched.last_epoch == 8                # stepped once per optimizer step


def test_epoch_scheduler_steps_once_per_epoch():
    af.manual_seed(2)
    model = Net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    seen = []

    def loss_fn(logits, y):
        seen.append(opt.param_groups[0]["lr"])
        return nn.functional.cross_entropy(logits, y)

    train.fit(model, loader(make_data()), opt, 3, loss_fn=loss_fn, scheduler=sched, progress=False, log=None)
    assert sched.last_epoch == 3                 # the default scheduler_interval="epoch"
    assert seen == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 6)  # 6 batches per epoch, one lr each


def test_multi_output_dict_loss_and_val_loss_metric():
    af.manual_seed(3)
    model = Net(two_heads=True)

    def loss_fn(outputs, y):
        logits, aux = outputs
        return {"ce": nn.functional.cross_entropy(logits, y), "aux": (aux * aux).mean()}

    h = train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.05), 3, loss_fn=loss_fn,
                  val_loader=loader(make_data(seed=1), shuffle=False), metric="val_loss", progress=False, log=None)
    assert set(h.components) == {"ce", "aux"} and len(h.components["ce"]) == 3
    assert h.val_metric == h.val_loss and h.best_metric == min(h.val_loss)
    np.testing.assert_allclose(np.add(h.components["ce"], h.components["aux"]), h.train_loss, rtol=1e-5)
    custom = train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.01), 1, loss_fn=loss_fn,
                       val_loader=loader(make_data(seed=1), shuffle=False), progress=False, log=None,
                       metric=lambda outputs, targets: -float(np.abs(outputs[1]).mean()))
    assert custom.val_metric[0] <= 0


def test_resume_is_bitwise(tmp_path):
    def run(epochs, resume=None, path=None, model=None):
        af.manual_seed(4)
        model = model or Net()
        opt = optim.Adam(model.parameters(), lr=0.02)
        sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.7)
        h = train.fit(model, loader(make_data()), opt, epochs, scheduler=sched, val_loader=loader(make_data(seed=1), False),
                      checkpoint_path=path, resume=resume, progress=False, log=None)
        return model, h

    straight, h_straight = run(5)
    path = tmp_path / "fit.safetensors"
    run(3, path=path)                              # interrupted after epoch 3 (mid-way in a StepLR period)
    resumed, h_resumed = run(5, resume=path)
    for (k, a), b in zip(snapshot(straight).items(), snapshot(resumed).values()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert h_resumed.train_loss == h_straight.train_loss and h_resumed.val_metric == h_straight.val_metric
    with pytest.raises(ValueError, match="not a checkpoint written by train.fit"):
        m = Net()
        af.checkpoint.save(m, tmp_path / "plain.safetensors", optimizer=optim.SGD(m.parameters(), lr=0.1))
        train.fit(m, loader(make_data()), optim.SGD(m.parameters(), lr=0.1), 1, resume=tmp_path / "plain.safetensors",
                  progress=False, log=None)


def test_nan_loss_and_bad_arguments():
    model = Net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        train.fit(model, loader(make_data()), opt, 1, loss_fn=lambda out, y: out.sum() * math.nan, progress=False, log=None)
    with pytest.raises(ValueError, match="accumulate_steps"):
        train.fit(model, loader(make_data()), opt, 1, accumulate_steps=0)
    with pytest.raises(ValueError, match="need a val_loader"):
        train.fit(model, loader(make_data()), opt, 1, patience=2)
    with pytest.raises(ValueError, match="unknown metric"):
        train.fit(model, loader(make_data()), opt, 1, val_loader=loader(make_data()), metric="auc", progress=False, log=None)


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    af.manual_seed(5)
    model = Net()
    train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.05), 2,
              val_loader=loader(make_data(seed=1), False), plot_dir=tmp_path, class_names=["a", "b", "c"],
              progress=False, log=None)
    for name in ("history.png", "confusion.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, name
    import json
    saved = json.loads((tmp_path / "history.json").read_text())
    cm = np.array(saved["last_confusion"])
    assert cm.shape == (3, 3) and cm.sum() == 48 and len(saved["train_loss"]) == 2


def test_the_bar_shows_loss_images_per_second_and_the_metric(monkeypatch):
    tqdm_auto = pytest.importorskip("tqdm.auto")
    postfixes = []

    class Recorder(tqdm_auto.tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            postfixes.append((self.desc, dict(ordered_dict or kwargs)))
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(tqdm_auto, "tqdm", Recorder)
    af.manual_seed(6)
    model = Net()
    train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.05), 2,
              val_loader=loader(make_data(seed=1), False), progress=True, log=None)
    epoch1 = [p for d, p in postfixes if d.startswith("epoch 1/2")]
    epoch2 = [p for d, p in postfixes if d.startswith("epoch 2/2")]
    assert len(epoch1) == len(epoch2) == 6                       # one update per batch
    for p in epoch1 + epoch2:
        assert float(p["loss"]) > 0 and float(p["img/s"]) > 0
    assert "macro_f1" not in epoch1[-1]                          # no validation yet
    assert 0 <= float(epoch2[0]["macro_f1"]) <= 1               # epoch 1's validation from then on


def test_abaw_expression_metric_is_the_challenge_mix():
    af.manual_seed(7)
    model = Net()
    h = train.fit(model, loader(make_data()), optim.Adam(model.parameters(), lr=0.05), 2,
                  val_loader=loader(make_data(seed=1), False), metric="abaw_expression", progress=False, log=None)
    expected = 0.67 * np.array(h.val_macro_f1) + 0.33 * np.array(h.val_accuracy)
    np.testing.assert_allclose(h.val_metric, expected, rtol=1e-6)
    assert h.best_metric == max(h.val_metric)


class MTLNet(nn.Module):
    """(valence/arousal, 8 expression logits, 12 AU logits), the order fit's abaw_mtl metric reads."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.va, self.expr, self.au = nn.Linear(4, 2), nn.Linear(4, 8), nn.Linear(4, 12)

    def forward(self, x):
        h = self.pool(self.conv(x).relu()).flatten(1)
        return self.va(h).tanh(), self.expr(h), self.au(h)


def mtl_data(n=32, seed=0):
    """ABAWMTLDataset-shaped data: expression labels (-1 = none), targets valence, arousal, 12 AUs with
    the -5 / -1 invalid markers."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    labels[::5] = -1
    va = rng.uniform(-1, 1, (n, 2))
    va[1::4] = -5
    aus = rng.integers(0, 2, (n, 12)).astype(float)
    aus[2::6] = -1
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return ArrayDataset(images, labels, targets=np.concatenate([va, aus], 1), classes=[str(k) for k in range(8)])


def test_abaw_mtl_metric_on_multi_task_batches():
    af.manual_seed(8)
    model = MTLNet()

    def loss_fn(outputs, labels, targets):
        va, expr, au = outputs
        return {"va": (va * va).mean(), "expr": (expr * expr).mean(), "au": (au * au).mean()}

    val = Loader(mtl_data(seed=1), batch_size=8, transform=T.ToTensor(), workers=1)  # the same batches every pass
    h = train.fit(model, loader(mtl_data()), optim.SGD(model.parameters(), lr=0.0), 1, loss_fn=loss_fn, val_loader=val,
                  metric="abaw_mtl", progress=False, log=None)
    (va, expr, au), (labels, targets) = train.predict_outputs(model, val)
    truth = mtl_data(seed=1)
    va_true, au_true = truth.targets[:, :2], truth.targets[:, 2:]
    expected = af.metrics.abaw_mtl_score(va_true, va, truth.labels, expr.argmax(1), au_true, 1 / (1 + np.exp(-au)))
    assert h.val_metric == [pytest.approx(expected, rel=1e-6)]
    # the invalid markers are masked, not scored: reading them as values changes the score
    assert expected != pytest.approx(af.metrics.abaw_mtl_score(np.where(va_true == -5, 0, va_true), va, truth.labels,
                                                               expr.argmax(1), au_true, 1 / (1 + np.exp(-au))))
    assert np.array(h.last_confusion).shape == (8, 8)           # the expression head's matrix, not VA's
    assert h.val_macro_f1 == [pytest.approx(af.metrics.macro_f1(truth.labels, expr.argmax(1), 8))]
    # the same score from the three targets laid out apart
    three = train._metric_value("abaw_mtl", (va, expr, au), (va_true, truth.labels, au_true), None, 1)
    assert three == pytest.approx(expected, rel=1e-12)


def test_predict_on_a_multi_output_model():
    af.manual_seed(9)
    model = Net(two_heads=True)
    val = Loader(make_data(seed=1), batch_size=8, transform=T.ToTensor(), workers=1)
    (logits, aux), (labels,) = train.predict_outputs(model, val)
    assert logits.shape == (48, 3) and aux.shape == (48, 1) and labels.tolist() == make_data(seed=1).labels.tolist()
    probs, labels = train.predict(model, val)                   # output 0: the logits
    z = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, z / z.sum(1, keepdims=True), rtol=1e-5)
    probs_aux, _ = train.predict(model, val, output_index=1)   # a one-column output: probability 1
    np.testing.assert_array_equal(probs_aux, np.ones((48, 1), np.float32))
    assert model.training                                       # predict restores the mode it found
