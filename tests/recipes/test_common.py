"""affectfer.recipes._common: --set parsing into a dataclass, class order, splits, the synthetic data
with its targets, samplers and loaders, bagging with soft voting, and the run's files."""
import dataclasses
import json

import numpy as np
import pytest

from affectfer.recipes import _common as C


@dataclasses.dataclass
class Cfg:
    lr: float = C.param(1e-4, "learning rate (the paper's)")
    epochs: int = C.param(3, "epochs")
    hand: bool = C.param(True, "ablation switch")
    backbone: str = C.param("resnet50", "the backbone")
    mean: tuple[float, float, float] = C.param((0.5, 0.5, 0.5), "per channel")
    sizes: tuple[int, ...] = C.param((1, 2), "any number")
    limit: int | None = C.param(None, "optional")


def test_overrides_convert_text_to_each_fields_type():
    cfg = C.apply_overrides(Cfg(), ["lr=3e-5", "epochs=7", "hand=false", "backbone=se_resnet50", "mean=0.1,0.2,0.3",
                                    "sizes=4,5,6", "limit=12"])
    assert cfg == Cfg(3e-5, 7, False, "se_resnet50", (0.1, 0.2, 0.3), (4, 5, 6), 12)
    assert C.apply_overrides(cfg, ["limit=none"]).limit is None
    assert C.apply_overrides(Cfg(), {"epochs": 2, "hand": "no"}) == Cfg(epochs=2, hand=False)
    assert C.apply_overrides(Cfg(), "epochs=2.0").epochs == 2
    assert C.apply_overrides(Cfg(), ()) == Cfg()


@pytest.mark.parametrize("item, message", [
    ("epoch=3", "unknown config key 'epoch'.*keys: lr, epochs"),
    ("epochs=three", "epochs='three': expected an integer"),
    ("epochs=2.5", "expected an integer"),
    ("lr=fast", "lr='fast': expected a number"),
    ("hand=maybe", "expected a boolean"),
    ("mean=0.1,0.2", "expected 3 comma-separated values"),
    ("limit=lots", "limit='lots'"),
    ("no_equals_sign", "--set expects key=value"),
])
def test_bad_overrides_name_the_key_and_value(item, message):
    with pytest.raises(ValueError, match=message):
        C.apply_overrides(Cfg(), [item])


def test_python_values_are_checked_too():
    with pytest.raises(ValueError, match="hand=3: expected a boolean"):
        C.apply_overrides(Cfg(), {"hand": 3})
    with pytest.raises(ValueError, match="epochs=1.5"):
        C.apply_overrides(Cfg(), {"epochs": 1.5})


def test_describe_config_lists_every_field_with_its_default_and_help():
    text = C.describe_config(Cfg)
    for f in dataclasses.fields(Cfg):
        assert f"  {f.name} (" in text and f.metadata["help"] in text
    assert "default 0.0001" in text and "default 'resnet50'" in text


def test_align_classes_maps_folder_names_into_the_recipe_order():
    from affectfer.data import ArrayDataset

    images = np.zeros((4, 8, 8, 3), np.uint8)
    ds = ArrayDataset(images, [0, 1, 2, 1], classes=["Happy", "neutral", "surprised"])
    out = C.align_classes(ds, ("neutral", "anger", "happiness", "surprise"))
    np.testing.assert_array_equal(out.labels, [2, 0, 3, 0])
    assert out.classes == ["neutral", "anger", "happiness", "surprise"]
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 1])  # the original is untouched
    with pytest.raises(ValueError, match=r"\['Happy'\] are not among"):
        C.align_classes(ds, ("neutral", "surprise"))
    numbered = ArrayDataset(images, [0, 1, 2, 2])
    np.testing.assert_array_equal(C.align_classes(numbered, ("a", "b", "c")).labels, [0, 1, 2, 2])
    with pytest.raises(ValueError, match="3 numbered classes"):
        C.align_classes(numbered, ("a", "b"))


def test_split_is_stratified_disjoint_and_seeded():
    from affectfer.data import ArrayDataset

    images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1).repeat(3, 3)
    labels = np.repeat([0, 1, 2, 3], 10)
    ds = ArrayDataset(images, labels, targets=np.arange(40, dtype=np.float32)[:, None])
    train, val = C.split(ds, 0.2, seed=3)
    assert len(train) == 32 and len(val) == 8
    np.testing.assert_array_equal(np.bincount(val.labels), [2, 2, 2, 2])
    ids = np.concatenate([train.images[:, 0, 0, 0], val.images[:, 0, 0, 0]])
    assert sorted(ids.tolist()) == list(range(40))
    np.testing.assert_array_equal(val.targets[:, 0], val.images[:, 0, 0, 0])
    again = C.split(ds, 0.2, seed=3)[1]
    np.testing.assert_array_equal(again.images, val.images)
    assert not np.array_equal(C.split(ds, 0.2, seed=4)[1].images, val.images)
    with pytest.raises(ValueError, match="val_fraction"):
        C.split(ds, 1.0)


def test_split_and_align_keep_face_boxes_in_step():
    """Readers with face boxes (AffectNet, ExpW, CSV box columns): a split or a class alignment must
    move each sample's box with it, or the loader crops the wrong face."""
    from affectfer.data import ArrayDataset

    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(8, 1).repeat(8, 2).repeat(3, 3)
    ds = ArrayDataset(images, np.repeat([0, 1], 10), classes=["happy", "sad"])
    ds.boxes = np.stack([np.arange(20), np.zeros(20), np.arange(20) + 1, np.ones(20)], 1).astype(np.int64)
    for part in C.split(ds, 0.3, seed=1):
        np.testing.assert_array_equal(part.boxes[:, 0], part.images[:, 0, 0, 0])
    aligned = C.align_classes(ds, ("sadness", "happiness"))
    np.testing.assert_array_equal(aligned.labels, np.repeat([1, 0], 10))
    np.testing.assert_array_equal(aligned.boxes, ds.boxes)


def test_load_data_reads_train_and_val_folders(tmp_path):
    from affectfer.datasets import CLASSES, synthetic_faces
    from tests.images import write_png

    faces = synthetic_faces(12, 32, seed=5)
    for split_name in ("train", "val"):
        for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
            folder = tmp_path / split_name / CLASSES[label].capitalize()
            folder.mkdir(parents=True, exist_ok=True)
            write_png(str(folder / f"{i}.png"), image)
    classes = ("neutral",) + CLASSES
    data = C.load_data(str(tmp_path), classes)
    assert data.classes == classes and len(data.train) == 12 and len(data.val) == 12
    # folders were sorted alphabetically; labels now index the recipe's order
    assert sorted(np.asarray(data.train.labels).tolist()) == sorted((faces.labels + 1).tolist())
    single = C.load_data(str(tmp_path / "train"), classes, val_fraction=0.5)
    assert len(single.train) + len(single.val) == 12
    with pytest.raises(FileNotFoundError, match="neither an image folder"):
        C.load_data(str(tmp_path / "missing"), classes)


def test_synthetic_data_has_the_recipe_classes_and_targets():
    classes = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other")
    data = C.synthetic_data(classes, 24, 12, 32, seed=0, targets=("va", "aus"))
    assert data.train.targets.shape == (24, 14) and data.val.targets.shape == (12, 14)
    assert set(np.unique(data.train.labels)) <= set(range(1, 7))  # neutral and other are never drawn
    assert data.train.classes == list(classes)
    assert np.abs(data.train.targets[:, :2]).max() <= 1
    assert C.synthetic_data(classes[1:7], 12, 6, 32).train.targets is None
    with pytest.raises(ValueError, match="not among the recipe's classes"):
        C.synthetic_data(("anger", "fear"), 12, 6, 32)
    with pytest.raises(ValueError, match="unknown synthetic targets"):
        C.synthetic_data(classes, 12, 6, 32, targets=("age",))


def test_samplers_and_loaders():
    from affectfer import data as D
    from affectfer import transforms as T

    labels = np.array([0] * 10 + [1] * 2)
    assert isinstance(C.make_sampler("weighted", labels, 2), D.WeightedRandomSampler)
    assert len(C.make_sampler("oversample", labels, 2)) == 20
    assert isinstance(C.make_sampler("shuffle", labels, 2), D.RandomSampler)
    with pytest.raises(ValueError, match="sampler must be one of"):
        C.make_sampler("balanced", labels, 2)
    data = C.synthetic_data(("anger", "disgust", "fear", "happiness", "sadness", "surprise"), 20, 10, 32, targets=("va",))
    train, val = C.make_loaders(data, 8, T.ToTensor(), T.ToTensor(), sampler="weighted", workers=1)
    batches = list(train)
    assert len(batches) == 2 and tuple(batches[0][0].shape) == (8, 3, 32, 32) and tuple(batches[0][2].shape) == (8, 2)
    assert sum(len(b[0]) for b in val) == 10


def test_bagging_trains_members_on_their_own_subsets_and_soft_votes():
    from affectfer import nn
    from affectfer.models import SoftVotingEnsemble
    from affectfer import tensor

    seen = []

    class Const(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.fc = nn.Linear(2, 3)
            self.k = k

        def forward(self, x):
            return self.fc(x) * 0.0 + tensor(np.eye(3, dtype=np.float32)[self.k % 3] * 4.0)

    def train_member(k, sampler):
        seen.append((k, sampler.indices(0).copy()))
        return Const(k)

    ensemble = C.bagging(3, 0.25, 40, 7, train_member)
    assert isinstance(ensemble, SoftVotingEnsemble) and [k for k, _ in seen] == [0, 1, 2]
    assert all(len(ix) == 10 and len(set(ix.tolist())) == 10 for _, ix in seen)
    assert not np.array_equal(np.sort(seen[0][1]), np.sort(seen[1][1]))
    p = ensemble(tensor(np.zeros((2, 2), np.float32))).numpy()
    expected = np.exp(4) / (np.exp(4) + 2)
    np.testing.assert_allclose(p[0], [(expected + 2 * (1 - expected) / 2) / 3] * 3, rtol=1e-5)
    with pytest.raises(ValueError, match="num_members >= 1"):
        C.bagging(0, 0.2, 10, 0, train_member)


def test_write_results(tmp_path):
    C.write_results(str(tmp_path / "run"), Cfg(), {"macro_f1": 0.5, "table": np.arange(2)})
    assert json.load(open(tmp_path / "run" / "config.json"))["mean"] == [0.5, 0.5, 0.5]
    assert json.load(open(tmp_path / "run" / "metrics.json")) == {"macro_f1": 0.5, "table": [0, 1]}
    C.write_results(None, Cfg(), {})
