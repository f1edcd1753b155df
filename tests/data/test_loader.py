import gc
import os

import numpy as np
import pytest

import affectfer as af
from affectfer.data import (ArrayDataset, ClassBalancedOversampler, CSVDataset, ImageFolder, Loader, RandomSampler,
                            WeightedRandomSampler, read_image)

from ..images import write_png


def threads():
    return len(os.listdir("/proc/self/task"))


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


@pytest.fixture
def arrays(rng):
    imgs = rng.integers(0, 256, (23, 6, 5, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 23)
    targets = rng.standard_normal((23, 2)).astype(np.float32)
    return imgs, labels, targets


def collect(loader):
    return [tuple(np.asarray(t).copy() for t in b) for b in loader]


def test_batches_follow_the_sampler(arrays):
    imgs, labels, targets = arrays
    ds = ArrayDataset(imgs, labels, targets)
    sampler = RandomSampler(23, seed=5)
    loader = Loader(ds, batch_size=5, sampler=sampler, workers=3)
    assert len(loader) == 5
    loader.set_epoch(2)
    batches = collect(loader)
    order = sampler.indices(2)
    assert [len(b[0]) for b in batches] == [5, 5, 5, 5, 3]
    x = np.concatenate([b[0] for b in batches])
    assert x.dtype == np.float32 and x.shape == (23, 3, 6, 5)
    assert np.array_equal(x, imgs[order].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))
    assert np.array_equal(np.concatenate([b[1] for b in batches]), labels[order])
    assert np.array_equal(np.concatenate([b[2] for b in batches]), targets[order])
    assert batches[0][1].dtype == np.int64


def test_recycled_batch_buffers_never_overwrite_a_held_batch(arrays):
    """Image buffers are reused (csrc/data/queue.c), within an epoch and from one epoch to the next, only
    once the consumer lets a batch go: batches kept as NumPy views, uncopied, past later batches, later
    epochs and the loader itself keep their values, while the batches dropped at once make room for reuse."""
    imgs, labels, _ = arrays
    ds = ArrayDataset(imgs, labels)
    expected = imgs.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    for workers in (1, 3):
        loader = Loader(ds, batch_size=2, workers=workers, prefetch=1)
        kept = {}
        for epoch in range(3):
            for k, (x, y) in enumerate(loader):
                if k % 3 == epoch:
                    kept[epoch, k] = np.asarray(x)  # a view of the batch buffer
        del loader, x, y
        gc.collect()
        assert len(kept) == 12
        for (epoch, k), x in kept.items():
            np.testing.assert_array_equal(x, expected[2 * k:2 * k + 2], err_msg=f"epoch {epoch}, batch {k}, {workers} workers")


def test_loader_run_buffers_argument(arrays):
    imgs, labels, _ = arrays
    with pytest.raises(TypeError, match="'buffers' must be None or affectfer._C.batch_buffers\\(\\), got int"):
        af._C.LoaderRun(None, imgs, labels, None, np.arange(4), None, None, None, 2, False, 1, 1, 0, 0, buffers=3)


def test_iterations_advance_the_epoch_and_drop_last(arrays):
    imgs, labels, _ = arrays
    loader = Loader(ArrayDataset(imgs, labels), batch_size=4, shuffle=True, seed=1, drop_last=True, workers=2)
    assert len(loader) == 5
    e0, e1 = collect(loader), collect(loader)
    assert len(e0) == 5 and all(len(b[0]) == 4 for b in e0)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(e0, e1))
    loader.set_epoch(0)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(e0, collect(loader)))
    with pytest.raises(ValueError, match="mutually exclusive"):
        Loader(ArrayDataset(imgs, labels), 2, sampler=RandomSampler(23), shuffle=True)


def test_gray_images_and_weighted_sampler(rng):
    imgs = rng.integers(0, 256, (6, 3, 4), dtype=np.uint8)
    sampler = WeightedRandomSampler([0, 1, 0, 0, 0, 0], num_samples=4)
    (x, y), = collect(Loader(ArrayDataset(imgs, [0, 1, 0, 1, 0, 1]), 4, sampler=sampler, workers=1))
    assert x.shape == (4, 1, 3, 4) and y.tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_no_leaked_threads_after_early_stop_and_delete(arrays, workers):
    imgs, labels, _ = arrays
    before = threads()
    loader = Loader(ArrayDataset(imgs, labels), batch_size=2, workers=workers, prefetch=1)
    for i, _ in enumerate(loader):
        if i == 1:
            break  # early stop: the iterator is dropped, its threads joined
    it = iter(loader)
    next(it)
    loader.close()  # closing the loader stops its running iterations
    with pytest.raises(StopIteration):
        next(it)
    it = iter(loader)
    next(it)
    del loader, it  # deleting the loader and its iterator joins the threads
    gc.collect()
    assert threads() == before


def test_100_start_stop_cycles_leak_nothing(arrays):
    imgs, labels, _ = arrays
    ds = ArrayDataset(np.repeat(imgs, 4, axis=1), labels)  # 24 x 5 images: a few KB per batch
    loader = Loader(ds, batch_size=4, workers=2)
    for _ in range(5):  # warm up the allocator
        next(iter(loader))
    gc.collect()
    t0, m0 = threads(), rss_kb()
    for k in range(100):
        it = iter(loader)
        next(it)
        if k % 2:
            it.close()
        del it
    gc.collect()
    assert threads() == t0
    assert rss_kb() - m0 < 8 * 1024  # KB: roughly stable


def test_worker_error_names_the_file(tmp_path, rng):
    write_png(str(tmp_path / "ok.png"), rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    (tmp_path / "list.csv").write_text("ok.png,0\nok.png,1\nmissing.png,0\nok.png,1\n")
    ds = CSVDataset(str(tmp_path / "list.csv"), check_files=False)
    before = threads()
    with pytest.raises(OSError, match="missing.png"):
        for _ in Loader(ds, batch_size=1, workers=2):
            pass
    gc.collect()
    assert threads() == before
    # batches before the failing sample arrive first, whatever the worker count and timing
    (tmp_path / "list.csv").write_text("ok.png,0\n" * 5 + "missing.png,0\n" + "ok.png,0\n" * 6)
    for workers in (1, 2, 8):
        got = []
        with pytest.raises(OSError, match="missing.png"):
            for x, y in Loader(CSVDataset(str(tmp_path / "list.csv"), check_files=False), batch_size=2, workers=workers,
                               prefetch=4):
                got.append(len(y))
        assert got == [2, 2], workers
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "list.csv").write_text("ok.png,0\nbad.png,0\n")
    with pytest.raises(Exception, match="bad.png"):
        collect(Loader(CSVDataset(str(tmp_path / "list.csv")), batch_size=2, workers=1))


def test_bad_arguments(arrays):
    imgs, labels, _ = arrays
    ds = ArrayDataset(imgs, labels)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(ds, 0)
    with pytest.raises(ValueError, match="workers"):
        Loader(ds, 2, workers=0)
    with pytest.raises(TypeError, match="transform"):
        Loader(ds, 2, transform=lambda x: x)
    with pytest.raises(TypeError, match="dataset"):
        Loader([1, 2, 3], 2)
    with pytest.raises(IndexError, match="index 99"):
        next(iter(Loader(ds, 2, sampler=[0, 99])))


def image_files(tmp_path, rng, n=13):
    """n small RGB and gray PNG files of varied sizes under tmp_path/<class>/ and an ImageFolder over them."""
    for i in range(n):
        h, w = 20 + 3 * (i % 4), 24 + 5 * (i % 3)
        img = rng.integers(0, 256, (h, w, 3) if i % 2 else (h, w), dtype=np.uint8)
        folder = tmp_path / f"c{i % 3}"
        folder.mkdir(exist_ok=True)
        write_png(str(folder / f"{i:03d}.png"), img)
    return ImageFolder(str(tmp_path))


def random_transform():
    from affectfer import transforms as T
    return T.Compose([T.RandAugment(num_ops=2, magnitude=9), T.RandomResizedCrop(16, scale=(0.3, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), T.RandomErasing(p=0.5, value="random")])


def test_decoded_files_match_read_image(tmp_path, rng):
    ds = image_files(tmp_path, rng, n=4)
    from affectfer import transforms as T
    loader = Loader(ds, batch_size=4, transform=T.Compose([T.CenterCrop(18), T.ToTensor()]), workers=2)
    (x, y), = collect(loader)
    for k, path in enumerate(ds.paths):
        img = read_image(path)
        top, left = int(round((img.shape[0] - 18) / 2)), int(round((img.shape[1] - 18) / 2))  # torchvision
        ref = img[top:top + 18, left:left + 18].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        assert np.array_equal(x[k], ref), path
    assert y.tolist() == ds.labels.tolist()
    image, label = ds[0]
    assert image.dtype == np.uint8 and image.ndim == 3 and label == 0


def test_bitwise_identical_for_1_2_8_workers(tmp_path, rng):
    ds = image_files(tmp_path, rng)
    runs = []
    for workers in (1, 2, 8):
        loader = Loader(ds, batch_size=4, transform=random_transform(), shuffle=True, seed=42, workers=workers)
        loader.set_epoch(3)
        runs.append(collect(loader))
    for other in runs[1:]:
        assert len(other) == len(runs[0]) == 4
        for a, b in zip(runs[0], other):
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # sample position i of epoch e uses stream (seed, e, i): another epoch or seed changes the pixels
    loader = Loader(ds, batch_size=4, transform=random_transform(), shuffle=True, seed=42, workers=2)
    loader.set_epoch(4)
    assert not np.array_equal(collect(loader)[0][0], runs[0][0][0])


def test_oversampled_copies_get_the_extra_augmentation(tmp_path, rng):
    from affectfer import transforms as T
    ds = image_files(tmp_path, rng, n=5)  # classes 0, 1, 2 with 2, 2, 1 images
    sampler = ClassBalancedOversampler(ds.labels, shuffle=False)
    base = T.Compose([T.CenterCrop(16), T.ToTensor()])
    plain = collect(Loader(ds, batch_size=6, sampler=sampler, transform=base, workers=2))[0][0]
    extra = collect(Loader(ds, batch_size=6, sampler=sampler, transform=base, workers=2,
                           augment_copies=T.RandomHorizontalFlip(p=1.0)))[0][0]
    idx, copy = sampler.pairs(0)
    assert copy.tolist() == [False] * 5 + [True]
    assert np.array_equal(plain[:5], extra[:5])  # originals untouched
    assert np.array_equal(extra[5], plain[5][:, :, ::-1])  # the copy flipped


def test_variable_sizes_without_fixed_size_transform_fail_clearly(tmp_path, rng):
    ds = image_files(tmp_path, rng, n=4)
    with pytest.raises(ValueError, match="fixed size"):
        collect(Loader(ds, batch_size=4, workers=2))


# ---- regressions: arguments, seeds, files the loader must refuse ----

def test_foreign_capsule_is_refused(arrays):
    """Only a capsule made by pipeline_build is a pipeline; any other capsule (here a DLPack one)
    used to be cast and run."""
    imgs, labels, _ = arrays
    ds = ArrayDataset(imgs, labels)
    foreign = af.tensor(np.zeros(3, dtype=np.float32)).__dlpack__()
    with pytest.raises(TypeError, match="'transform' must be an affectfer.transforms transform"):
        Loader(ds, 2, transform=foreign)
    with pytest.raises(TypeError, match="'augment_copies' must be"):
        Loader(ds, 2, augment_copies=foreign)
    with pytest.raises(TypeError, match="'transform' must be"):
        Loader(ds, 2, transform=lambda x: x)
    order = np.arange(len(labels), dtype=np.int64)
    with pytest.raises(TypeError, match="'transform' must be"):
        af._C.LoaderRun(None, imgs, labels, None, order, None, foreign, None, 2, False, 1, 2, 0, 0)
    from affectfer import transforms as T
    compiled = T.Compose([T.ToTensor()]).compile()
    assert len(collect(Loader(ds, 23, transform=compiled))) == 1


def test_default_seed_follows_manual_seed(arrays):
    imgs, labels, _ = arrays
    ds = ArrayDataset(np.repeat(np.repeat(imgs, 4, axis=1), 4, axis=2), labels)

    def run(s):
        af.manual_seed(s)
        return np.concatenate([b[0] for b in collect(Loader(ds, 8, transform=random_transform(), shuffle=True))])
    a, b, c = run(5), run(5), run(6)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    af.manual_seed(5)
    first, second = Loader(ds, 8, shuffle=True), Loader(ds, 8, shuffle=True)
    assert first.seed != second.seed  # each Loader reserves its own stream
    assert Loader(ds, 8, seed=3).seed == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(prefetch=1 << 31), "'prefetch' must be at most 1024, got 2147483648"),
    (dict(prefetch=0), "'prefetch' must be an int >= 1, got 0"),
    (dict(max_pixels=0), "'max_pixels' must be an int >= 1, got 0"),
    (dict(workers=1 << 40), r"'workers' must be an int in \[1, 256\]"),
])
def test_huge_or_bad_ints_name_the_argument(arrays, kwargs, message):
    imgs, labels, _ = arrays
    with pytest.raises(ValueError, match=message):
        Loader(ArrayDataset(imgs, labels), 2, **kwargs)


@pytest.mark.parametrize("index, name", [(8, "batch_size"), (10, "workers"), (11, "prefetch"), (13, "epoch"), (None, "max_pixels")])
def test_loader_run_names_overflowing_ints(arrays, index, name):
    imgs, labels, _ = arrays
    args = [None, imgs, labels, None, np.arange(len(labels), dtype=np.int64), None, None, None, 2, False, 1, 2, 0, 0]
    kwargs = {}
    if index is None:
        kwargs[name] = 1 << 70
    else:
        args[index] = 1 << 70
    with pytest.raises(ValueError, match=f"'{name}' must be in .*got {1 << 70}"):
        af._C.LoaderRun(*args, **kwargs)


def test_empty_images_are_refused(arrays):
    _, labels, _ = arrays
    for shape in [(23, 0, 5, 3), (23, 6, 0, 3)]:
        with pytest.raises(ValueError, match="must not be empty"):
            ArrayDataset(np.zeros(shape, np.uint8), labels)

    class Raw:  # a duck-typed dataset that skips ArrayDataset's checks
        images, labels = np.zeros((23, 0, 5, 3), np.uint8), np.zeros(23, np.int64)
    from affectfer import transforms as T
    with pytest.raises(ValueError, match=r"1 <= H, W"):
        next(iter(Loader(Raw(), 2, transform=T.Compose([T.Resize(5), T.ToTensor()]))))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_among_the_files_fails_fast(tmp_path, rng):
    import threading
    ds = image_files(tmp_path, rng, n=4)
    fifo = tmp_path / "c0" / "zz_pipe.png"
    os.mkfifo(fifo)
    ds = ImageFolder(str(tmp_path))
    assert str(fifo) in ds.paths
    from affectfer import transforms as T
    out = {}

    def run():
        try:
            collect(Loader(ds, 2, transform=T.Compose([T.Resize((8, 8)), T.ToTensor()]), workers=2))
        except OSError as e:
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "the loader blocked on a FIFO"
    assert "zz_pipe.png" in str(out["error"]) and "not a regular file" in str(out["error"])
