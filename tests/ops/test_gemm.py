"""gemm.c / gemm_avx512.c: the float32 GEMM that linear, matmul and conv2d share, against a float64
NumPy product, within float32 rounding. The shapes straddle the AVX-512 kernel's blocks (8-row
panels, 48-column micro-panels run as 1, 2 or 3 vectors of 16, K blocks of 256) and gemm.c's tiles (256 rows, K slices from 1024),
so edges, masks and the K-block accumulation are all exercised; linear's backward covers the
transposed operands and beta = 1 (gradients accumulate into C)."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_thread_invariant
from tests.conftest import call

EPS32 = np.finfo(np.float32).eps

# (M, K, N): edges of every block size, K across 1, 2 and many K blocks, a single long-K product
SHAPES = [(1, 1, 1), (8, 256, 48), (9, 257, 49), (7, 255, 47), (5, 3, 17), (37, 520, 70), (64, 576, 49),
          (257, 100, 1030), (300, 3, 2), (3, 2100, 5), (24, 1, 64), (16, 17, 96), (17, 33, 33), (64, 147, 196)]


def _check(out, a, b, name):
    """|out - a b| within float32 rounding of a K-term sum: a few eps times sqrt(K) |a||b|."""
    ref = a.astype(np.float64) @ b.astype(np.float64)
    bound = 4 * EPS32 * np.sqrt(a.shape[-1]) * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30
    err = np.abs(np.asarray(out, dtype=np.float64) - ref)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), f"{name}: error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_product_matches_float64(M, K, N, rng):
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    _check(call("matmul", [af.tensor(a), af.tensor(b)]).numpy(), a, b, "A B")


@pytest.mark.parametrize("M,K,N", SHAPES)
def test_transposed_operands_and_accumulation(M, K, N, rng):
    """linear: y = x W^T (B transposed); dx = dy W; dW = dy^T x (A transposed), added twice into the
    same gradient buffers (beta = 1) by using the layer twice."""
    x = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    dy = rng.standard_normal((M, N)).astype(np.float32)
    tx, tw = af.tensor(x, requires_grad=True), af.tensor(w, requires_grad=True)
    y = call("linear", [tx, tw])
    _check(y.numpy(), x, w.T, "x W^T")
    (y * af.tensor(dy)).sum().backward()
    _check(tx.grad.numpy(), dy, w, "dy W")
    _check(tw.grad.numpy(), dy.T, x, "dy^T x")
    (call("linear", [tx, tw]) * af.tensor(dy)).sum().backward()
    _check(tx.grad.numpy(), 2 * dy, w, "dx accumulated twice")
    _check(tw.grad.numpy(), 2 * dy.T, x, "dW accumulated twice")


def test_nonfinite_output_buffer_is_not_read(rng):
    """beta = 0 must not read C: a product into fresh (uninitialised) memory never picks up NaN."""
    a = rng.standard_normal((13, 40)).astype(np.float32)
    b = rng.standard_normal((40, 35)).astype(np.float32)
    for _ in range(3):
        scratch = af.tensor(np.full((64, 64), np.nan, np.float32))  # recycled memory full of NaN
        del scratch
        assert np.isfinite(call("matmul", [af.tensor(a), af.tensor(b)]).numpy()).all()


@pytest.mark.parametrize("M,K,N", [(260, 300, 1100), (3, 4100, 7), (40, 70, 35)])
def test_thread_invariant(M, K, N, rng):
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    assert_thread_invariant(lambda ta, tb: ta @ tb, [a, b], threads=(1, 2, 3), name="gemm")


def _has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx512(), reason="the AVX-512 kernel's packing; OpenBLAS's edge kernels round by tile")
@pytest.mark.parametrize("M,K,N", [(600, 520, 200), (520, 257, 1030), (257, 40, 49), (1000, 768, 96)])
def test_op_b_packed_once_gives_the_bits_of_separate_row_tiles(M, K, N, rng):
    """A product with more than 256 rows packs op(B) once for all its row tiles (gemm.c); rows computed
    256 at a time, which pack it per call, must give the same bits, for B as is (matmul) and
    transposed (linear)."""
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    whole = call("matmul", [af.tensor(a), af.tensor(b)]).numpy()
    whole_t = call("linear", [af.tensor(a), af.tensor(np.ascontiguousarray(b.T))]).numpy()
    parts = [call("matmul", [af.tensor(a[i:i + 256]), af.tensor(b)]).numpy() for i in range(0, M, 256)]
    parts_t = [call("linear", [af.tensor(a[i:i + 256]), af.tensor(np.ascontiguousarray(b.T))]).numpy()
               for i in range(0, M, 256)]
    assert np.array_equal(whole, np.concatenate(parts)) and np.array_equal(whole_t, np.concatenate(parts_t))
    _check(whole, a, b, "A B")
    _check(whole_t, a, b, "A (B^T)^T")
