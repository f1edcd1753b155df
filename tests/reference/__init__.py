"""Committed PyTorch/torchvision reference outputs, so parity tests run where torch is not installed.

`make_fixtures.py` (run where torch is installed) writes one `data/<name>.npz` per test module:
the inputs (drawn from a fixed NumPy seed), torch's outputs and gradients, under keys
`<case>/<what>`, and a `__meta__` JSON string naming the torch/torchvision/NumPy versions that
made them. Tests read them with `load(name)`; `test_fixtures.py` regenerates each file when torch
is importable and checks the committed one still holds what torch computes.

Two encodings keep the files small (key suffixes, decoded by `Fixture.case`):
- `<what>:q32`: an input drawn as int8 / 32, stored as the int8 (exact in any float dtype);
- `<what>:block_sum`, `:block_abs`, `:abs_max`, `:shape`: a `Summary` of an output too big to
  store whole: sums over up to 2048 blocks of the flattened array, each element times a seeded
  +-1; `assert_close` checks each block against the bound the elementwise tolerance implies, so
  it fails only where an elementwise comparison would, and a wrong element fails its block.
Model parity tests store no weights: `seeded_state_dict` draws them from a NumPy seed on both
sides, and the fixture holds their `checksum`, so a change in NumPy's stream fails clearly."""
import json
import os

import numpy as np

SEED = 1234  # every fixture's NumPy seed
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FULL_LIMIT = 8192  # arrays with more elements are stored as a Summary (outputs) or int8 (inputs)
SUMMARY_FIELDS = ("shape", "abs_max", "block_sum", "block_abs")


def _signs(n):
    return np.where(np.random.default_rng(n).random(n) < 0.5, -1.0, 1.0)


def _blocks(n, blocks):
    """Block boundaries: `blocks` near-equal runs of the flattened array (fewer if n is small)."""
    return np.linspace(0, n, min(n, blocks) + 1).astype(np.int64)


class Summary:
    """A big reference array as signed block sums (see the module docstring)."""

    def __init__(self, fields):
        self.shape = tuple(int(s) for s in fields["shape"])
        self.abs_max = float(fields["abs_max"])
        self.block_sum, self.block_abs = fields["block_sum"], fields["block_abs"]

    @staticmethod
    def fields(a, blocks=2048):
        """Sums of each block of the flattened array times a seeded +-1 vector, and of |a|."""
        flat = np.asarray(a, np.float64).ravel()
        edges = _blocks(flat.size, blocks)[:-1]
        return {"shape": np.array(np.shape(a), np.int64), "abs_max": np.array(np.abs(flat).max()),
                "block_sum": np.add.reduceat(flat * _signs(flat.size), edges),
                "block_abs": np.add.reduceat(np.abs(flat), edges)}

    def check(self, actual, rtol, atol, name):
        """|a - r| <= atol + rtol |r| everywhere implies |signed block sum difference| <= the
        block's length * atol + rtol * its sum of |r|: this fails only where an elementwise
        comparison would, and catches any error larger than that bound in any block."""
        a = np.asarray(actual.numpy() if hasattr(actual, "numpy") else actual, np.float64)
        if a.shape != self.shape:
            raise AssertionError(f"{name}: shape {a.shape} != expected {self.shape}")
        flat = a.ravel()
        edges = _blocks(flat.size, len(self.block_sum))
        got = np.add.reduceat(flat * _signs(flat.size), edges[:-1])
        bound = np.diff(edges) * atol + rtol * self.block_abs
        bad = ~(np.abs(got - self.block_sum) <= bound)
        if bad.any():
            k = int(np.argmax(np.where(bad, np.abs(got - self.block_sum) - bound, -np.inf)))
            raise AssertionError(
                f"{name}: {int(bad.sum())} of {bad.size} blocks out of tolerance (atol={atol}, rtol={rtol}); worst: "
                f"flat elements {int(edges[k])}..{int(edges[k + 1]) - 1}, signed sum {float(got[k])!r} != expected "
                f"{float(self.block_sum[k])!r} (|diff| {abs(got[k] - self.block_sum[k]):.3e} > {bound[k]:.3e})")


def assert_close(actual, expected, rtol=None, atol=None, name="tensor"):
    """affectfer.testing.assert_close, also accepting a Summary as `expected`."""
    from affectfer.testing import _DEFAULT_TOL, assert_close as close
    if not isinstance(expected, Summary):
        return close(actual, expected, rtol, atol, name)
    dtype = np.dtype(actual.dtype) if isinstance(actual.dtype, (str, np.dtype)) else np.dtype(np.float64)
    d_rtol, d_atol = _DEFAULT_TOL.get(dtype, (0, 0))
    expected.check(actual, d_rtol if rtol is None else rtol, d_atol if atol is None else atol, name)


class Fixture:
    """The arrays of one fixture file, read eagerly (they are small)."""

    def __init__(self, name):
        with np.load(os.path.join(DATA, name + ".npz"), allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.name = name
        self.meta = json.loads(str(self.arrays.pop("__meta__")))

    def _missing(self, what):
        return KeyError(f"fixture {self.name!r} has no {what}: regenerate it with tests/reference/make_fixtures.py")

    def case(self, case):
        """One case's arrays keyed without the `<case>/` prefix, encodings decoded; strings as str."""
        prefix = case + "/"
        raw = {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}
        if not raw:
            raise self._missing(f"case {case!r}")
        out, summaries = {}, {}
        for k, v in raw.items():
            what, _, enc = k.partition(":")
            if enc == "q32":
                out[what] = v.astype(np.float64) / 32
            elif enc in SUMMARY_FIELDS:
                summaries.setdefault(what, {})[enc] = v
            else:
                out[what] = str(v) if v.dtype.kind == "U" else v
        out.update({what: Summary(fields) for what, fields in summaries.items()})
        return out

    def cases(self, prefix=""):
        """Case names in the order they were written, those starting with `prefix`."""
        names = dict.fromkeys(k.split("/", 1)[0] for k in self.arrays if "/" in k)
        return [n for n in names if n.startswith(prefix)]


_CACHE = {}


def load(name):
    if name not in _CACHE:
        _CACHE[name] = Fixture(name)
    return _CACHE[name]


def case(name, case_name):
    return load(name).case(case_name)


def cases(name, prefix=""):
    """For pytest.mark.parametrize: the case names of a fixture (those starting with `prefix`)."""
    return load(name).cases(prefix)


def seeded_state_dict(shapes, seed):
    """Weights for a model from a NumPy seed. `shapes` is the model's state_dict as ordered
    (name, shape) pairs, so a torch and an affectfer model with the same names get the same
    numbers. Convolutions get He-uniform weights (variance 2/fan_in, He et al. 2015), so deep ReLU
    stacks neither vanish nor explode; linear layers torch's default U(+-1/sqrt(fan_in)); batch
    norms non-trivial affine and running statistics, so train and eval mode both exercise them;
    group and layer norms a non-trivial affine; attention's in_proj like a linear layer; ViT's
    tokens U(+-0.1)."""
    rng = np.random.default_rng(seed)
    shapes = [(name, tuple(int(s) for s in shape)) for name, shape in shapes]
    fan_in = {name[:-len(".weight")]: int(np.prod(shape[1:])) for name, shape in shapes
              if name.endswith(".weight") and len(shape) >= 2}
    bn = {name[:-len(".running_mean")] for name, _ in shapes if name.endswith(".running_mean")}
    shapes_by_name = dict(shapes)
    out = {}
    for name, shape in shapes:
        module, _, leaf = name.rpartition(".")
        u = rng.random(shape)  # U[0, 1)
        if leaf == "num_batches_tracked":
            out[name] = np.zeros(shape, np.int64)
        elif module in bn:
            lo, hi = {"weight": (0.5, 1.5), "running_var": (0.5, 1.5), "bias": (-0.2, 0.2),
                      "running_mean": (-0.1, 0.1)}[leaf]
            out[name] = (lo + (hi - lo) * u).astype(np.float32)
        elif len(shape) == 4 and leaf == "weight":
            out[name] = (np.sqrt(6.0 / fan_in[module]) * (2 * u - 1)).astype(np.float32)
        elif leaf in ("weight", "bias") and module in fan_in:
            out[name] = ((2 * u - 1) / np.sqrt(fan_in[module])).astype(np.float32)
        elif leaf in ("in_proj_weight", "in_proj_bias"):  # attention's stacked q, k, v projection
            fan = shapes_by_name[f"{module}.in_proj_weight" if module else "in_proj_weight"][1]
            out[name] = ((2 * u - 1) / np.sqrt(fan)).astype(np.float32)
        elif leaf in ("weight", "bias") and len(shape) == 1:  # the affine of a group or layer norm
            lo, hi = (0.5, 1.5) if leaf == "weight" else (-0.2, 0.2)
            out[name] = (lo + (hi - lo) * u).astype(np.float32)
        elif leaf in ("class_token", "pos_embedding"):  # ViT's learned tokens
            out[name] = (0.1 * (2 * u - 1)).astype(np.float32)
        else:
            raise ValueError(f"seeded_state_dict: no rule for {name!r} of shape {shape}")
    return out


def checksum(state_dict):
    """One number that moves when any weight does (entry- and stride-weighted sums)."""
    total = 0.0
    for k, name in enumerate(sorted(state_dict)):
        flat = np.asarray(state_dict[name], np.float64).ravel()
        total += (k + 1) * float(flat.sum() + 0.5 * flat[::3].sum())
    return total


def seeded_model(fixture, case_name, model):
    """`model` with the weights make_fixtures.py gave the reference model (the same NumPy seed, no
    weights stored), and that case's reference numbers: (model, case)."""
    d = case(fixture, case_name)
    weights = seeded_state_dict([(k, v.shape) for k, v in model.state_dict().items()], SEED)
    if abs(checksum(weights) - float(d["weights_checksum"])) > 1e-12 * abs(float(d["weights_checksum"])):
        raise AssertionError(f"{fixture}/{case_name}: NumPy's random stream changed; the seeded weights differ "
                             "from those the fixture was made with")
    model.load_state_dict(weights)
    return model, d
