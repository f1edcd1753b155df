"""The SE-ResNet-50 ABAW 2020 recipe (paper 003): a tiny run, and what each switch changes (class
weights n_max/n_c, two learning rates, accumulation, validation every N steps, selection metric)."""
import dataclasses
import json
import os

import numpy as np
import pytest

from affectfer import models, train
from affectfer.models.presets import VGGFACE2_MEAN_RGB
from affectfer.recipes import senet_abaw2020 as S
from tests.recipes.inference import assert_predicts


@pytest.fixture
def fits(monkeypatch):
    calls = []
    real = train.fit

    def recording(model, loader, optimizer, epochs, *args, **kwargs):
        result = real(model, loader, optimizer, epochs, *args, **kwargs)
        calls.append({"kwargs": kwargs, "history": result, "groups": [dict(g) for g in optimizer.param_groups]})
        return result

    monkeypatch.setattr(train, "fit", recording)
    return calls


def test_tiny_run_validates_every_n_steps_and_selects_on_the_abaw_score(tmp_path, fits):
    cfg = dataclasses.replace(S.Config.tiny(), backbone=S.Config().backbone)  # the paper's SE-ResNet-50, at 32 x 32
    assert cfg.backbone == "se_resnet50"
    result = S.run(cfg, out=str(tmp_path), progress=False, log=None)
    history = fits[0]["history"]
    # 48 faces, batches of 8 -> 6 batches, 2 per step -> 3 steps; validations at step 2 and at the epoch's end
    assert history.val_steps == [2, 3] and result["validations"] == 2
    assert history.metric == "abaw_expression"
    assert result["abaw_expression"] == pytest.approx(0.67 * result["macro_f1"] + 0.33 * result["accuracy"])
    assert result["abaw_expression"] == pytest.approx(history.best_metric)  # the best weights are the ones kept
    assert len(result["f1_per_class"]) == 7 and list(result["f1_per_class"]) == list(S.CLASSES)
    assert {"senet_abaw2020_se_resnet50.safetensors", "metrics.json", "config.json", "history.json"} <= set(os.listdir(tmp_path))
    assert json.load(open(tmp_path / "metrics.json"))["abaw_expression"] == result["abaw_expression"]
    assert len(fits[0]["groups"]) == 2  # SE-ResNet-50: backbone and fc learning rates
    assert_predicts(tmp_path / "senet_abaw2020_se_resnet50.safetensors", S.CLASSES, tmp_path)


def test_switches_change_the_fit(fits):
    cfg = dataclasses.replace(S.Config.tiny(), accumulation=False, iteration_validation=False, abaw_selection=False,
                              class_weighting=False, two_learning_rates=False)
    result = S.run(cfg, progress=False, log=None)
    history, kwargs = fits[0]["history"], fits[0]["kwargs"]
    assert kwargs["accumulate_steps"] == 1 and kwargs["val_every"] is None and history.metric == "macro_f1"
    assert history.val_steps == [6] and result["class_weights"] is None and len(fits[0]["groups"]) == 1


def test_class_weights_are_max_over_count_and_zero_for_absent_classes():
    labels = np.array([1] * 10 + [2] * 5 + [4] * 2)  # no neutral, fear, sadness, surprise
    w = S.loss_weights(S.Config(), labels)
    np.testing.assert_allclose(w, [0, 1, 2, 0, 5, 0, 0])
    assert S.loss_weights(S.Config(class_weighting=False), labels) is None


def test_two_learning_rates_put_the_head_in_its_own_group():
    model = models.resnet18(num_classes=7)
    opt = S.optimizer(S.Config(), model)
    backbone, head = opt.param_groups
    assert (backbone["lr"], head["lr"], backbone["momentum"]) == (1e-3, 1e-2, 0.9)
    assert {id(p) for p in head["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert len(backbone["params"]) + 2 == len(list(model.parameters()))
    single = S.optimizer(S.Config(two_learning_rates=False), model)
    assert len(single.param_groups) == 1 and single.param_groups[0]["lr"] == 1e-3


def test_vggface2_preprocessing_subtracts_the_caffe_means_from_0_255_pixels():
    from affectfer import transforms as T

    _, eval_tf = S.transforms(dataclasses.replace(S.Config(), image_size=32))
    image = np.full((1, 40, 40, 3), 200, np.uint8)
    x = np.asarray(eval_tf(image[0]))
    np.testing.assert_allclose(x[:, 16, 16], 200 - np.array(VGGFACE2_MEAN_RGB), rtol=1e-4)
    assert eval_tf.transforms[-1].mean == pytest.approx(models.preprocessing("vggface2").mean)
    assert S.resize_side(S.Config(image_size=112)) == 128  # the preset's 256 / 224
    _, imagenet = S.transforms(S.Config(image_size=32, preprocess="imagenet"))
    assert imagenet.transforms[-1].mean == pytest.approx((0.485, 0.456, 0.406))
    assert "RandomGrayscale" in [type(t).__name__ for t in S.transforms(S.Config(image_size=32))[0].transforms]


def test_defaults_and_bad_values():
    cfg = S.Config()
    assert (cfg.backbone, cfg.batch_size, cfg.accumulate_steps, cfg.momentum) == ("se_resnet50", 64, 4, 0.9)
    assert (cfg.weight_decay, cfg.val_every) == (0.0, 1000)  # VGGFace2-pytorch demo.py
    assert "arXiv 2101.09231" in S.PAPER and "arXiv 2001.11409" in S.PAPER  # the method's paper, the challenge's
    with pytest.raises(ValueError, match="preprocess must be"):
        S.run(dataclasses.replace(S.Config.tiny(), preprocess="caffe"), log=None)
    with pytest.raises(ValueError, match="accumulate_steps must be >= 1"):
        S.run(dataclasses.replace(S.Config.tiny(), accumulate_steps=0), log=None)


def test_runs_on_an_image_folder_whose_classes_are_named_differently(tmp_path):
    from affectfer.datasets import CLASSES, synthetic_faces
    from affectfer import recipes
    from tests.images import write_png

    names = {"happiness": "Happy", "sadness": "sad", "surprise": "Surprised"}
    for split, seed in (("train", 3), ("val", 4)):
        faces = synthetic_faces(30, 32, seed=seed, balanced=split == "val")
        for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
            folder = tmp_path / "faces" / split / names.get(CLASSES[label], CLASSES[label])
            folder.mkdir(parents=True, exist_ok=True)
            write_png(str(folder / f"{i}.png"), image)
    result = recipes.run("senet_abaw2020", data=str(tmp_path / "faces"), tiny=True, progress=False,
                         overrides=["batch_size=6", "val_every=1"])
    # the weights follow the folders' counts in the recipe's order (neutral absent: weight 0)
    counts = np.bincount(synthetic_faces(30, 32, seed=3, balanced=False).labels, minlength=6).astype(float)
    assert len(set(counts.tolist())) > 2  # imbalanced, so a wrong class order would show
    expected = np.divide(counts.max(), counts, out=np.zeros(6), where=counts > 0)
    np.testing.assert_allclose(result["class_weights"], [0] + list(expected), rtol=1e-6)
    assert result["validations"] >= 2
