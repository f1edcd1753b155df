"""batchnorm.c: batch_norm against a NumPy reference and torch, float64 gradchecks, running-stat
updates, bad input, thread-count determinism."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close, gradcheck, assert_thread_invariant
from tests import reference
from tests.conftest import call, t64


def batch_norm(x, weight=None, bias=None, running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5):
    return call("batch_norm", [x, weight, bias, running_mean, running_var], (int(training),), (momentum, eps))


def ref_batch_norm(x, w, b, rm, rv, training, momentum, eps):
    """Independent NumPy version: returns y and the running stats after the call (copies)."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    rm = None if rm is None else rm.astype(np.float64).copy()
    rv = None if rv is None else rv.astype(np.float64).copy()
    if training:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)  # biased, for normalising
        m = x.size // x.shape[1]
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mean, var = rm, rv
    y = (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + eps)
    if w is not None:
        y = y * w.reshape(bshape)
    if b is not None:
        y = y + b.reshape(bshape)
    return y, rm, rv


SHAPES = [(5, 3), (2, 3, 4, 5), (1, 2, 3, 3), (4, 1, 7), (3, 2, 1, 2, 2)]


@pytest.mark.reference("batch_norm")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training,track", [(True, True), (True, False), (False, True)])  # eval needs running stats
def test_batch_norm_matches_numpy(shape, dtype, training, affine, track, rng):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w = (rng.standard_normal(C) + 1).astype(dtype) if affine else None
    b = rng.standard_normal(C).astype(dtype) if affine else None
    rm = rng.standard_normal(C).astype(dtype) if track else None
    rv = (rng.random(C) + 0.5).astype(dtype) if track else None
    y_ref, rm_ref, rv_ref = ref_batch_norm(x, w, b, rm, rv, training, 0.3, 1e-3)
    t = lambda a: None if a is None else af.tensor(a)
    trm, trv = t(rm), t(rv)
    y = batch_norm(af.tensor(x), t(w), t(b), trm, trv, training, 0.3, 1e-3)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, y_ref, **tol, name="y")
    if track:
        assert_close(trm, rm_ref, **tol, name="running_mean")
        assert_close(trv, rv_ref, **tol, name="running_var")


@pytest.mark.gradcheck("batch_norm")
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 2), (1, 2, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck(shape, training, affine, rng):
    C = shape[1]
    x = t64(rng.standard_normal(shape))
    w = t64(rng.standard_normal(C) + 1) if affine else None
    b = t64(rng.standard_normal(C)) if affine else None
    rm = af.tensor(rng.standard_normal(C), dtype="float64") if not training else None
    rv = af.tensor(rng.random(C) + 0.5, dtype="float64") if not training else None
    inputs = [x, w, b] if affine else [x]
    fn = (lambda x, w, b: batch_norm(x, w, b, rm, rv, training)) if affine else (lambda x: batch_norm(x, None, None, rm, rv, training))
    gradcheck(fn, inputs)


def test_batch_norm_gradcheck_training_with_running_stats(rng):
    """Running stats change at every call in training; the output (and gradient) must not depend on them."""
    x, w, b = t64(rng.standard_normal((3, 2, 2))), t64(rng.standard_normal(2)), t64(rng.standard_normal(2))
    rm, rv = af.tensor(np.zeros(2)), af.tensor(np.ones(2))
    gradcheck(lambda x, w, b: batch_norm(x, w, b, rm, rv, True, 0.5), [x, w, b])


def test_batch_norm_weight_gradient_only(rng):
    """Gradient wanted for weight and bias but not x: the x path is skipped, dw/db still right."""
    x = af.tensor(rng.standard_normal((3, 2, 2)), dtype="float64")
    w, b = t64(rng.standard_normal(2)), t64(rng.standard_normal(2))
    gradcheck(lambda w, b: batch_norm(x, w, b), [w, b])


def test_batch_norm_matches_torch_over_several_steps():
    """Four train steps (momentum 0.2, eps 1e-4) with gradients accumulating into weight and bias,
    then eval in float32 with the running statistics they left, against torch's recorded numbers."""
    ref = reference.load("batchnorm")
    d = ref.case("steps")
    C = d["w"].shape[0]
    w0, b0 = d["w"], d["b"]
    aw, ab = t64(w0), t64(b0)
    arm, arv = af.tensor(np.zeros(C)), af.tensor(np.ones(C))
    for step in range(4):
        s = ref.case(f"step{step}")
        ax = t64(s["x"])
        ay = batch_norm(ax, aw, ab, arm, arv, True, 0.2, 1e-4)
        ay.backward(af.tensor(s["g"], dtype="float64"))
        assert_close(ay, s["y"], rtol=1e-12, atol=1e-12, name=f"y step {step}")
        assert_close(ax.grad, s["dx"], rtol=1e-10, atol=1e-12, name=f"dx step {step}")
        assert_close(arm, s["running_mean"], rtol=1e-12, atol=1e-12, name=f"running_mean step {step}")
        assert_close(arv, s["running_var"], rtol=1e-12, atol=1e-12, name=f"running_var step {step}")
    assert_close(aw.grad, d["dw"], rtol=1e-10, atol=1e-10, name="dw (accumulated)")
    assert_close(ab.grad, d["dbias"], rtol=1e-10, atol=1e-10, name="dbias (accumulated)")
    e = ref.case("eval")
    ax, aw32 = af.tensor(e["x"], requires_grad=True), af.tensor(w0.astype(np.float32), requires_grad=True)
    ay = batch_norm(ax, aw32, af.tensor(b0.astype(np.float32)), af.tensor(arm.numpy(), dtype="float32"),
                    af.tensor(arv.numpy(), dtype="float32"), False, 0.2, 1e-4)
    ay.backward(af.tensor(e["g"]))
    assert_close(ay, e["y"], name="eval y")
    assert_close(ax.grad, e["dx"], name="eval dx")
    assert_close(aw32.grad, e["dw"], rtol=1e-4, atol=1e-4, name="eval dw")


def test_batch_norm_no_running_stats_matches_torch():
    d = reference.case("batchnorm", "no_running_stats")
    assert_close(batch_norm(af.tensor(d["x"])), d["y"])


def test_batch_norm_empty_batch():
    rm, rv = af.tensor(np.full(3, 0.5)), af.tensor(np.full(3, 2.0))
    y = batch_norm(af.zeros(0, 3, 2, 2, dtype="float64"), None, None, rm, rv, True)
    assert y.shape == (0, 3, 2, 2)
    assert_close(rm, np.full(3, 0.5))
    assert_close(rv, np.full(3, 2.0))


def test_batch_norm_rejects_bad_input():
    x = af.zeros(4, 3)
    c3 = af.ones(3)
    with pytest.raises(ValueError, match="'input' must be"):
        batch_norm(af.zeros(3))
    with pytest.raises(ValueError, match=r"'weight' must have shape \(C,\) = \(3,\)"):
        batch_norm(x, af.ones(4))
    with pytest.raises(ValueError, match="'running_var' must have shape"):
        batch_norm(x, None, None, c3, af.ones(2))
    with pytest.raises(TypeError, match="'bias' is float64"):
        batch_norm(x, c3, af.ones(3, dtype="float64"))
    with pytest.raises(TypeError, match="'input' must be float32 or float64"):
        batch_norm(af.zeros(4, 3, dtype="int32"))
    with pytest.raises(ValueError, match="'running_mean' .*required in eval"):
        batch_norm(x, training=False)
    with pytest.raises(ValueError, match="given together"):
        batch_norm(x, None, None, c3, None)
    with pytest.raises(ValueError, match="1 value per channel"):
        batch_norm(af.zeros(1, 3))
    with pytest.raises(ValueError, match="'eps'"):
        batch_norm(x, eps=-1.0)
    with pytest.raises(ValueError, match="takes 1 integer and 2 float"):
        call("batch_norm", [x], (1,), (0.1,))
    # one value per channel is fine in eval
    assert batch_norm(af.zeros(1, 3), None, None, af.zeros(3), af.ones(3), training=False).shape == (1, 3)


def test_batch_norm_threads_bitwise_identical(rng):
    x = rng.standard_normal((8, 16, 16, 16)).astype(np.float32)
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)

    def run(ax, aw, ab):  # the running statistics it updates in place are compared too
        rm, rv = af.zeros(16), af.ones(16)
        return batch_norm(ax, aw, ab, rm, rv), rm, rv

    assert_thread_invariant(run, [x, w, b], name="batch_norm")


# ---- batch_norm_relu / batch_norm_silu: the activation of batch_norm(x) in one pass ----
def fused_batch_norm(op, x, weight=None, bias=None, running_mean=None, running_var=None, training=True,
                     momentum=0.1, eps=1e-5):
    return call(op, [x, weight, bias, running_mean, running_var], (int(training),), (momentum, eps))


FUSED_ACTIVATIONS = {"batch_norm_relu": lambda y: np.maximum(y, 0), "batch_norm_silu": lambda y: y / (1 + np.exp(-y))}


@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op", sorted(FUSED_ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_numpy(op, shape, dtype, training, rng):
    C = shape[1]
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(dtype)
    w, b = (rng.standard_normal(C) + 1).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rv = rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype)
    y_ref, rm_ref, rv_ref = ref_batch_norm(x, w, b, rm, rv, training, 0.3, 1e-3)
    trm, trv = af.tensor(rm), af.tensor(rv)
    y = fused_batch_norm(op, af.tensor(x), af.tensor(w), af.tensor(b), trm, trv, training, 0.3, 1e-3)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == shape
    assert_close(y, FUSED_ACTIVATIONS[op](y_ref), **tol, name="y")
    assert_close(trm, rm_ref, **tol, name="running_mean")
    assert_close(trv, rv_ref, **tol, name="running_var")


@pytest.mark.parametrize("op", sorted(FUSED_ACTIVATIONS))
def test_fused_batch_norm_threads_bitwise_identical(op, rng):
    x = rng.standard_normal((8, 16, 16, 16)).astype(np.float32)
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)

    def run(ax, aw, ab):
        rm, rv = af.zeros(16), af.ones(16)
        return fused_batch_norm(op, ax, aw, ab, rm, rv), rm, rv

    assert_thread_invariant(run, [x, w, b], name=op)


@pytest.mark.parametrize("op", sorted(FUSED_ACTIVATIONS))
def test_fused_batch_norm_rejects_bad_input(op):
    with pytest.raises(ValueError, match=f"{op}: argument 'eps' must be finite"):
        fused_batch_norm(op, af.zeros(2, 3), eps=-1.0)


@pytest.mark.gradcheck("batch_norm_relu")
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_gradcheck(shape, training, rng):
    C = shape[1]
    # values kept away from the ReLU kink so finite differences do not straddle it
    x = rng.standard_normal(shape)
    w, b = t64(rng.standard_normal(C) + 1), t64(rng.standard_normal(C))
    rm = af.tensor(rng.standard_normal(C), dtype="float64") if not training else None
    rv = af.tensor(rng.random(C) + 0.5, dtype="float64") if not training else None
    z = batch_norm(t64(x, requires_grad=False), w.detach(), b.detach(), rm, rv, training).numpy()
    if np.abs(z).min() < 1e-3:
        pytest.skip("a pre-activation within 1e-3 of the kink")
    gradcheck(lambda x, w, b: fused_batch_norm("batch_norm_relu", x, w, b, rm, rv, training), [t64(x), w, b])


@pytest.mark.gradcheck("batch_norm_silu")
@pytest.mark.parametrize("shape", [(4, 3), (2, 2, 3, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_silu_gradcheck(shape, training, rng):
    C = shape[1]
    x, w, b = t64(rng.standard_normal(shape)), t64(rng.standard_normal(C) + 1), t64(rng.standard_normal(C))
    rm = af.tensor(rng.standard_normal(C), dtype="float64") if not training else None
    rv = af.tensor(rng.random(C) + 0.5, dtype="float64") if not training else None
    gradcheck(lambda x, w, b: fused_batch_norm("batch_norm_silu", x, w, b, rm, rv, training), [x, w, b])


@pytest.mark.parametrize("op,activation", [("batch_norm_relu", "relu"), ("batch_norm_silu", "silu")])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_batch_norm_is_bitwise_batch_norm_then_activation(op, activation, dtype, rng):
    """Output, running statistics and every gradient equal batch_norm followed by the activation bit
    for bit: the fused kernels run the same arithmetic (bn_affine, sigmoid.inc)."""
    x = (rng.standard_normal((4, 3, 5, 7)) * 3).astype(dtype)
    w, b = (rng.standard_normal(3) + 1).astype(dtype), rng.standard_normal(3).astype(dtype)
    dy = af.tensor(rng.standard_normal(x.shape).astype(dtype))
    runs = []
    for fused in (True, False):
        tx, tw, tb = (af.tensor(a, requires_grad=True) for a in (x, w, b))
        rm, rv = af.zeros(3, dtype=dtype), af.ones(3, dtype=dtype)
        y = fused_batch_norm(op, tx, tw, tb, rm, rv) if fused else call(activation, [batch_norm(tx, tw, tb, rm, rv)])
        y.backward(dy)
        runs.append([y.numpy(), rm.numpy(), rv.numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()])
    for name, f, u in zip(("y", "running_mean", "running_var", "dx", "dweight", "dbias"), *runs):
        np.testing.assert_array_equal(f, u, err_msg=name)
