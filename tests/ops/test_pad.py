"""pad.c: constant / reflect / replicate padding of the last two dims against numpy.pad, float64
gradchecks, thread invariance and malformed arguments."""
import numpy as np
import pytest

import affectfer as af
import affectfer.nn.functional as F
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64

MODES = {"constant": 0, "reflect": 1, "replicate": 2}
NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}

# (shape, (left, right, top, bottom))
CASES = [((1, 1, 4, 5), (1, 2, 3, 0)), ((2, 3, 3, 3), (2, 2, 2, 2)), ((2, 5, 4), (0, 3, 1, 1)), ((3, 7), (1, 0, 0, 2)),
         ((1, 2, 1, 2, 6), (5, 5, 0, 0)), ((2, 1, 2, 3), (0, 0, 0, 0))]


def _ref(x, widths, mode, value=0.0):
    l, r, t, b = widths
    spec = [(0, 0)] * (x.ndim - 2) + [(t, b), (l, r)]
    kw = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x, spec, mode=NUMPY_MODE[mode], **kw)


def _valid(shape, widths, mode):
    return mode != "reflect" or (max(widths[:2]) < shape[-1] and max(widths[2:]) < shape[-2])


@pytest.mark.reference("pad")
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("shape,widths", CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pad_matches_numpy(mode, shape, widths, dtype, rng):
    if not _valid(shape, widths, mode):
        pytest.skip("reflect needs padding smaller than the dim")
    x = rng.standard_normal(shape).astype(dtype)
    out = call("pad", [af.tensor(x)], (MODES[mode], *widths), (1.5,))
    assert out.dtype == dtype
    assert_close(out, _ref(x, widths, mode, 1.5 if mode == "constant" else 0.0), rtol=0, atol=0)


@pytest.mark.reference("pad")
def test_negative_constant_padding_crops(rng):
    x = rng.standard_normal((2, 3, 6, 7))
    out = call("pad", [t64(x, False)], (0, -2, 1, -3, 2), (0.0,))  # left -2, right 1, top -3, bottom 2
    ref = np.pad(x[:, :, 3:, 2:], [(0, 0), (0, 0), (0, 2), (0, 1)])
    assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.gradcheck("pad")
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("shape,widths", [((1, 2, 4, 5), (1, 2, 3, 0)), ((2, 3, 3), (2, 2, 2, 2)), ((3, 7), (1, 4, 0, 2))])
def test_pad_gradcheck(mode, shape, widths, rng):
    if not _valid(shape, widths, mode):
        widths = tuple(min(w, 2) for w in widths)
    gradcheck(lambda t: call("pad", [t], (MODES[mode], *widths), (0.5,)), [t64(rng.standard_normal(shape))])
    gradcheck(lambda t: call("pad", [t], (0, -1, 1, 1, -1), (0.0,)), [t64(rng.standard_normal(shape))])


def test_pad_thread_invariant(rng):
    x = rng.standard_normal((4, 8, 40, 40)).astype(np.float32)
    for mode in MODES:
        assert_thread_invariant(lambda t: call("pad", [t], (MODES[mode], 3, 2, 1, 3), (0.0,)), [x], name=mode)


def test_pad_functional(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    t = af.tensor(x)
    assert_close(F.pad(t, (1, 2, 3, 1), value=-1.0), _ref(x, (1, 2, 3, 1), "constant", -1.0))
    assert_close(F.pad(t, (2, 1), mode="reflect"), _ref(x, (2, 1, 0, 0), "reflect"))
    assert_close(F.pad(t, [1, 1, 2, 2], mode="replicate"), _ref(x, (1, 1, 2, 2), "replicate"))
    v = af.tensor(x[0, 0, 0])
    assert_close(F.pad(v, (2, 1)), np.pad(x[0, 0, 0], (2, 1)))


def test_pad_bad_input():
    x = af.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"pad: argument 'pad' \(left\) 4 must be smaller than the padded dim's size 4"):
        call("pad", [x], (1, 4, 0, 0, 0), (0.0,))
    with pytest.raises(ValueError, match=r"pad: argument 'pad' \(bottom\) 3 must be smaller"):
        call("pad", [x], (1, 0, 0, 0, 3), (0.0,))
    with pytest.raises(ValueError, match=r"pad: argument 'pad' \(top\) must be >= 0 in replicate mode, got -1"):
        call("pad", [x], (2, 0, 0, -1, 0), (0.0,))
    with pytest.raises(ValueError, match="pad: argument 'mode' must be 0 .* got 3"):
        call("pad", [x], (3, 0, 0, 0, 0), (0.0,))
    with pytest.raises(ValueError, match=r"pad: argument 'pad' crops more than the input shape \(1, 1, 3, 4\)"):
        call("pad", [x], (0, -3, -2, 0, 0), (0.0,))
    with pytest.raises(ValueError, match="pad: argument 'input' must have at least 2 dims"):
        call("pad", [af.zeros(3)], (0, 1, 1, 0, 0), (0.0,))
    with pytest.raises(ValueError, match="pad: argument 'mode' must be 'constant', 'reflect' or 'replicate', got 'circular'"):
        F.pad(x, (1, 1), mode="circular")
    with pytest.raises(ValueError, match="pad: argument 'pad' must have 2 or 4 entries"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(TypeError, match="pad: argument 'input' must be float32 or float64"):
        F.pad(af.zeros(2, 2, dtype="uint8"), (1, 1))
