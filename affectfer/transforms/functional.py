"""Every image op with explicit parameters, on one NumPy uint8 image (H, W) or (H, W, C), C in {1, 3}.
The same C code as the pipeline stages (affectfer.transforms), for notebooks and tests.

Ops return a new uint8 (H, W, C) array (to_tensor/normalize: float32 (C, H, W)). Semantics are
torchvision's tensor path (torchvision.transforms.functional on uint8 tensors).
"""
import numpy as np

from .. import _C
from ..io import decode_image, read_image  # noqa: F401  (decoding belongs to the single-image API too)

decode = decode_image

_PAD_MODES = _C.pad_modes  # the C enums, by name
_INTERP = _C.interpolations
_SOBEL = _C.sobel_magnitudes


def _img(img):
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"img must be a uint8 array (H, W[, C]), got dtype {img.dtype}")
    return img


def _op(name, img, *params):
    return _C.image_op(name, _img(img), np.asarray(params, dtype=np.float64).reshape(-1))


def resize(img, size, antialias=True, max_size=None):
    """Bilinear resize to size = (h, w), or an int for the shorter edge (torchvision rules).

    Computed in fixed point (14-bit weights, integer sums): within one level of torchvision's
    tensor path, not bit-identical. With antialias, under 0.5% of pixels of a random image differ by
    one; without it, at scales that are not powers of two, up to about 5% (csrc/image/resize.c)."""
    img = _img(img)
    if np.ndim(size) == 0 or len(size) == 1:
        s = int(size) if np.ndim(size) == 0 else int(size[0])
        h, w = img.shape[:2]
        short, long = min(h, w), max(h, w)
        new_short, new_long = s, int(s * long / short)
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), int(max_size)
        size = (new_long, new_short) if w <= h else (new_short, new_long)
        if tuple(size) == (h, w):
            return _op("crop", img, 0, 0, h, w)
    return _op("resize", img, int(size[0]), int(size[1]), bool(antialias))


def crop(img, top, left, height, width):
    """Rows [top, top+height), columns [left, left+width); zeros outside the image."""
    return _op("crop", img, top, left, height, width)


def center_crop(img, size):
    h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[-1]))
    return _op("center_crop", img, h, w)


def resized_crop(img, top, left, height, width, size, antialias=True):
    return resize(crop(img, top, left, height, width), size, antialias=antialias)


def pad(img, padding, fill=0, padding_mode="constant"):
    """padding: int, (left/right, top/bottom) or (left, top, right, bottom)."""
    p = [int(padding)] * 4 if np.ndim(padding) == 0 else [int(v) for v in padding]
    if len(p) == 2:
        p = [p[0], p[1], p[0], p[1]]
    if len(p) != 4:
        raise ValueError("pad: padding must be an int or a 2- or 4-element sequence")
    if padding_mode not in _PAD_MODES:
        raise ValueError(f"pad: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
    f = [int(fill)] * 3 if np.ndim(fill) == 0 else [int(v) for v in fill] * (3 if len(fill) == 1 else 1)
    return _op("pad", img, *p, _PAD_MODES[padding_mode], *f[:3])


def hflip(img):
    return _op("hflip", img)


def vflip(img):
    return _op("vflip", img)


def to_tensor(img):
    """uint8 (H, W, C) -> float32 (C, H, W), x / 255."""
    return _C.image_to_tensor(_img(img), None, None)


def normalize_image(img, mean, std):
    """ToTensor then Normalize in one step: ((x / 255) - mean) / std, float32 (C, H, W)."""
    return _C.image_to_tensor(_img(img), mean, std)


def normalize(tensor, mean, std):
    """Normalize a float32 (C, H, W) array: (x - mean) / std in float32."""
    return _C.image_normalize(tensor, mean, std)


# ---- photometric (torchvision tensor path; factors are used as float32) ----

def adjust_brightness(img, brightness_factor):
    return _op("adjust_brightness", img, brightness_factor)


def adjust_contrast(img, contrast_factor):
    return _op("adjust_contrast", img, contrast_factor)


def adjust_saturation(img, saturation_factor):
    return _op("adjust_saturation", img, saturation_factor)


def adjust_hue(img, hue_factor):
    return _op("adjust_hue", img, hue_factor)


def adjust_sharpness(img, sharpness_factor):
    return _op("adjust_sharpness", img, sharpness_factor)


def rgb_to_grayscale(img, num_output_channels=1):
    """torchvision's weights (0.2989, 0.587, 0.114) in float32, truncated (white 255 -> 254)."""
    return _op("rgb_to_grayscale", img, num_output_channels)


def posterize(img, bits):
    return _op("posterize", img, bits)


def solarize(img, threshold):
    return _op("solarize", img, threshold)


def autocontrast(img):
    return _op("autocontrast", img)


def equalize(img):
    return _op("equalize", img)


def invert(img):
    return _op("invert", img)


# ---- affine warps (torchvision F.affine / F.rotate on tensors) ----

def affine(img, angle, translate, scale, shear, interpolation="nearest", fill=None, center=None):
    """angle in degrees (clockwise positive, like F.affine), translate (tx, ty) pixels, shear a number
    or (sx, sy) in degrees, center in pixels (None = image center). fill=None: outside pixels are 0
    (torchvision's fill=None); a number or 3 numbers use torchvision's mask rule."""
    if interpolation not in _INTERP:
        raise ValueError(f"affine: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
    sx, sy = (float(shear), 0.0) if np.ndim(shear) == 0 else (float(shear[0]), float(shear[1]) if len(shear) > 1 else 0.0)
    f = [0, 0, 0] if fill is None else ([int(fill)] * 3 if np.ndim(fill) == 0 else [int(v) for v in fill] * (3 if len(fill) == 1 else 1))
    c = (0, 0, 0) if center is None else (1, float(center[0]), float(center[1]))
    return _op("affine", img, float(angle), float(translate[0]), float(translate[1]), float(scale), sx, sy, *c,
               _INTERP[interpolation], fill is not None, *f[:3])


def rotate(img, angle, interpolation="nearest", fill=None, center=None):
    """Counter-clockwise rotation by `angle` degrees about the center, same size (no expand)."""
    return affine(img, -float(angle), (0.0, 0.0), 1.0, (0.0, 0.0), interpolation, fill, center)


# ---- RandAugment pieces ----

RANDAUGMENT_OPS = tuple(_C.randaugment_ops())


def randaugment_op(img, op, magnitude, fill=None):
    """One RandAugment op by name with an already signed magnitude, exactly as RandAugment applies it
    (nearest interpolation; TranslateX/Y truncate the magnitude to int; shears use atan(m))."""
    if op not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown RandAugment op {op!r}; ops: {RANDAUGMENT_OPS}")
    f = [0, 0, 0] if fill is None else ([int(fill)] * 3 if np.ndim(fill) == 0 else [int(v) for v in fill])
    return _op("randaugment_op", img, RANDAUGMENT_OPS.index(op), float(magnitude), fill is not None, *f[:3])


def randaugment_magnitude(op, magnitude, num_magnitude_bins=31, image_size=(224, 224)):
    """(value, signed) of op's magnitude bin for an image of image_size = (height, width)."""
    return _C.randaugment_magnitude(RANDAUGMENT_OPS.index(op), int(magnitude), int(num_magnitude_bins),
                                    int(image_size[0]), int(image_size[1]))


# ---- edges ----

def sobel(img, magnitude="l2", blur=False, out_channels=1):
    """Sobel edge map of the gray image (OpenCV conventions: cvtColor, GaussianBlur, Sobel), saturated to uint8."""
    if magnitude not in _SOBEL:
        raise ValueError(f"sobel: magnitude must be one of {sorted(_SOBEL)}, got {magnitude!r}")
    return _op("sobel", img, _SOBEL[magnitude], bool(blur), out_channels)
