"""conv2d.c: forward against a NumPy reference (every algorithm: im2col + GEMM, pointwise, depthwise,
Winograd),
float64 gradchecks for input, weight and bias, torch parity (forward and backward) when torch is
importable, error messages, and bitwise thread-count independence."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


def conv2d_ref(x, w, b, stride, padding, dilation, groups):
    """Direct sum over the definition in the torch.nn.Conv2d docs, in float64."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    N, Cin, H, W = x.shape
    Cout, Cin_g, KH, KW = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((N, Cin, H + 2 * ph, W + 2 * pw))
    xp[:, :, ph:ph + H, pw:pw + W] = x
    Ho = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    Cout_g = Cout // groups
    y = np.zeros((N, Cout, Ho, Wo))
    for co in range(Cout):
        g = co // Cout_g
        for kh in range(KH):
            for kw in range(KW):
                patch = xp[:, g * Cin_g:(g + 1) * Cin_g, kh * dh:kh * dh + sh * (Ho - 1) + 1:sh,
                           kw * dw:kw * dw + sw * (Wo - 1) + 1:sw]
                y[:, co] += np.einsum("ncij,c->nij", patch, w[co, :, kh, kw])
        if b is not None:
            y[:, co] += b[co]
    return y


def _ints(stride, padding, dilation, groups):
    return (*stride, *padding, *dilation, groups)


# (x shape, weight shape, stride, padding, dilation, groups, bias)
CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),      # im2col, odd sizes
    ((1, 4, 9, 7), (6, 2, 3, 2), (2, 1), (0, 2), (1, 2), 2, True),      # groups, mixed attrs, batch 1
    ((3, 6, 8, 8), (6, 1, 3, 3), (1, 2), (1, 1), (2, 1), 6, False),     # depthwise, no bias
    ((2, 4, 5, 6), (8, 1, 3, 3), (2, 2), (1, 0), (1, 1), 4, True),      # depthwise, multiplier 2
    ((2, 8, 33, 33), (5, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1, True),    # pointwise, GEMM per image
    ((2, 8, 5, 5), (4, 4, 1, 1), (1, 1), (0, 0), (1, 1), 2, False),     # pointwise, batched, groups
    ((2, 6, 9, 9), (4, 6, 1, 1), (2, 2), (0, 0), (1, 1), 1, True),      # 1x1 stride 2 (ResNet downsample)
    ((2, 3, 11, 13), (5, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1, True),    # ResNet stem shape
    ((1, 2, 4, 4), (3, 2, 4, 4), (1, 1), (0, 0), (1, 1), 1, True),      # kernel == input
    ((1, 1, 6, 5), (2, 1, 2, 3), (3, 2), (2, 1), (2, 1), 1, False),     # Cin 1, groups 1
    ((2, 3, 10, 9), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),     # >= 64 pixels: GEMM per image into y
    ((1, 4, 12, 12), (6, 2, 3, 3), (1, 1), (1, 1), (1, 1), 2, False),   # the same with groups
    ((3, 16, 64, 64), (4, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # im2col in 3 chunks of 1 image
    ((3, 1024, 7, 7), (2, 1024, 3, 3), (1, 1), (1, 1), (1, 1), 1, False),  # 2 chunks, wide GEMM + scatter
    ((2, 16, 5, 7), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # Winograd, odd map: tiles hang over
    ((1, 17, 4, 4), (20, 17, 3, 3), (1, 1), (0, 0), (1, 1), 1, False),  # Winograd, no padding
    ((2, 16, 7, 6), (18, 16, 3, 3), (1, 1), (2, 1), (1, 1), 1, True),   # Winograd, padding 2 (dx padding 0)
    ((3, 16, 127, 130), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # Winograd, 3 chunks of 1 image
]


@pytest.mark.reference("conv2d")
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_matches_numpy(case, dtype, rng):
    xs, ws, stride, padding, dilation, groups, has_bias = case
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if has_bias else None
    inputs = [af.tensor(x), af.tensor(w)] + ([af.tensor(b)] if has_bias else [])
    y = call("conv2d", inputs, _ints(stride, padding, dilation, groups))
    ref = conv2d_ref(x, w, b, stride, padding, dilation, groups)
    assert y.dtype == dtype
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11)
    assert_close(y, ref, **tol)


def test_unbatched_input(rng):
    x, w = rng.standard_normal((3, 6, 5)), rng.standard_normal((2, 3, 3, 3))
    y = call("conv2d", [af.tensor(x, dtype="float64"), af.tensor(w, dtype="float64")], (1, 1, 1, 1, 1, 1, 1))
    assert y.shape == (2, 6, 5)
    assert_close(y, conv2d_ref(x[None], w, None, (1, 1), (1, 1), (1, 1), 1)[0], rtol=1e-12, atol=1e-12)


def test_empty_batch():
    y = call("conv2d", [af.zeros(0, 3, 5, 5), af.zeros(4, 3, 3, 3)], (1, 1, 0, 0, 1, 1, 1))
    assert y.shape == (0, 4, 3, 3)


GRAD_CASES = [
    ((2, 2, 5, 4), (3, 2, 3, 2), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 6, 5), (4, 2, 2, 3), (2, 1), (1, 0), (2, 1), 2),
    ((2, 3, 5, 5), (6, 1, 3, 3), (2, 1), (1, 1), (1, 2), 3),   # depthwise
    ((2, 4, 3, 4), (2, 4, 1, 1), (1, 1), (0, 0), (1, 1), 1),   # pointwise, batched GEMM
    ((1, 2, 8, 8), (2, 2, 3, 3), (1, 1), (1, 1), (1, 1), 1),   # 64 pixels: GEMM per image
    ((2, 3, 8, 8), (2, 3, 1, 1), (1, 1), (0, 0), (1, 1), 1),   # pointwise, GEMM per image
    ((2, 16, 3, 5), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),  # Winograd (forward, dx, dw)
    ((1, 16, 4, 3), (17, 16, 3, 3), (1, 1), (2, 0), (1, 1), 1),  # Winograd, paddings 2 and 0
]


@pytest.mark.gradcheck("conv2d")
@pytest.mark.parametrize("case", GRAD_CASES, ids=[str(i) for i in range(len(GRAD_CASES))])
def test_gradcheck(case, rng):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b = t64(rng.standard_normal(xs)), t64(rng.standard_normal(ws)), t64(rng.standard_normal(ws[0]))
    ints = _ints(stride, padding, dilation, groups)
    gradcheck(lambda x, w, b: call("conv2d", [x, w, b], ints), [x, w, b])


def test_gradcheck_pointwise_direct(rng):
    """A pointwise conv on a long image: weight and bias by finite differences, dx against W^T dY."""
    x = t64(rng.standard_normal((1, 2, 32, 64)), requires_grad=False)  # K = 2048: the K-sliced dW GEMM
    w, b = t64(rng.standard_normal((2, 2, 1, 1))), t64(rng.standard_normal(2))
    gradcheck(lambda x, w, b: call("conv2d", [x, w, b], (1, 1, 0, 0, 1, 1, 1)), [x, w, b])
    xg = t64(rng.standard_normal((1, 2, 32, 33)))
    wn = rng.standard_normal((3, 2, 1, 1))
    y = call("conv2d", [xg, t64(wn, requires_grad=False)], (1, 1, 0, 0, 1, 1, 1))
    dy = rng.standard_normal(y.shape)
    y.backward(af.tensor(dy, dtype="float64"))
    assert_close(xg.grad, np.einsum("oi,nohw->nihw", wn[:, :, 0, 0], dy), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", reference.cases("conv2d"))
def test_matches_torch_forward_and_backward(case):
    """Torch's outputs for the paths above (cases in tests/reference/make_fixtures.py)."""
    d = reference.case("conv2d", case)
    has_bias = "b" in d
    ax = af.tensor(d["x"].astype(np.float32), requires_grad=True)
    aw = af.tensor(d["w"].astype(np.float32), requires_grad=True)
    ab = af.tensor(d["b"].astype(np.float32), requires_grad=True) if has_bias else None
    y = call("conv2d", [ax, aw] + ([ab] if has_bias else []), tuple(int(i) for i in d["ints"]))
    reference.assert_close(y, d["y"], rtol=1e-4, atol=1e-4, name="y")
    y.backward(af.tensor(d["dy"].astype(np.float32)))
    reference.assert_close(ax.grad, d["dx"], rtol=1e-4, atol=1e-4, name="dx")
    reference.assert_close(aw.grad, d["dw"], rtol=1e-4, atol=1e-3, name="dw")
    if has_bias:
        reference.assert_close(ab.grad, d["dbias"], rtol=1e-4, atol=1e-3, name="dbias")


THREAD_CASES = {  # big enough that every parallel loop forks (work > 32768)
    "im2col": ((4, 8, 20, 19), (16, 8, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    "depthwise": ((4, 16, 20, 20), (32, 1, 3, 3), (1, 1), (1, 1), (1, 1), 16),
    "pointwise": ((2, 8, 40, 40), (16, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    "stem": ((2, 3, 40, 40), (8, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1),
    "chunked": ((3, 16, 64, 64), (8, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    "winograd": ((4, 16, 20, 19), (24, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    "winograd chunked": ((3, 16, 128, 128), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),
}


@pytest.mark.parametrize("case", sorted(THREAD_CASES))
def test_thread_count_does_not_change_bits(case, rng):
    xs, ws, stride, padding, dilation, groups = THREAD_CASES[case]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    ints = _ints(stride, padding, dilation, groups)
    assert_thread_invariant(lambda *t: call("conv2d", list(t), ints), [x, w, b], name=f"conv2d {case}")

# (x shape, weight shape, stride, padding, dilation, groups): only the first takes the Winograd path
# (csrc/ops/conv2d_winograd.h, conv_use_winograd)
WINOGRAD_CHOICE = [
    (True, (2, 16, 6, 6), (16, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    (False, (2, 15, 6, 6), (15, 15, 3, 3), (1, 1), (1, 1), (1, 1), 1),   # too few channels
    (False, (2, 32, 6, 6), (32, 16, 3, 3), (1, 1), (1, 1), (1, 1), 2),   # groups
    (False, (2, 16, 6, 6), (16, 16, 3, 3), (2, 2), (1, 1), (1, 1), 1),   # stride 2
    (False, (2, 16, 6, 6), (16, 16, 3, 3), (1, 1), (2, 2), (2, 2), 1),   # dilation 2
    (False, (2, 16, 6, 6), (16, 16, 3, 3), (1, 1), (3, 3), (1, 1), 1),   # padding 3
]


@pytest.mark.parametrize("case", WINOGRAD_CHOICE, ids=[str(i) for i in range(len(WINOGRAD_CHOICE))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_winograd_chosen_by_shape(case, dtype):
    """An identity filter (centre tap 1 for co == ci) on pixels 1 beside 2^30 (2^60 in float64): the
    direct and im2col sums add exact zeros to x and return it bit for bit; Winograd's transforms add
    neighbouring pixels first (1 + 2^30 == 2^30 in float32), so the 1s come out wrong. That rounding
    is its documented trade (conv2d_winograd.c), and it tells which path ran."""
    winograd, xs, ws, stride, padding, dilation, groups = case
    big = 2.0 ** (30 if dtype == "float32" else 60)
    hh, ww = np.indices(xs[2:])
    x = np.broadcast_to(np.where((hh + ww) % 2 == 0, 1.0, big), xs).astype(dtype)
    w = np.zeros(ws, dtype)
    for co in range(ws[0]):
        w[co, co % ws[1], 1, 1] = 1
    y = call("conv2d", [af.tensor(x), af.tensor(w)], _ints(stride, padding, dilation, groups)).numpy()
    ref = conv2d_ref(x, w, None, stride, padding, dilation, groups).astype(dtype)
    assert np.array_equal(y, ref) != winograd


@pytest.mark.reference("conv2d")
@pytest.mark.parametrize("xs, cout", [((2, 64, 14, 14), 64), ((3, 16, 127, 130), 16)], ids=["resnet", "3 chunks"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_winograd_tolerance_forward_and_backward(xs, cout, dtype, rng):
    """A ResNet 3x3 layer on unit-scale data, and a map big enough for one image per chunk (dw summed
    over chunks): output, dx and dw of the Winograd path within the tolerances conv2d_winograd.c
    states for float32 (y and dx: 1e-4 absolute + relative; dw, a sum over N Ho Wo products, 1e-4
    relative + 1e-6 of its largest entry) of the float64 direct sum."""
    N, Cin, H, W = xs
    x = rng.standard_normal(xs).astype(dtype)
    w = (rng.standard_normal((cout, Cin, 3, 3)) * 0.05).astype(dtype)
    dy = rng.standard_normal((N, cout, H, W)).astype(dtype)
    ax, aw = af.tensor(x, requires_grad=True), af.tensor(w, requires_grad=True)
    y = call("conv2d", [ax, aw], (1, 1, 1, 1, 1, 1, 1))
    y.backward(af.tensor(dy))
    x64, w64, dy64 = x.astype(np.float64), w.astype(np.float64), dy.astype(np.float64)
    # dx: the convolution of dy with the flipped, transposed filter; dw: correlations of x and dy
    dx = conv2d_ref(dy64, w64.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], None, (1, 1), (1, 1), (1, 1), 1)
    xp = np.pad(x64, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = np.stack([np.stack([np.einsum("nohw,nchw->oc", dy64, xp[:, :, kh:kh + H, kw:kw + W]) for kw in range(3)], -1)
                   for kh in range(3)], -2)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11)
    assert_close(y, conv2d_ref(x, w, None, (1, 1), (1, 1), (1, 1), 1), **tol)
    assert_close(ax.grad, dx, **tol)
    scale = np.abs(dw).max()
    dw_tol = dict(rtol=1e-4, atol=1e-6 * scale) if dtype == "float32" else dict(rtol=1e-11, atol=1e-13 * scale)
    assert_close(aw.grad, dw, **dw_tol)


def test_rejects_bad_input():
    x, w = af.zeros(1, 4, 5, 5), af.zeros(2, 3, 3, 3)
    ok = (1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="'weight' has 3 input channels per group but 'input' has 4 channels with groups=1"):
        call("conv2d", [x, w], ok)
    with pytest.raises(ValueError, match="'input' has 4 channels, not divisible by groups=3"):
        call("conv2d", [x, af.zeros(3, 1, 3, 3)], (1, 1, 0, 0, 1, 1, 3))
    with pytest.raises(ValueError, match="'weight' has 3 output channels, not divisible by groups=2"):
        call("conv2d", [x, af.zeros(3, 2, 3, 3)], (1, 1, 0, 0, 1, 1, 2))
    w4 = af.zeros(2, 4, 3, 3)
    with pytest.raises(ValueError, match="kernel can't be larger than the padded input"):
        call("conv2d", [x, af.zeros(2, 4, 7, 3)], ok)
    with pytest.raises(ValueError, match="kernel can't be larger than the padded input"):
        call("conv2d", [x, w4], (1, 1, 0, 0, 3, 1, 1))  # dilated kernel 7x3
    with pytest.raises(ValueError, match="'stride_h' must be positive, got 0"):
        call("conv2d", [x, w4], (0, 1, 0, 0, 1, 1, 1))
    with pytest.raises(ValueError, match="'dil_w' must be positive, got -1"):
        call("conv2d", [x, w4], (1, 1, 0, 0, 1, -1, 1))
    with pytest.raises(ValueError, match="'pad_h' must be non-negative, got -1"):
        call("conv2d", [x, w4], (1, 1, -1, 0, 1, 1, 1))
    with pytest.raises(ValueError, match="'groups' must be positive, got 0"):
        call("conv2d", [x, w4], (1, 1, 0, 0, 1, 1, 0))
    with pytest.raises(ValueError, match=r"'bias' must have shape \(2,\)"):
        call("conv2d", [x, w4, af.zeros(3)], ok)
    with pytest.raises(ValueError, match="'input' must be 3-D .* or 4-D"):
        call("conv2d", [af.zeros(4, 5), w4], ok)
    with pytest.raises(ValueError, match="'weight' must be 4-D"):
        call("conv2d", [x, af.zeros(2, 4, 3)], ok)
    with pytest.raises(TypeError, match="'weight' is float64"):
        call("conv2d", [x, af.zeros(2, 4, 3, 3, dtype="float64")], ok)
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        call("conv2d", [af.zeros(1, 4, 5, 5, dtype="uint8"), w4], ok)
    with pytest.raises(ValueError, match="takes 7 integer"):
        call("conv2d", [x, w4], (1, 1, 0, 0, 1, 1))
