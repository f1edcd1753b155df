"""The hand-assisted recipe (paper 000): a tiny run on the synthetic faces, the four ablation rows,
and what each switch changes (stages and frozen blocks, hand model, post-pruning, sampler,
augmentation)."""
import dataclasses
import json
import os

import numpy as np
import pytest

from affectfer import decision, models, train
from affectfer import transforms as T
from affectfer.data import RandomSampler, WeightedRandomSampler
from affectfer.recipes import hand_assisted as H


@pytest.fixture
def fits(monkeypatch):
    """Every train.fit call of a run: (number of classes, trainable / all parameters, sampler type, epochs)."""
    calls = []
    real = train.fit

    def recording(model, loader, optimizer, epochs, *args, **kwargs):
        n_trainable = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
        n_all = sum(p.numel() for p in model.parameters())
        calls.append({"classes": kwargs.get("num_classes"), "trainable": n_trainable, "all": n_all,
                      "sampler": type(loader.sampler), "epochs": epochs})
        return real(model, loader, optimizer, epochs, *args, **kwargs)

    monkeypatch.setattr(train, "fit", recording)
    return calls


def test_tiny_run_scores_the_four_rows_and_writes_its_files(tmp_path, fits):
    rows = H.ablation(H.Config.tiny(), out=str(tmp_path), progress=False, log=None)
    assert [r for r, _ in rows] == list(H.ROWS) and all(0.0 <= v <= 1.0 for _, v in rows)
    metrics = json.load(open(tmp_path / "metrics.json"))
    assert [v for _, v in rows] == [metrics["macro_f1_stage1"], metrics["macro_f1_expression"],
                                    metrics["macro_f1_rule"], metrics["macro_f1"]]
    assert {"expression_resnet18.safetensors", "hand_resnet18.safetensors", "report.txt", "config.json",
            "history.json"} <= set(os.listdir(tmp_path))
    assert json.load(open(tmp_path / "config.json"))["backbone"] == "resnet18"
    # pretraining: stage 1 trains everything, stage 2 only the unfrozen last 20% of blocks and the head
    stage1, stage2, hand = fits
    assert stage1["classes"] == stage2["classes"] == 6 and hand["classes"] == 2
    # ResNet-18 has 8 blocks: int(0.8 * 8) = 6 frozen, layer4 (2 blocks) and fc train
    reference = models.resnet18(num_classes=6)
    unfrozen = sum(p.numel() for m in (reference.layer4, reference.fc) for p in m.parameters())
    assert stage1["trainable"] == stage1["all"] and stage2["trainable"] == unfrozen < stage2["all"]
    assert stage1["sampler"] is WeightedRandomSampler and hand["sampler"] is WeightedRandomSampler


def test_switches_remove_their_component(tmp_path, fits):
    cfg = dataclasses.replace(H.Config.tiny(), pretraining=False, hand=False, weighted_sampling=False)
    result = H.run(cfg, out=str(tmp_path), progress=False, log=None)
    assert len(fits) == 1 and fits[0]["trainable"] == fits[0]["all"]  # no frozen stage, no hand detector
    assert fits[0]["sampler"] is RandomSampler
    assert "macro_f1_rule" not in result and result["macro_f1"] == result["macro_f1_expression"]
    assert "hand_resnet18.safetensors" not in os.listdir(tmp_path)


def test_decision_rule_and_post_pruning_on_probabilities():
    cfg = H.Config()
    fear, happy, sad = H.CLASSES.index("fear"), H.CLASSES.index("happiness"), H.CLASSES.index("sadness")
    expr = np.full((4, 6), 0.02, np.float32)
    expr[0, sad], expr[1, sad], expr[2, happy], expr[3, sad] = 0.5, 0.95, 0.9, 0.5
    hand = np.array([[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.4, 0.6]], np.float32)
    before, ruled, pruned = H.decide(expr, hand, cfg)
    np.testing.assert_array_equal(before, [sad, sad, happy, sad])
    np.testing.assert_array_equal(ruled, decision.hand_override(before, hand.argmax(1), happy, fear))
    np.testing.assert_array_equal(ruled, [fear, fear, happy, fear])
    # pruned: face 1's expression is confident (0.95 >= 0.9), face 3's hand is uncertain (0.6 < 0.8)
    np.testing.assert_array_equal(pruned, [fear, sad, happy, sad])
    _, ruled2, final = H.decide(expr, hand, dataclasses.replace(cfg, post_pruning=False))
    np.testing.assert_array_equal(final, ruled2)
    np.testing.assert_array_equal(H.decide(expr, hand, dataclasses.replace(cfg, hand=False))[2], before)


def test_randaugment_switch_and_the_hand_pipeline():
    def stages(pipeline):
        return [type(t).__name__ for t in pipeline.transforms]

    train_tf, eval_tf = H.expression_transforms(H.Config(), (0.5,) * 3, (0.2,) * 3)
    assert "RandAugment" in stages(train_tf) and "RandAugment" not in stages(eval_tf)
    off, _ = H.expression_transforms(H.Config(randaugment=False), (0.5,) * 3, (0.2,) * 3)
    assert "RandAugment" not in stages(off) and "RandomHorizontalFlip" in stages(off)
    assert all("SobelEdges" in stages(p) for p in H.hand_transforms(H.Config()))


def test_paper_defaults_and_bad_values():
    cfg = H.Config()
    assert (cfg.backbone, cfg.hand_backbone, cfg.lr, cfg.weight_decay, cfg.freeze_fraction) == \
        ("resnet50", "resnet50", 5e-5, 1e-4, 0.8)
    with pytest.raises(ValueError, match="freeze_fraction must be in"):
        H.run(dataclasses.replace(H.Config.tiny(), freeze_fraction=1.5), log=None)
    with pytest.raises(ValueError, match="hand_data"):
        H.run(H.Config.tiny(), data="faces/", log=None)
