"""Pipelines (csrc/image/pipeline.c) built from affectfer.transforms: determinism, shapes,
ToTensor/Normalize, RandomErasing, argument errors, and the mean/std helper."""
import numpy as np
import pytest

import affectfer.transforms as T
import affectfer.transforms.functional as F
from affectfer import _C

from ..images import png_bytes


@pytest.fixture
def img(rng):
    return rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)


def test_to_tensor_normalize_exact(img):
    x = T.Compose([T.ToTensor()])(img, seed=0, stream=0)
    ref = np.transpose(img, (2, 0, 1)).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(x, ref)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    y = T.Compose([T.ToTensor(), T.Normalize(mean, std)])(img, seed=0, stream=0)
    ref_n = (ref - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None]
    np.testing.assert_array_equal(y, ref_n)
    np.testing.assert_array_equal(F.normalize_image(img, mean, std), ref_n)
    np.testing.assert_array_equal(F.normalize(F.to_tensor(img), mean, std), ref_n)


def test_to_tensor_normalize_gray_every_level():
    # the fused conversion is a 256-entry table per channel: every uint8 level must give the two-step
    # float32 result, on a 1-channel image as on RGB
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    y = T.Compose([T.Grayscale(1), T.ToTensor(), T.Normalize((0.5,), (0.25,))])(img, seed=0, stream=0)
    ref = (img.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.25)
    np.testing.assert_array_equal(y, ref)
    y3 = T.Compose([T.ToTensor(), T.Normalize(0.5, 0.25)])(np.repeat(img, 3, axis=2), seed=0, stream=0)
    np.testing.assert_array_equal(y3, np.repeat(ref, 3, axis=0))


def test_same_stream_same_result_and_streams_differ(img):
    tf = T.Compose([T.RandomResizedCrop(16), T.RandomHorizontalFlip(), T.ToTensor(), T.RandomErasing(p=1.0)])
    a, b = tf(img, seed=3, stream=9), tf(img, seed=3, stream=9)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 16, 16) and a.dtype == np.float32
    assert not np.array_equal(a, tf(img, seed=3, stream=10))
    assert not np.array_equal(a, tf(img, seed=4, stream=9))


def test_output_shape(img):
    tf = T.Compose([T.Resize(20), T.CenterCrop((18, 19)), T.ToTensor()])
    assert tf.output_shape(37, 45) == (3, 18, 19)
    assert T.Compose([T.Resize(20), T.ToTensor()]).output_shape(40, 80) == (3, 20, 40)
    with pytest.raises(ValueError, match="ToTensor"):
        T.Compose([T.Resize(20)]).output_shape(40, 80)


def test_global_stream_used_without_seed(img):
    import affectfer as af
    tf = T.Compose([T.RandomResizedCrop(8)])
    af.manual_seed(5)
    a = tf(img)
    af.manual_seed(5)
    np.testing.assert_array_equal(a, tf(img))


def test_grayscale_input_runs(rng):
    g = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    tf = T.Compose([T.Resize((10, 10)), T.ToTensor()])
    out = tf(g, seed=0, stream=0)
    assert out.shape == tf.output_shape(20, 30) == (3, 10, 10)  # widened to RGB like a decoded gray file
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], F.to_tensor(F.resize(g, (10, 10)))[0])
    assert T.Compose([T.Grayscale(1), T.ToTensor()])(g, seed=0, stream=0).shape == (1, 20, 30)
    assert T.Compose([T.Resize((10, 10))])(g, seed=0, stream=0).shape == (10, 10, 1)  # uint8 output keeps 1


def test_random_erasing_float_and_uint8(img):
    x = T.Compose([T.ToTensor(), T.RandomErasing(p=1.0, value=(0.1, 0.2, 0.3))])(img, seed=1, stream=1)
    base = F.to_tensor(img)
    changed = (x != base).any(axis=0)
    ii, jj = np.nonzero(changed)
    top, left, h, w = ii.min(), jj.min(), ii.max() - ii.min() + 1, jj.max() - jj.min() + 1
    np.testing.assert_array_equal(x[:, top:top + h, left:left + w],
                                  np.broadcast_to(np.float32([0.1, 0.2, 0.3])[:, None, None], (3, h, w)))
    u = T.RandomErasing(p=1.0, value=7)(img, seed=1, stream=1)
    assert u.dtype == np.uint8 and (u == 7).all(axis=2).sum() >= changed.sum() * 0.9
    r = T.Compose([T.ToTensor(), T.RandomErasing(p=1.0, value="random")])(img, seed=2, stream=1)
    noise = r[(r != base)]
    assert noise.size > 50 and abs(noise.mean()) < 0.5 and 0.6 < noise.std() < 1.4
    np.testing.assert_array_equal(T.Compose([T.ToTensor(), T.RandomErasing(p=0.0)])(img, seed=1, stream=1), base)


def test_erasing_box_distribution():
    H, W, n = 60, 80, 4000
    boxes = [_C.erasing_params(H, W, (0.02, 0.33), (0.3, 3.3), 11, s) for s in range(n)]
    kept = [b for b in boxes if b is not None]
    assert len(kept) > 0.9 * n
    area, logr = [], []
    for top, left, h, w in kept:
        assert 0 <= top and top + h <= H and 0 <= left and left + w <= W and h < H and w < W
        area.append(h * w / (H * W))
        logr.append(np.log(h / w) if w and h else 0.0)
    area, logr = np.array(area), np.array(logr)
    # reference: the spec's sampler with NumPy uniforms
    g = np.random.default_rng(0)
    ref_a, ref_r = [], []
    while len(ref_a) < 20000:
        for _ in range(10):
            a = H * W * g.uniform(0.02, 0.33)
            r = np.exp(g.uniform(np.log(0.3), np.log(3.3)))
            h, w = round(np.sqrt(a * r)), round(np.sqrt(a / r))
            if h < H and w < W:
                ref_a.append(h * w / (H * W))
                ref_r.append(np.log(h / w) if w and h else 0.0)
                break
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(np.quantile(area, q) - np.quantile(ref_a, q)) < 0.02
        assert abs(np.quantile(logr, q) - np.quantile(ref_r, q)) < 0.08
    assert _C.erasing_params(H, W, (0.99, 1.0), (1.0, 1.0), 0, 0) is None  # every attempt too big


def test_spec_errors():
    with pytest.raises(ValueError, match="Normalize: must come after ToTensor"):
        T.Compose([T.Normalize((0.5,), (0.5,))])
    with pytest.raises(ValueError, match="before ToTensor"):
        T.Compose([T.ToTensor(), T.Resize(4)])
    with pytest.raises(ValueError, match="std evaluated to zero"):
        T.Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="after ToTensor"):
        T.Compose([T.RandomErasing(value="random")])
    with pytest.raises(TypeError, match="not an affectfer transform"):
        T.Compose([lambda x: x])
    with pytest.raises(ValueError, match="unknown kind"):
        _C.pipeline_build(np.array([99.0, 0.0]))
    with pytest.raises(ValueError, match="parameters"):
        _C.pipeline_build(np.array([1.0, 2.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="NaN"):
        _C.pipeline_build(np.array([5.0, 1.0, np.nan]))
    with pytest.raises(TypeError, match="compiled pipeline"):
        _C.pipeline_run(object(), np.zeros((2, 2, 3), np.uint8), 0, 0)


def test_image_argument_errors():
    tf = T.Compose([T.ToTensor()])
    with pytest.raises(TypeError, match="uint8"):
        tf(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        tf(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="dims"):
        tf(np.zeros((4,), np.uint8))
    with pytest.raises(ValueError, match="unknown image op"):
        _C.image_op("nope", np.zeros((2, 2, 3), np.uint8), np.zeros(0))
    with pytest.raises(ValueError, match="size must be positive"):
        F.resize(np.zeros((2, 2, 3), np.uint8), (0, 3))


def test_compute_mean_std(tmp_path, rng):
    imgs = [rng.integers(0, 256, (5 + k, 7, 3), dtype=np.uint8) for k in range(3)]
    paths = []
    for k, im in enumerate(imgs):
        p = tmp_path / f"{k}.png"
        p.write_bytes(png_bytes(im))
        paths.append(p)
    allpx = np.concatenate([im.reshape(-1, 3) for im in imgs]).astype(np.float64) / 255
    mean, std = T.compute_mean_std(paths)
    np.testing.assert_allclose(mean, allpx.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, allpx.std(0), rtol=1e-9)
    mean2, std2 = T.compute_mean_std(imgs)
    np.testing.assert_allclose(mean2, mean, rtol=1e-12)
    with pytest.raises(ValueError, match="no images"):
        T.compute_mean_std([])


def test_random_affine_matches_functional_for_point_ranges(img):
    ra = T.RandomAffine(degrees=(12.0, 12.0), translate=None, scale=(0.9, 0.9), shear=(5.0, 5.0, -3.0, -3.0))
    f32 = np.float32
    ref = F.affine(img, float(f32(12.0)), (0, 0), float(f32(0.9)), (float(f32(5.0)), float(f32(-3.0))), fill=0)
    np.testing.assert_array_equal(ra(img, seed=0, stream=0), ref)


def test_random_affine_translation_range(img):
    H, W = img.shape[:2]
    tf = T.RandomAffine(0, translate=(0.2, 0.1))
    for s in range(30):
        out = tf(img, seed=4, stream=s)
        found = [(tx, ty) for tx in range(-9, 10) for ty in range(-4, 5)
                 if np.array_equal(out, F.affine(img, 0.0, (tx, ty), 1.0, 0.0, fill=0))]
        assert found  # an integer translation within round(0.2 W), round(0.1 H)


def test_random_apply(img):
    tf = T.RandomApply([T.RandomHorizontalFlip(1.0), T.ColorJitter(brightness=(2.0, 2.0))], p=0.3)
    applied = 0
    for s in range(400):
        out = tf(img, seed=8, stream=s)
        if not np.array_equal(out, img):
            np.testing.assert_array_equal(out, F.adjust_brightness(img[:, ::-1], float(np.float32(2.0))))
            applied += 1
    assert abs(applied / 400 - 0.3) < 0.07
    with pytest.raises(ValueError, match="size"):
        T.Compose([T.RandomApply([T.Resize(8)])])
    with pytest.raises(ValueError, match="size or type"):
        T.Compose([T.RandomApply([T.ToTensor()])])
    x = T.Compose([T.ToTensor(), T.RandomApply([T.RandomErasing(p=1.0)], p=0.0)])(img, seed=0, stream=0)
    np.testing.assert_array_equal(x, F.to_tensor(img))


def test_raw_spec_with_out_of_range_counts_is_refused():
    # A Normalize whose channel count is 1e300 must be a ValueError. (fuzz/fuzz_pipeline.c found that
    # this count was converted to int before its range check - undefined behaviour that an ordinary
    # build hides; the UBSan regression guard is the seed fuzz/seeds/pipeline/normalize-channel-count-1e300.)

    spec = [float(_C.image_stages["ToTensor"][0]), 0.0, float(_C.image_stages["Normalize"][0]), 3.0, 1e300, 0.5, 0.5]
    with pytest.raises(ValueError, match="Normalize: mean and std need 1 or 3 values"):
        _C.pipeline_build(np.asarray(spec, dtype=np.float64))


def test_empty_images_raise_instead_of_sigfpe():
    """Resize(int) divided by the shorter edge: an empty image crashed the interpreter (SIGFPE)."""
    empty = np.zeros((0, 5, 3), np.uint8)
    with pytest.raises(ValueError, match="'image' must have 1 to 65536 rows and columns, got 0 x 5"):
        T.Resize(5)(empty, seed=0, stream=0)
    with pytest.raises(ValueError, match="'img' must have 1 to 65536 rows and columns, got 5 x 0"):
        T.functional.hflip(np.zeros((5, 0, 3), np.uint8))
    tf = T.Compose([T.Resize(5), T.ToTensor()])
    with pytest.raises(ValueError, match=r"the image is empty \(0 x 5\)"):
        tf.output_shape(0, 5)
    assert tf.output_shape(10, 20) == (3, 5, 10)


def test_random_erasing_scale_bounds():
    """torchvision: scale must lie in [0, 1]; `not 0 <= lo and hi <= 1` let (0.1, 1.5) through."""
    with pytest.raises(ValueError, match=r"scale should be between 0 and 1, got \(0.1, 1.5\)"):
        T.RandomErasing(scale=(0.1, 1.5))
    with pytest.raises(ValueError, match="scale should be between 0 and 1"):
        T.RandomErasing(scale=(-0.1, 0.5))
    T.RandomErasing(scale=(0.0, 1.0))
