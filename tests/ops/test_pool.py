"""pool.c: max_pool2d, avg_pool2d and adaptive_avg_pool2d against NumPy references written from
torch's documented semantics (padding, dilation, ceil_mode, count_include_pad, divisor_override),
float64 gradchecks, torch parity when importable, error messages and thread-count independence."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


def out_size(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window must start inside the image or left padding
        o -= 1
    return o


def max_pool_ref(x, k, s, p, d, ceil_mode):
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, k[0], s[0], p[0], d[0], ceil_mode), out_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.zeros((N, C, Ho, Wo), x.dtype)
    for oh in range(Ho):
        for ow in range(Wo):
            vals = [x[:, :, ih, iw] for i in range(k[0]) for j in range(k[1])
                    for ih, iw in [(oh * s[0] - p[0] + i * d[0], ow * s[1] - p[1] + j * d[1])]
                    if 0 <= ih < H and 0 <= iw < W]
            y[:, :, oh, ow] = np.max(vals, axis=0)
    return y


def avg_pool_ref(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, k[0], s[0], p[0], 1, ceil_mode), out_size(W, k[1], s[1], p[1], 1, ceil_mode)
    y = np.zeros((N, C, Ho, Wo))
    for oh in range(Ho):
        for ow in range(Wo):
            h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
            h1, w1 = min(h0 + k[0], H + p[0]), min(w0 + k[1], W + p[1])
            padded = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
            if h0 >= h1 or w0 >= w1:
                continue
            div = divisor_override or (padded if count_include_pad else (h1 - h0) * (w1 - w0))
            y[:, :, oh, ow] = x[:, :, h0:h1, w0:w1].astype(np.float64).sum(axis=(2, 3)) / div
    return y


def adaptive_ref(x, oh_, ow_):
    N, C, H, W = x.shape
    y = np.zeros((N, C, oh_, ow_))
    for i in range(oh_):
        for j in range(ow_):
            h0, h1 = i * H // oh_, -(-(i + 1) * H // oh_)
            w0, w1 = j * W // ow_, -(-(j + 1) * W // ow_)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].astype(np.float64).mean(axis=(2, 3))
    return y


# (x shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1), (1, 1), 0),    # ResNet's stem pool on odd sizes
    ((1, 2, 8, 7), (2, 3), (2, 1), (1, 0), (1, 1), 1),
    ((2, 1, 9, 9), (3, 2), (2, 2), (1, 1), (2, 2), 1),    # dilation
    ((1, 2, 5, 5), (2, 2), (2, 2), (0, 0), (1, 1), 1),    # ceil_mode adds a partial window
    ((1, 1, 6, 6), (3, 3), (3, 3), (1, 1), (1, 1), 1),    # ceil_mode window dropped: starts in right padding
]
AVG_CASES = [  # (x shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ((2, 3, 7, 9), (3, 3), (2, 2), (1, 1), 0, 1, 0),
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 1), 1, 0, 0),
    ((2, 1, 5, 5), (2, 2), (2, 2), (1, 0), 1, 1, 0),
    ((1, 2, 6, 7), (3, 3), (2, 3), (1, 1), 1, 1, 5),      # divisor_override
    ((1, 1, 6, 6), (3, 3), (3, 3), (1, 1), 1, 0, 0),
]
ADAPTIVE_CASES = [((2, 3, 7, 9), (3, 4)), ((1, 2, 5, 5), (1, 1)), ((1, 1, 4, 6), (6, 4)), ((2, 2, 3, 8), (2, 3))]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.reference("max_pool2d")
@pytest.mark.parametrize("case", MAX_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_matches_numpy(case, dtype, rng):
    xs, k, s, p, d, cm = case
    x = rng.standard_normal(xs).astype(dtype)
    y = call("max_pool2d", [af.tensor(x)], (*k, *s, *p, *d, cm))
    assert y.dtype == dtype
    assert_close(y, max_pool_ref(x, k, s, p, d, cm), rtol=0, atol=0)


@pytest.mark.reference("avg_pool2d")
@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avg_pool_matches_numpy(case, dtype, rng):
    xs, k, s, p, cm, cip, div = case
    x = rng.standard_normal(xs).astype(dtype)
    y = call("avg_pool2d", [af.tensor(x)], (*k, *s, *p, cm, cip, div))
    assert_close(y, avg_pool_ref(x, k, s, p, cm, cip, div), **_tol(dtype))


@pytest.mark.reference("avg_pool2d")
@pytest.mark.parametrize("k,s,p,cm,cip", [((3, 3), (1, 1), (1, 1), 0, 1), ((3, 2), (2, 3), (1, 1), 1, 0)])
def test_avg_pool_rows_wider_than_a_chunk(k, s, p, cm, cip, rng):
    """Output rows longer than the kernels' 256-column chunks, forward and (float64) gradients."""
    x = rng.standard_normal((1, 2, 5, 800))
    ints = (*k, *s, *p, cm, cip, 0)
    assert_close(call("avg_pool2d", [af.tensor(x)], ints), avg_pool_ref(x, k, s, p, cm, cip, 0), rtol=1e-12, atol=1e-12)
    gradcheck(lambda t: call("avg_pool2d", [t], ints), [t64(rng.standard_normal((1, 1, 3, 790)))])


@pytest.mark.reference("adaptive_avg_pool2d")
@pytest.mark.parametrize("case", ADAPTIVE_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adaptive_matches_numpy(case, dtype, rng):
    xs, o = case
    x = rng.standard_normal(xs).astype(dtype)
    assert_close(call("adaptive_avg_pool2d", [af.tensor(x)], o), adaptive_ref(x, *o), **_tol(dtype))


def test_unbatched_and_nan(rng):
    x = rng.standard_normal((2, 5, 5))
    y = call("max_pool2d", [af.tensor(x, dtype="float64")], (2, 2, 2, 2, 0, 0, 1, 1, 0))
    assert y.shape == (2, 2, 2)
    assert_close(y, max_pool_ref(x[None], (2, 2), (2, 2), (0, 0), (1, 1), 0)[0], rtol=0, atol=0)
    x[0, 1, 1] = np.nan
    y = call("max_pool2d", [af.tensor(x, dtype="float64")], (2, 2, 2, 2, 0, 0, 1, 1, 0)).numpy()
    assert np.isnan(y[0, 0, 0]) and not np.isnan(y[0, 0, 1])
    assert call("avg_pool2d", [af.tensor(x)], (2, 2, 1, 1, 0, 0, 0, 1, 0)).shape == (2, 4, 4)
    assert call("adaptive_avg_pool2d", [af.tensor(x)], (1, 1)).shape == (2, 1, 1)


def max_pool_argmax_ref(x, k, s, p, d):
    """The flat index ih * W + iw each output's gradient goes to, visiting the window in row-major
    order: the first maximum wins a tie, and a NaN wins over any number (a later NaN too), as in
    torch's CPU kernel."""
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, k[0], s[0], p[0], d[0], 0), out_size(W, k[1], s[1], p[1], d[1], 0)
    idx = np.full((N, C, Ho, Wo), -1)
    for n in range(N):
        for c in range(C):
            for oh in range(Ho):
                for ow in range(Wo):
                    best = None
                    for i in range(k[0]):
                        for j in range(k[1]):
                            ih, iw = oh * s[0] - p[0] + i * d[0], ow * s[1] - p[1] + j * d[1]
                            if not (0 <= ih < H and 0 <= iw < W):
                                continue
                            v = x[n, c, ih, iw]
                            if best is None or v > best or np.isnan(v):
                                best, idx[n, c, oh, ow] = v, ih * W + iw
    return idx


@pytest.mark.reference("max_pool2d")
@pytest.mark.parametrize("case", [((2, 3, 12, 13), (3, 3), (2, 2), (1, 1), (1, 1)),   # ResNet's stem pool
                                  ((1, 2, 9, 11), (2, 3), (1, 2), (1, 1), (1, 1)),
                                  ((1, 2, 11, 12), (3, 2), (2, 1), (1, 0), (2, 3))])  # dilation
def test_max_pool_ties_and_nans_send_the_gradient_where_torch_does(case, rng):
    """Small integers make many ties; NaNs sit inside and on the border of the image, so both the
    row-at-a-time interior path and the per-output border path are pinned."""
    xs, k, s, p, d = case
    x = rng.integers(0, 3, xs).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 6, replace=False)] = np.nan
    x[0, 0, 0, 0] = x[0, 0, 5, 6] = np.nan
    xt = af.tensor(x, requires_grad=True)
    y = call("max_pool2d", [xt], (*k, *s, *p, *d, 0))
    idx = max_pool_argmax_ref(x, k, s, p, d)
    want = np.take_along_axis(x.reshape(xs[0], xs[1], -1), idx.reshape(xs[0], xs[1], -1), axis=2).reshape(idx.shape)
    np.testing.assert_array_equal(y.numpy(), want)
    dy = rng.standard_normal(idx.shape).astype(np.float32)
    y.backward(af.tensor(dy))
    dx = np.zeros((xs[0], xs[1], xs[2] * xs[3]), np.float32)
    for n in range(xs[0]):
        for c in range(xs[1]):
            for o, i in enumerate(idx[n, c].reshape(-1)):
                dx[n, c, i] += dy[n, c].reshape(-1)[o]
    np.testing.assert_array_equal(xt.grad.numpy(), dx.reshape(xs))


def _distinct(rng, shape):
    """Values far apart, so finite differences never cross a max-pool tie."""
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + rng.uniform(-0.01, 0.01, shape)


@pytest.mark.gradcheck("max_pool2d")
@pytest.mark.parametrize("case", MAX_CASES[:3])
def test_max_pool_gradcheck(case, rng):
    xs, k, s, p, d, cm = case
    gradcheck(lambda x: call("max_pool2d", [x], (*k, *s, *p, *d, cm)), [t64(_distinct(rng, (1,) + xs[1:]))])


@pytest.mark.gradcheck("avg_pool2d")
@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool_gradcheck(case, rng):
    xs, k, s, p, cm, cip, div = case
    gradcheck(lambda x: call("avg_pool2d", [x], (*k, *s, *p, cm, cip, div)), [t64(rng.standard_normal((1,) + xs[1:]))])


@pytest.mark.gradcheck("adaptive_avg_pool2d")
@pytest.mark.parametrize("case", ADAPTIVE_CASES)
def test_adaptive_gradcheck(case, rng):
    xs, o = case
    gradcheck(lambda x: call("adaptive_avg_pool2d", [x], o), [t64(rng.standard_normal((1,) + xs[1:]))])


@pytest.mark.parametrize("case", reference.cases("pool"))
def test_matches_torch_forward_and_backward(case):
    """The cases above (and a larger adaptive one) through torch.nn.functional, from the fixture."""
    d = reference.case("pool", case)
    ax = af.tensor(d["x"], requires_grad=True)
    y = call(d["op"], [ax], tuple(int(i) for i in d["ints"]))
    assert_close(y, d["y"], name="y")
    y.backward(af.tensor(d["dy"]))
    assert_close(ax.grad, d["dx"], name="dx")


def test_thread_count_does_not_change_bits(rng):
    x = rng.standard_normal((4, 16, 33, 31)).astype(np.float32)
    cases = [("max_pool2d", (3, 3, 2, 2, 1, 1, 1, 1, 1)), ("avg_pool2d", (3, 3, 2, 2, 1, 1, 1, 0, 0)),
             ("adaptive_avg_pool2d", (5, 7))]
    for op, ints in cases:
        assert_thread_invariant(lambda t: call(op, [t], ints), [x], name=op)

def test_rejects_bad_input():
    x = af.zeros(1, 2, 5, 5)
    with pytest.raises(ValueError, match="'padding' must be between 0 and half the kernel size"):
        call("max_pool2d", [x], (2, 2, 2, 2, 2, 0, 1, 1, 0))
    with pytest.raises(ValueError, match="'stride' must be positive"):
        call("max_pool2d", [x], (2, 2, 0, 2, 0, 0, 1, 1, 0))
    with pytest.raises(ValueError, match="'dilation' must be positive"):
        call("max_pool2d", [x], (2, 2, 2, 2, 0, 0, 1, 0, 0))
    with pytest.raises(ValueError, match="'kernel_size' must be positive"):
        call("avg_pool2d", [x], (0, 2, 2, 2, 0, 0, 0, 1, 0))
    with pytest.raises(ValueError, match="output size 0x7, which is too small"):
        call("max_pool2d", [af.zeros(1, 1, 2, 9)], (3, 3, 1, 1, 0, 0, 1, 1, 0))
    with pytest.raises(ValueError, match="'ceil_mode' must be 0 or 1"):
        call("avg_pool2d", [x], (2, 2, 2, 2, 0, 0, 2, 1, 0))
    with pytest.raises(ValueError, match="'output_size' must be positive"):
        call("adaptive_avg_pool2d", [x], (0, 2))
    with pytest.raises(ValueError, match="'input' must be 3-D .* or 4-D"):
        call("max_pool2d", [af.zeros(5, 5)], (2, 2, 2, 2, 0, 0, 1, 1, 0))
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        call("avg_pool2d", [af.zeros(1, 1, 4, 4, dtype="int64")], (2, 2, 2, 2, 0, 0, 0, 1, 0))
    with pytest.raises(ValueError, match="takes 9 integer"):
        call("max_pool2d", [x], (2, 2, 2, 2, 0, 0, 1, 1))
