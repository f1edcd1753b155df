"""fill.c: the in-place writers fill_, copy_, uniform_, normal_, add_ and the nonfinite_index reduction,
against NumPy (the random ones against a NumPy Philox4x32-10 written from the paper), for every
thread count, and with malformed arguments."""
import hashlib

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_thread_invariant
from tests.conftest import call


M32 = np.uint64(0xFFFFFFFF)


def philox_blocks(seed, stream, n):
    """Philox4x32-10 (Salmon et al., SC 2011) for counters 0..n-1 of `stream` under key `seed`: (n, 4) uint64."""
    seed, stream = seed % 2**64, stream % 2**64
    c = [np.arange(n, dtype=np.uint64) & M32, np.arange(n, dtype=np.uint64) >> np.uint64(32),
         np.full(n, stream & 0xFFFFFFFF, np.uint64), np.full(n, stream >> 32, np.uint64)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        p0, p1 = np.uint64(0xD2511F53) * c[0], np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & M32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & M32]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & M32, (k1 + np.uint64(0xBB67AE85)) & M32
    return np.stack(c, axis=1)


def uniforms53(words, first):
    """The 53-bit uniform built from words[first] (27 bits) and words[first + 1] (26 bits)."""
    hi, lo = words[:, first] >> np.uint64(5), words[:, first + 1] >> np.uint64(6)
    return (hi.astype(np.float64) * 67108864.0 + lo.astype(np.float64)) / 9007199254740992.0


def random_reference(kind, n, seed, stream, a, b):
    words = philox_blocks(seed, stream, n)
    if kind == "uniform_":
        return a + (b - a) * uniforms53(words, 0)
    u1, u2 = 1.0 - uniforms53(words, 0), uniforms53(words, 2)
    return a + b * np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)


def test_numpy_philox_matches_the_published_vectors():
    words = philox_blocks(0, 0, 1)[0]
    assert tuple(int(w) for w in words) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)


# ---------------------------------------------------------------- fill_

@pytest.mark.reference("fill_")
@pytest.mark.parametrize("dtype,value", [("float32", 0.1), ("float64", -2.5e300), ("float32", float("inf")),
                                         ("uint8", 255), ("int32", -2**31), ("int64", -2**53), ("bool", 1)])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 4, 5)])
def test_fill_matches_numpy(dtype, value, shape):
    t = af.empty(*shape, dtype=dtype)
    assert call("fill_", [t], (), (value,)) == ()
    np.testing.assert_array_equal(t.numpy(), np.full(shape, value, dtype=dtype))


def test_fill_nan_and_large_tensor_are_thread_invariant():
    def fill(v):
        t = af.empty(300, 400, dtype="float64")
        call("fill_", [t], (), (v,))
        return t
    assert_thread_invariant(lambda: fill(0.5), [], name="fill_")
    assert np.isnan(fill(float("nan")).numpy()).all()


@pytest.mark.parametrize("dtype,value", [("uint8", 256), ("uint8", -1), ("int32", 2**31), ("int32", 0.5),
                                         ("int64", 2.0**63), ("bool", 2), ("int64", float("nan"))])
def test_fill_refuses_values_the_dtype_cannot_hold(dtype, value):
    with pytest.raises(ValueError, match=f"fill_: value .* not a whole number that {dtype} can hold"):
        call("fill_", [af.empty(3, dtype=dtype)], (), (value,))


def test_fill_malformed_arguments():
    t = af.empty(3)
    with pytest.raises(ValueError, match="fill_ takes 0 integer and 1 float attributes, got 0 and 0"):
        call("fill_", [t])
    with pytest.raises(ValueError, match="fill_ takes at most 1 tensor input, got 2"):
        call("fill_", [t, t], (), (1.0,))
    with pytest.raises(ValueError, match="fill_: argument 'input' is required"):
        call("fill_", [None], (), (1.0,))
    with pytest.raises(TypeError, match="argument 'input' must be an affectfer.Tensor"):
        call("fill_", [np.zeros(3)], (), (1.0,))
    with pytest.raises(TypeError, match="fill_: argument 'input' of dtype float16 is not supported"):
        call("fill_", [af.empty(3, dtype="float16")], (), (1.0,))


# ---------------------------------------------------------------- copy_

@pytest.mark.reference("copy_")
@pytest.mark.parametrize("dst_dtype,src_dtype", [("float32", "float32"), ("float64", "float64"), ("uint8", "uint8"),
                                                 ("int64", "int64"), ("float32", "float64"), ("float64", "float32")])
def test_copy_matches_numpy(dst_dtype, src_dtype, rng):
    src = (rng.standard_normal((4, 5)) * 100).astype(src_dtype)
    dst = af.zeros(4, 5, dtype=dst_dtype)
    call("copy_", [dst, af.tensor(src, dtype=src_dtype)])
    np.testing.assert_array_equal(dst.numpy(), src.astype(dst_dtype))


def test_copy_is_thread_invariant(rng):
    src = af.tensor(rng.standard_normal((300, 300)))

    def copy():
        dst = af.empty(300, 300, dtype="float32")
        call("copy_", [dst, src])
        return dst
    assert_thread_invariant(copy, [], name="copy_")


def test_copy_onto_itself_keeps_the_values():
    t = af.tensor([1.0, 2.0])
    call("copy_", [t, t])
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])


def test_copy_malformed_arguments():
    with pytest.raises(ValueError, match=r"copy_: 'src' has shape \(3,\) but 'input' has shape \(4,\)"):
        call("copy_", [af.empty(4), af.empty(3)])
    with pytest.raises(TypeError, match="copy_: argument 'src' must be float32 or float64, got int64"):
        call("copy_", [af.empty(3), af.zeros(3, dtype="int64")])
    with pytest.raises(TypeError, match="copy_: argument 'input' must be float32 or float64, got uint8"):
        call("copy_", [af.zeros(3, dtype="uint8"), af.empty(3)])
    with pytest.raises(ValueError, match="copy_ takes 2 tensor inputs, got 1"):
        call("copy_", [af.empty(3)])
    with pytest.raises(ValueError, match="copy_ takes 0 integer and 0 float attributes"):
        call("copy_", [af.empty(3), af.empty(3)], (1,))


# ---------------------------------------------------------------- uniform_, normal_

@pytest.mark.reference(param="op")
@pytest.mark.parametrize("op,a,b", [("uniform_", 0.0, 1.0), ("uniform_", -3.0, 5.5), ("uniform_", 2.0, 2.0),
                                    ("normal_", 0.0, 1.0), ("normal_", 10.0, 0.25), ("normal_", -1.0, 0.0)])
@pytest.mark.parametrize("seed,stream", [(0, 0), (7, 3), (2**64 - 1, 2**40 + 5), (-1, -2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_matches_numpy_philox(op, a, b, seed, stream, dtype):
    n = 1031
    t = af.empty(n, dtype=dtype)
    as_int64 = lambda v: (v + 2**63) % 2**64 - 2**63  # the attribute carries the uint64's bits
    call(op, [t], (as_int64(seed), as_int64(stream)), (a, b))
    expected = random_reference(op, n, seed, stream, a, b).astype(dtype)
    if op == "uniform_":  # plain arithmetic on the same bits: exact
        np.testing.assert_array_equal(t.numpy(), expected)
    else:  # libm's log/cos and NumPy's may differ in the last bit
        np.testing.assert_allclose(t.numpy(), expected, rtol=1e-14 if dtype == "float64" else 1.2e-7, atol=1e-14)


@pytest.mark.parametrize("op", ["uniform_", "normal_"])
def test_random_is_thread_invariant(op):
    def draw():
        t = af.empty(70, 101, dtype="float64")
        call(op, [t], (11, 4), (0.0, 1.0))
        return t
    assert_thread_invariant(draw, [], threads=(1, 2, 3), name=op)


BITS_OF_RAND_5_SEED_7 = [1064591482, 1053842717, 1002901984, 1053280300, 1049915782]


def test_rand_and_randn_keep_their_values():
    # values from before these ops existed (_C.random's own loop): seeded runs stay reproducible
    af.manual_seed(7)
    assert af.rand(5).numpy().view(np.uint32).tolist() == BITS_OF_RAND_5_SEED_7
    np.testing.assert_allclose(af.randn(4, dtype="float64").numpy(),
                               [-0.43866717, 0.23457947, -0.79802736, 0.29596677], rtol=1e-7)
    af.manual_seed(123)
    a, b, c = af.rand(1000).numpy(), af.randn(1001, dtype="float64").numpy(), af.randn(999).numpy()
    digest = hashlib.sha256(a.tobytes() + b.tobytes() + c.tobytes()).hexdigest()
    assert digest == "1f30169fa5ce7f1eb68de37d1c72d4d35a73cdcac49c7a39e7cb948277a71466"


def test_random_malformed_arguments():
    t = af.empty(3)
    with pytest.raises(ValueError, match="uniform_: needs finite a <= b, got a=2, b=1"):
        call("uniform_", [t], (0, 0), (2.0, 1.0))
    with pytest.raises(ValueError, match="uniform_: needs finite a <= b, got a=0, b=inf"):
        call("uniform_", [t], (0, 0), (0.0, float("inf")))
    with pytest.raises(ValueError, match="normal_: needs a finite mean and a finite std >= 0, got mean=0, std=-1"):
        call("normal_", [t], (0, 0), (0.0, -1.0))
    with pytest.raises(ValueError, match="normal_: .* got mean=nan"):
        call("normal_", [t], (0, 0), (float("nan"), 1.0))
    with pytest.raises(ValueError, match="uniform_ takes 2 integer and 2 float attributes, got 1 and 2"):
        call("uniform_", [t], (0,), (0.0, 1.0))
    with pytest.raises(TypeError, match="normal_: argument 'input' must be float32 or float64, got int32"):
        call("normal_", [af.zeros(3, dtype="int32")], (0, 0), (0.0, 1.0))
    with pytest.raises(ValueError, match="out of the int64 range"):
        call("uniform_", [t], (2**64, 0), (0.0, 1.0))


# ---------------------------------------------------------------- add_

@pytest.mark.reference("add_")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(), (1,), (5, 3), (2, 3, 4, 5)])
def test_add_matches_numpy(dtype, shape, rng):
    a, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    t = af.tensor(a, dtype=dtype)
    call("add_", [t, af.tensor(b, dtype=dtype)])
    np.testing.assert_array_equal(t.numpy(), a + b)


def test_add_is_thread_invariant(rng):
    other = af.tensor(rng.standard_normal((200, 300)))

    def add():
        t = af.ones(200, 300, dtype="float64")
        call("add_", [t, other])
        return t
    assert_thread_invariant(add, [], name="add_")


def test_add_malformed_arguments():
    with pytest.raises(ValueError, match=r"add_: 'other' has shape \(2,\) but 'input' has shape \(3,\)"):
        call("add_", [af.empty(3), af.empty(2)])
    with pytest.raises(TypeError, match="add_: 'input' is float32 but 'other' is float64"):
        call("add_", [af.empty(3), af.empty(3, dtype="float64")])
    with pytest.raises(TypeError, match="add_: argument 'input' must be float32 or float64, got int64"):
        call("add_", [af.zeros(3, dtype="int64"), af.zeros(3, dtype="int64")])


# ---------------------------------------------------------------- nonfinite_index

@pytest.mark.reference("nonfinite_index")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [[], [0], [7], [40000, 3], [69999], [5, 5]])
def test_nonfinite_index_matches_numpy(dtype, bad, rng):
    x = rng.standard_normal(70000).astype(dtype)
    for k, i in enumerate(bad):
        x[i] = [np.nan, np.inf, -np.inf][k % 3]
    expected = np.flatnonzero(~np.isfinite(x))
    expected = expected[0] if expected.size else -1
    for threads in (1, 2, 3):
        previous = af.get_num_threads()
        af.set_num_threads(threads)
        try:
            out = call("nonfinite_index", [af.tensor(x, dtype=dtype)])
        finally:
            af.set_num_threads(previous)
        assert out.dtype == "int64" and out.shape == (1,)
        assert out.numpy()[0] == expected


def test_nonfinite_index_of_integers_and_empty_tensors():
    assert call("nonfinite_index", [af.zeros(4, dtype="int32")]).numpy()[0] == -1
    assert call("nonfinite_index", [af.empty(0)]).numpy()[0] == -1
    with pytest.raises(ValueError, match="nonfinite_index takes 1 tensor input, got 0"):
        call("nonfinite_index", [])
