"""Resize, crops, padding, flips (csrc/image/geometry.c) against independent NumPy references."""
import math

import numpy as np
import pytest

import affectfer.transforms as T
import affectfer.transforms.functional as F

SIZES = [(1, 1), (2, 3), (7, 5), (13, 17), (32, 24)]


def _taps_aa(n_in, n_out):
    """Antialiased bilinear weights (torchvision/PIL's triangle filter over the scaled support), float64: (n_out, n_in) matrix."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1 else 1.0
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        center = (d + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        for x in range(lo, hi):
            m[d, x] = max(0.0, 1.0 - abs((x - center + 0.5) * inv))
        m[d] /= m[d].sum()
    return m


def _taps_plain(n_in, n_out):
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        src = max(n_in / n_out * (d + 0.5) - 0.5, 0.0)
        x0 = int(src)
        lam = src - x0
        x1 = x0 + 1 if x0 < n_in - 1 else x0
        m[d, x0] += 1 - lam
        m[d, x1] += lam
    return m


def resize_ref(img, oh, ow, antialias):
    taps = _taps_aa if antialias else _taps_plain
    my, mx = taps(img.shape[0], oh), taps(img.shape[1], ow)
    out = np.einsum("yi,ixc->yxc", my, np.einsum("xj,ijc->ixc", mx, img.astype(np.float64)))
    return out  # real-valued; the C op rounds float32 results half to even


def _qtaps(n_in, n_out, antialias):
    """resize.c's fixed-point taps as an (n_out, n_in) int64 matrix: ATen's float32 tap positions and
    weights, normalised in float64 and rounded cumulatively to multiples of 2^-14 summing to 2^14."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    m = np.zeros((n_out, n_in), np.int64)
    for i in range(n_out):
        if antialias:
            support = scale if scale >= 1 else f32(1)
            inv = f32(1) / scale if scale >= 1 else f32(1)
            center = scale * (f32(i) + f32(0.5))
            lo, hi = max(int(center - support + f32(0.5)), 0), min(int(center + support + f32(0.5)), n_in)
            fw = [max(f32(1) - abs((f32(j) - center + f32(0.5)) * inv), f32(0)) for j in range(lo, hi)]
        else:
            s = max(scale * (f32(i) + f32(0.5)) - f32(0.5), f32(0))
            lo = int(s)
            lam = min(max(s - f32(lo), f32(0)), f32(1))
            fw = [f32(1) - lam] if lo >= n_in - 1 else [f32(1) - lam, lam]
        cum = np.cumsum(np.array(fw, np.float64))
        r = np.floor(cum / cum[-1] * 16384.0 + 0.5).astype(np.int64)
        r[-1] = 16384
        m[i, lo:lo + len(fw)] = np.diff(r, prepend=0)
    return m


def resize_fixed_ref(img, oh, ow, antialias):
    """The fixed-point resize in NumPy integers: horizontal pass to 7 fraction bits (half up), vertical
    pass rounded half to even."""
    mh, mv = _qtaps(img.shape[1], ow, antialias), _qtaps(img.shape[0], oh, antialias)
    rows = (np.einsum("xj,yjc->yxc", mh, img.astype(np.int64)) + 64) >> 7
    acc = np.einsum("yi,ixc->yxc", mv, rows)
    return ((acc + (1 << 20) - 1 + ((acc >> 21) & 1)) >> 21).astype(np.uint8)


RESIZE_CASES = [((13, 17), (5, 7)), ((7, 5), (20, 11)), ((32, 24), (32, 9)), ((1, 1), (3, 2)), ((9, 9), (9, 9)),
                ((40, 30), (17, 29)),
                # many source rows per output row and the reverse: the ring of horizontally resampled
                # rows wraps many times
                ((96, 11), (5, 4)), ((6, 50), (41, 3)),
                # large factors (hundreds of taps) and the sizes the benchmark uses
                ((300, 7), (2, 5)), ((5, 600), (3, 1)), ((256, 256), (224, 224)), ((48, 48), (112, 112))]


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("src,dst", RESIZE_CASES)
@pytest.mark.parametrize("C", [1, 3])
def test_resize_matches_formula(rng, src, dst, antialias, C):
    img = rng.integers(0, 256, src + (C,), dtype=np.uint8)
    out = F.resize(img, dst, antialias=antialias)
    assert out.shape == dst + (C,)
    # bit for bit the fixed-point model (every edge column, the vector and scalar paths alike) ...
    np.testing.assert_array_equal(out, resize_fixed_ref(img, *dst, antialias))
    # ... which stays within 0.5 + 0.04 of the exact result (float32 ATen: within 0.5 + 1e-3), see resize.c
    assert np.abs(out - resize_ref(img, *dst, antialias)).max() <= 0.5 + 0.04


def test_resize_fixed_point_error_is_small(rng):
    """The fixed-point error against the exact float64 result, pinned (resize.c states the bounds): the
    largest excess over the 0.5 of rounding stays below 0.015 level on random images at ordinary
    scales (at most 5 taps per axis) and below 0.04 with hundreds of taps."""
    worst = {False: 0.0, True: 0.0}
    for src, dst in RESIZE_CASES:
        img = rng.integers(0, 256, src + (3,), dtype=np.uint8)
        many = max(src[0] / dst[0], src[1] / dst[1]) > 2.5
        for aa in (True, False):
            err = np.abs(F.resize(img, dst, antialias=aa) - resize_ref(img, *dst, aa)).max() - 0.5
            worst[many and aa] = max(worst[many and aa], err)
    assert 0.0 < worst[False] < 0.015 and worst[True] < 0.04, worst


def test_resize_spec_vectors():
    row = np.array([[0, 100, 200, 255]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(F.resize(row, (1, 2), antialias=False)[0, :, 0], [50, 228])  # 227.5 -> 228 (even)
    np.testing.assert_array_equal(F.resize(row, (1, 2), antialias=True)[0, :, 0], [71, 209])
    row = np.array([[0, 10, 20, 30, 40, 50]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(F.resize(row, (1, 2), antialias=False)[0, :, 0], [10, 40])
    np.testing.assert_array_equal(F.resize(row, (1, 2), antialias=True)[0, :, 0], [12, 38])  # 12.5 -> 12, 37.5 -> 38
    up = np.array([[0, 100]], np.uint8)[:, :, None]
    np.testing.assert_array_equal(F.resize(up, (1, 4))[0, :, 0], [0, 25, 75, 100])


def test_resize_int_size_shorter_edge(rng):
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    assert F.resize(img, 20).shape == (20, 33, 3)  # int(20 * 50 / 30) = 33
    assert F.resize(img, 20, max_size=30).shape == (18, 30, 3)
    assert T.Resize(20)(img).shape == (20, 33, 3)
    assert T.Resize(20, max_size=30)(img).shape == (18, 30, 3)
    tall = rng.integers(0, 256, (50, 30, 3), dtype=np.uint8)
    assert T.Resize(20)(tall).shape == (33, 20, 3)
    np.testing.assert_array_equal(T.Resize(30)(img), img)  # already the size: returned unchanged


def _crop_ref(img, top, left, h, w):
    H, W, C = img.shape
    out = np.zeros((h, w, C), np.uint8)
    for i in range(h):
        for j in range(w):
            if 0 <= top + i < H and 0 <= left + j < W:
                out[i, j] = img[top + i, left + j]
    return out


@pytest.mark.parametrize("box", [(0, 0, 3, 4), (2, 3, 5, 2), (-2, -1, 6, 9), (5, 10, 4, 4), (0, 0, 0, 3)])
def test_crop_exact(rng, box):
    img = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(F.crop(img, *box), _crop_ref(img, *box))


@pytest.mark.parametrize("size", [(3, 3), (4, 6), (7, 11), (9, 12), (10, 4), (1, 1)])
def test_center_crop_exact(rng, size):
    img = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    H, W = 7, 11
    h, w = size
    pl, pt = max((w - W) // 2, 0), max((h - H) // 2, 0)
    pr, pb = max((w - W + 1) // 2, 0), max((h - H + 1) // 2, 0)
    top, left = round((H + pt + pb - h) / 2.0), round((W + pl + pr - w) / 2.0)
    np.testing.assert_array_equal(F.center_crop(img, size), _crop_ref(img, top - pt, left - pl, h, w))
    np.testing.assert_array_equal(T.CenterCrop(size)(img), F.center_crop(img, size))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
def test_pad_matches_numpy(rng, mode):
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = F.pad(img, (2, 1, 3, 4), fill=7, padding_mode=mode)
    kw = {"constant_values": 7} if mode == "constant" else {}
    ref = np.pad(img, ((1, 4), (2, 3), (0, 0)), mode=mode, **kw)
    np.testing.assert_array_equal(out, ref)


def test_flips_exact(rng):
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(F.hflip(img), img[:, ::-1])
    np.testing.assert_array_equal(F.vflip(img), img[::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(img), img[:, ::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(img), img)


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("W", [1, 5, 6, 11, 15, 16, 17, 33, 224, 4096, 4097])
def test_hflip_every_width(rng, W, C):
    """The row reverse by 16-byte shuffles (5 RGB or 16 gray pixels a block), the pixel-by-pixel tail
    and the in-place swap of rows too long for the stack buffer (4097 RGB pixels)."""
    img = rng.integers(0, 256, (3, W, C), dtype=np.uint8)
    np.testing.assert_array_equal(F.hflip(img), img[:, ::-1])


def test_random_flip_probability(rng):
    img = rng.integers(0, 256, (3, 4, 1), dtype=np.uint8)
    flips = sum(bool((T.RandomHorizontalFlip(0.3)(img, seed=5, stream=s) != img).any()) for s in range(2000))
    assert abs(flips / 2000 - 0.3) < 0.04


def test_random_crop_is_a_window(rng):
    img = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    tops = set()
    for s in range(200):
        out = T.RandomCrop((5, 6))(img, seed=1, stream=s)
        hits = [(i, j) for i in range(8) for j in range(10) if (img[i:i + 5, j:j + 6] == out).all()]
        assert hits
        tops.add(hits[0])
    assert len(tops) > 40  # many of the 80 positions reached


def test_random_crop_padding_and_pad_if_needed(rng):
    img = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    for s in range(50):
        out = T.RandomCrop(6, padding=2, padding_mode="reflect")(img, seed=2, stream=s)
        assert any((padded[i:i + 6, j:j + 6] == out).all() for i in range(5) for j in range(5))
    out = T.RandomCrop((10, 8), pad_if_needed=True, fill=(1, 2, 3))(img, seed=0, stream=0)
    assert out.shape == (10, 8, 3)
    with pytest.raises(ValueError, match="larger than the input"):
        T.RandomCrop(9)(img)


def test_random_resized_crop_params_distribution():
    from affectfer import _C
    areas, ratios = [], []
    for s in range(3000):
        top, left, h, w = _C.resized_crop_params(100, 120, (0.08, 1.0), (3 / 4, 4 / 3), 7, s)
        assert 0 <= top <= 100 - h and 0 <= left <= 120 - w and 0 < h <= 100 and 0 < w <= 120
        areas.append(h * w / 12000)
        ratios.append(w / h)
    areas, ratios = np.array(areas), np.array(ratios)
    assert 0.08 * 0.9 < areas.min() and areas.max() <= 1.0
    assert np.all((ratios > 0.7) & (ratios < 1.4))
    # torchvision RandomResizedCrop.get_params with NumPy's generator: quantiles must agree
    g = np.random.default_rng(0)
    ref_a, ref_r = [], []
    while len(ref_a) < 20000:
        for _ in range(10):
            a = 12000 * g.uniform(0.08, 1.0)
            r = math.exp(g.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(a * r)), round(math.sqrt(a / r))
            if 0 < w <= 120 and 0 < h <= 100:
                ref_a.append(h * w / 12000)
                ref_r.append(w / h)
                break
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(np.quantile(areas, q) - np.quantile(ref_a, q)) < 0.04
        assert abs(np.quantile(np.log(ratios), q) - np.quantile(np.log(ref_r), q)) < 0.03


@pytest.mark.parametrize("H,W,box", [(100, 400, (0, 133, 100, 133)), (400, 100, (133, 0, 133, 100)), (100, 120, (0, 0, 100, 120))])
def test_random_resized_crop_fallback(H, W, box):
    from affectfer import _C
    # scale above 1 makes every attempt fail, leaving RandomResizedCrop's centered fallback
    assert _C.resized_crop_params(H, W, (5.0, 6.0), (3 / 4, 4 / 3), 0, 0) == box


def test_random_resized_crop_output(rng):
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = T.RandomResizedCrop(24, scale=(1.0, 1.0), ratio=(1.25, 1.25))(img, seed=0, stream=0)
    np.testing.assert_array_equal(out, F.resize(img, (24, 24)))  # area 1 with ratio W/H: the whole image


def affine_nearest_ref(img, angle, tx, ty, scale, shx, shy, fill):
    """af_img_affine's nearest path in NumPy, op for op: torchvision's _get_inverse_affine_matrix in
    float64, the grid of _gen_affine_grid and grid_sample(nearest, align_corners=False) in float32."""
    H, W, C = img.shape
    f32 = np.float32
    deg = 3.14159265358979323846 / 180.0
    rot, sx, sy = angle * deg, shx * deg, shy * deg
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d / scale, -b / scale, 0.0 / scale, -c / scale, a / scale, 0.0 / scale]
    m[2] += m[0] * (-0.0 - tx) + m[1] * (-0.0 - ty)
    m[5] += m[3] * (-0.0 - tx) + m[4] * (-0.0 - ty)
    m[2] += 0.0
    m[5] += 0.0
    r = [(f32(m[k]) / (f32(0.5) * f32(W)), f32(m[3 + k]) / (f32(0.5) * f32(H))) for k in range(3)]
    half_w, half_h = f32(W) / f32(2), f32(H) / f32(2)
    xb = (np.arange(W, dtype=f32) + f32(0.5) - half_w)[None, :]
    yb = (np.arange(H, dtype=f32) + f32(0.5) - half_h)[:, None]
    gx = xb * r[0][0] + yb * r[1][0] + r[2][0]
    gy = xb * r[0][1] + yb * r[1][1] + r[2][1]
    ku, kv = np.rint((gx + f32(1)) * half_w - f32(0.5)), np.rint((gy + f32(1)) * half_h - f32(0.5))
    inside = (ku >= 0) & (ku < W) & (kv >= 0) & (kv < H)
    out = np.empty_like(img)
    out[:] = np.array(fill if fill is not None else [0, 0, 0], np.uint8)[:C]
    out[inside] = img[kv[inside].astype(int), ku[inside].astype(int)]
    return out


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 1), (13, 300, 3), (224, 224, 3), (31, 17, 1)])
def test_affine_nearest_matches_float32_grid(rng, shape):
    """The vectorised nearest warp (geometry.c affine_nearest) picks exactly the pixels of the float32
    grid op for op: rotations, shears, scales and translations, every edge column, with and without fill."""
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    for k in range(6):
        angle, shx, shy = rng.uniform(-180, 180), rng.uniform(-40, 40) * (k % 2), rng.uniform(-40, 40) * (k % 3 == 0)
        tx, ty, scale = rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0.5, 1.5)
        fill = None if k % 2 else [int(v) for v in rng.integers(0, 256, 3)]
        out = F.affine(img, angle, (tx, ty), scale, (shx, shy), "nearest", fill)
        np.testing.assert_array_equal(out, affine_nearest_ref(img, angle, tx, ty, scale, shx, shy, fill),
                                      err_msg=f"angle {angle} shear {shx} {shy} translate {tx} {ty} scale {scale}")
