"""Input conventions of pretrained weights, as parameters of affectfer.transforms.

    pre = models.preprocessing("vggface2")       # or model.preprocessing
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), *pre.transforms()])
    x = pre.reorder(tf(img))                     # (3, 224, 224) float32, BGR, mean-subtracted

A preset holds the per-channel mean and std in RGB order on ToTensor's [0, 1] scale, so ToTensor
followed by Normalize(mean, std) computes it in the C pipeline, and the channel order the weights
expect. The pipeline always produces RGB; `reorder` turns the normalised array (C, H, W) or batch
(N, C, H, W) into the weights' order.

* "imagenet": torchvision's ImageNet weights: x / 255, mean (0.485, 0.456, 0.406), std
  (0.229, 0.224, 0.225), RGB.
* "vggface2": the VGGFace2 Caffe models (Cao et al. 2018; github.com/cydonia999/VGGFace2-pytorch,
  datasets/vgg_face2.py): BGR, minus the per-channel mean of the training faces (R 131.0912,
  G 103.8827, B 91.4953 on the 0..255 scale), no division by 255 and no std. As parameters of
  ToTensor + Normalize: mean / 255 and std 1 / 255, since ((x / 255) - m / 255) * 255 = x - m.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import transforms as T
from ..tensor import tensor
from .blocks import IMAGENET_MEAN, IMAGENET_STD

VGGFACE2_MEAN_RGB = (131.0912, 103.8827, 91.4953)  # 0..255 scale; the Caffe prototxt lists it as BGR


class Preprocessing(NamedTuple):
    """One input convention: ToTensor then Normalize(mean, std) (RGB order, [0, 1] scale), then
    the channels in `channel_order`. resize / crop_size: the evaluation resize of the shorter side
    and centre crop of the reference code."""
    name: str
    mean: tuple
    std: tuple
    channel_order: str
    resize: int
    crop_size: int

    def transforms(self) -> list:
        """[ToTensor(), Normalize(mean, std)]: the pipeline's last stages (uint8 RGB -> float32 CHW)."""
        return [T.ToTensor(), T.Normalize(self.mean, self.std)]

    def eval_transform(self) -> T.Compose:
        """Resize(resize) -> CenterCrop(crop_size) -> ToTensor -> Normalize, the reference evaluation
        pipeline (RGB out: apply `reorder` to its output)."""
        return T.Compose([T.Resize(self.resize), T.CenterCrop(self.crop_size), *self.transforms()])

    def reorder(self, x):
        """A normalised RGB array or tensor, (C, H, W) or (N, C, H, W), in the weights' channel order
        (unchanged for RGB; channels reversed for BGR)."""
        if self.channel_order == "RGB":
            return x
        shape = tuple(x.shape)
        if len(shape) not in (3, 4) or shape[-3] != 3:
            raise ValueError(f"reorder: expected (3, H, W) or (N, 3, H, W), got shape {shape}")
        if isinstance(x, np.ndarray):
            return np.ascontiguousarray(x[..., ::-1, :, :])
        return x.index_select(len(shape) - 3, tensor(np.array([2, 1, 0], np.int64)))


PRESETS = {
    "imagenet": Preprocessing("imagenet", IMAGENET_MEAN, IMAGENET_STD, "RGB", 256, 224),
    "vggface2": Preprocessing("vggface2", tuple(m / 255 for m in VGGFACE2_MEAN_RGB), (1 / 255,) * 3, "BGR", 256, 224),
}


def preprocessing(name: str) -> Preprocessing:
    """The input convention `name` ("imagenet" or "vggface2"); see the module docstring."""
    if name not in PRESETS:
        raise ValueError(f"preprocessing: unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
