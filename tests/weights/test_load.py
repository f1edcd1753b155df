"""affectfer.weights.load_weights into affectfer models, the rename tables, and `python -m affectfer
convert-weights`."""
import os

import numpy as np
import pytest

import affectfer as af
from affectfer import checkpoint, models, nn
from affectfer.cli import main
from affectfer.weights import RENAME_TABLES, WeightsError, convert_weights, load_weights

from . import torchfile as tf

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def numpy_state(model):
    return {k: np.array(v.numpy()) for k, v in model.state_dict().items()}


def trained_like(num_classes, seed):
    """A ResNet-18 with non-trivial BN statistics (so eval mode depends on every buffer)."""
    af.manual_seed(seed)
    model = models.resnet18(num_classes=num_classes)
    rng = np.random.default_rng(seed)
    for name, value in model.state_dict().items():
        if name.endswith(("running_mean", "running_var", "bn1.weight", "bn2.weight", "num_batches_tracked")):
            arr = value.numpy()
            arr[...] = rng.random(arr.shape) + (0 if name.endswith("mean") else 0.5)
    return model


def logits(model, x):
    with af.no_grad():
        return model.eval()(af.tensor(x)).numpy()


@pytest.fixture(scope="module")
def source():
    return trained_like(7, seed=1)


@pytest.fixture(scope="module")
def target():
    """The model the tests load into (building a ResNet-18 takes seconds): each test loads it fully
    or checks only what it loaded."""
    return trained_like(7, seed=2)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def want(source, x):
    return logits(source, x)


def scramble(model):
    for value in model.state_dict().values():
        value.numpy()[...] = 0


@pytest.mark.parametrize("legacy", [False, True])
def test_resnet18_round_trip_matches_load_state_dict(tmp_path, source, target, x, want, legacy):
    state = numpy_state(source)
    path = tmp_path / "resnet18.pth"
    # as DataParallel training scripts save it: under 'state_dict', every name behind 'module.'
    tf.save_state_dict(path, {"module." + k: v for k, v in state.items()}, wrap="state_dict", legacy=legacy)
    scramble(target)
    result = load_weights(target, path)
    assert result.missing_keys == [] and result.unexpected_keys == [] and result.skipped == {} and result.renamed == {}
    assert np.array_equal(logits(target, x), want)
    scramble(target)
    target.load_state_dict(state)  # the same weights through Module.load_state_dict
    assert np.array_equal(logits(target, x), want)


def test_head_of_another_shape_is_skipped_only_when_not_strict(tmp_path, source):
    path = tmp_path / "resnet18_7.pth"
    tf.save_state_dict(path, numpy_state(source))
    af.manual_seed(4)
    target = models.resnet18(num_classes=10)
    before = numpy_state(target)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight: shape \(7, 512\) in the file, \(10, 512\) "
                                           r"in the model \(a head layer: strict=False skips it\)"):
        load_weights(target, path)
    after = numpy_state(target)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # a failed strict load changes nothing
    result = load_weights(target, path, strict=False)
    assert result.skipped == {"fc.weight": "shape (7, 512) in the file, (10, 512) in the model",
                              "fc.bias": "shape (7,) in the file, (10,) in the model"}
    assert result.missing_keys == [] and result.unexpected_keys == []
    loaded = numpy_state(target)
    assert np.array_equal(loaded["fc.weight"], before["fc.weight"])
    assert np.array_equal(loaded["layer4.1.conv2.weight"], numpy_state(source)["layer4.1.conv2.weight"])


def test_a_body_shape_mismatch_always_raises(tmp_path, source, target):
    state = numpy_state(source)
    state["conv1.weight"] = state["conv1.weight"][:32]
    path = tmp_path / "bad.pth"
    tf.save_state_dict(path, state)
    with pytest.raises(RuntimeError, match=r"size mismatch for conv1.weight: shape \(32, 3, 7, 7\)"):
        load_weights(target, path, strict=False)


def test_missing_unexpected_and_num_batches_tracked(tmp_path, source, target):
    state = {k: v for k, v in numpy_state(source).items() if not k.endswith("num_batches_tracked")}
    del state["layer1.0.bn1.bias"]
    state["extra.weight"] = np.zeros(3, np.float32)
    path = tmp_path / "partial.pth"
    tf.save_state_dict(path, state)
    with pytest.raises(RuntimeError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert "Missing key(s) in the file: layer1.0.bn1.bias" in message and "num_batches_tracked" not in message
    assert "Unexpected key(s) in the file: extra.weight" in message
    result = load_weights(target, path, strict=False)
    assert result.missing_keys == ["layer1.0.bn1.bias"] and result.unexpected_keys == ["extra.weight"]


def test_dtypes_are_checked_and_floats_cast(tmp_path, source, target, x, want):
    state = numpy_state(source)
    as_double = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state.items()}
    path = tmp_path / "double.pth"
    tf.save_state_dict(path, as_double)
    scramble(target)
    load_weights(target, path)
    assert target.conv1.weight.dtype == "float32"
    assert np.array_equal(logits(target, x), want)
    state["bn1.weight"] = state["bn1.weight"].astype(np.int64)
    tf.save_state_dict(path, state)
    with pytest.raises(RuntimeError, match="dtype mismatch for bn1.weight: int64 in the file, float32 in the model"):
        load_weights(target, path)


def test_auto_rename_pretrainedmodels_and_aux_heads(tmp_path, source, target, x, want):
    state = numpy_state(source)
    cadene = {}
    for k, v in state.items():
        k = "layer0." + k if k.startswith(("conv1.", "bn1.")) else k
        cadene["last_linear." + k[3:] if k.startswith("fc.") else k] = v
    cadene["aux1.fc2.weight"] = np.zeros((3, 4), np.float32)  # as GoogLeNet files carry
    path = tmp_path / "cadene.pth"
    tf.save_state_dict(path, cadene)
    scramble(target)
    result = load_weights(target, path)
    assert result.renamed == {"layer0.conv1.weight": "conv1.weight", "layer0.bn1.weight": "bn1.weight",
                              "layer0.bn1.bias": "bn1.bias", "layer0.bn1.running_mean": "bn1.running_mean",
                              "layer0.bn1.running_var": "bn1.running_var",
                              "layer0.bn1.num_batches_tracked": "bn1.num_batches_tracked",
                              "last_linear.weight": "fc.weight", "last_linear.bias": "fc.bias"}
    assert result.skipped == {"aux1.fc2.weight": "auxiliary classifier, not in the model"}
    assert np.array_equal(logits(target, x), want)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_weights(target, path, rename="none")
    result = load_weights(target, path, rename=lambda n: None if n.startswith("aux") else n, strict=False)
    assert "conv1.weight" in result.missing_keys and "aux1.fc2.weight" not in result.skipped


def test_timm_and_torchvision_vit_tables():
    timm = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.11.norm2.bias",
            "blocks.11.mlp.fc1.weight", "blocks.11.mlp.fc2.bias", "norm.weight", "head.bias"]
    torchvision = ["class_token", "encoder.pos_embedding", "conv_proj.weight", "conv_proj.bias",
                   "encoder.layers.encoder_layer_0.ln_1.weight",
                   "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                   "encoder.layers.encoder_layer_0.self_attention.in_proj_bias",
                   "encoder.layers.encoder_layer_0.self_attention.out_proj.weight",
                   "encoder.layers.encoder_layer_11.ln_2.bias", "encoder.layers.encoder_layer_11.mlp.0.weight",
                   "encoder.layers.encoder_layer_11.mlp.3.bias", "encoder.ln.weight", "heads.head.bias"]
    assert [_apply("timm", n) for n in timm] == torchvision
    assert [_apply("timm", n) for n in ["conv1.weight", "layer1.0.bn1.running_var", "fc.weight"]] == \
        ["conv1.weight", "layer1.0.bn1.running_var", "fc.weight"]  # timm's ResNets already have torchvision's names
    assert _apply("torchvision", "encoder.layers.encoder_layer_3.mlp.linear_1.weight") == \
        "encoder.layers.encoder_layer_3.mlp.0.weight"
    assert _apply("torchvision", "encoder.layers.encoder_layer_3.mlp.linear_2.bias") == \
        "encoder.layers.encoder_layer_3.mlp.3.bias"


def _apply(table, name):
    import re

    for pattern, replacement in RENAME_TABLES[table]:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    return name


class TinyViTNames(nn.Module):
    """Just the torchvision ViT names the auto-rename must hit."""

    def __init__(self):
        super().__init__()
        self.class_token = nn.Parameter(af.zeros((1, 1, 4)))
        self.conv_proj = nn.Conv2d(3, 4, 2, 2)
        self.heads = nn.Module()
        self.heads.head = nn.Linear(4, 3)


def test_auto_rename_picks_timm_for_a_vit():
    state = {"cls_token": np.ones((1, 1, 4), np.float32), "patch_embed.proj.weight": np.ones((4, 3, 2, 2), np.float32),
             "patch_embed.proj.bias": np.ones(4, np.float32), "head.weight": np.ones((3, 4), np.float32),
             "head.bias": np.ones(3, np.float32)}
    model = TinyViTNames()
    result = load_weights(model, tf.torch_zip(tf.tensors_to_objects(state)))
    assert result.renamed["cls_token"] == "class_token" and result.renamed["head.bias"] == "heads.head.bias"
    assert model.class_token.numpy().tolist() == [[[1, 1, 1, 1]]] and float(model.heads.head.bias.numpy().sum()) == 3


def test_vggface2_pickle_and_safetensors_load(tmp_path, source, target, x, want):
    state = numpy_state(source)
    pkl = tmp_path / "resnet_ft_weight.pkl"
    pkl.write_bytes(tf.numpy_pickle_py2({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}))
    with pytest.raises(WeightsError, match="format='vggface2'"):
        load_weights(target, pkl)
    scramble(target)
    load_weights(target, pkl, format="vggface2")
    assert np.array_equal(logits(target, x), want)
    st = tmp_path / "w.safetensors"
    checkpoint.save_file(state, st)
    scramble(target)
    load_weights(target, st)
    assert np.array_equal(logits(target, x), want)


def test_convert_weights_cli(tmp_path, source, capsys):
    state = numpy_state(source)
    src, dst = tmp_path / "in.pth", tmp_path / "out.safetensors"
    tf.save_state_dict(src, {"module." + k: v for k, v in state.items()}, wrap="model_state_dict")
    assert main(["convert-weights", str(src), str(dst)]) == 0
    assert f"wrote {len(state)} tensors" in capsys.readouterr().out
    converted, meta = checkpoint.load_file(dst)
    assert list(converted) == list(state) and meta["format"] == "affectfer-converted" and meta["source"] == "in.pth"
    assert all(np.array_equal(converted[k], state[k]) and converted[k].dtype == state[k].dtype for k in state)

    pkl, out2 = tmp_path / "vgg.pkl", tmp_path / "vgg.safetensors"
    pkl.write_bytes(tf.numpy_pickle_py2({"fc.bias": np.arange(3, dtype=np.float32)}))
    assert main(["convert-weights", str(pkl), str(out2)]) == 1
    assert "format='vggface2'" in capsys.readouterr().err and not out2.exists()
    assert main(["convert-weights", "--format", "vggface2", str(pkl), str(out2)]) == 0
    assert checkpoint.load_file(out2)[0]["fc.bias"].tolist() == [0, 1, 2]

    evil = tmp_path / "evil.pth"
    evil.write_bytes(tf.torch_zip({}, pickled=b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00true\x85R."))
    assert main(["convert-weights", str(evil), str(tmp_path / "evil.safetensors")]) == 1
    assert "refusing to unpickle the global 'posix.system'" in capsys.readouterr().err

    genuine = os.path.join(DATA, "torch_zip.pth")  # int16 inside: our safetensors writer refuses it
    assert main(["convert-weights", genuine, str(tmp_path / "g.safetensors")]) == 1
    assert "tensor 'i16' has dtype int16" in capsys.readouterr().err
    assert main(["convert-weights", os.path.join(DATA, "torch_module.pth"), str(tmp_path / "m.safetensors")]) == 0
    converted = checkpoint.load_file(tmp_path / "m.safetensors")[0]
    assert converted["1.num_batches_tracked"].dtype == np.int64 and converted["0.weight"].shape == (4, 3, 3, 3)

    with pytest.raises(SystemExit) as info:
        main(["convert-weights", "--help"])
    assert info.value.code == 0 and "safetensors" in capsys.readouterr().out


def test_convert_weights_renames(tmp_path):
    src, dst = tmp_path / "vit.pth", tmp_path / "vit.safetensors"
    tf.save_state_dict(src, {"cls_token": np.zeros((1, 1, 2), np.float32),
                             "blocks.0.mlp.fc1.bias": np.ones(2, np.float32)})
    written = convert_weights(src, dst, rename="timm")
    assert list(written) == ["class_token", "encoder.layers.encoder_layer_0.mlp.0.bias"]
    assert list(checkpoint.load_file(dst)[0]) == list(written)


def test_genuine_module_file_into_an_affectfer_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    load_weights(model, os.path.join(DATA, "torch_module.pth"))
    expected = np.load(os.path.join(DATA, "expected.npz"))
    for name, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), expected["module/" + name]), name
