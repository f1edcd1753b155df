"""Conformance with torchvision's tensor path (skipped without torchvision): the same parameters
on random images must give the same pixels (exact for geometric copies, within 1 for interpolating
and photometric ops, with the fraction of off-by-one pixels reported where it is not 0)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
TF = pytest.importorskip("torchvision.transforms.functional")

import affectfer.transforms.functional as F  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: thread start-up would dominate
    yield
    torch.set_num_threads(n)


def chw(img):
    return torch.from_numpy(np.ascontiguousarray(np.transpose(img, (2, 0, 1))))


def hwc(t):
    return np.transpose(t.numpy(), (1, 2, 0))


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("src,dst", [((50, 70), (20, 30)), ((13, 17), (40, 9)), ((224, 224), (112, 112)),
                                     ((31, 33), (30, 34)), ((100, 100), (37, 61)), ((5, 3), (1, 1))])
def test_resize(rng, src, dst, antialias):
    img = rng.integers(0, 256, src + (3,), dtype=np.uint8)
    ours = F.resize(img, dst, antialias=antialias).astype(int)
    ref = hwc(TF.resize(chw(img), list(dst), antialias=antialias)).astype(int)
    diff = np.abs(ours - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.005  # float32 sums in a different order flip a few .5 ties


@pytest.mark.parametrize("size", [(3, 3), (4, 6), (7, 11), (9, 12), (10, 4)])
def test_center_crop(rng, size):
    img = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(F.center_crop(img, size), hwc(TF.center_crop(chw(img), list(size))))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad(rng, mode):
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    ref = hwc(TF.pad(chw(img), [2, 1, 3, 4], fill=0, padding_mode=mode))
    np.testing.assert_array_equal(F.pad(img, (2, 1, 3, 4), padding_mode=mode), ref)


def test_crop_out_of_bounds(rng):
    img = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(F.crop(img, -2, -1, 6, 14), hwc(TF.crop(chw(img), -2, -1, 6, 14)))


def test_to_tensor_normalize(rng):
    img = rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ref = TF.normalize(TF.to_tensor(img), mean, std).numpy()
    np.testing.assert_array_equal(F.normalize_image(img, mean, std), ref)


PHOTOMETRIC = {
    "adjust_brightness": [0.0, 0.5, 0.73, 1.0, 1.27, 1.9],
    "adjust_saturation": [0.0, 0.73, 1.27, 2.5],
    "adjust_contrast": [0.0, 0.1, 0.73, 1.27, 3.0],
    "adjust_sharpness": [0.0, 0.73, 1.27, 2.0],
    "adjust_hue": [-0.5, -0.25, -0.1, 0.0, 0.1, 1 / 3, 0.5],
    "posterize": [0, 1, 4, 7, 8],
    "solarize": [0.0, 100.0, 178.5, 255.0],
}


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (7, 5), (31, 29)])
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("op", sorted(PHOTOMETRIC) + ["autocontrast", "equalize", "invert", "rgb_to_grayscale"])
def test_photometric_exact(rng, op, shape, C):
    img = rng.integers(0, 256, shape + (C,), dtype=np.uint8)
    if op == "equalize":
        img[: max(1, shape[0] // 2)] //= 3  # a skewed histogram
    ours_fn, ref_fn = getattr(F, op), getattr(TF, op)
    for arg in PHOTOMETRIC.get(op, [None]):
        if op == "rgb_to_grayscale" and C == 1:
            continue
        args = () if arg is None else (arg,)
        ours = ours_fn(img, *args)
        ref = hwc(ref_fn(chw(img), *args))
        np.testing.assert_array_equal(ours, ref, err_msg=f"{op}{args}")


GEOMETRIC = {
    "ShearX": dict(angle=0.0, translate=[0, 0], scale=1.0, center=[0, 0]),
    "ShearY": dict(angle=0.0, translate=[0, 0], scale=1.0, center=[0, 0]),
}


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5), (31, 29), (64, 64)])
@pytest.mark.parametrize("op", ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
                                "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"])
def test_randaugment_ops_every_magnitude(rng, op, shape):
    """Every op at every one of the 31 bins (bins 0, 9, 30 on the larger sizes), both signs, against
    torchvision's own _apply_op."""
    from torchvision.transforms import autoaugment
    img = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    t = chw(img)
    space = autoaugment.RandAugment()._augmentation_space(31, shape)
    table, signed = space[op]
    differing = 0
    for b in range(31) if shape[0] * shape[1] < 100 else (0, 9, 30):
        ref_m = float(table[b].item()) if table.ndim > 0 else 0.0
        m, is_signed = F.randaugment_magnitude(op, b, 31, shape)
        assert m == ref_m and is_signed == signed, (op, b)
        for sign in ((1.0, -1.0) if signed else (1.0,)):
            ref = hwc(autoaugment._apply_op(t, op, sign * m, interpolation=TF.InterpolationMode.NEAREST, fill=None))
            ours = F.randaugment_op(img, op, sign * m)
            differing += int((ours != ref).any(axis=2).sum())
    # nearest sampling picks the same source pixel everywhere (float32 grid replicated)
    assert differing == 0


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("params", [dict(angle=20.0, translate=(3, -2), scale=0.9, shear=(10.0, 5.0)),
                                    dict(angle=-33.0, translate=(0, 0), scale=1.2, shear=(0.0, 0.0), center=(3, 4)),
                                    dict(angle=90.0, translate=(1, 1), scale=1.0, shear=(-7.0, 0.0))])
@pytest.mark.parametrize("fill", [None, (10, 200, 30)])
def test_affine(rng, params, interpolation, fill):
    img = rng.integers(0, 256, (23, 17, 3), dtype=np.uint8)
    mode = TF.InterpolationMode.NEAREST if interpolation == "nearest" else TF.InterpolationMode.BILINEAR
    ref = hwc(TF.affine(chw(img), params["angle"], list(params["translate"]), params["scale"], list(params["shear"]),
                        interpolation=mode, fill=None if fill is None else list(map(float, fill)),
                        center=list(params["center"]) if "center" in params else None)).astype(int)
    ours = F.affine(img, params["angle"], params["translate"], params["scale"], params["shear"], interpolation, fill,
                    params.get("center")).astype(int)
    if interpolation == "nearest":
        assert (ours != ref).any(axis=2).mean() < 2e-3
    else:
        assert np.abs(ours - ref).max() <= 1


@pytest.mark.parametrize("angle", [9.0, -9.0, 30.0, 45.0, 90.0, 180.0])
def test_rotate(rng, angle):
    img = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    ref = hwc(TF.rotate(chw(img), angle))
    assert (F.rotate(img, angle) != ref).any(axis=2).mean() < 2e-3


def test_color_jitter_ops_in_sequence(rng):
    """Our pipeline's ColorJitter with a degenerate range equals torchvision's op chain."""
    import affectfer.transforms as T
    img = rng.integers(0, 256, (15, 13, 3), dtype=np.uint8)
    # single-point ranges make the factors deterministic; only the order is random
    out = T.ColorJitter(brightness=(1.3, 1.3))(img, seed=0, stream=0)
    np.testing.assert_array_equal(out, hwc(TF.adjust_brightness(chw(img), float(np.float32(1.3)))))
    out = T.ColorJitter(hue=(0.2, 0.2))(img, seed=0, stream=0)
    np.testing.assert_array_equal(out, hwc(TF.adjust_hue(chw(img), float(np.float32(0.2)))))
