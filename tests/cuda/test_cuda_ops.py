"""CUDA == CPU for every op with a CUDA twin, the transfers, the caching allocator and out-of-memory
recovery. Needs a CUDA build and a visible GPU (make gpu-check runs it there)."""
import numpy as np
import pytest

import affectfer as af
from tests.conftest import call

if not af.cuda.is_built():
    pytest.skip("affectfer was built without CUDA", allow_module_level=True)
if not af.cuda.is_available():
    pytest.skip("no CUDA device visible", allow_module_level=True)

RTOL = 1e-5


def cpu_and_cuda(array):
    t = af.tensor(array)
    return t, t.to("cuda")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8", "bool"])
def test_round_trip_and_fill(dtype):
    a = (np.arange(37) % 2).astype(dtype)
    t, g = cpu_and_cuda(a)
    assert g.device == "cuda:0" and g.dtype == dtype and g.shape == t.shape
    assert np.array_equal(g.cpu().numpy(), a)
    call("fill_", [g], (), (1.0,))
    call("fill_", [t], (), (1.0,))
    assert np.array_equal(g.cpu().numpy(), t.numpy())


def test_copy_between_float_dtypes():
    src = np.random.default_rng(0).standard_normal(1001)
    for dst_dtype, src_dtype in (("float32", "float64"), ("float64", "float32"), ("float32", "float32")):
        s_cpu, s_gpu = cpu_and_cuda(src.astype(src_dtype))
        d_cpu, d_gpu = af.zeros(1001, dtype=dst_dtype), af.zeros(1001, dtype=dst_dtype, device="cuda")
        call("copy_", [d_cpu, s_cpu])
        call("copy_", [d_gpu, s_gpu])
        assert np.array_equal(d_gpu.cpu().numpy(), d_cpu.numpy())


@pytest.mark.parametrize("op,a,b", [("uniform_", -2.0, 3.0), ("normal_", 0.5, 2.0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_random_draws_equal_the_cpu_streams(op, a, b, dtype):
    t, g = af.zeros(4099, dtype=dtype), af.zeros(4099, dtype=dtype, device="cuda")
    call(op, [t], (1234, 7), (a, b))
    call(op, [g], (1234, 7), (a, b))
    np.testing.assert_allclose(g.cpu().numpy(), t.numpy(), rtol=RTOL, atol=1e-6)


def test_add_and_nonfinite_index():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(3000).astype(np.float32), rng.standard_normal(3000).astype(np.float32)
    (xc, xg), (yc, yg) = cpu_and_cuda(x), cpu_and_cuda(y)
    call("add_", [xc, yc])
    call("add_", [xg, yg])
    np.testing.assert_allclose(xg.cpu().numpy(), xc.numpy(), rtol=RTOL)
    assert call("nonfinite_index", [xg]).cpu().numpy()[0] == -1
    x[2500], x[1700] = np.inf, np.nan
    assert call("nonfinite_index", [af.tensor(x).cuda()]).cpu().numpy()[0] == 1700


def test_module_to_cuda_moves_parameters_in_place():
    net = af.nn.Linear(4, 3)
    weight = net.weight
    before = weight.detach().numpy().copy()
    assert net.cuda() is net
    assert net.weight is weight and weight.device == "cuda:0" and weight.requires_grad
    assert np.array_equal(weight.cpu().numpy(), before)
    net.to("cpu")
    assert weight.device == "cpu"


def test_caching_allocator_reuses_blocks_and_empties():
    af.cuda.synchronize()
    t = af.zeros(1 << 20, device="cuda")
    stats = af.cuda.memory_stats()
    assert stats["allocated_bytes"] >= 4 << 20
    del t
    hits = af.cuda.memory_stats()["num_cache_hits"]
    t = af.zeros(1 << 20, device="cuda")
    if stats["caching"]:
        assert af.cuda.memory_stats()["num_cache_hits"] == hits + 1
    del t
    af.cuda.empty_cache()
    assert af.cuda.memory_stats()["reserved_bytes"] == af.cuda.memory_stats()["allocated_bytes"]


def test_out_of_memory_raises_and_the_next_call_works():
    with pytest.raises(af.OutOfMemoryError, match="out of memory"):
        af.empty(1 << 46, dtype="float32", device="cuda")  # 256 TiB
    assert af.cuda.memory_stats()["num_ooms"] >= 1
    t = af.ones(10, device="cuda")
    assert np.array_equal(t.cpu().numpy(), np.ones(10, np.float32))


def run_both(op, arrays, ints=(), floats=(), grad_inputs=None, atol=1e-6):
    """op forward and backward (with a random output gradient) on the CPU and on CUDA; the CUDA
    results (output, then each input gradient) checked against the CPU's."""
    grad_inputs = range(len(arrays)) if grad_inputs is None else grad_inputs
    results = []
    for device in ("cpu", "cuda"):
        ins = [af.tensor(a).to(device) for a in arrays]
        for i in grad_inputs:
            ins[i].requires_grad = True
        out = call(op, ins, ints, floats)
        g = np.random.default_rng(3).standard_normal(out.shape).astype(out.dtype)
        out.backward(af.tensor(g).to(device))
        results.append([out.cpu().numpy()] + [ins[i].grad.cpu().numpy() for i in grad_inputs])
    for name, got, want in zip(["output"] + [f"grad {i}" for i in grad_inputs], results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=f"{op}: {name}")


BROADCASTS = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 5), (3, 1)), ((1,), (2, 3, 1, 4, 5)), ((), (7,))]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum"])
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_ops_with_broadcasting(op, shapes, dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
    if op == "div":
        b = np.where(np.abs(b) < 0.3, 0.5, b).astype(dtype)
    if op == "maximum" and a.size and b.size:
        a.flat[0] = b.flat[0]  # a tie: half the gradient to each side
    run_both(op, [a, b])


UNARY = [("neg", (), ()), ("exp", (), ()), ("log", (), ()), ("sqrt", (), ()), ("relu", (), ()), ("gelu", (0,), ()),
         ("gelu", (1,), ()), ("silu", (), ()), ("sigmoid", (), ()), ("tanh", (), ()), ("scale", (), (-1.5,)),
         ("add_scalar", (), (0.25,)), ("pow_scalar", (), (2.5,)), ("abs", (), ()), ("clamp", (1, 1), (-0.5, 0.5)),
         ("clamp", (0, 1), (0.0, 0.2)), ("softplus", (), (2.0, 3.0)), ("log_sigmoid", (), ()), ("hardswish", (), ()),
         ("hardsigmoid", (), ())]


@pytest.mark.parametrize("op,ints,floats", UNARY, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_ops(op, ints, floats, dtype):
    x = np.random.default_rng(1).uniform(-4, 4, (5, 7, 3)).astype(dtype)
    if op in ("log", "sqrt", "pow_scalar"):
        x = np.abs(x) + 0.1
    run_both(op, [x], ints, floats)


def test_where_with_broadcasting():
    rng = np.random.default_rng(2)
    cond = rng.random((3, 1, 5)) > 0.5
    run_both("where", [cond, rng.standard_normal((4, 5)).astype(np.float32),
                       rng.standard_normal((3, 4, 1)).astype(np.float32)], grad_inputs=[1, 2])


@pytest.mark.parametrize("op,n_state,ints,floats", [
    ("sgd_step", 1, (0, 1), (0.1, 0.9, 0.0, 1e-4)), ("sgd_step", 1, (1, 0), (0.1, 0.9, 0.0, 0.0)),
    ("sgd_step", 0, (0, 0), (0.1, 0.0, 0.0, 0.0)), ("adam_step", 2, (3, 0, 0), (1e-3, 0.9, 0.999, 1e-8, 1e-2)),
    ("adam_step", 3, (1, 1, 1), (1e-3, 0.9, 0.999, 1e-8, 1e-2))])
def test_optimizer_steps(op, n_state, ints, floats):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal(1000).astype(np.float32) for _ in range(2)]
    arrays += [np.abs(rng.standard_normal(1000)).astype(np.float32) for _ in range(n_state)]
    cpu = [af.tensor(a) for a in arrays]
    gpu = [t.cuda() for t in cpu]
    call(op, cpu, ints, floats)
    call(op, gpu, ints, floats)
    for k, (g, c) in enumerate(zip(gpu, cpu)):
        np.testing.assert_allclose(g.cpu().numpy(), c.numpy(), rtol=RTOL, atol=1e-7, err_msg=f"{op} tensor {k}")


def test_reshape_backward_accumulates():
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    run_both("reshape", [x], (3, 8))


# (N, Cin, H, W), (Cout, Cin/G, KH, KW), (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, G), bias
CONVS = [((2, 3, 9, 8), (4, 3, 3, 3), (1, 1, 1, 1, 1, 1, 1), True),
         ((1, 4, 7, 7), (6, 2, 3, 1), (2, 1, 0, 1, 1, 1, 2), False),
         ((3, 6, 6, 5), (6, 1, 3, 3), (1, 2, 2, 1, 2, 1, 6), True),
         ((2, 8, 5, 5), (4, 8, 1, 1), (1, 1, 0, 0, 1, 1, 1), True)]


@pytest.mark.parametrize("x_shape,w_shape,ints,bias", CONVS, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_conv2d(x_shape, w_shape, ints, bias, dtype, deterministic):
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)]
    if bias:
        arrays.append(rng.standard_normal(w_shape[0]).astype(dtype))
    af.use_deterministic_algorithms(deterministic)
    try:
        # float32: cuDNN sums in another order than the CPU's GEMM tiles; values near zero after
        # cancellation in sums of ~100 terms of size ~10 differ by float32 rounding of the terms
        run_both("conv2d", arrays, ints, atol=1e-4 if dtype == "float32" else 1e-10)
    finally:
        af.use_deterministic_algorithms(False)


@pytest.mark.parametrize("x_shape,out_features,bias", [((5, 7), 3, True), ((2, 3, 4), 6, False), ((1, 9), 1, True),
                                                        ((4, 2, 3, 8), 5, True)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear(x_shape, out_features, bias, dtype):
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(x_shape).astype(dtype),
              rng.standard_normal((out_features, x_shape[-1])).astype(dtype)]
    if bias:
        arrays.append(rng.standard_normal(out_features).astype(dtype))
    run_both("linear", arrays, atol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("op,ints", [
    ("max_pool2d", (3, 3, 2, 2, 1, 1, 1, 1, 0)), ("max_pool2d", (2, 3, 1, 2, 1, 0, 2, 1, 1)),
    ("max_pool2d", (2, 2, 2, 2, 0, 0, 1, 1, 0)), ("avg_pool2d", (3, 3, 2, 2, 1, 1, 0, 1, 0)),
    ("avg_pool2d", (3, 2, 2, 1, 1, 1, 1, 0, 0)), ("avg_pool2d", (2, 2, 1, 1, 0, 0, 0, 1, 3)),
    ("adaptive_avg_pool2d", (1, 1)), ("adaptive_avg_pool2d", (3, 4)), ("adaptive_avg_pool2d", (9, 11))], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pooling(op, ints, dtype):
    x = np.random.default_rng(8).standard_normal((2, 3, 7, 8)).astype(dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2]  # a tie inside a max window
    run_both(op, [x], ints)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 7), (3, 4, 5, 6)], ids=str)
@pytest.mark.parametrize("training", [1, 0])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm(shape, training, dtype):
    rng = np.random.default_rng(9)
    C = shape[1]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rm, rv = rng.standard_normal(C).astype(dtype), (rng.random(C) + 0.5).astype(dtype)
    run_both("batch_norm", [x, w, b, rm, rv], (training,), (0.1, 1e-5), grad_inputs=[0, 1, 2], atol=1e-5)
    stats = []
    for device in ("cpu", "cuda"):
        ins = [af.tensor(a).to(device) for a in (x, w, b, rm, rv)]
        call("batch_norm", ins, (training,), (0.1, 1e-5))
        stats.append([ins[3].cpu().numpy(), ins[4].cpu().numpy()])
    for got, want in zip(stats[1], stats[0]):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("reduction", [0, 1, 2])
@pytest.mark.parametrize("weighted,smoothing", [(False, 0.0), (True, 0.0), (True, 0.2)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy(reduction, weighted, smoothing, dtype):
    rng = np.random.default_rng(10)
    z = rng.standard_normal((9, 7)).astype(dtype)
    y = rng.integers(0, 7, 9)
    y[3] = -100  # ignore_index
    w = [rng.random(7).astype(dtype) + 0.5] if weighted else []
    run_both("cross_entropy", [z, y] + w, (reduction, -100), (smoothing,), grad_inputs=[0])
    probs = rng.random((9, 7)).astype(dtype)
    run_both("cross_entropy", [z, probs / probs.sum(1, keepdims=True)] + w, (reduction, -100), (smoothing,),
             grad_inputs=[0, 1])


def test_cross_entropy_refuses_a_bad_class_on_the_device():
    z, y = af.zeros(3, 4, device="cuda"), af.tensor(np.array([1, 7, 2])).cuda()
    with pytest.raises(ValueError, match="holds class 7 at position 1"):
        call("cross_entropy", [z, y], (1, -100), (0.0,))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax(op, dim, dtype):
    x = (np.random.default_rng(11).standard_normal((3, 5, 4)) * 4).astype(dtype)
    run_both(op, [x], (dim,))


@pytest.mark.parametrize("deterministic", [False, True])
def test_resnet18_training_step_equals_the_cpu(deterministic):
    models, results = [], []
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((4, 3, 48, 48)).astype(np.float32), rng.integers(0, 7, 4)
    af.use_deterministic_algorithms(deterministic)
    try:
        for device in ("cpu", "cuda"):
            af.manual_seed(0)
            model = af.models.resnet18(num_classes=7).to(device)
            opt = af.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            logits = model(af.tensor(x).to(device))
            loss = af.nn.functional.cross_entropy(logits, af.tensor(y).to(device))
            opt.zero_grad()
            loss.backward()
            grads = {n: p.grad.cpu().numpy() for n, p in model.named_parameters()}
            opt.step()
            params = {n: p.detach().cpu().numpy() for n, p in model.named_parameters()}
            results.append((logits.detach().cpu().numpy(), loss.item(), grads, params))
            models.append(model)
    finally:
        af.use_deterministic_algorithms(False)
    (l_cpu, loss_cpu, g_cpu, p_cpu), (l_gpu, loss_gpu, g_gpu, p_gpu) = results
    # float32 through 20 layers, with cuDNN's summation order: 1e-4 relative / absolute
    np.testing.assert_allclose(l_gpu, l_cpu, rtol=1e-4, atol=1e-4, err_msg="logits")
    assert abs(loss_gpu - loss_cpu) <= 1e-4 * abs(loss_cpu)
    for name in g_cpu:
        scale = np.abs(g_cpu[name]).max() + 1e-12
        np.testing.assert_allclose(g_gpu[name] / scale, g_cpu[name] / scale, atol=1e-3, err_msg=f"grad of {name}")
        np.testing.assert_allclose(p_gpu[name], p_cpu[name], rtol=1e-4, atol=1e-5, err_msg=f"{name} after the step")


@pytest.mark.parametrize("training,p", [(1, 0.3), (1, 0.0), (0, 0.5), (1, 1.0)])
def test_dropout_mask_equals_the_cpu(training, p):
    x = np.random.default_rng(13).standard_normal((5, 7, 3)).astype(np.float32)
    run_both("dropout", [x], (training, 1234567, -42), (p,))


@pytest.mark.parametrize("op", ["sum", "mean"])
@pytest.mark.parametrize("ints", [(0,), (1,), (0, 1), (1, 0, 2), (0, 1, 3), (1, 2, 3)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_and_mean(op, ints, dtype):
    x = np.random.default_rng(14).standard_normal((3, 4, 1, 5)).astype(dtype)
    run_both(op, [x], ints)
