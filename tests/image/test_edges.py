"""Sobel edge maps (csrc/image/edges.c) against the spec's OpenCV conventions (section 4)."""
import numpy as np
import pytest

import affectfer.transforms as T
import affectfer.transforms.functional as F


def gray_cv(img):
    r, g, b = (img[..., k].astype(np.int64) for k in range(3))
    return ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.int64)


def reflect101(a):
    return np.pad(a, 1, mode="reflect")  # NumPy's "reflect" is OpenCV's BORDER_REFLECT_101


def sobel_ref(gray):
    p = reflect101(gray)
    H, W = gray.shape
    win = lambda di, dj: p[1 + di:1 + di + H, 1 + dj:1 + dj + W]  # noqa: E731
    gx = (win(-1, 1) - win(-1, -1)) + 2 * (win(0, 1) - win(0, -1)) + (win(1, 1) - win(1, -1))
    gy = (win(1, -1) + 2 * win(1, 0) + win(1, 1)) - (win(-1, -1) + 2 * win(-1, 0) + win(-1, 1))
    return gx, gy


def sat(v):
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def test_spec_vector():
    g = np.tile(np.array([0, 0, 100, 100, 100], np.uint8), (4, 1))[..., None]
    np.testing.assert_array_equal(F.sobel(g)[..., 0], np.tile([0, 255, 255, 0, 0], (4, 1)))  # 400 saturates
    np.testing.assert_array_equal(F.sobel(g, magnitude="half_abs")[..., 0], np.tile([0, 128, 128, 0, 0], (4, 1)))
    assert tuple(F.sobel(np.array([[[10, 200, 30]]], np.uint8), out_channels=3).shape) == (1, 1, 3)


@pytest.mark.parametrize("magnitude", ["l2", "l1", "half_abs"])
@pytest.mark.parametrize("shape", [(1, 1), (2, 5), (9, 7)])
def test_formula(rng, magnitude, shape):
    img = rng.integers(0, 256, shape + (3,), dtype=np.uint8) // 8  # small values: magnitudes mostly unsaturated
    gx, gy = sobel_ref(gray_cv(img))
    ref = {"l2": sat(np.sqrt(gx ** 2 + gy ** 2)), "l1": sat(np.abs(gx) + np.abs(gy)),
           "half_abs": sat(0.5 * sat(np.abs(gx)) + 0.5 * sat(np.abs(gy)))}[magnitude]
    np.testing.assert_array_equal(F.sobel(img, magnitude)[..., 0], ref)


def test_blur_and_pipeline(rng):
    img = rng.integers(0, 256, (11, 9, 3), dtype=np.uint8)
    g = gray_cv(img)
    p = reflect101(g)
    k = np.array([1, 2, 1])
    blurred = sum(k[di] * k[dj] * p[di:di + 11, dj:dj + 9] for di in range(3) for dj in range(3))
    blurred = (blurred + 8) >> 4
    gx, gy = sobel_ref(blurred)
    np.testing.assert_array_equal(F.sobel(img, blur=True)[..., 0], sat(np.sqrt(gx ** 2 + gy ** 2)))
    tf = T.Compose([T.SobelEdges(out_channels=3), T.ToTensor()])
    x = tf(img, seed=0, stream=0)
    assert x.shape == (3, 11, 9) and tf.output_shape(11, 9) == (3, 11, 9)
    assert T.Compose([T.SobelEdges(), T.ToTensor()]).output_shape(11, 9) == (1, 11, 9)
    with pytest.raises(ValueError, match="magnitude"):
        T.SobelEdges("l3")
