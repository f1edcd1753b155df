"""torchvision-like transforms that compile into one C pipeline.

    import affectfer.transforms as T
    tf = T.Compose([T.Resize((112, 112)), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    x = tf(img, seed=0, stream=3)      # img: NumPy uint8 (H, W, 3) -> float32 (3, 112, 112)
    loader = affectfer.data.Loader(dataset, 64, transform=tf, ...)   # the same pipeline in C threads

Semantics follow torchvision's tensor path (torchvision >= 0.12, measured against 0.29;
torchvision/transforms/_functional_tensor.py): the same parameters give the same pixels for the
deterministic ops; random ops draw their parameters like torchvision but from affectfer's Philox
streams, so they match torchvision in distribution, not draw for draw.

Every transform is callable on one NumPy uint8 image (H, W[, C]); randomness comes from
(seed, stream): pass them for a repeatable result, or leave them out to take the next stream of the
global generator (`affectfer.manual_seed`). A transform before ToTensor returns uint8 (H, W, C); a
pipeline with ToTensor returns float32 (C, H, W). The same ops with explicit parameters live in
`affectfer.transforms.functional`.

Python callables cannot run inside the C pipeline (that would need the GIL in every loader thread).

Conformance with torchvision 0.29 (tensor path, uint8 CHW tensors; tests/image/test_torchvision.py):
- bit-exact: CenterCrop, crop, pad (all modes), flips, ToTensor, Normalize, adjust_brightness /
  contrast / saturation / hue / sharpness, rgb_to_grayscale, posterize, solarize, autocontrast,
  equalize, invert, and every RandAugment op at every magnitude bin with both signs (magnitude tables
  included: torch's linspace uses a fused multiply-add, reproduced with fmaf);
- within 1 LSB: Resize (bilinear; antialias=True is torchvision >= 0.17's default, antialias=False
  its < 0.15 tensor behaviour): weights are identical, but ATen's float32 accumulation order is not
  reproduced, so under 0.5% of pixels sit one step off at .5 ties; F.affine / F.rotate with
  arbitrary angles (nearest: under 0.2% of pixels pick a neighbour at float32 ties; bilinear <= 1);
- same algorithm, different random stream: every random parameter (crop boxes, erasing boxes, jitter
  factors and order, RandAugment draws) is drawn like torchvision but from Philox, so results match
  torchvision in distribution only.
Not implemented: the PIL path's rounding (Pillow images), interpolation modes other than
bilinear (Resize) / nearest and bilinear (affine).
"""
import numbers
import math

import numpy as np

from .. import _C
from .._args import pair as _pair

_PAD_MODES, _SOBEL, _INTERP = _C.pad_modes, _C.sobel_magnitudes, _C.interpolations  # C enums by name


def _stage(name, **params):
    """(name, parameter values) in the C layout of stage `name` (`_C.image_stages`, defined once in
    csrc/image/pipeline.c); a trailing "name..." parameter takes a sequence."""
    layout = _C.image_stages[name][1]
    values = []
    for p in layout:
        if p.endswith("..."):
            values += [float(v) for v in params.pop(p[:-3])]
        else:
            values.append(float(params.pop(p)))
    if params:
        raise TypeError(f"{name}: unknown stage parameters {sorted(params)}; the layout is {layout}")
    return name, values


def _range(value, name, center=1.0, bound=(0.0, math.inf)):
    """torchvision ColorJitter._check_input: a number v -> [center - v, center + v] (clipped at the
    lower bound), a pair as-is; None when the range is exactly [center, center] (op disabled)."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{name}: if it is a single number, it must be non negative, got {value}")
        value = [center - float(value), center + float(value)]
        if center == 1.0:
            value[0] = max(value[0], 0.0)
    else:
        value = [float(v) for v in value]
        if len(value) != 2:
            raise ValueError(f"{name}: must be a number or a (min, max) pair")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name}: values should be between {bound}, got {value}")
    return None if value[0] == value[1] == center else value


class Transform:
    """Base class: a transform contributes stages to a pipeline spec; calling it runs the pipeline
    of this transform alone."""

    def _stages(self):
        raise NotImplementedError

    def compile(self):
        """The C pipeline (a capsule the loader shares with its threads); built once, cached."""
        cap = getattr(self, "_capsule", None)
        if cap is None:
            spec = []
            for name, params in self._stages():
                spec += [float(_C.image_stages[name][0]), float(len(params))] + params
            cap = _C.pipeline_build(np.asarray(spec, dtype=np.float64))
            self._capsule = cap
        return cap

    _pipeline_capsule = compile

    def output_shape(self, height, width):
        """(C, H, W) of the float output for an input of height x width (needs a ToTensor stage)."""
        return _C.pipeline_output_shape(self.compile(), int(height), int(width))

    def __call__(self, img, seed=None, stream=None):
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise TypeError(f"{type(self).__name__}: img must be a uint8 image (H, W[, C]), got dtype {img.dtype}")
        if seed is None or stream is None:
            gseed, gstream = _C.next_stream()
            seed = gseed if seed is None else seed
            stream = gstream if stream is None else stream
        return _C.pipeline_run(self.compile(), img, int(seed) & (2**64 - 1), int(stream) & (2**64 - 1))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(Transform):
    """A sequence of affectfer transforms, compiled into one C pipeline."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"Compose: {t!r} is not an affectfer transform; Python callables cannot run in the "
                                "C pipeline (apply them outside, the slow path)")
        self.compile()  # validate now, not in a loader thread

    def _stages(self):
        return [s for t in self.transforms for s in t._stages()]

    def __repr__(self):
        return "Compose(\n" + "".join(f"    {t!r},\n" for t in self.transforms) + ")"


class Resize(Transform):
    """Bilinear resize. size: (h, w), or an int for the shorter edge (the longer one becomes
    int(size * long / short), capped by max_size). antialias=True (torchvision >= 0.17's default)
    uses the antialiased kernel, which matters when downscaling; antialias=False is plain bilinear
    (torchvision < 0.15 on tensors)."""

    def __init__(self, size, max_size=None, antialias=True, interpolation="bilinear"):
        if interpolation not in ("bilinear", 2):
            raise ValueError(f"Resize: only bilinear interpolation is implemented, got {interpolation!r}")
        if isinstance(size, numbers.Integral) or len(tuple(size)) == 1:
            self.size = int(size) if isinstance(size, numbers.Integral) else int(tuple(size)[0])
            if max_size is not None and max_size <= self.size:
                raise ValueError(f"Resize: max_size = {max_size} must be strictly greater than the requested size")
        else:
            if max_size is not None:
                raise ValueError("Resize: max_size is only supported for an int size")
            self.size = _pair(size, "Resize: size")
        self.max_size = max_size
        self.antialias = bool(antialias)

    def _stages(self):
        if isinstance(self.size, int):
            return [_stage("Resize", height=self.size, width=0, max_size=self.max_size or 0, antialias=self.antialias)]
        return [_stage("Resize", height=self.size[0], width=self.size[1], max_size=0, antialias=self.antialias)]


class CenterCrop(Transform):
    """Crop the center (zero padding when the crop is larger than the image), like torchvision."""

    def __init__(self, size):
        self.size = _pair(size, "CenterCrop: size")

    def _stages(self):
        return [_stage("CenterCrop", height=self.size[0], width=self.size[1])]


class RandomCrop(Transform):
    """Random crop after optional padding (an int, (left/right, top/bottom) or (l, t, r, b));
    padding_mode constant/edge/reflect/symmetric; pad_if_needed pads up to the crop size."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = _pair(size, "RandomCrop: size")
        if padding is None:
            pad = (0, 0, 0, 0)
        elif isinstance(padding, numbers.Integral):
            pad = (int(padding),) * 4
        else:
            padding = tuple(int(p) for p in padding)
            if len(padding) == 2:
                pad = (padding[0], padding[1], padding[0], padding[1])
            elif len(padding) == 4:
                pad = padding
            else:
                raise ValueError(f"RandomCrop: padding must be an int or a 2- or 4-element sequence, got {padding!r}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}")
        fill3 = (int(fill),) * 3 if isinstance(fill, numbers.Number) else tuple(int(f) for f in fill)
        if len(fill3) == 1:
            fill3 *= 3
        if len(fill3) != 3:
            raise ValueError("RandomCrop: fill must be a number or 3 numbers")
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = pad, bool(pad_if_needed), fill3, padding_mode

    def _stages(self):
        (h, w), (pl, pt, pr, pb), (r, g, b) = self.size, self.padding, self.fill
        return [_stage("RandomCrop", height=h, width=w, pad_left=pl, pad_top=pt, pad_right=pr, pad_bottom=pb,
                       pad_if_needed=self.pad_if_needed, padding_mode=_PAD_MODES[self.padding_mode],
                       fill_r=r, fill_g=g, fill_b=b)]


class RandomResizedCrop(Transform):
    """Crop a random area fraction in `scale` with a log-uniform aspect ratio (w/h) in `ratio`, then
    resize to `size` (bilinear, antialias as in Resize)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), antialias=True, interpolation="bilinear"):
        if interpolation not in ("bilinear", 2):
            raise ValueError(f"RandomResizedCrop: only bilinear interpolation is implemented, got {interpolation!r}")
        self.size = _pair(size, "RandomResizedCrop: size")
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(self.scale) != 2 or len(self.ratio) != 2:
            raise ValueError("RandomResizedCrop: scale and ratio must be (min, max) pairs")
        if self.scale[0] > self.scale[1] or self.ratio[0] > self.ratio[1]:
            raise ValueError("RandomResizedCrop: scale and ratio should be of kind (min, max)")
        self.antialias = bool(antialias)

    def _stages(self):
        return [_stage("RandomResizedCrop", height=self.size[0], width=self.size[1], scale_lo=self.scale[0],
                       scale_hi=self.scale[1], ratio_lo=self.ratio[0], ratio_hi=self.ratio[1], antialias=self.antialias)]


class RandomHorizontalFlip(Transform):
    def __init__(self, p=0.5):
        self.p = float(p)

    def _stages(self):
        return [_stage("RandomHorizontalFlip", p=self.p)]


class RandomVerticalFlip(Transform):
    def __init__(self, p=0.5):
        self.p = float(p)

    def _stages(self):
        return [_stage("RandomVerticalFlip", p=self.p)]


class ColorJitter(Transform):
    """Random brightness, contrast, saturation and hue in a random order (torchvision semantics:
    a number v means [max(0, 1 - v), 1 + v], hue h means [-h, h]; factors uniform)."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.brightness = _range(brightness, "brightness")
        self.contrast = _range(contrast, "contrast")
        self.saturation = _range(saturation, "saturation")
        self.hue = _range(hue, "hue", center=0.0, bound=(-0.5, 0.5))

    def _stages(self):
        b, c, s = (r or (1.0, 1.0) for r in (self.brightness, self.contrast, self.saturation))
        h = self.hue or (0.0, 0.0)
        return [_stage("ColorJitter", brightness_lo=b[0], brightness_hi=b[1], contrast_lo=c[0], contrast_hi=c[1],
                       saturation_lo=s[0], saturation_hi=s[1], hue_lo=h[0], hue_hi=h[1])]


class Grayscale(Transform):
    """torchvision's float32 gray (0.2989 R + 0.587 G + 0.114 B, truncated) in 1 or 3 channels."""

    def __init__(self, num_output_channels=1):
        if num_output_channels not in (1, 3):
            raise ValueError("Grayscale: num_output_channels should be either 1 or 3")
        self.num_output_channels = num_output_channels

    def _stages(self):
        return [_stage("Grayscale", out_channels=self.num_output_channels, p=1.0)]


class RandomGrayscale(Transform):
    """Grayscale with probability p, keeping the number of channels."""

    def __init__(self, p=0.1):
        self.p = float(p)

    def _stages(self):
        return [_stage("Grayscale", out_channels=0, p=self.p)]


class RandAugment(Transform):
    """RandAugment (torchvision >= 0.12 semantics): num_ops ops drawn uniformly from the 14-op table
    (minus `exclude`), each at bin `magnitude` of num_magnitude_bins with a random sign for signed
    ops. exclude=("Solarize", "Equalize") is the label-smoothing seed's variant. Interpolation is
    nearest; fill None = 0 outside warped images (torchvision's default)."""

    def __init__(self, num_ops=2, magnitude=9, num_magnitude_bins=31, exclude=(), fill=None, interpolation="nearest"):
        from .functional import RANDAUGMENT_OPS
        if interpolation not in ("nearest", 0):
            raise ValueError(f"RandAugment: only nearest interpolation is implemented, got {interpolation!r}")
        self.num_ops, self.magnitude, self.num_magnitude_bins = int(num_ops), int(magnitude), int(num_magnitude_bins)
        if not 0 <= self.magnitude < self.num_magnitude_bins:
            raise ValueError(f"RandAugment: magnitude must be in [0, num_magnitude_bins), got {magnitude}")
        unknown = [e for e in exclude if e not in RANDAUGMENT_OPS]
        if unknown:
            raise ValueError(f"RandAugment: unknown ops in exclude: {unknown}; ops: {RANDAUGMENT_OPS}")
        self.exclude = tuple(exclude)
        self.ops = tuple(o for o in RANDAUGMENT_OPS if o not in self.exclude)
        if not self.ops:
            raise ValueError("RandAugment: every op is excluded")
        self.fill = None if fill is None else ((int(fill),) * 3 if isinstance(fill, numbers.Number) else tuple(int(f) for f in fill))
        if self.fill is not None and len(self.fill) == 1:
            self.fill *= 3

    def _mask(self):
        from .functional import RANDAUGMENT_OPS
        return sum(1 << i for i, o in enumerate(RANDAUGMENT_OPS) if o not in self.exclude)

    def sample(self, img, seed, stream):
        """(augmented image, the ops chosen, their signed magnitudes) for one (seed, stream), the same
        draws __call__ makes (fill is not applied here)."""
        return _C.randaugment(np.asarray(img), self.num_ops, self.magnitude, self.num_magnitude_bins, self._mask(),
                              int(seed) & (2**64 - 1), int(stream) & (2**64 - 1))

    def _stages(self):
        fill = self.fill or (0, 0, 0)
        return [_stage("RandAugment", num_ops=self.num_ops, magnitude=self.magnitude, num_bins=self.num_magnitude_bins,
                       op_mask=self._mask(), has_fill=self.fill is not None, fill_r=fill[0], fill_g=fill[1], fill_b=fill[2])]


class SobelEdges(Transform):
    """Sobel edge map for the hand detector: gray (OpenCV weights), optional 3x3 Gaussian blur,
    reflect-101 border, magnitude "l2" (default), "l1" or "half_abs", saturated to uint8, in 1 or 3
    channels."""

    def __init__(self, magnitude="l2", blur=False, out_channels=1):
        if magnitude not in _SOBEL:
            raise ValueError(f"SobelEdges: magnitude must be one of {sorted(_SOBEL)}, got {magnitude!r}")
        if out_channels not in (1, 3):
            raise ValueError("SobelEdges: out_channels must be 1 or 3")
        self.magnitude, self.blur, self.out_channels = magnitude, bool(blur), out_channels

    def _stages(self):
        return [_stage("SobelEdges", magnitude=_SOBEL[self.magnitude], blur=self.blur, out_channels=self.out_channels)]


class RandomAffine(Transform):
    """Random affine warp (torchvision semantics, tensor path): angle ~ U(degrees) (a number d means
    (-d, d); clockwise positive like F.affine), translate (a, b): tx, ty ~ round(U(-a W, a W)),
    round(U(-b H, b H)); scale ~ U(scale); shear a number s -> x-shear U(-s, s), (lo, hi) -> x only,
    4 values -> x and y. Nearest or bilinear sampling about the center (or `center`); outside = fill."""

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="nearest", fill=0, center=None):
        self.degrees = (-float(degrees), float(degrees)) if isinstance(degrees, numbers.Number) else tuple(map(float, degrees))
        if isinstance(degrees, numbers.Number) and degrees < 0:
            raise ValueError("RandomAffine: if degrees is a single number, it must be positive")
        if len(self.degrees) != 2:
            raise ValueError("RandomAffine: degrees should be a number or a (min, max) pair")
        self.translate = None if translate is None else tuple(float(t) for t in translate)
        if self.translate is not None and (len(self.translate) != 2 or not all(0 <= t <= 1 for t in self.translate)):
            raise ValueError("RandomAffine: translate should be two values between 0 and 1")
        self.scale = None if scale is None else tuple(float(v) for v in scale)
        if self.scale is not None and (len(self.scale) != 2 or min(self.scale) <= 0):
            raise ValueError("RandomAffine: scale values should be positive")
        if shear is None:
            self.shear = None
        elif isinstance(shear, numbers.Number):
            if shear < 0:
                raise ValueError("RandomAffine: if shear is a single number, it must be positive")
            self.shear = (-float(shear), float(shear), 0.0, 0.0)
        else:
            sh = tuple(float(v) for v in shear)
            if len(sh) not in (2, 4):
                raise ValueError("RandomAffine: shear should be a number or a sequence of 2 or 4 values")
            self.shear = sh + (0.0, 0.0) if len(sh) == 2 else sh
        if interpolation not in _INTERP:
            raise ValueError(f"RandomAffine: interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.interpolation = interpolation
        self.fill = (int(fill),) * 3 if isinstance(fill, numbers.Number) else tuple(int(f) for f in fill)
        if len(self.fill) == 1:
            self.fill *= 3
        self.center = None if center is None else (float(center[0]), float(center[1]))

    def _stages(self):
        tr = self.translate or (0.0, 0.0)
        sc = self.scale or (1.0, 1.0)
        sh = self.shear or (0.0, 0.0, 0.0, 0.0)
        c = (0, 0.0, 0.0) if self.center is None else (1, *self.center)
        return [_stage("RandomAffine", degrees_lo=self.degrees[0], degrees_hi=self.degrees[1], translate_x=tr[0],
                       translate_y=tr[1], scale_lo=sc[0], scale_hi=sc[1], shear_x_lo=sh[0], shear_x_hi=sh[1],
                       shear_y_lo=sh[2], shear_y_hi=sh[3], interpolation=_INTERP[self.interpolation],
                       fill_r=self.fill[0], fill_g=self.fill[1], fill_b=self.fill[2], has_center=c[0], center_x=c[1],
                       center_y=c[2])]


class RandomApply(Transform):
    """Apply the transforms (all size-preserving) together with probability p."""

    def __init__(self, transforms, p=0.5):
        self.transforms = list(transforms)
        self.p = float(p)
        for t in self.transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"RandomApply: {t!r} is not an affectfer transform")

    def _stages(self):
        inner = [s for t in self.transforms for s in t._stages()]
        return [_stage("RandomApply", p=self.p, count=len(inner))] + inner


class ToTensor(Transform):
    """uint8 (H, W, C) -> float32 (C, H, W) in [0, 1] (x / 255 in float32, like torchvision)."""

    def _stages(self):
        return [_stage("ToTensor")]


class Normalize(Transform):
    """(x - mean) / std per channel in float32; after ToTensor."""

    def __init__(self, mean, std):
        self.mean = tuple(float(m) for m in np.atleast_1d(mean))
        self.std = tuple(float(s) for s in np.atleast_1d(std))
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
            raise ValueError("Normalize: mean and std need 1 or 3 values each")
        if any(np.float32(s) == 0 for s in self.std):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to float32, leading to division by "
                             f"zero: {self.std}")

    def _stages(self):
        return [_stage("Normalize", channels=len(self.mean), mean_std=self.mean + self.std)]


class RandomErasing(Transform):
    """Erase a random box with probability p (area fraction in `scale`, log-uniform aspect h/w in
    `ratio`). value: a number, one per channel, or "random" (N(0, 1) noise). Placed after ToTensor
    (usually after Normalize, so 0 is the mean colour) it erases the float tensor; before ToTensor it
    writes uint8 values 0..255."""

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace=False):
        self.p = float(p)
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"RandomErasing: p should be between 0 and 1, got {p}")
        if self.scale[0] > self.scale[1] or self.ratio[0] > self.ratio[1]:
            raise ValueError("RandomErasing: scale and ratio should be of kind (min, max)")
        if self.scale[0] < 0.0 or self.scale[1] > 1.0:
            raise ValueError(f"RandomErasing: scale should be between 0 and 1, got {self.scale}")
        if isinstance(value, str):
            if value != "random":
                raise ValueError(f"RandomErasing: value must be a number, a sequence or 'random', got {value!r}")
            self.value = "random"
        elif isinstance(value, numbers.Number):
            self.value = (float(value),)
        else:
            self.value = tuple(float(v) for v in value)
            if len(self.value) not in (1, 3):
                raise ValueError("RandomErasing: value must have 1 or 3 entries")

    def _stages(self):
        random = self.value == "random"
        values = () if random else self.value
        return [_stage("RandomErasing", p=self.p, scale_lo=self.scale[0], scale_hi=self.scale[1], ratio_lo=self.ratio[0],
                       ratio_hi=self.ratio[1], random=random, nvalues=len(values), values=values)]


def compute_mean_std(images, max_pixels: int | None = None):
    """Per-channel mean and std (population) of a dataset in ToTensor units ([0, 1]), for
    Normalize(mean, std) with the training set's own statistics. images: an iterable of uint8
    (H, W, 3) arrays or image paths. Sums are exact integers, so the result does not depend on the
    order or on image sizes beyond their pixel counts. max_pixels: the decoding limit for paths
    (default affectfer.io.MAX_PIXELS)."""
    from ..io import MAX_PIXELS, read_image

    if max_pixels is None:
        max_pixels = MAX_PIXELS
    count = 0
    total = np.zeros(3, dtype=np.float64)
    total_sq = np.zeros(3, dtype=np.float64)
    for item in images:
        img = read_image(item, max_pixels) if not isinstance(item, np.ndarray) else item
        if img.dtype != np.uint8:
            raise TypeError(f"compute_mean_std: images must be uint8, got {img.dtype}")
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        px = img.reshape(-1, 3)
        total += px.sum(axis=0, dtype=np.int64)
        total_sq += (px.astype(np.int64) ** 2).sum(axis=0)
        count += px.shape[0]
    if count == 0:
        raise ValueError("compute_mean_std: no images")
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    return tuple(float(m) / 255.0 for m in mean), tuple(float(s) / 255.0 for s in np.sqrt(var))


from . import functional  # noqa: E402  (the functional ops, after the classes they mirror)

__all__ = ["Compose", "Resize", "CenterCrop", "RandomCrop", "RandomResizedCrop", "RandomHorizontalFlip",
           "RandomVerticalFlip", "RandomAffine", "RandomApply", "ColorJitter", "Grayscale", "RandomGrayscale", "RandAugment", "SobelEdges", "ToTensor",
           "Normalize", "RandomErasing", "compute_mean_std", "functional"]
