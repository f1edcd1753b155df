"""csrc/autograd/tape.c: graph recording, reverse walk, accumulation, freeing, grad modes."""
import gc
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_close
from tests.conftest import call, t64


def test_chain_with_temporaries_and_shared_inputs():
    # c = a*b + a/b - b with b broadcast: temporaries die before backward runs
    a = t64(np.arange(6.0).reshape(2, 3))
    b = t64([1.0, 2.0, 3.0])
    (a * b + a / b - b).backward(af.ones(2, 3, dtype="float64"))
    bb = np.array([1.0, 2.0, 3.0])
    assert_close(a.grad, np.broadcast_to(bb + 1 / bb, (2, 3)))
    av = np.arange(6.0).reshape(2, 3)
    assert_close(b.grad, (av - av / bb ** 2 - 1).sum(0))


def test_gradients_accumulate_across_backward_calls():
    x = t64([1.0, 2.0])
    for _ in range(3):
        (x * x).backward(af.ones(2, dtype="float64"))
    assert_close(x.grad, 3 * 2 * np.array([1.0, 2.0]))
    x.grad = None
    (x * 3.0).backward(af.ones(2, dtype="float64"))
    assert_close(x.grad, [3.0, 3.0])


def test_fresh_gradient_buffers_written_once_then_accumulated():
    """The first gradient into a buffer is written outright (din_fresh), later ones add to it: an
    input passed twice to one op, an intermediate read by three ops, a leaf reached through ops
    that write (mul, gelu, reshape, linear) and ones that only add (slice, max)."""
    assert af._C.set_fresh_grad_poison(True) is True  # conftest: fresh buffers arrive as NaN
    rng = np.random.default_rng(5)
    xv, wv = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    x, w = t64(xv), t64(wv)
    h = x * 2.0                                   # intermediate, consumed three times below
    y = h * h                                     # the same tensor as both inputs of one op
    z = af.nn.functional.gelu(h).reshape(3, 4)
    s = h[:, :2]                                  # slice: adds into part of h's gradient only
    lin = af.nn.functional.linear(x, w)           # x again, through a GEMM with beta 0 or 1
    loss = y.sum() + (z * z).sum() + s.sum() + lin.sum() + (x + x).sum()
    loss.backward()

    from math import erf, pi
    hv = 2 * xv
    cdf = 0.5 * (1 + np.vectorize(erf)(hv / np.sqrt(2)))
    gelu = hv * cdf
    dgelu = cdf + hv * np.exp(-hv * hv / 2) / np.sqrt(2 * pi)
    dh = 2 * hv + 2 * gelu * dgelu
    dh[:, :2] += 1
    assert_close(x.grad, 2 * dh + wv.sum(0)[None, :] + 2, rtol=1e-10, atol=1e-10)
    assert_close(w.grad, np.broadcast_to(xv.sum(0), (2, 3)), rtol=1e-12, atol=1e-12)


def test_backward_twice_raises_unless_retained():
    x = t64([1.0, 2.0])
    y = x.exp()
    g = af.ones(2, dtype="float64")
    y.backward(g, retain_graph=True)
    y.backward(g)
    assert_close(x.grad, 2 * np.exp([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="second time"):
        y.backward(g)


def test_no_grad_and_detach():
    x = t64([1.0, 2.0])
    with af.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.grad_fn is None
    z = (x * 2.0).detach()
    assert not z.requires_grad and z.is_leaf
    assert z._shares_memory(z * 1.0) is False
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward(af.ones(2, dtype="float64"))

    @af.no_grad()
    def f(t):
        return t * 3.0

    assert f(x).grad_fn is None
    assert af.is_grad_enabled()


def test_backward_needs_gradient_for_non_scalar():
    x = t64([1.0, 2.0])
    with pytest.raises(ValueError, match="one-element"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="shape and dtype"):
        (x * 2.0).backward(af.ones(3, dtype="float64"))


def test_scalar_backward_seeds_one():
    x = t64([3.0])
    (x * x).backward()
    assert_close(x.grad, [6.0])


def test_requires_grad_rules():
    with pytest.raises(TypeError, match="only float32/float64"):
        af.zeros(2, dtype="int64").requires_grad = True
    x = t64([1.0])
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2.0).requires_grad = False


def test_integer_outputs_carry_no_gradient():
    # torch.max(x, dim).indices: recorded op, but an integer output is no part of the graph
    x = t64([[1.0, 3.0, 2.0]])
    values, indices = call("max", [x], (1, 0))
    assert values.requires_grad and values.grad_fn == "max"
    assert not indices.requires_grad and indices.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        indices.backward(af.tensor(np.zeros(1, dtype=np.int64)))
    # a differentiable op whose only output is an integer records nothing reachable
    as_int = call("cast", [x], (6,))
    assert as_int.dtype == "int64" and not as_int.requires_grad and as_int.grad_fn is None
    values.sum().backward()
    assert x.grad.numpy().tolist() == [[0.0, 1.0, 0.0]]


def test_graph_freed_with_the_loss():
    # A long chain must be released when its last tensor dies (no reference cycles): the C count of
    # live nodes returns to where it was.
    before = af._C._live_nodes()
    x = t64(np.ones(1000))
    y = x
    for _ in range(200):
        y = y * 1.0001
    assert af._C._live_nodes() == before + 200  # every temporary's node lives on in the chain
    y * 1.0
    assert af._C._live_nodes() == before + 200  # a dropped result takes its node along
    loss = y.sum()
    del y
    assert af._C._live_nodes() == before + 201
    loss.backward(retain_graph=True)
    del loss
    gc.collect()
    assert af._C._live_nodes() == before
    assert (x * 2.0).grad_fn == "scale"
    assert af._C._live_nodes() == before


def _run_isolated(code, timeout=120):
    """Run `code` in a fresh interpreter: a crash there fails the test instead of the test run."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_a_deep_graph_is_freed_without_recursion():
    # 10^5 chained nodes: releasing them recursively overflowed the C stack
    out = _run_isolated("""
import affectfer as af
x = af.tensor([1.0], dtype="float64", requires_grad=True)
y = x
for _ in range(100000):
    y = y * 1.0
assert af._C._live_nodes() == 100000
y.backward(retain_graph=True)  # the reverse walk is iterative too
del y
print(af._C._live_nodes(), x.grad.numpy()[0])
""")
    assert out.split() == ["0", "1.0"]


def test_anomaly_mode_names_the_op():
    x = af.tensor([-1.0, 1.0])
    with af.detect_anomaly():
        with pytest.raises(FloatingPointError, match="log produced a NaN"):
            x.log()
    assert np.isnan(x.log().numpy()[0])  # off again outside the block


def test_anomaly_mode_reports_the_first_bad_index_of_a_large_output():
    # the check runs as the nonfinite_index op (in parallel for large outputs): the first bad index wins
    x = np.ones(100000)
    x[[70001, 90000]] = -1.0
    x[99999] = np.nan
    with af.detect_anomaly():
        for threads in (1, 3):
            previous = af.get_num_threads()
            af.set_num_threads(threads)
            try:
                with pytest.raises(FloatingPointError, match="sqrt produced a NaN or infinity in output 0 at flat index 70001"):
                    af.tensor(x).sqrt()
            finally:
                af.set_num_threads(previous)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backward_seeds_ones_and_accumulates_into_leaves_and_intermediates(dtype):
    x = af.tensor(np.array([2.0]), dtype=dtype, requires_grad=True)
    x.backward()  # a leaf root: d x / d x = 1
    x.backward()
    assert x.grad.dtype == dtype and x.grad.numpy().tolist() == [2.0]
    y = x * 3.0
    y.backward(af.tensor(np.array([0.5]), dtype=dtype))
    assert x.grad.numpy().tolist() == [3.5]


def test_concurrent_backward_through_one_graph():
    x = t64(np.linspace(-1, 1, 200000))
    y = (x * x).exp()
    y_sum = y.sum()
    errors = []

    def run():
        try:
            y_sum.backward(retain_graph=True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    xv = np.linspace(-1, 1, 200000)
    assert_close(x.grad, 8 * 2 * xv * np.exp(xv * xv))


def test_concurrent_backwards_into_one_leaf_lose_no_update():
    leaf = t64(np.zeros(300000))
    barrier = threading.Barrier(6)

    def run(k):
        loss = (leaf * float(k + 1)).sum()
        barrier.wait()
        for _ in range(5):
            loss.backward(retain_graph=True)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(leaf.grad.numpy(), np.full(300000, 5.0 * (1 + 2 + 3 + 4 + 5 + 6)))


def test_backward_refuses_inputs_modified_in_place():
    x = t64([1.0, 2.0, 3.0])
    y = x * x
    call("fill_", [x], (), (5.0,))  # under grad mode too: the write is not differentiable
    with pytest.raises(RuntimeError, match=r"one of the variables needed for gradient computation has been "
                                           r"modified by an inplace operation: float64 \(3,\) 'input' of mul "
                                           r"is at version 1; expected version 0 instead"):
        y.backward(af.ones(3, dtype="float64"))

    w = t64([0.5, 1.0])
    e = w.exp()
    with af.no_grad():
        call("copy_", [e, af.tensor(np.zeros(2))])  # exp's backward reads its output
    s = e.sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation: .* 'output' of exp"):
        s.backward()


def test_in_place_writes_elsewhere_leave_backward_alone():
    x = t64([1.0, 2.0])
    other = af.zeros(2, dtype="float64")
    y = (x * x).sum()
    call("fill_", [other], (), (1.0,))
    y.backward(retain_graph=True)
    call("uniform_", [other], (0, 0), (0.0, 1.0))
    y.backward()
    assert_close(x.grad, [4.0, 8.0])


def test_op_inputs_stay_alive_when_another_thread_empties_the_list():
    # _C.call releases the GIL while the op runs; the list was its only reference to the inputs
    _run_isolated("""
import threading
import numpy as np
import affectfer as af
stop = threading.Event()
box = []
def clear():
    while not stop.is_set():
        box.clear()
t = threading.Thread(target=clear)
t.start()
try:
    for _ in range(15):
        box[:] = [af.tensor(np.ones(1000000))]
        try:
            out = af._C.call(af._C.ops["exp"], box)
        except (IndexError, ValueError):
            continue  # emptied before the call read it
        assert out.shape == (1000000,) and out.numpy()[-1] == np.e
finally:
    stop.set()
    t.join()
""")


def test_core_and_tape_reach_data_only_through_allocators_and_ops():
    # Device neutrality (csrc/core/alloc.h, csrc/autograd/tape.h): tensor.c moves bytes only through
    # its device's allocator and the tape only through ops, so a CUDA build needs no change there.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "csrc", "core", "tensor.c")) as f:
        core = f.read()
    with open(os.path.join(root, "csrc", "autograd", "tape.c")) as f:
        tape = f.read()
    for name in ("memcpy", "memmove", "memset", "af_alloc_host", "af_free_host", "posix_memalign"):
        assert not re.search(rf"(?<![>.\w]){name}\(", core), f"csrc/core/tensor.c calls {name} itself"
    assert not re.search(r"(?<![>.\w])free\([^)]*data", core), "csrc/core/tensor.c frees tensor bytes itself"
    for access in ("af_tensor_data(", "->data", "float *", "double *"):
        assert access not in tape, f"csrc/autograd/tape.c touches tensor data ({access})"
