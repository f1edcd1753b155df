"""Facts Python takes from C (affectfer._C) instead of re-typing them: each export checked against
the C behaviour it describes."""
import numpy as np
import pytest

import affectfer as af
from affectfer import _C
from tests.conftest import call


def test_dtype_ids_drive_cast():
    x = af.tensor(np.array([1.5, 2.0], dtype=np.float32))
    for name, dtype_id in _C.dtypes.items():
        if name in ("float16", "bfloat16"):
            continue
        assert call("cast", [x], (dtype_id,)).dtype == name


def test_op_input_limit():
    n = _C.limits["op_inputs"]
    xs = [af.tensor(np.ones(1, dtype=np.float32)) for _ in range(n + 1)]
    assert call("cat", xs[:n], (0,)).shape == (n,)
    with pytest.raises(ValueError, match=f"at most {n}"):
        call("cat", xs, (0,))
    assert af.cat(xs).shape == (n + 1,)  # tensor.cat groups by the exported limit


def test_split_piece_limit():
    k = _C.limits["op_int_attrs"] - 1
    x = af.tensor(np.arange(k + 1, dtype=np.float32))
    assert len(call("split", [x], (0,) + (1,) * (k - 1) + (2,))) == k
    with pytest.raises(ValueError):
        call("split", [x], (0,) + (1,) * (k + 1))
    assert len(af.split(x, 1)) == k + 1


def test_reduction_codes():
    logits = af.tensor(np.array([[1.0, 2.0], [0.5, -1.0]], dtype=np.float32))
    target = af.tensor(np.array([0, 1], dtype=np.int64))
    per = call("cross_entropy", [logits, target], (_C.reductions["none"], -100), (0.0,)).numpy()
    assert per.shape == (2,)
    total = call("cross_entropy", [logits, target], (_C.reductions["sum"], -100), (0.0,)).numpy()
    mean = call("cross_entropy", [logits, target], (_C.reductions["mean"], -100), (0.0,)).numpy()
    np.testing.assert_allclose(total, per.sum(), rtol=1e-6)
    np.testing.assert_allclose(mean, per.mean(), rtol=1e-6)


def test_image_codes():
    img = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    edge = _C.image_op("pad", img, np.array([1, 0, 0, 0, _C.pad_modes["edge"], 0, 0, 0], dtype=np.float64))
    np.testing.assert_array_equal(edge[:, 0], img[:, 0])
    assert set(_C.sobel_magnitudes) == {"l2", "l1", "half_abs"}
    assert set(_C.interpolations) == {"nearest", "bilinear"}


@pytest.mark.parametrize("name", sorted(_C.image_stages))
def test_stage_layout_matches_the_builder(name):
    """A spec with exactly the layout's fixed parameters is the right arity; one fewer is refused."""
    kind, layout = _C.image_stages[name]
    fixed = [p for p in layout if not p.endswith("...")]
    if layout and layout[-1].endswith("..."):
        return  # variadic stages (Normalize, RandomErasing) are covered by the transform tests
    if fixed:
        with pytest.raises(ValueError, match=f"{name} takes"):
            _C.pipeline_build(np.array([kind, len(fixed) - 1] + [1.0] * (len(fixed) - 1), dtype=np.float64))
        with pytest.raises(ValueError, match=f"{name} takes"):
            _C.pipeline_build(np.array([kind, len(fixed) + 1] + [1.0] * (len(fixed) + 1), dtype=np.float64))
