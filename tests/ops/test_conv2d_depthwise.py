"""conv2d_depthwise.c: the depthwise kernels on zero-padded phase planes (forward, dx, dw) against the
NumPy reference of test_conv2d, float64 gradchecks, float32 backward against the float64 one, and
thread invariance; strides 1 to 3 (the strided ones split the plane into phases), padding from none
to wider than the kernel, dilation, channel multipliers, planes smaller than one 16-value block and
larger than several 64-value blocks."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64
from tests.ops.test_conv2d import _ints, conv2d_ref

# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 7, 6), (3, 1, 3, 3), (1, 1), (1, 1), (1, 1), 3),      # EfficientNet's 3x3
    ((1, 4, 9, 8), (4, 1, 5, 5), (1, 1), (2, 2), (1, 1), 4),      # 5x5
    ((2, 2, 6, 9), (4, 1, 5, 3), (1, 1), (2, 0), (1, 2), 2),      # multiplier 2, dilation, asymmetric padding
    ((1, 3, 5, 5), (3, 1, 3, 3), (1, 1), (0, 0), (1, 1), 3),      # no padding
    ((1, 2, 4, 3), (2, 1, 3, 3), (1, 1), (3, 4), (1, 1), 2),      # padding wider than the kernel
    ((3, 5, 1, 1), (5, 1, 3, 3), (1, 1), (1, 1), (1, 1), 5),      # a 1x1 plane
    ((2, 3, 7, 7), (3, 1, 3, 3), (2, 2), (1, 1), (1, 1), 3),      # EfficientNet's stride-2 3x3, odd plane
    ((1, 2, 8, 9), (2, 1, 5, 5), (2, 2), (2, 2), (1, 1), 2),      # stride-2 5x5
    ((1, 2, 9, 7), (4, 1, 3, 2), (3, 2), (1, 0), (2, 1), 2),      # mixed strides, dilation, multiplier 2
    ((1, 2, 6, 5), (2, 1, 1, 1), (2, 3), (0, 0), (1, 1), 2),      # 1x1 taps: phases without a tap
    ((1, 2, 13, 11), (2, 1, 3, 3), (1, 1), (1, 1), (1, 1), 2),    # 143 outputs: 64-blocks and 16-blocks
]
IDS = [str(i) for i in range(len(CASES))]


@pytest.mark.reference("conv2d")
@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_matches_numpy(case, dtype, rng):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b, g = (rng.standard_normal(s).astype(dtype) for s in (xs, ws, ws[:1], (1,)))
    ints = _ints(stride, padding, dilation, groups)
    tx, tw, tb = (af.tensor(a, requires_grad=True) for a in (x, w, b))
    y = call("conv2d", [tx, tw, tb], ints)
    ref = conv2d_ref(x, w, b, stride, padding, dilation, groups)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11)
    assert_close(y, ref, **tol)
    # backward against a second, independent product: the gradients of sum(y * dy) through the reference
    dy = rng.standard_normal(ref.shape)
    y.backward(af.tensor(dy.astype(dtype)))
    ones = np.eye(x.size).reshape((x.size,) + xs) if x.size <= 150 else None
    dw = np.zeros(ws)
    for idx in np.ndindex(*ws):
        e = np.zeros(ws)
        e[idx] = 1
        dw[idx] = (conv2d_ref(x, e, None, stride, padding, dilation, groups) * dy).sum()
    assert_close(tw.grad, dw, **tol, name="dw")
    if ones is not None:
        dx = np.array([(conv2d_ref(o, w, None, stride, padding, dilation, groups) * dy).sum() for o in ones])
        assert_close(tx.grad, dx.reshape(xs), **tol, name="dx")


@pytest.mark.gradcheck("conv2d")
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_depthwise_gradcheck(case, rng):
    xs, ws, stride, padding, dilation, groups = case
    x, w, b = t64(rng.standard_normal(xs)), t64(rng.standard_normal(ws)), t64(rng.standard_normal(ws[0]))
    ints = _ints(stride, padding, dilation, groups)
    gradcheck(lambda x, w, b: call("conv2d", [x, w, b], ints), [x, w, b])


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_thread_invariant(stride, rng):
    x, w = rng.standard_normal((4, 24, 21, 19)).astype(np.float32), rng.standard_normal((48, 1, 5, 5)).astype(np.float32)
    b = rng.standard_normal(48).astype(np.float32)
    ints = _ints((stride, stride), (2, 2), (1, 1), 24)
    assert_thread_invariant(lambda *t: call("conv2d", list(t), ints), [x, w, b], name=f"depthwise 5x5 stride {stride}")
