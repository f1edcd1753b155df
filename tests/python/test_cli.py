"""python -m affectfer: --help of every command, the demo at tiny settings, and predict/eval on the
demo's own checkpoints."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "affectfer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["demo", "train", "info", "convert-weights", "predict", "eval"])
def test_help_documents_every_command(command):
    out = run(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: python -m affectfer " + command in out.stdout
    if command in ("predict", "eval"):
        assert "--checkpoint" in out.stdout and "--batch-size" in out.stdout
    if command == "train":
        for option in ("--recipe", "--data", "--out", "--set", "--tiny", "--list", "--help-config"):
            assert option in out.stdout
    if command == "demo":
        assert "--recipe" in out.stdout


def _subcommands():
    import argparse

    from affectfer.cli import _build_parser

    action = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", ["demo", "train", "info", "convert-weights", "predict", "eval"])
def test_every_option_of_every_command_has_help_text(command, capsys):
    """Every option (and positional) of the command says what it is: no bare `--workers WORKERS` line."""
    parser = _subcommands()[command]
    undocumented = [a.option_strings or [a.dest] for a in parser._actions if not (a.help or "").strip()]
    assert not undocumented, f"{command}: options without help: {undocumented}"
    parser.print_help()
    text = "".join(capsys.readouterr().out.split())  # argparse re-wraps lines (and breaks after hyphens)
    for action in parser._actions:
        if action.option_strings and action.help and "%(" not in action.help:
            assert "".join(action.help.split()) in text, action.option_strings


def test_train_list_names_every_recipe():
    from affectfer import recipes

    out = run("train", "--list")
    assert out.returncode == 0, out.stderr
    for name in recipes.list_recipes():
        assert name in out.stdout


def test_train_errors_are_messages_not_tracebacks():
    for args, message in ((("train",), "--recipe NAME is required"),
                          (("train", "--recipe", "nope"), "unknown recipe 'nope'"),
                          (("demo", "--recipe", "nope"), "unknown recipe 'nope'")):
        proc = run(*args)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = run("demo", "--train-size", "48", "--val-size", "24", "--image-size", "32", "--epochs", "1",
               "--finetune-epochs", "1", "--hand-epochs", "1", "--batch-size", "16", "--workers", "1",
               "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout


def test_demo_reports_the_rule_and_writes_its_files(demo_output):
    out, stdout = demo_output
    assert "macro F1 over 6 classes: expression model" in stdout and "F1 before  F1 after" in stdout
    assert "the rule changed" in stdout
    # both confusion matrices, 6 x 6 counts of the 24 validation faces
    for title in ("confusion matrix, expression model:", "confusion matrix, with the hand rule:"):
        rows = stdout[stdout.index(title):].splitlines()[2:8]
        assert [r.split()[0] for r in rows] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
        assert sum(int(v) for r in rows for v in r.split()[1:]) == 24
    names = set(os.listdir(out))
    assert {"expression_resnet18.safetensors", "hand_resnet18.safetensors", "report.txt"} <= names
    assert "confusion matrix, with the hand rule, post-pruned:" in open(out / "report.txt").read()
    pytest.importorskip("matplotlib")
    assert {"confusion_before.png", "confusion_after.png", "confusion_pruned.png"} <= names


def _write_faces(folder, per_class=True):
    from affectfer.datasets import CLASSES, synthetic_faces
    from tests.images import write_png

    faces = synthetic_faces(12, 32, seed=9)
    paths = []
    for i, (image, label) in enumerate(zip(faces.images, faces.labels)):
        sub = os.path.join(folder, CLASSES[label]) if per_class else folder
        os.makedirs(sub, exist_ok=True)
        paths.append(os.path.join(sub, f"face{i:02d}.png"))
        write_png(paths[-1], image)
    return faces, paths


def test_predict_writes_probabilities_per_image(demo_output, tmp_path):
    out, _ = demo_output
    faces, paths = _write_faces(tmp_path / "images", per_class=False)
    csv_path = tmp_path / "p.csv"
    proc = run("predict", "--checkpoint", str(out / "expression_resnet18.safetensors"), "--images",
               str(tmp_path / "images"), "--out", str(csv_path), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(open(csv_path)))
    assert rows[0][:2] == ["path", "prediction"] and len(rows[0]) == 8 and len(rows) == 13
    probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert all(r[1] == rows[0][2 + int(np.argmax(p))] for r, p in zip(rows[1:], probs))
    hand = run("predict", "--checkpoint", str(out / "hand_resnet18.safetensors"), "--images", str(tmp_path / "images"),
               "--out", str(tmp_path / "h.csv"), "--workers", "1")
    assert hand.returncode == 0 and list(csv.reader(open(tmp_path / "h.csv")))[0] == ["path", "prediction", "no hand", "hand"]


def test_eval_scores_an_image_folder(demo_output, tmp_path):
    out, _ = demo_output
    _write_faces(tmp_path / "val")
    proc = run("eval", "--checkpoint", str(out / "expression_resnet18.safetensors"), "--data", str(tmp_path / "val"),
               "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "macro F1" in proc.stdout and "accuracy" in proc.stdout


def test_predict_and_eval_soft_vote_an_ensembles_members(tmp_path, capsys):
    import affectfer as af
    from affectfer import checkpoint, cli, models
    from affectfer.datasets import CLASSES

    af.manual_seed(0)
    config = {"model": "resnet18", "num_classes": 6, "classes": list(CLASSES), "image_size": 32}
    members = []
    for k in range(2):
        members.append(tmp_path / f"member{k}.safetensors")
        checkpoint.save(models.resnet18(num_classes=6), members[-1], config=config)
    _write_faces(tmp_path / "images", per_class=False)

    def probabilities(*checkpoints):
        out = tmp_path / "p.csv"
        args = ["predict", "--images", str(tmp_path / "images"), "--out", str(out), "--workers", "1"]
        assert cli.main(args + [a for c in checkpoints for a in ("--checkpoint", str(c))]) == 0
        rows = list(csv.reader(open(out)))
        assert rows[0] == ["path", "prediction", *CLASSES]
        return np.array([[float(v) for v in r[2:]] for r in rows[1:]])

    one, two = probabilities(members[0]), probabilities(members[1])
    assert not np.allclose(one, two, atol=1e-3)
    np.testing.assert_allclose(probabilities(*members), (one + two) / 2, atol=2e-6)  # CSV keeps 6 decimals
    other = tmp_path / "other.safetensors"
    checkpoint.save(models.resnet18(num_classes=2), other, config=dict(config, num_classes=2, classes=["a", "b"]))
    capsys.readouterr()
    assert cli.main(["predict", "--checkpoint", str(members[0]), "--checkpoint", str(other), "--images",
                     str(tmp_path / "images"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "an ensemble's members must share them" in capsys.readouterr().err
    _write_faces(tmp_path / "val")
    assert cli.main(["eval", "--checkpoint", str(members[0]), "--checkpoint", str(members[1]), "--data",
                     str(tmp_path / "val"), "--workers", "1"]) == 0
    assert "macro F1" in capsys.readouterr().out


def test_predict_errors_are_messages_not_tracebacks(tmp_path):
    from affectfer import checkpoint, models
    bare = tmp_path / "bare.safetensors"
    checkpoint.save(models.resnet18(num_classes=2), bare)
    proc = run("predict", "--checkpoint", str(bare), "--images", str(tmp_path))
    assert proc.returncode == 2 and "config lacks" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("predict", "--checkpoint", str(tmp_path / "missing.safetensors"), "--images", str(tmp_path))
    assert proc.returncode == 2 and "missing.safetensors" in proc.stderr


def test_train_help_config_lists_each_field_with_its_source():
    proc = run("train", "--recipe", "senet_abaw2020", "--help-config")
    assert proc.returncode == 0, proc.stderr
    assert "accumulate_steps (int, default 4; must be >= 1)" in proc.stdout and "paper: 4" in proc.stdout
    assert "class_weighting (bool, default True)" in proc.stdout


def test_train_set_errors_name_the_key(tmp_path):
    proc = run("train", "--recipe", "senet_abaw2020", "--tiny", "--set", "epoch=2", "--out", str(tmp_path))
    assert proc.returncode == 2 and "unknown config key 'epoch'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("train", "--recipe", "senet_abaw2020", "--tiny", "--set", "epochs=two")
    assert proc.returncode == 2 and "epochs='two': expected an integer" in proc.stderr


def test_train_tiny_recipe_with_overrides_writes_its_run(tmp_path):
    proc = run("train", "--recipe", "senet_abaw2020", "--tiny", "--set", "accumulation=false", "--set", "val_every=3",
               "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    config = json.load(open(tmp_path / "config.json"))
    assert config["accumulation"] is False and config["val_every"] == 3 and config["backbone"] == "resnet18"
    printed = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert printed["abaw_expression"] == pytest.approx(json.load(open(tmp_path / "metrics.json"))["abaw_expression"], abs=1e-4)


def test_demo_recipe_runs_the_tiny_settings(tmp_path):
    proc = run("demo", "--recipe", "hand_assisted", "--out", str(tmp_path), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "macro F1 over 6 classes" in proc.stdout and '"macro_f1"' in proc.stdout
    import json

    assert json.load(open(tmp_path / "config.json"))["image_size"] == 32  # Config.tiny(), not the paper's 224
