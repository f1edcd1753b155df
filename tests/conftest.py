import os
import sys

import numpy as np
import pytest

import affectfer as af

def _find_shared_data():
    """../shared/data beside the checkout (CI's layout), or beside any parent folder (worktrees);
    AFFECTFER_SHARED_DATA overrides. None when absent: tests that need real faces skip."""
    if os.environ.get("AFFECTFER_SHARED_DATA"):
        return os.environ["AFFECTFER_SHARED_DATA"]
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while True:
        candidate = os.path.join(os.path.dirname(folder), "shared", "data")
        if os.path.isdir(candidate):
            return candidate
        if os.path.dirname(folder) == folder:
            return None
        folder = os.path.dirname(folder)


SHARED_DATA = _find_shared_data()


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
