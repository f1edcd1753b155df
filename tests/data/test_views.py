"""data.views: the same image through two pipelines in one sample (IXLab's emotion and landmark views)."""
import numpy as np
import pytest

import affectfer as af
import affectfer.transforms as T
from affectfer.data import ArrayDataset, BaggingSampler, Loader, TwoViewDataset, TwoViewLoader


@pytest.fixture
def dataset(rng):
    images = rng.integers(0, 256, (10, 8, 6, 3), dtype=np.uint8)
    targets = rng.standard_normal((10, 4)).astype(np.float32)
    return ArrayDataset(images, np.arange(10) % 3, targets)


def test_item_is_two_views_of_one_image(dataset):
    views = TwoViewDataset(dataset, T.Compose([T.RandomHorizontalFlip(p=1.0), T.ToTensor()]), T.ToTensor())
    a, b, label, targets = views[4]
    np.testing.assert_array_equal(a, b[:, :, ::-1])
    np.testing.assert_array_equal(b, dataset.images[4].transpose(2, 0, 1) / np.float32(255))
    assert label == dataset.labels[4]
    np.testing.assert_array_equal(targets, dataset.targets[4])
    assert len(views) == 10 and views.classes == dataset.classes
    np.testing.assert_array_equal(views.labels, dataset.labels)


def test_loader_stacks_the_views_of_the_same_samples(dataset):
    views = TwoViewDataset(dataset, T.Compose([T.RandomHorizontalFlip(p=1.0), T.ToTensor()]), T.ToTensor())
    loader = TwoViewLoader(views, batch_size=4, shuffle=True, seed=3)
    seen = []
    for x, labels, targets in loader:
        x = x.numpy()
        assert x.shape[1:] == (6, 8, 6)
        np.testing.assert_array_equal(x[:, :3], x[:, 3:, :, ::-1])  # the same image in both halves
        for row, label, t in zip(x[:, 3:], labels.numpy(), targets.numpy()):
            i = int(np.flatnonzero((dataset.images.transpose(0, 3, 1, 2) / np.float32(255) == row).all((1, 2, 3)))[0])
            seen.append(i)
            assert label == dataset.labels[i]
            np.testing.assert_array_equal(t, dataset.targets[i])
    assert sorted(seen) == list(range(10)) and seen != list(range(10))  # shuffled, each sample once
    assert len(loader) == 3


def test_views_draw_from_separate_streams_and_follow_the_sampler(dataset):
    flip = T.Compose([T.RandomHorizontalFlip(), T.ToTensor()])
    sampler = BaggingSampler(10, fraction=0.6, model=1, seed=5)
    loader = TwoViewLoader(TwoViewDataset(dataset, flip, flip), batch_size=6, sampler=sampler, seed=11)
    loader.set_epoch(2)
    x = next(iter(loader))[0].numpy()
    # view a is exactly what a plain Loader with that seed gives; view b flips with other coins
    plain = Loader(dataset, batch_size=6, sampler=sampler, transform=flip, seed=11)
    plain.set_epoch(2)
    np.testing.assert_array_equal(x[:, :3], next(iter(plain))[0].numpy())
    a, b = x[:, :3], x[:, 3:]
    same = [np.array_equal(a[k], b[k]) for k in range(6)]
    mirrored = [np.array_equal(a[k], b[k][:, :, ::-1]) for k in range(6)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert not all(same)
    # the bagging subset, in its epoch-2 order
    rows = [int(np.flatnonzero([np.array_equal(r, im.transpose(2, 0, 1) / np.float32(255)) or
                                np.array_equal(r[:, :, ::-1], im.transpose(2, 0, 1) / np.float32(255))
                                for im in dataset.images])[0]) for r in a]
    assert rows == sampler.indices(2).tolist()


def test_errors_name_the_argument(dataset):
    with pytest.raises(TypeError, match="transform_b"):
        TwoViewDataset(dataset, T.ToTensor(), lambda im: im)
    with pytest.raises(TypeError, match="dataset"):
        TwoViewDataset([1, 2], T.ToTensor(), T.ToTensor())
    with pytest.raises(TypeError, match="TwoViewDataset"):
        TwoViewLoader(dataset)
    views = TwoViewDataset(dataset, T.ToTensor(), T.Compose([T.Resize((4, 4)), T.ToTensor()]))
    with pytest.raises(ValueError, match="same height and width"):
        next(iter(TwoViewLoader(views, batch_size=2, seed=0)))
    with pytest.raises(ValueError, match="mutually exclusive"):
        TwoViewLoader(views, sampler=[0, 1], shuffle=True)
    af.manual_seed(0)
    assert TwoViewLoader(views).seed != TwoViewLoader(views).seed  # a fresh global seed each


def test_shared_randomness_draws_the_same_leading_parameters(dataset):
    jitter = T.ColorJitter(0.5, 0.5, 0.5, 0.5)
    views = TwoViewDataset(dataset, T.Compose([jitter, T.RandomHorizontalFlip(p=1.0), T.ToTensor()]),
                           T.Compose([jitter, T.ToTensor()]))
    shared = next(iter(TwoViewLoader(views, batch_size=10, seed=4, shared_randomness=True)))[0].numpy()
    # the same colour jitter in both views; the emotion view is then flipped
    np.testing.assert_array_equal(shared[:, :3], shared[:, 3:, :, ::-1])
    separate = next(iter(TwoViewLoader(views, batch_size=10, seed=4)))[0].numpy()
    np.testing.assert_array_equal(separate[:, :3], shared[:, :3])
    assert not np.array_equal(separate[:, :3], separate[:, 3:, :, ::-1])
