"""The seed papers' methods as runnable recipes: one module per paper, each a config dataclass whose
defaults are the paper's hyper-parameters and a `run` function that trains and scores it.

    from affectfer import recipes
    recipes.list_recipes()                                     # the six names
    cfg = recipes.config("senet_abaw2020", epochs=2)           # the paper's config, two fields changed
    result = recipes.run("dan_abaw3", data="faces/", out="runs/dan", overrides=["bagging=false"])
    result = recipes.run("hand_assisted", tiny=True)           # one tiny epoch on the synthetic faces

Command line: `python -m affectfer train --recipe NAME [--data PATH] [--out DIR] [--set key=value ...]`,
`python -m affectfer demo --recipe NAME` (tiny settings, synthetic faces), `train --list`,
`train --recipe NAME --help-config`.

The recipe module contract (`affectfer/recipes/<name>.py`):

- `PAPER`: the citation (authors, title, venue, arXiv id).
- `SUMMARY`: one line naming the method's components (listed by `train --list`).
- `Config`: a dataclass. Every field defaults to the paper's value (or, where the paper is silent,
  the authors' released code's) and says where it comes from in its `help` metadata
  (`_common.param(default, "help; source")`); each component of the method has a bool ablation
  switch; `Config.tiny()` is a classmethod giving settings for one tiny epoch on the synthetic faces
  in well under 20 s (small images, a few dozen faces, one epoch).
- `run(config, data=None, out=None, progress=True) -> dict`: trains and evaluates the method and
  returns its final metrics (floats, plus whatever tables the paper reports). `data` is what
  `_common.load_data` accepts (a path, a (train, val) pair, a dict, datasets, or None for the
  synthetic demo faces with the targets the method needs); with `out` the run writes its
  checkpoint(s), `config.json`, `metrics.json` and the history plots there.

Shared plumbing (override parsing, data, class order, loaders, bagging with soft voting, output
writing) lives in `affectfer.recipes._common`; a recipe holds only what is specific to its paper.
"""
from __future__ import annotations

import importlib

# name -> module; imported on first use so that listing recipes builds no model
_RECIPES = ("hand_assisted", "ixlab_multitask_ensemble", "hust_lsd", "hust_mtl", "senet_abaw2020", "dan_abaw3")


def list_recipes() -> list:
    """The recipe names, in the order of the papers."""
    return list(_RECIPES)


def get(name: str):
    """The recipe module `name` (ValueError naming the known recipes otherwise)."""
    if not isinstance(name, str) or name not in _RECIPES:
        raise ValueError(f"unknown recipe {name!r}; recipes: {', '.join(_RECIPES)}")
    return importlib.import_module(f"{__name__}.{name}")


def config(name: str, tiny: bool = False, **overrides):
    """The recipe's Config (its paper defaults, or `Config.tiny()` with tiny=True) with `overrides`
    applied by field name; values are checked and converted like `--set key=value`."""
    from ._common import apply_overrides

    module = get(name)
    base = module.Config.tiny() if tiny else module.Config()
    return apply_overrides(base, overrides)


def run(name: str, data=None, out=None, overrides=(), tiny: bool = False, progress: bool = True) -> dict:
    """Train and evaluate recipe `name` and return its final metrics.

    `data`: None (the synthetic demo faces), a path (an image folder, with train/ and val/ sub-folders
    or split by the config's val_fraction; or a CSV list), a (train, val) pair of paths or datasets,
    or a dict with "train" and "val". `overrides`: "key=value" strings (as `--set` takes them) or a
    dict. `tiny=True` starts from `Config.tiny()` instead of the paper's config."""
    from ._common import apply_overrides

    module = get(name)
    cfg = apply_overrides(module.Config.tiny() if tiny else module.Config(), overrides)
    return module.run(cfg, data=data, out=out, progress=progress)


__all__ = ["list_recipes", "get", "config", "run"]
