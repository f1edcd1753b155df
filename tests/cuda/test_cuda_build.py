"""What a CUDA build must get right on any machine, GPU or not: the clear errors when CUDA cannot be
used, and the CUDA kernel table (every op this branch claims has its .cu twin registered)."""
import pytest

import affectfer as af

# Ops with a CUDA twin (csrc/ops/*.cu). The table test fails when one of them loses its registration.
CLAIMED = {"fill_", "copy_", "uniform_", "normal_", "add_", "nonfinite_index",
           "add", "sub", "mul", "div", "maximum", "where", "neg", "exp", "log", "sqrt", "relu", "gelu", "silu",
           "sigmoid", "tanh", "scale", "add_scalar", "pow_scalar", "abs", "clamp", "softplus", "log_sigmoid",
           "hardswish", "hardsigmoid", "sgd_step", "adam_step", "reshape", "conv2d", "linear", "max_pool2d", "avg_pool2d",
           "adaptive_avg_pool2d", "batch_norm", "cross_entropy", "softmax",
           "log_softmax", "dropout", "sum", "mean"}


def test_availability_is_consistent():
    assert af.cuda.is_available() == (af.cuda.is_built() and af.cuda.device_count() > 0)
    assert af.cuda.device_count() >= 0


@pytest.mark.skipif(af.cuda.is_available(), reason="a GPU is visible")
def test_moving_to_cuda_without_a_gpu_says_why():
    why = "no CUDA device visible" if af.cuda.is_built() else "affectfer was built without CUDA"
    t = af.zeros(3)
    for call in (lambda: t.to("cuda"), lambda: t.cuda(), lambda: af.zeros(2, device="cuda:0"),
                 lambda: af.nn.Linear(2, 3).to("cuda"), af.cuda.synchronize, af.cuda.memory_stats,
                 af.cuda.empty_cache):
        with pytest.raises(RuntimeError, match=why):
            call()
    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        t.to("cuda:x")


@pytest.mark.skipif(af.cuda.is_available() or not af.cuda.is_built(), reason="needs a CUDA build without a GPU")
def test_the_core_refuses_a_cuda_tensor_without_a_device():
    # the allocator's device check runs before any allocation, so this is not reported as out of memory
    with pytest.raises(ValueError, match="no CUDA device visible"):
        af._C.copy_to(af.zeros(3), "cuda:0")


@pytest.mark.skipif(not af.cuda.is_built(), reason="affectfer was built without CUDA")
def test_cuda_kernel_table():
    have = set(af._C.cuda_ops())
    assert have <= set(af._C.ops)
    lost = sorted(CLAIMED - have)
    assert not lost, f"ops that lost their CUDA kernel: {lost}"
    missing = sorted(set(af._C.ops) - have)
    print(f"\n{len(missing)} of {len(af._C.ops)} ops have no CUDA kernel yet: {', '.join(missing)}")


def test_deterministic_switch_round_trips():
    assert af.are_deterministic_algorithms_enabled() is False
    af.use_deterministic_algorithms(True)
    try:
        assert af.are_deterministic_algorithms_enabled() is True
    finally:
        af.use_deterministic_algorithms(False)
    assert af.are_deterministic_algorithms_enabled() is False
