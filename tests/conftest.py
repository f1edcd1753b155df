import os
import sys

import numpy as np
import pytest

import affectfer as af

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def call(op, inputs, ints=(), floats=()):
    """Run a C op by name (the same path affectfer.nn.functional takes)."""
    return af._C.call(af._C.ops[op], inputs, ints, floats)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed():
    af.manual_seed(0)
    yield


def t64(a, requires_grad=True):
    return af.tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=requires_grad)
