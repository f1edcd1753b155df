"""The committed torch fixtures: one file per generator, each naming the versions that made it, and
(where torch is importable) still what the installed torch computes, so the parity tests that read
them compare against torch itself."""
import os

import numpy as np
import pytest

from tests import reference
from tests.reference import make_fixtures

TIMM_FIXTURES = ("mobilevit",)  # made from timm's models


def test_every_generator_has_its_file_and_no_file_is_orphaned():
    on_disk = sorted(f[:-len(".npz")] for f in os.listdir(reference.DATA) if f.endswith(".npz"))
    assert on_disk == sorted(make_fixtures.GENERATORS)


@pytest.mark.parametrize("name", sorted(make_fixtures.GENERATORS))
def test_metadata_names_the_versions(name):
    meta = reference.load(name).meta
    assert meta["fixture"] == name
    assert meta["torch"] and meta["numpy"]
    if name in ("efficientnet", "googlenet", "inception", "resnet", "torchvision_transforms"):
        assert meta["torchvision"]
    if name in TIMM_FIXTURES:
        assert meta["timm"]


def _allowed(key, stored):
    """Bits may differ with another torch build or CPU; a changed generator or semantics may not."""
    what, _, field = key.partition(":")
    want = np.abs(stored[key])
    if field == "block_sum":  # signed sums of many values: relative to the block's sum of |x| (the
        # first convolution's weight gradient of GoogLeNet in train mode: 3e-5 of it between CPUs)
        return 1e-4 * stored[f"{what}:block_abs"] + 1e-5 * want
    if stored[key].dtype == np.float64 and not field:
        return 1e-12 + 1e-9 * want
    # float32 through a deep network in train mode (GoogLeNet, batch statistics of 2 images) moves by
    # up to 6e-5 of the output's scale between CPUs, torch's kernels rounding differently on a Zen 3
    # and a Zen 4: allowed, relative to the largest value of the array, not only to each element
    return 1e-6 + 1e-5 * want + 1e-4 * (want.max() if want.size else 0)


@pytest.mark.parametrize("name", sorted(make_fixtures.GENERATORS))
def test_committed_fixture_is_what_torch_computes(name):
    pytest.importorskip("torch")
    if name in ("efficientnet", "googlenet", "inception", "resnet", "torchvision_transforms"):
        pytest.importorskip("torchvision")
    if name in TIMM_FIXTURES:
        pytest.importorskip("timm")
    stored = dict(reference.load(name).arrays)
    fresh = make_fixtures.build(name)
    assert sorted(fresh) == sorted(stored), f"{name}: regenerate with tests/reference/make_fixtures.py {name}"
    for key, want in stored.items():
        got = np.asarray(fresh[key])
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if want.dtype.kind in "fc":
            with np.errstate(invalid="ignore"):
                same = (got == want) | (np.isnan(got) & np.isnan(want))
                bad = ~(same | (np.abs(got - want) <= _allowed(key, stored)))
            assert not bad.any(), f"{name} {key}: {int(bad.sum())} values moved, e.g. {got[bad][:3]} != {want[bad][:3]}"
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {key}")


def test_a_summary_catches_one_element_off_anywhere():
    """Big outputs are stored as summaries: one element beyond the elementwise tolerance, past the
    stored head, must still fail; the reference itself and rounding-level noise must pass."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 16, 64, 64)).astype(np.float32)
    summary = reference.Summary(make_fixtures.Summary.fields(ref))
    reference.assert_close(ref, summary, rtol=1e-4, atol=1e-4)
    reference.assert_close(ref * (1 + 1e-6 * rng.standard_normal(ref.shape)), summary, rtol=1e-4, atol=1e-4)
    for index, delta in [((2, 9, 40, 7), 0.05), ((0, 0, 0, 20), -0.03), ((1, 3, 5, 5), 3.0)]:
        bad = ref.copy()
        bad[index] += delta
        with pytest.raises(AssertionError):
            reference.assert_close(bad, summary, rtol=1e-4, atol=1e-4, name="dx")
