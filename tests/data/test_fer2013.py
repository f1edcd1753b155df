"""Real faces: a FER2013 validation subset from ../shared/data (research use only; extracted at run
time into the test's temp folder, never into the repository). Skips when the archive is absent."""
import collections
import os
import tarfile

import numpy as np
import pytest

import affectfer as af
from affectfer import io, transforms as T
from affectfer.data import ImageFolder, Loader

from tests.conftest import SHARED_DATA

ARCHIVE = os.path.join(SHARED_DATA or "", "fer2013-train-val.tar.gz")
PER_CLASS = 24
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.fixture(scope="module")
def fer_val(tmp_path_factory):
    if not os.path.exists(ARCHIVE):
        pytest.skip("FER2013 archive not in ../shared/data")
    root = tmp_path_factory.mktemp("fer2013")
    taken = collections.Counter()
    with tarfile.open(ARCHIVE) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] != "val" or taken[parts[-2]] >= PER_CLASS:
                continue
            taken[parts[-2]] += 1
            folder = root / parts[-2]
            folder.mkdir(exist_ok=True)
            (folder / parts[-1]).write_bytes(tar.extractfile(member).read())
    return root


def test_decodes_every_face_like_libjpeg(fer_val):
    files = sorted(fer_val.rglob("*.jpg"))
    assert len(files) == PER_CLASS * len(CLASSES)
    Image = pytest.importorskip("PIL.Image")
    worst, total = 0, 0.0
    for f in files:
        ours = io.read_image(str(f))
        assert ours.shape == (48, 48, 3) and ours.dtype == np.uint8
        assert (ours[..., 0] == ours[..., 1]).all() and (ours[..., 1] == ours[..., 2]).all()  # gray -> RGB
        ref = np.asarray(Image.open(f).convert("L"), dtype=np.int16)
        diff = np.abs(ours[..., 0].astype(np.int16) - ref)
        worst, total = max(worst, int(diff.max())), total + float(diff.mean())
    # stb_image and libjpeg use different (both standard-conforming) IDCTs: a few levels at most
    assert worst <= 4 and total / len(files) < 0.5, (worst, total / len(files))


def test_image_folder_classes_and_deterministic_augmented_batches(fer_val):
    ds = ImageFolder(str(fer_val))
    assert ds.classes == CLASSES and len(ds.labels) == PER_CLASS * len(CLASSES)
    mean, std = T.compute_mean_std(str(p) for p in ds.paths)
    assert 0.3 < mean[0] < 0.7 and mean[0] == mean[1] == mean[2] and 0.1 < std[0] < 0.4
    tf = T.Compose([T.RandomHorizontalFlip(), T.RandAugment(2, 9, exclude=("Solarize", "Equalize")), T.ToTensor(),
                    T.Normalize(mean, std)])
    batches = {}
    for workers in (1, 2):
        loader = Loader(ds, batch_size=32, transform=tf, workers=workers, seed=7, shuffle=True)
        batches[workers] = [(x.numpy().copy(), y.numpy().copy()) for x, y in loader]
    assert len(batches[1]) == len(batches[2]) == (len(ds.labels) + 31) // 32
    for (x1, y1), (x2, y2) in zip(batches[1], batches[2]):
        assert x1.shape[1:] == (3, 48, 48) and np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert sorted(np.concatenate([y for _, y in batches[1]]).tolist()) == sorted(ds.labels.tolist())


def test_sobel_edges_on_real_faces_match_numpy(fer_val):
    img = io.read_image(str(sorted(fer_val.rglob("*.jpg"))[0]))
    edges = T.functional.sobel(img)
    g = img[..., 0].astype(np.float64)  # gray input: OpenCV's gray of (v, v, v) is v
    p = np.pad(g, 1, mode="reflect")  # reflect-101, OpenCV's default border
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    ref = np.clip(np.sqrt(gx ** 2 + gy ** 2), 0, 255)
    assert np.abs(np.asarray(edges).reshape(48, 48).astype(np.float64) - ref).max() <= 1.0
