"""all_reduce.c on one process (no group: the sum over one rank is the input itself), float64
gradcheck, bad input and thread invariance. The sum over 2 ranks runs under mpirun in
tests/distributed (SyncBatchNorm on half batches equals BatchNorm on the whole batch)."""
import numpy as np
import pytest

import affectfer as af
from affectfer.testing import assert_thread_invariant, gradcheck
from tests.conftest import call, t64


@pytest.mark.reference("all_reduce")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 1, 4, 3)])
def test_one_rank_sum_is_the_input(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    t = af.tensor(x, dtype=dtype)
    y = call("all_reduce", [t], (), (5.0,))
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y.numpy(), x)  # the sum over the ranks of one process
    np.testing.assert_array_equal(t.numpy(), x)  # a new tensor: the input is untouched


@pytest.mark.gradcheck("all_reduce")
def test_gradcheck(rng):
    gradcheck(lambda x: af.nn.functional.all_reduce(x) * x, [t64(rng.standard_normal((3, 4)))])


def test_bad_input():
    with pytest.raises(ValueError, match="'timeout' must be a positive number of seconds, got 0"):
        call("all_reduce", [af.ones(3)], (), (0.0,))
    with pytest.raises(TypeError):
        call("all_reduce", [af.tensor(np.arange(3))], (), (1.0,))


def test_thread_invariant(rng):
    assert_thread_invariant(lambda t: af.nn.functional.all_reduce(t) * 2, [rng.standard_normal((5, 7)).astype(np.float32)],
                            name="all_reduce")
