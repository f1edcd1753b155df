"""Checks for ops and models, public so users can test their own extensions.

assert_close: elementwise |actual - expected| <= atol + rtol * |expected|, failing with the worst
element's index and both values.
gradcheck: compares backward() with central finite differences in float64.
"""
from __future__ import annotations

import numpy as np

from . import _C
from .autograd import no_grad
from .tensor import tensor

_DEFAULT_TOL = {  # rtol tied to the dtype's epsilon
    np.dtype(np.float32): (1e-5, 1e-4),
    np.dtype(np.float64): (1e-10, 1e-7),
}


def _np(x):
    return x.numpy() if isinstance(x, _C.TensorBase) else np.asarray(x)


def assert_close(actual, expected, rtol=None, atol=None, name="tensor"):
    a, e = _np(actual), _np(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {e.shape}")
    d_rtol, d_atol = _DEFAULT_TOL.get(np.result_type(a.dtype, np.float32) if a.dtype.kind == "f" else np.dtype(np.float64), (0, 0))
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if a.dtype.kind not in "fc" and e.dtype.kind not in "fc":
        bad = a != e
        if bad.any():
            idx = tuple(int(i) for i in np.unravel_index(np.argmax(bad), a.shape))
            raise AssertionError(f"{name}: {int(bad.sum())} of {a.size} elements differ; first at {idx}: "
                                 f"{a[idx].item()} != {e[idx].item()}")
        return
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    # equal values (infinities of the same sign included) and NaN against NaN always pass
    same = (a64 == e64) | (np.isnan(a64) & np.isnan(e64))
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(a64 - e64))
        allowed = atol + rtol * np.abs(e64)
    bad = ~same & ~(err <= allowed)
    if bad.any():
        excess = np.where(bad, np.nan_to_num(err - allowed, nan=np.inf), -np.inf)
        idx = tuple(int(i) for i in np.unravel_index(np.argmax(excess), a.shape)) if a.ndim else ()
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements out of tolerance (atol={atol}, rtol={rtol}); "
            f"worst at index {idx}: actual {float(a64[idx])!r}, expected {float(e64[idx])!r}, "
            f"|diff| {float(err[idx]):.3e}")


def gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0):
    """Check d fn(*inputs) / d inputs against central differences.

    `inputs` are float64 affectfer tensors; those with requires_grad=True are checked (others, such
    as integer targets, are passed through). fn returns a tensor or a tuple of tensors. The scalar
    checked is L = sum_j <out_j, v_j> with fixed random v_j, so every output element matters.
    Returns True or raises AssertionError naming the input, the element and both values.
    """
    rng = np.random.default_rng(seed)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, _C.TensorBase) and x.requires_grad]
    for i in wrt:
        if inputs[i].dtype != "float64":
            raise TypeError(f"gradcheck needs float64 inputs; input {i} is {inputs[i].dtype}")

    def outputs():
        out = fn(*inputs)
        return out if isinstance(out, tuple) else (out,)

    outs = outputs()
    projections = [rng.standard_normal(o.shape) for o in outs]
    for i in wrt:
        inputs[i].grad = None
    live = [(o, v) for o, v in zip(outs, projections) if o.requires_grad]
    if not live:
        raise AssertionError("gradcheck: no output requires grad; is the op recorded by autograd?")
    for k, (o, v) in enumerate(live):
        o.backward(tensor(v, dtype="float64"), retain_graph=k < len(live) - 1)

    def loss():
        with no_grad():
            return sum(float(np.sum(o.numpy() * v)) for o, v in zip(outputs(), projections))

    for i in wrt:
        x = inputs[i].numpy()  # shares memory: perturb in place
        analytic = inputs[i].grad.numpy() if inputs[i].grad is not None else np.zeros_like(x)
        numeric = np.zeros_like(x)
        flat, nflat = x.reshape(-1), numeric.reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = loss()
            flat[k] = orig - eps
            minus = loss()
            flat[k] = orig
            nflat[k] = (plus - minus) / (2 * eps)
        assert_close(analytic, numeric, rtol=rtol, atol=atol, name=f"gradient of input {i}")
    return True


def assert_thread_invariant(fn, arrays, threads=(1, 2), seed=0, name="op"):
    """Run `fn(*inputs)` once per thread count and require bitwise-equal outputs and input gradients.

    `arrays`: NumPy arrays (float ones become leaf tensors with requires_grad, others plain tensors)
    or anything else, passed through. fn returns a tensor or a tuple; outputs that require grad are
    back-propagated with fixed random projections, the others (e.g. updated running statistics)
    are compared as they are. affectfer promises these bits do not depend on the thread count.
    """
    from . import get_num_threads, set_num_threads

    rng = np.random.default_rng(seed)
    projections, runs, previous = None, [], get_num_threads()
    try:
        for n in threads:
            set_num_threads(n)
            inputs = [tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a for a in arrays]
            outs = fn(*inputs)
            outs = outs if isinstance(outs, tuple) else (outs,)
            if projections is None:
                projections = [rng.standard_normal(o.shape).astype(o.dtype) if o.requires_grad else None for o in outs]
            live = [(o, p) for o, p in zip(outs, projections) if p is not None]
            for k, (o, p) in enumerate(live):
                o.backward(tensor(p), retain_graph=k < len(live) - 1)
            grads = [x.grad for x in inputs if isinstance(x, _C.TensorBase) and x.grad is not None]
            runs.append([t.numpy().copy() for t in list(outs) + grads])
    finally:
        set_num_threads(previous)
    for run, n in zip(runs[1:], threads[1:]):
        for k, (a, b) in enumerate(zip(runs[0], run)):
            kind = f"output {k}" if k < len(projections) else f"gradient {k - len(projections)}"
            if not np.array_equal(a, b, equal_nan=True):
                raise AssertionError(f"{name}: {kind} differs between {threads[0]} and {n} threads")
