"""affectfer.recipes: the registry of the six seed-paper recipes and the module contract each follows."""
import dataclasses
import importlib.util

import pytest

from affectfer import recipes

NAMES = ["hand_assisted", "ixlab_multitask_ensemble", "hust_lsd", "hust_mtl", "senet_abaw2020", "dan_abaw3"]


def test_the_six_recipes_are_registered_in_paper_order():
    assert recipes.list_recipes() == NAMES


@pytest.mark.parametrize("bad", ["resnet", "", None, "Hand_Assisted"])
def test_unknown_recipe_names_the_known_ones(bad):
    with pytest.raises(ValueError, match="unknown recipe.*hand_assisted, ixlab_multitask_ensemble"):
        recipes.get(bad)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.run(bad)


def _module(name):
    if importlib.util.find_spec(f"affectfer.recipes.{name}") is None:
        pytest.skip(f"recipe module {name} is not in this tree yet")
    return recipes.get(name)


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_module_follows_the_contract(name):
    module = _module(name)
    assert isinstance(module.PAPER, str) and ("arXiv" in module.PAPER or "doi" in module.PAPER.lower())
    assert isinstance(module.SUMMARY, str) and module.SUMMARY
    assert dataclasses.is_dataclass(module.Config) and callable(module.run)
    for f in dataclasses.fields(module.Config):
        assert f.metadata.get("help"), f"{name}.Config.{f.name} has no help (what it is and its source)"
    tiny = module.Config.tiny()
    assert isinstance(tiny, module.Config) and tiny != module.Config()
    switches = [f.name for f in dataclasses.fields(module.Config) if f.type in (bool, "bool")]
    assert switches, f"{name} has no ablation switch"


def test_config_applies_overrides_and_tiny():
    module = _module("hand_assisted")
    assert recipes.config("hand_assisted") == module.Config()
    assert recipes.config("hand_assisted", tiny=True) == module.Config.tiny()
    cfg = recipes.config("hand_assisted", epochs="4", hand=False)
    assert cfg.epochs == 4 and cfg.hand is False
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        recipes.config("hand_assisted", epoch=3)
