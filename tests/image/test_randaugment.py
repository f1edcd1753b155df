"""RandAugment (csrc/image/randaugment.c): op table, magnitude tables, sign draws, op frequencies,
exclusions, and the geometric ops against the spec's vectors and formulas (section 1)."""
import collections
import math

import numpy as np
import pytest

import affectfer.transforms as T
import affectfer.transforms.functional as F

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def linspace_f32(start, end, steps):
    """torch.linspace in float32 (fused multiply-add per element, measured against torch 2.x)."""
    s, e = np.float32(start), np.float32(end)
    if steps == 1:
        return [float(s)]
    step = np.float32((e - s) / np.float32(steps - 1))
    out = []
    for k in range(steps):
        # exact product + one rounding = fma
        v = float(s) + float(step) * k if k < steps // 2 else float(e) - float(step) * (steps - 1 - k)
        out.append(float(np.float32(v)))
    return out


def test_op_table_order():
    assert F.RANDAUGMENT_OPS == OPS


@pytest.mark.parametrize("num_bins", [31, 10, 2])
@pytest.mark.parametrize("size", [(224, 224), (112, 96), (37, 299)])
def test_magnitude_tables(num_bins, size):
    H, W = size
    tables = {"ShearX": linspace_f32(0, 0.3, num_bins), "ShearY": linspace_f32(0, 0.3, num_bins),
              "TranslateX": linspace_f32(0, 150 / 331 * W, num_bins), "TranslateY": linspace_f32(0, 150 / 331 * H, num_bins),
              "Rotate": linspace_f32(0, 30, num_bins), "Solarize": linspace_f32(255, 0, num_bins),
              "Posterize": [8 - round(float(np.float32(k) / np.float32((num_bins - 1) / 4))) for k in range(num_bins)]}
    for op in ("Brightness", "Color", "Contrast", "Sharpness"):
        tables[op] = linspace_f32(0, 0.9, num_bins)
    for op in OPS:
        for b in range(num_bins):
            m, signed = F.randaugment_magnitude(op, b, num_bins, size)
            assert signed == (op in SIGNED)
            assert m == (tables[op][b] if op in tables else 0.0), (op, b)


def test_spec_magnitudes_at_9_of_31():
    assert F.randaugment_magnitude("ShearX", 9)[0] == 0.09000000357627869
    assert F.randaugment_magnitude("TranslateX", 9, image_size=(224, 224))[0] == 30.45317268371582
    assert F.randaugment_magnitude("Rotate", 9)[0] == 9.0
    assert F.randaugment_magnitude("Brightness", 9)[0] == 0.26999998092651367
    assert F.randaugment_magnitude("Posterize", 9)[0] == 7
    assert F.randaugment_magnitude("Solarize", 9)[0] == 178.5
    bins = [F.randaugment_magnitude("Posterize", k)[0] for k in range(31)]
    assert bins == [8, 8, 8, 8, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4]


def test_sampled_ops_uniform_signs_fair_and_applied(rng):
    img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    ra = T.RandAugment(num_ops=2, magnitude=9)
    counts, signs = collections.Counter(), collections.Counter()
    for s in range(1400):
        out, ops, mags = ra.sample(img, 3, s)
        assert len(ops) == 2
        expect = img
        for op, m in zip(ops, mags):
            base, signed = F.randaugment_magnitude(op, 9, 31, img.shape[:2])
            assert abs(m) == base and (signed or m == base)
            if signed and base:
                signs[m > 0] += 1
            counts[op] += 1
            expect = F.randaugment_op(expect, op, m)
        np.testing.assert_array_equal(out, expect)
        if s < 50:  # the pipeline stage makes the same draws
            np.testing.assert_array_equal(ra(img, seed=3, stream=s), out)
    assert set(counts) == set(OPS)
    expected = 2800 / 14
    assert all(abs(c - expected) < 4 * math.sqrt(expected) for c in counts.values()), counts
    total = signs[True] + signs[False]
    assert abs(signs[True] - total / 2) < 4 * math.sqrt(total / 4)


def test_exclude_solarize_equalize(rng):
    img = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    ra = T.RandAugment(exclude=("Solarize", "Equalize"))
    assert len(ra.ops) == 12
    seen = collections.Counter(op for s in range(600) for op in ra.sample(img, 0, s)[1])
    assert "Solarize" not in seen and "Equalize" not in seen and len(seen) == 12
    with pytest.raises(ValueError, match="unknown ops"):
        T.RandAugment(exclude=("Invert",))
    with pytest.raises(ValueError, match="every op"):
        T.RandAugment(exclude=OPS)
    with pytest.raises(ValueError, match="magnitude"):
        T.RandAugment(magnitude=31)


V = np.array([[10 * i + j + 1 for j in range(4)] for i in range(4)], np.uint8)[..., None]


@pytest.mark.parametrize("op,m,expect", [
    ("ShearX", 0.5, [[1, 2, 3, 4], [12, 13, 14, 0], [22, 23, 24, 0], [33, 34, 0, 0]]),
    ("ShearX", -0.5, [[1, 2, 3, 4], [0, 11, 12, 13], [0, 21, 22, 23], [0, 0, 31, 32]]),
    ("TranslateX", 1.0, [[0, 1, 2, 3], [0, 11, 12, 13], [0, 21, 22, 23], [0, 31, 32, 33]]),
    ("TranslateX", 1.9, [[0, 1, 2, 3], [0, 11, 12, 13], [0, 21, 22, 23], [0, 31, 32, 33]]),  # int(1.9) = 1
    ("TranslateY", -1.0, [[11, 12, 13, 14], [21, 22, 23, 24], [31, 32, 33, 34], [0, 0, 0, 0]]),
    ("Rotate", 90.0, [[4, 14, 24, 34], [3, 13, 23, 33], [2, 12, 22, 32], [1, 11, 21, 31]]),
])
def test_geometry_spec_vectors(op, m, expect):
    np.testing.assert_array_equal(F.randaugment_op(V, op, m)[..., 0], expect)


def test_shear_formula(rng):
    """>= 0.12 ShearX: source column u = j + m (i + 0.5), nearest (half to even), zeros outside."""
    img = rng.integers(1, 256, (9, 13, 3), dtype=np.uint8)
    for m in (0.09, -0.09, 0.3, -0.21):
        out = F.randaugment_op(img, "ShearX", m)
        ref = np.zeros_like(img)
        for i in range(9):
            for j in range(13):
                u = int(np.rint(j + m * (i + 0.5)))
                if 0 <= u < 13:
                    ref[i, j] = img[i, u]
        np.testing.assert_array_equal(out, ref)
        out_y = F.randaugment_op(img.transpose(1, 0, 2).copy(), "ShearY", m)
        np.testing.assert_array_equal(out_y, ref.transpose(1, 0, 2))


def test_fill(rng):
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = F.randaugment_op(img, "TranslateX", 3.0, fill=(1, 2, 3))
    np.testing.assert_array_equal(out[:, :3], np.broadcast_to(np.uint8([1, 2, 3]), (8, 3, 3)))
    np.testing.assert_array_equal(out[:, 3:], img[:, :5])
    ra = T.RandAugment(num_ops=1, fill=7, exclude=tuple(o for o in OPS if o != "TranslateY"))
    out = ra(img, seed=0, stream=0)
    assert (out == 7).all(axis=2).any()


@pytest.mark.parametrize("shape", [(37, 45, 3), (48, 48, 1), (1, 5, 3)])
@pytest.mark.parametrize("fill", [None, (9, 8, 7)])
def test_translate_copy_equals_the_affine_grid(rng, shape, fill):
    # TranslateX/Y run as a whole-pixel copy; F.affine samples torchvision's float32 grid (nearest):
    # the two must agree bit for bit, shifts past the border included
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    f = None if fill is None else fill[:shape[2]] if shape[2] == 3 else fill[0]
    for m in (0.0, 1.0, -1.9, 7.3, -20.0, 44.0, 45.0, 46.0, -300.0):
        for op, t in (("TranslateX", (int(m), 0)), ("TranslateY", (0, int(m)))):
            ref = F.affine(img, 0.0, t, 1.0, 0.0, fill=f)
            np.testing.assert_array_equal(F.randaugment_op(img, op, m, fill=f), ref, err_msg=f"{op} {m}")
