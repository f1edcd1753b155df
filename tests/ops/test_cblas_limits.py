"""CBLAS takes int sizes, so the CPU kernels of the GEMM ops refuse dims of 2^31 and more with a
ValueError naming the op (the check lives in the CPU path, not in the device-neutral setup). Empty
tensors reach those sizes without allocating anything."""
import numpy as np
import pytest

import affectfer as af
from tests.conftest import call

BIG = 2**31 + 1


def _empty(*shape):
    return af.from_numpy(np.zeros(shape, np.float32))


@pytest.mark.parametrize("op, inputs, ints, message", [
    ("linear", lambda: [_empty(BIG, 0), _empty(0, 0)], (), "linear: .* exceeds the BLAS limit"),
    ("matmul", lambda: [_empty(BIG, 0), _empty(0, 0)], (), "matmul: .* exceeds the BLAS limit"),
    ("conv2d", lambda: [_empty(1, 0, 40000, 40000), _empty(0, 0, 1, 1)], (1, 1, 0, 0, 1, 1, 1),
     "conv2d: .* too large for the CPU kernel"),
])
def test_gemm_ops_refuse_sizes_beyond_cblas_int(op, inputs, ints, message):
    with pytest.raises(ValueError, match=message):
        call(op, inputs(), ints)
