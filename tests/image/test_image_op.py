"""affectfer._C.image_op: one table shares the pipeline builder's validators, so both paths refuse a
parameter with the same message, which names the offending value; the one ToTensor/Normalize path."""
import numpy as np
import pytest

import affectfer.transforms as T
import affectfer.transforms.functional as F
from affectfer import _C


@pytest.fixture
def img():
    return np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("call, message", [
    (lambda im: F.posterize(im, 9), r"posterize: bits must be an integer in \[0, 8\], got 9"),
    (lambda im: F.posterize(im, 2.5), r"got 2\.5"),
    (lambda im: F.solarize(im, 300.5), r"solarize: threshold must be in \[0, 255\], got 300\.5"),
    (lambda im: F.adjust_hue(im, 0.75), r"hue_factor must be in \[-0\.5, 0\.5\], got 0\.75"),
    (lambda im: F.adjust_brightness(im, -0.25), r"adjust_brightness: factor must be in \[0, inf\], got -0\.25"),
    (lambda im: F.resize(im, (0, 4)), r"resize: size must be positive integers up to 65536, got \(0, 4\)"),
    (lambda im: F.pad(im, 1, fill=300), r"pad: fill must be an integer in \[0, 255\], got 300"),
    (lambda im: F.affine(im, np.inf, (0, 0), 1.0, 0.0), r"affine: parameter 0 must be finite, got inf"),
    (lambda im: F.rgb_to_grayscale(im, 2), r"num_output_channels must be 1 or 3, got 2"),
])
def test_messages_name_the_value(img, call, message):
    with pytest.raises(ValueError, match=message):
        call(img)


def test_same_validator_in_both_paths(img):
    with pytest.raises(ValueError, match="magnitude must be an integer in") as functional:
        _C.image_op("sobel", img, np.array([5.0, 0.0, 1.0]))
    kind = _C.image_stages["SobelEdges"][0]
    with pytest.raises(ValueError, match="magnitude must be an integer in") as pipeline:
        _C.pipeline_build(np.array([kind, 3, 5.0, 0.0, 1.0]))
    assert str(functional.value).split(": ", 1)[1] == str(pipeline.value).split(": ", 1)[1]


def test_parameter_count_and_unknown_op(img):
    with pytest.raises(ValueError, match="hflip takes 0 parameters, got 1"):
        _C.image_op("hflip", img, np.array([1.0]))
    with pytest.raises(ValueError, match="unknown image op 'blur'"):
        _C.image_op("blur", img, np.array([]))
    with pytest.raises(ValueError, match="'params' holds at most 16 numbers"):
        _C.image_op("hflip", img, np.zeros(17))


def test_one_normalise_path(img):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pipe = T.Compose([T.ToTensor(), T.Normalize(mean, std)])(img, seed=0, stream=0)
    np.testing.assert_array_equal(F.normalize_image(img, mean, std), pipe)
    np.testing.assert_array_equal(F.normalize(F.to_tensor(img), mean, std), pipe)
    ref = (img.transpose(2, 0, 1).astype(np.float32) / np.float32(255) - np.float32(mean)[:, None, None]) \
        / np.float32(std)[:, None, None]
    np.testing.assert_array_equal(pipe, ref.astype(np.float32))
    with pytest.raises(ValueError, match="std evaluated to zero"):
        F.normalize(F.to_tensor(img), 0.5, 0.0)
    with pytest.raises(ValueError, match="mean and std need 1 or 3 values each, got 2 and 2"):
        F.normalize(F.to_tensor(img), (0.5, 0.5), (1.0, 1.0))


@pytest.mark.parametrize("op", ["resize", "crop", "hflip", "adjust_brightness", "rgb_to_grayscale"])
def test_ops_leave_the_input_alone_and_return_their_own_array(img, op):
    """Ops that only read run on the caller's array itself, and results are handed over as their C
    buffer: the input never changes, a non-contiguous input reads right, and every result is a
    writable array of its own."""
    call = {"resize": lambda im: F.resize(im, (9, 5), antialias=False), "crop": lambda im: F.crop(im, 1, 2, 4, 4),
            "hflip": F.hflip, "adjust_brightness": lambda im: F.adjust_brightness(im, 1.5),
            "rgb_to_grayscale": lambda im: F.rgb_to_grayscale(im, 3)}[op]
    before = img.copy()
    out = call(img)
    assert np.array_equal(img, before)
    assert np.array_equal(call(np.asfortranarray(img)), out)  # a strided input gives the same result
    assert out.flags.writeable and out.flags.c_contiguous and not np.shares_memory(out, img)
    ref = out.copy()
    out[...] = 7
    assert np.array_equal(img, before) and np.array_equal(call(img), ref)
