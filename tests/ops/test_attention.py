"""attention.c: scaled_dot_product_attention against a NumPy softmax(Q K^T s) V (forward and the
analytic backward), float64 gradchecks on query, key and value (one and several score blocks),
thread-count invariance, empty sizes and bad input."""
import math

import numpy as np
import pytest

import affectfer as af
from affectfer import _C
from affectfer.nn import functional as F
from affectfer.testing import assert_close, assert_thread_invariant, gradcheck
from tests.conftest import call, t64


def ref_attention(q, k, v, scale):
    """Forward and the backward closure in float64 (softmax's Jacobian: dS = P * (dP - rowsum(dP * P)))."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * scale
    s = s - s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    out = p @ v

    def backward(g):
        dv = np.swapaxes(p, -1, -2) @ g
        dp = g @ np.swapaxes(v, -1, -2)
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv
    return out, backward


# (q shape, Nk, Dv): batch dims, query/key lengths across the 128-query and 256-key block sizes
CASES = [((2, 3, 7, 4), 7, 4), ((1, 1, 1, 1), 1, 1), ((2, 5, 8), 3, 6), ((6, 5), 9, 2), ((1, 2, 197, 16), 197, 16),
         ((1, 1, 300, 8), 300, 8), ((2, 1, 130, 4), 520, 3), ((1, 1, 3, 5), 600, 5), ((2, 2, 50, 64), 50, 64),
         # the limits of the float32 short-sequence kernels (Nk <= 256 forward and 64 backward, Dv <= 64,
         # D <= 128) and just past them
         ((1, 3, 13, 128), 64, 64), ((1, 1, 6, 17), 65, 33), ((2, 1, 5, 129), 16, 64), ((1, 1, 4, 16), 17, 65),
         ((1, 2, 11, 128), 256, 64), ((1, 1, 7, 32), 257, 16),
         # forward key chunks of 4 vectors then 0-3 more (Nk = 197 is 13 vectors: 3 chunks + 1), and
         # query rows in several tasks of one batch entry (200 rows each)
         ((2, 12, 197, 64), 197, 64), ((1, 1, 9, 16), 90, 8), ((1, 1, 8, 40), 100, 64), ((1, 2, 450, 16), 100, 24),
         # key counts past the last full 16 vector: 1 to 9 of them (1 to 4 are scored apart, as dot products;
         # the AVX2 kernel's 8-key vectors: 27 keys leave 3 past 24, a pair and a single key, with D = 20)
         ((1, 2, 9, 24), 17, 16), ((2, 1, 64, 128), 40, 64), ((1, 1, 33, 7), 56, 3), ((1, 1, 50, 64), 57, 64),
         ((1, 1, 12, 16), 20, 8), ((1, 2, 11, 7), 36, 5), ((1, 1, 6, 33), 49, 64), ((2, 1, 7, 128), 52, 16),
         ((1, 1, 8, 40), 53, 64), ((1, 1, 10, 20), 27, 8)]


# the CPU forward's float32 kernels at short lengths, widest first (csrc/ops/attention.h)
KERNELS = ["avx512", "avx2", "blocked"]


@pytest.fixture
def attention_kernel(request):
    """Caps the CPU attention kernel at request.param (None: no cap), so that a machine with AVX-512
    also runs the AVX2 kernel and the blocked path at the lengths where it would not choose them;
    skips a kernel this CPU lacks."""
    cap = getattr(request, "param", None)
    if cap is None:
        yield None
        return
    previous = _C.cap_attention_kernel(cap)
    try:
        if _C.attention_kernel() != cap:
            pytest.skip(f"this CPU has no {cap} attention kernel")
        yield cap
    finally:
        _C.cap_attention_kernel(previous)


def test_kernel_cap():
    widest = _C.attention_kernel()
    assert widest in KERNELS
    previous = _C.cap_attention_kernel("blocked")
    try:
        assert previous == "avx512" and _C.attention_kernel() == "blocked"
        with pytest.raises(ValueError, match="'blocked', 'avx2' or 'avx512'"):
            _C.cap_attention_kernel("sse")
    finally:
        _C.cap_attention_kernel(previous)
    assert _C.attention_kernel() == widest


@pytest.mark.reference("scaled_dot_product_attention")
@pytest.mark.parametrize("qs,nk,dv", CASES)
@pytest.mark.parametrize("dtype,attention_kernel", [("float64", None)] + [("float32", k) for k in KERNELS],
                         indirect=["attention_kernel"])
def test_matches_numpy(qs, nk, dv, dtype, attention_kernel, rng):
    q = rng.standard_normal(qs) * 2
    k = rng.standard_normal(qs[:-2] + (nk, qs[-1])) * 2
    v = rng.standard_normal(qs[:-2] + (nk, dv))
    g = rng.standard_normal(qs[:-1] + (dv,))
    tq, tk, tv = (af.tensor(a, dtype=dtype, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk, tv)
    out.backward(af.tensor(g, dtype=dtype))
    ref, backward = ref_attention(q, k, v, 1 / math.sqrt(qs[-1]))
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == "float32" else dict(rtol=1e-11, atol=1e-12)
    assert out.dtype == dtype and out.shape == qs[:-1] + (dv,)
    assert_close(out, ref, name="out", **tol)
    for name, t, want in zip(("dq", "dk", "dv"), (tq, tk, tv), backward(g)):
        assert_close(t.grad, want, name=name, **tol)


@pytest.mark.reference("scaled_dot_product_attention")
def test_explicit_scale_and_large_logits(rng):
    """A given scale replaces 1/sqrt(D); logits of several hundred stay finite (max subtracted)."""
    q, k, v = rng.standard_normal((2, 9, 3)), rng.standard_normal((2, 11, 3)), rng.standard_normal((2, 11, 4))
    for scale in (0.1, 1.0, 80.0):
        out = F.scaled_dot_product_attention(t64(q), t64(k), t64(v), scale=scale)
        assert_close(out, ref_attention(q, k, v, scale)[0], rtol=1e-11, atol=1e-12, name=f"scale {scale}")


@pytest.mark.reference("scaled_dot_product_attention")
@pytest.mark.parametrize("nk", [5, 50, 197, 300])
def test_float32_large_logits(nk, rng):
    """float32 logits in the hundreds (the register kernel with one score chunk, with several, and the
    blocked path): finite, and the log-sum-exp the backward relies on gives the right gradients."""
    q, k, v = rng.standard_normal((2, 7, 8)) * 20, rng.standard_normal((2, nk, 8)) * 20, rng.standard_normal((2, nk, 8))
    g = rng.standard_normal((2, 7, 8))
    tq, tk, tv = (af.tensor(a, dtype="float32", requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk, tv, scale=1.0)
    out.backward(af.tensor(g, dtype="float32"))
    ref, backward = ref_attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), 1.0)
    assert np.isfinite(out.numpy()).all()
    assert_close(out, ref, rtol=1e-3, atol=1e-3, name="out")
    for name, t, want in zip(("dq", "dk", "dv"), (tq, tk, tv), backward(g)):
        assert_close(t.grad, want, rtol=1e-2, atol=1e-3, name=name)


@pytest.mark.gradcheck("scaled_dot_product_attention")
@pytest.mark.parametrize("qs,nk,dv", [((2, 2, 3, 4), 5, 3), ((1, 4, 2), 4, 2), ((1, 1, 2, 2), 260, 1),
                                      ((1, 130, 2), 3, 2)])
def test_gradcheck(qs, nk, dv, rng):
    q = t64(rng.standard_normal(qs))
    k = t64(rng.standard_normal(qs[:-2] + (nk, qs[-1])))
    v = t64(rng.standard_normal(qs[:-2] + (nk, dv)))
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, scale=0.7), [q, k, v])


def test_gradient_of_some_inputs_only(rng):
    q, k, v = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 6, 3)), rng.standard_normal((2, 6, 2))
    g = rng.standard_normal((2, 5, 2))
    _, backward = ref_attention(q, k, v, 1 / math.sqrt(3))
    tq, tk, tv = t64(q, False), t64(k), t64(v, False)
    F.scaled_dot_product_attention(tq, tk, tv).backward(af.tensor(g, dtype="float64"))
    assert tq.grad is None and tv.grad is None
    assert_close(tk.grad, backward(g)[1], rtol=1e-11, atol=1e-12)


@pytest.mark.reference("scaled_dot_product_attention")
@pytest.mark.parametrize("nk,d", [(7, 5), (50, 100), (197, 64), (300, 8)])
def test_float32_gradient_of_some_inputs_only(nk, d, rng):
    """Each subset of (query, key, value) needing a gradient gets the gradients the full backward gives,
    in float32 (the register kernels at nk <= 64; at 197 its forward with the blocked backward; the
    blocked path at 300)"""
    q, k, v = rng.standard_normal((2, 9, d)), rng.standard_normal((2, nk, d)), rng.standard_normal((2, nk, 6))
    g = af.tensor(rng.standard_normal((2, 9, 6)), dtype="float32")
    full = [af.tensor(a, dtype="float32", requires_grad=True) for a in (q, k, v)]
    F.scaled_dot_product_attention(*full).backward(g)
    _, backward = ref_attention(q, k, v, 1 / math.sqrt(d))
    for i, want in enumerate(backward(g.numpy().astype(np.float64))):
        assert_close(full[i].grad, want, rtol=1e-4, atol=2e-5, name=f"full {i}")
    for mask in range(1, 7):
        ts = [af.tensor(a, dtype="float32", requires_grad=bool(mask >> i & 1)) for i, a in enumerate((q, k, v))]
        F.scaled_dot_product_attention(*ts).backward(g)
        for i, t in enumerate(ts):
            if mask >> i & 1:
                assert_close(t.grad, full[i].grad, rtol=0, atol=0, name=f"mask {mask} input {i}")
            else:
                assert t.grad is None


@pytest.mark.parametrize("attention_kernel", KERNELS, indirect=True)
def test_threads_bitwise_identical(attention_kernel, rng):
    shapes = [((2, 3, 197, 16), (2, 3, 197, 16), (2, 3, 197, 16)), ((1, 2, 300, 8), (1, 2, 520, 8), (1, 2, 520, 5)),
              ((4, 6, 50, 64), (4, 6, 50, 64), (4, 6, 50, 64)),  # the short-sequence kernels
              ((1, 1, 450, 16), (1, 1, 100, 16), (1, 1, 100, 8))]  # one batch entry, 3 forward tasks
    for sq, sk, sv in shapes:
        q, k, v = (rng.standard_normal(s).astype(np.float32) for s in (sq, sk, sv))
        assert_thread_invariant(F.scaled_dot_product_attention, [q, k, v], threads=(1, 2, 3), name="sdpa")


@pytest.mark.parametrize("attention_kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("nk", [17, 50, 56, 197])
def test_short_kernel_tail_keys_same_bits(nk, attention_kernel, rng):
    """A row's result does not depend on the other rows or on how the short kernel groups them into
    blocks: the first 64 of 65 query rows must agree to the bit with 64 rows alone, forward and
    backward, at key counts that are not a multiple of 16 (at 197 keys the backward is the blocked
    path's)."""
    q = rng.standard_normal((2, 65, 64)).astype(np.float32)
    k = rng.standard_normal((2, nk, 64)).astype(np.float32) * 2
    v = rng.standard_normal((2, nk, 64)).astype(np.float32)
    g = rng.standard_normal((2, 65, 64)).astype(np.float32)
    results = []
    for rows in (64, 65):
        tq, tk, tv = (af.tensor(a, requires_grad=True) for a in (q[:, :rows], k, v))
        out = F.scaled_dot_product_attention(tq, tk, tv)
        out.backward(af.tensor(g[:, :rows]))
        results.append((out.numpy()[:, :64], tq.grad.numpy()[:, :64]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_empty_sizes():
    out = F.scaled_dot_product_attention(t64(np.ones((2, 3, 4))), t64(np.ones((2, 0, 4))), t64(np.ones((2, 0, 5))))
    assert out.shape == (2, 3, 5) and not out.numpy().any()  # an empty sum, as torch gives
    out.sum().backward()
    out = F.scaled_dot_product_attention(t64(np.ones((2, 0, 4))), t64(np.ones((2, 3, 4))), t64(np.ones((2, 3, 5))))
    assert out.shape == (2, 0, 5)
    out = F.scaled_dot_product_attention(t64(np.ones((0, 2, 4))), t64(np.ones((0, 3, 4))), t64(np.ones((0, 3, 5))))
    assert out.shape == (0, 2, 5)


def test_bad_input():
    z = af.zeros
    with pytest.raises(ValueError, match=r"'query' \(2, 3, 4\), 'key' \(3, 3, 4\) and 'value' \(3, 3, 4\) must have the same leading"):
        F.scaled_dot_product_attention(z(2, 3, 4), z(3, 3, 4), z(3, 3, 4))
    with pytest.raises(ValueError, match=r"'key' \(2, 3, 5\) must have the last dim of 'query' \(2, 3, 4\)"):
        F.scaled_dot_product_attention(z(2, 3, 4), z(2, 3, 5), z(2, 3, 4))
    with pytest.raises(ValueError, match=r"'value' \(2, 4, 4\) must have as many rows as 'key' \(2, 3, 4\)"):
        F.scaled_dot_product_attention(z(2, 3, 4), z(2, 3, 4), z(2, 4, 4))
    with pytest.raises(ValueError, match="argument 'key' must be at least 2-D"):
        F.scaled_dot_product_attention(z(2, 3), z(3), z(2, 3))
    with pytest.raises(TypeError, match="'value' is float64"):
        F.scaled_dot_product_attention(z(2, 3), z(2, 3), z(2, 3, dtype="float64"))
    with pytest.raises(ValueError, match="'scale' must be finite"):
        F.scaled_dot_product_attention(z(2, 3), z(2, 3), z(2, 3), scale=float("inf"))
    with pytest.raises(TypeError, match="'scale' must be a number"):
        F.scaled_dot_product_attention(z(2, 3), z(2, 3), z(2, 3), scale="1")
    with pytest.raises(ValueError, match="takes|scale"):
        call("scaled_dot_product_attention", [z(2, 3), z(2, 3), z(2, 3)])
