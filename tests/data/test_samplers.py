import numpy as np
import pytest

from affectfer import data


def test_sequential():
    s = data.SequentialSampler(7)
    assert s.indices(0).tolist() == list(range(7)) and len(s) == 7 and list(s) == list(range(7))
    assert data.SequentialSampler(0).indices(3).size == 0


@pytest.mark.parametrize("n", [1, 2, 17, 1000])
def test_shuffled_is_a_permutation_and_pure(n):
    s = data.RandomSampler(n, seed=3)
    a, b = s.indices(0), s.indices(1)
    assert sorted(a.tolist()) == list(range(n)) and sorted(b.tolist()) == list(range(n))
    assert np.array_equal(a, data.RandomSampler(n, seed=3).indices(0))  # pure function of (seed, epoch)
    if n >= 17:
        assert not np.array_equal(a, b)  # epochs differ
        assert not np.array_equal(a, data.RandomSampler(n, seed=4).indices(0))  # seeds differ
    s.set_epoch(1)
    assert list(s) == b.tolist()


def test_shuffle_is_uniform():
    # every position of a 4-element permutation is uniform over 0..3 across epochs
    counts = np.zeros((4, 4))
    for e in range(4000):
        p = data.RandomSampler(4, seed=1).indices(e)
        counts[np.arange(4), p] += 1
    assert np.all(np.abs(counts / 4000 - 0.25) < 0.03)


def test_weighted_frequencies():
    w = np.array([1.0, 0.0, 3.0, 6.0])
    s = data.WeightedRandomSampler(w, num_samples=40000, seed=5)
    idx = s.indices(0)
    freq = np.bincount(idx, minlength=4) / len(idx)
    assert freq[1] == 0
    assert np.allclose(freq, w / w.sum(), atol=0.01)
    assert np.array_equal(idx, s.indices(0)) and not np.array_equal(idx, s.indices(1))
    assert len(s) == 40000


def test_weighted_inverse_frequency_balances_classes():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = data.class_inverse_weights(labels)
    assert np.allclose(w[:90], 1 / 90) and np.allclose(w[99], 1.0)
    s = data.WeightedRandomSampler.from_labels(labels, num_samples=30000, seed=2)
    assert len(data.WeightedRandomSampler.from_labels(labels)) == 100
    freq = np.bincount(labels[s.indices(0)], minlength=3) / 30000
    assert np.allclose(freq, 1 / 3, atol=0.015)


@pytest.mark.parametrize("bad", [[], [1.0, -1.0], [0.0, 0.0], [1.0, np.nan]])
def test_weighted_rejects_bad_weights(bad):
    with pytest.raises(ValueError):
        data.WeightedRandomSampler(bad)


def test_weighted_c_rejects_bad_weights():
    from affectfer import _C
    with pytest.raises(ValueError, match="weights"):
        _C.sampler_weighted([1.0, float("inf")], 3, 0, 0)
    with pytest.raises(ValueError, match="num_samples"):
        _C.sampler_weighted([1.0], -1, 0, 0)


def test_class_weights_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        data.class_inverse_weights([0, 3], num_classes=2)


def test_oversampling_fills_every_class_to_the_largest():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2, 0, 2, 3])  # counts 6, 2, 2, 1
    s = data.ClassBalancedOversampler(labels, seed=7)
    idx, copy = s.pairs(0)
    assert len(s) == len(idx) == 24 == 6 * 4
    assert np.array_equal(np.bincount(labels[idx], minlength=4), [6, 6, 6, 6])
    # originals exactly once, unflagged; copies flagged, from their own class
    assert sorted(idx[~copy].tolist()) == list(range(len(labels)))
    assert copy.sum() == 24 - len(labels)
    assert not np.any(copy[labels[idx] == 0])
    # round-robin sources: class 1 (indices 5, 6) gets 4 copies, 2 of each; class 3 five copies of 10
    assert sorted(idx[copy & (labels[idx] == 1)].tolist()) == [5, 5, 6, 6]
    assert idx[copy & (labels[idx] == 3)].tolist() == [10] * 5
    i2, c2 = s.pairs(0)
    assert np.array_equal(idx, i2) and np.array_equal(copy, c2)
    assert not np.array_equal(idx, s.indices(1))


def test_oversampling_unshuffled_order():
    labels = np.array([1, 0, 0, 0, 1])
    idx, copy = data.ClassBalancedOversampler(labels, shuffle=False).pairs(3)
    assert idx.tolist() == [0, 1, 2, 3, 4, 0] and copy.tolist() == [False] * 5 + [True]


def test_oversampling_skips_absent_classes():
    s = data.ClassBalancedOversampler([0, 0, 2], num_classes=3)
    assert len(s) == 4


def test_bagging_subset():
    n = 1000
    s = data.BaggingSampler(n, fraction=0.2, model=3, seed=9)
    assert len(s) == 200 and s.subset.size == 200
    assert len(np.unique(s.subset)) == 200 and s.subset.min() >= 0 and s.subset.max() < n  # without replacement
    e0, e1 = s.indices(0), s.indices(1)
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == s.subset.tolist()  # same subset every epoch
    assert not np.array_equal(e0, e1)  # visited in a fresh order
    again = data.BaggingSampler(n, fraction=0.2, model=3, seed=9)
    assert np.array_equal(again.subset, s.subset) and np.array_equal(again.indices(0), e0)
    other = data.BaggingSampler(n, fraction=0.2, model=4, seed=9)
    assert not np.array_equal(other.subset, s.subset)
    assert data.BaggingSampler(n, 0.2, 3, 9, shuffle=False).indices(5).tolist() == s.subset.tolist()
    assert len(data.BaggingSampler(7, fraction=0.01)) == 1
    with pytest.raises(ValueError, match="fraction"):
        data.BaggingSampler(10, fraction=0.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        data.RandomSampler(-1)
    with pytest.raises(TypeError):
        data.SequentialSampler(2.5)
    with pytest.raises(ValueError):
        data.SequentialSampler(3).set_epoch(-1)
