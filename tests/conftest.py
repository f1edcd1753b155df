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

# Every backward in the suite runs with the fresh gradient buffers that ops write outright filled
# with NaN first (csrc/ops/ops.h, din_fresh): an op that leaves an element of one unwritten fails
# its gradient tests instead of passing on whatever the allocator happened to hand it.
af._C.set_fresh_grad_poison(True)


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


# ---- op coverage markers (read by tests/test_op_table.py) ----
# A test that checks an op against a NumPy reference is marked @pytest.mark.reference("op", ...); a
# float64 finite-difference gradient check @pytest.mark.gradcheck("op", ...). A test parametrized
# over ops says which argument holds the op instead: @pytest.mark.reference(param="op"); then every
# collected instance counts for its own op only. tests/test_op_table.py collects tests/ops in a child
# pytest and requires, for every op in op_list.h, a collected test of each kind.
OP_COVERAGE_KINDS = ("reference", "gradcheck")


def marked_ops(item, kind):
    ops = []
    for mark in item.iter_markers(kind):
        ops.extend(mark.args)
        if "param" in mark.kwargs:
            ops.append(item.callspec.params[mark.kwargs["param"]])
    return ops


def pytest_collection_finish(session):
    out = os.environ.get("AFFECTFER_OP_COVERAGE_OUT")
    if out:
        import json
        record = {item.nodeid: {kind: marked_ops(item, kind) for kind in OP_COVERAGE_KINDS} for item in session.items}
        with open(out, "w") as f:
            json.dump(record, f)
