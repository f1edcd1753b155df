"""interpolate.c: bilinear and bicubic resampling against a NumPy reference (per-dim weight
matrices built from PyTorch's coordinate rules) and known answers from torch 2.15, float64
gradchecks, thread invariance, malformed arguments, F.interpolate and nn.Upsample."""
import numpy as np
import pytest

import affectfer as af
import affectfer.nn as nn
import affectfer.nn.functional as F
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64

MODES = {"bilinear": 0, "bicubic": 1}


def _matrix(n_in, n_out, mode, align_corners, scale=None):
    """(n_out, n_in) interpolation weights along one dim (torch's coordinate rules)."""
    A = np.zeros((n_out, n_in))
    if align_corners:
        step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        step = 1.0 / scale if scale else n_in / n_out
    for o in range(n_out):
        src = step * o if align_corners else step * (o + 0.5) - 0.5
        if mode == "bilinear":
            src = max(src, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            lam = src - i0
            A[o, i0] += 1 - lam
            A[o, min(i0 + 1, n_in - 1)] += lam
        else:
            f = np.floor(src)
            t = src - f
            a = -0.75
            def k(d):  # Keys' kernel at distance d
                d = abs(d)
                if d <= 1:
                    return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
                if d < 2:
                    return a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
                return 0.0
            for j in range(4):
                A[o, int(np.clip(f - 1 + j, 0, n_in - 1))] += k(t + 1 - j)
    return A

def interpolate_ref(x, out_hw, mode, align_corners, scales=(None, None)):
    Ah = _matrix(x.shape[-2], out_hw[0], mode, align_corners, scales[0])
    Aw = _matrix(x.shape[-1], out_hw[1], mode, align_corners, scales[1])
    return np.einsum("oh,...hw,pw->...op", Ah, x, Aw)


def _run(x, size, mode, align_corners, scales=(0.0, 0.0)):
    return call("interpolate", [x], (MODES[mode], int(align_corners), *size), scales)


SIZES = [((1, 1, 4, 5), (9, 11)), ((2, 3, 7, 3), (2, 3)), ((1, 2, 1, 6), (4, 5)), ((1, 1, 5, 5), (1, 1)),
         ((3, 6, 4), (13, 2)), ((2, 1, 3, 3, 3), (3, 3))]


@pytest.mark.reference("interpolate")
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,size", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_interpolate_matches_numpy(mode, align_corners, shape, size, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    out = _run(af.tensor(x), size, mode, align_corners)
    assert out.dtype == dtype and out.shape == shape[:-2] + size
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert_close(out, interpolate_ref(x.astype(np.float64), size, mode, align_corners).astype(dtype), rtol=tol, atol=tol)


@pytest.mark.reference("interpolate")
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("scale", [2.0, 0.5, 1.7, (1.3, 2.6)])
def test_interpolate_scale_factor_matches_numpy(mode, scale, rng):
    x = rng.standard_normal((2, 2, 7, 5))
    out = F.interpolate(t64(x, False), scale_factor=scale, mode=mode)
    s = (scale, scale) if isinstance(scale, float) else scale
    size = (int(np.floor(7 * s[0])), int(np.floor(5 * s[1])))
    assert_close(out, interpolate_ref(x, size, mode, False, s), rtol=1e-12, atol=1e-12)
    # recompute_scale_factor: the coordinates use in / out instead of the given scale
    out = F.interpolate(t64(x, False), scale_factor=scale, mode=mode, recompute_scale_factor=True)
    assert_close(out, interpolate_ref(x, size, mode, False), rtol=1e-12, atol=1e-12)


# torch.nn.functional.interpolate(x, **kwargs).flatten() for x = [[0, 1, 4], [9, 16, 25]] (1, 1, 2, 3), torch 2.15
TORCH_ANSWERS = [
    (dict(size=(3, 4), mode="bilinear", align_corners=False),
     [0.0, 0.625, 2.125, 4.0, 4.5, 7.0, 10.75, 14.5, 9.0, 13.375, 19.375, 25.0]),
    (dict(size=(3, 4), mode="bilinear", align_corners=True),
     [0.0, 0.6666666666666666, 2.0, 4.0, 4.5, 7.166666666666666, 10.5, 14.5, 9.0, 13.666666666666666, 19.0, 25.0]),
    (dict(size=(3, 4), mode="bicubic", align_corners=False),
     [-0.8156433105468733, -0.7471211751302058, 0.6439310709635458, 2.3550313313802134, 4.212890625, 6.3994140625,
      11.1015625, 14.9306640625, 9.241424560546877, 13.545949300130214, 21.55919392903646, 27.506296793619796]),
    (dict(scale_factor=1.5, mode="bicubic", align_corners=False),
     [-0.8228443287037022, -0.7740885416666643, 0.09531732253086879, 1.8295958719135854, 4.1527777777777795, 5.9375,
      9.708333333333337, 13.708333333333336, 9.128399884259265, 12.64908854166667, 19.321349344135815,
      25.587070794753096]),
    (dict(scale_factor=0.7, mode="bilinear", align_corners=False), [2.418367346938776, 6.969387755102041]),
]


@pytest.mark.reference("interpolate")
@pytest.mark.parametrize("kwargs,expected", TORCH_ANSWERS)
def test_interpolate_known_torch_answers(kwargs, expected):
    x = t64(np.array([[0.0, 1.0, 4.0], [9.0, 16.0, 25.0]]).reshape(1, 1, 2, 3), False)
    assert_close(F.interpolate(x, **kwargs).reshape(-1), np.array(expected), rtol=1e-13, atol=1e-13)


@pytest.mark.gradcheck("interpolate")
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("shape,size", [((1, 2, 3, 4), (5, 7)), ((2, 1, 5, 4), (2, 3)), ((1, 1, 1, 3), (3, 2))])
def test_interpolate_gradcheck(mode, align_corners, shape, size, rng):
    gradcheck(lambda t: _run(t, size, mode, align_corners), [t64(rng.standard_normal(shape))])


@pytest.mark.gradcheck("interpolate")
def test_interpolate_scale_gradcheck(rng):
    gradcheck(lambda t: _run(t, (5, 3), "bicubic", False, (1.7, 0.75)), [t64(rng.standard_normal((1, 1, 3, 4)))])


def test_interpolate_thread_invariant(rng):
    x = rng.standard_normal((2, 8, 20, 24)).astype(np.float32)
    for mode in MODES:
        for size in [(45, 50), (7, 9)]:
            assert_thread_invariant(lambda t: _run(t, size, mode, False), [x], name=f"{mode} {size}")


def test_upsample_module(rng):
    x = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
    assert_close(up(af.tensor(x)), interpolate_ref(x.astype(np.float64), (6, 8), "bilinear", True).astype(np.float32),
                 rtol=1e-5, atol=1e-5)
    assert "scale_factor=2" in repr(up)
    assert nn.Upsample(size=(5, 5), mode="bicubic")(af.tensor(x)).shape == (1, 2, 5, 5)
    with pytest.raises(ValueError, match="'bilinear' or 'bicubic', got 'nearest'"):
        nn.Upsample(scale_factor=2)(af.tensor(x))


def test_interpolate_bad_input():
    x = af.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"interpolate: argument 'size' must be positive .* got \(0, 4\)"):
        call("interpolate", [x], (0, 0, 0, 4), (0.0, 0.0))
    with pytest.raises(ValueError, match="interpolate: argument 'mode' must be 0 .* got 2"):
        call("interpolate", [x], (2, 0, 3, 3), (0.0, 0.0))
    with pytest.raises(ValueError, match="interpolate: argument 'align_corners' must be 0 or 1, got 5"):
        call("interpolate", [x], (0, 5, 3, 3), (0.0, 0.0))
    with pytest.raises(ValueError, match="interpolate: argument 'scale_factor' must be finite and positive .* got -2"):
        call("interpolate", [x], (0, 0, 3, 3), (-2.0, 1.0))
    with pytest.raises(ValueError, match=r"interpolate: argument 'input' must have non-empty spatial dims, got shape \(1, 0, 4\)"):
        call("interpolate", [af.zeros(1, 0, 4)], (0, 0, 3, 3), (0.0, 0.0))
    with pytest.raises(ValueError, match="give exactly one of 'size' and 'scale_factor'"):
        F.interpolate(x, mode="bilinear")
    with pytest.raises(ValueError, match="argument 'mode' must be 'bilinear' or 'bicubic', got 'nearest'"):
        F.interpolate(x, size=2)
    with pytest.raises(ValueError, match=r"bilinear mode needs a 4-D \(N, C, H, W\) input, got shape \(3, 4\)"):
        F.interpolate(af.zeros(3, 4), size=2, mode="bilinear")
    with pytest.raises(ValueError, match="antialias=True is not supported"):
        F.interpolate(x, size=2, mode="bilinear", antialias=True)
    with pytest.raises(TypeError, match="interpolate: argument 'input' must be float32 or float64, got uint8"):
        call("interpolate", [af.zeros(1, 1, 2, 2, dtype="uint8")], (0, 0, 3, 3), (0.0, 0.0))
