"""Decoding straight to gray (csrc/image/decode.c af_image_decode_gray): when a transform starts with
Grayscale, the loader decodes 1-component files to their one channel and maps it through a table
instead of expanding to RGB and weighting. The batches must be exactly those of the slow path:
the same images decoded to RGB, held in memory (no decode in the loader), same transform and seed."""
import types

import numpy as np
import pytest

from affectfer import transforms as T
from affectfer.data import ArrayDataset, ClassBalancedOversampler, Loader
from affectfer.io import read_image

from ..images import JPEG_BASELINE, JPEG_GRAY, JPEG_PROGRESSIVE, png_bytes


@pytest.fixture
def files(tmp_path, rng):
    """Gray and colour files of 16x16: gray JPEG, colour JPEGs (baseline, progressive), gray, gray + alpha,
    16-bit gray and RGB PNGs. The gray PNG holds every value 0..255 once."""
    gray = rng.permutation(256).astype(np.uint8).reshape(16, 16)
    contents = {"gray.jpg": JPEG_GRAY, "colour.jpg": JPEG_BASELINE, "progressive.jpg": JPEG_PROGRESSIVE,
                "gray.png": png_bytes(gray),
                "gray_alpha.png": png_bytes(np.stack([gray.T, rng.integers(0, 256, (16, 16), dtype=np.uint8)], -1)),
                "gray16.png": png_bytes(gray[::-1], bit_depth=16),
                "rgb.png": png_bytes(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))}
    paths = []
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    return paths


def both(paths, transform, **kw):
    """(fast, slow) batches: the loader reading the files, and the same images decoded to RGB beforehand."""
    labels = np.arange(len(paths)) % 3
    fast = Loader(types.SimpleNamespace(paths=paths, labels=labels), transform=transform, **kw)
    slow = Loader(ArrayDataset(np.stack([read_image(p) for p in paths]), labels), transform=transform, **kw)
    return ([np.asarray(b[0]).copy() for b in loader] for loader in (fast, slow))


@pytest.mark.parametrize("gray", [T.Grayscale(1), T.Grayscale(num_output_channels=3), T.RandomGrayscale(p=1.0),
                                  T.RandomGrayscale(p=0.5)], ids=["1", "3", "random_p1", "random_p05"])
def test_gray_decode_batches_equal_rgb_then_grayscale(files, gray):
    transform = T.Compose([gray, T.RandomResizedCrop(12), T.RandAugment(2, 9), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.5,), (0.25,))])
    fast, slow = both(files, transform, batch_size=3, shuffle=True, seed=7, workers=2)
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow):
        assert a.shape == b.shape and np.array_equal(a, b)


def test_gray_decode_matches_with_oversampled_copies(files):
    """Copies run augment_copies on the RGB image first, so they are decoded to RGB: same batches."""
    transform = T.Compose([T.Grayscale(3), T.Resize(10), T.ToTensor()])
    labels = np.arange(len(files)) % 3
    sampler = ClassBalancedOversampler(labels, shuffle=False)
    fast, slow = both(files, transform, batch_size=4, sampler=sampler, seed=3, workers=1,
                      augment_copies=T.ColorJitter(brightness=0.5, saturation=0.5))
    for a, b in zip(fast, slow):
        assert np.array_equal(a, b)


def test_gray_of_gray_is_not_the_identity(files):
    """The table the fast path applies is torchvision's truncated weighting of (v, v, v): for most v it
    gives v - 1, so a fast path that skipped it (or used stb's own luma) would fail the tests above."""
    path = files[3]  # gray.png: every value once
    loader = Loader(types.SimpleNamespace(paths=[path], labels=np.zeros(1, np.int64)),
                    transform=T.Compose([T.Grayscale(), T.ToTensor()]), workers=1)
    (x, _), = [(np.asarray(b[0]).copy(), None) for b in loader]
    v = read_image(path)[:, :, 0].astype(np.float32)
    out = np.rint(x[0, 0] * 255)  # batch row 0, channel 0.astype(np.int64)
    ref = np.floor(np.float32(0.2989) * v + np.float32(0.587) * v + np.float32(0.114) * v).astype(np.int64)
    assert np.array_equal(out, ref)
    assert (out != v).sum() > 200
