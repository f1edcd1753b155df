"""Every op in csrc/ops/op_list.h has a NumPy reference test, and every differentiable one a float64
gradcheck, among the tests pytest actually collects in tests/ops.

The convention (tests/conftest.py): @pytest.mark.reference("op") / @pytest.mark.gradcheck("op") on
the test, or reference(param="op") on a test parametrized over ops. A child pytest collects
tests/ops and writes each node id with the ops its markers claim; a deleted, renamed-away or
skipped-at-collection test therefore stops counting."""
import json
import os
import subprocess
import sys

import affectfer as af

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def collected_coverage(tmp_path, *extra_args):
    """{"reference": {op: [node ids]}, "gradcheck": {...}} over the tests a child pytest collects."""
    out = tmp_path / f"coverage{len(list(tmp_path.iterdir()))}.json"
    env = dict(os.environ, AFFECTFER_OP_COVERAGE_OUT=str(out))
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist", os.path.join("tests", "ops"), *extra_args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.exists(), f"collection failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    coverage = {"reference": {}, "gradcheck": {}}
    for nodeid, kinds in json.loads(out.read_text()).items():
        for kind, ops in kinds.items():
            for op in ops:
                coverage[kind].setdefault(op, []).append(nodeid)
    return coverage


def missing(coverage):
    differentiable = {name for name, mask in af._C.op_differentiable_inputs.items() if mask}
    return (sorted(set(af._C.op_names) - set(coverage["reference"])),
            sorted(differentiable - set(coverage["gradcheck"])))


def test_every_op_has_a_collected_reference_test_and_gradcheck(tmp_path):
    coverage = collected_coverage(tmp_path)
    no_reference, no_gradcheck = missing(coverage)
    assert not no_reference, f"ops without a collected reference test (@pytest.mark.reference): {no_reference}"
    assert not no_gradcheck, f"differentiable ops without a collected gradcheck (@pytest.mark.gradcheck): {no_gradcheck}"
    unknown = (set(coverage["reference"]) | set(coverage["gradcheck"])) - set(af._C.op_names)
    assert not unknown, f"tests are marked for ops that op_list.h does not have: {sorted(unknown)}"


def test_the_check_fails_when_a_test_is_removed(tmp_path):
    # deselecting the one gradcheck of dropout, and ignoring the whole matmul file, must show up
    coverage = collected_coverage(tmp_path, "--deselect", "tests/ops/test_dropout.py::test_gradcheck",
                                  "--ignore", os.path.join("tests", "ops", "test_matmul.py"))
    no_reference, no_gradcheck = missing(coverage)
    assert no_reference == ["matmul"] and no_gradcheck == ["dropout", "matmul"], (no_reference, no_gradcheck)
