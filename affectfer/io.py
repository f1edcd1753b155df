"""Image files in and out: decoding in C (stb_image; JPEG and PNG, the formats face datasets use).

    img = affectfer.io.read_image("face.jpg")        # uint8 (H, W, 3), RGB
    img = affectfer.io.decode_image(open(p, "rb").read())

Grayscale and RGBA files become RGB (alpha dropped); 16-bit PNGs keep their high byte. A corrupt,
truncated, empty or unsupported file (BMP, GIF, ...) raises ValueError naming the file; a missing
one, or anything that is not a regular file (a FIFO, a directory, a device), OSError.

Images with more than `max_pixels` pixels are refused from their header, before any pixel is
decoded: a file of a few hundred bytes can declare 16000 x 16000 pixels. The default, MAX_PIXELS =
4096 * 4096 (48 MB decoded), is far above face-dataset sizes; pass a larger `max_pixels` (here, to
`Loader`, to `compute_mean_std`) for large photos. It must be >= 1.
"""
import os

import numpy as np

from . import _C

MAX_PIXELS = _C.image_default_max_pixels  # 4096 * 4096, defined in csrc/image/image.h


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a uint8 (H, W, 3) RGB array."""
    return _C.image_read(os.fspath(path), max_pixels)


def decode_image(data, max_pixels: int = MAX_PIXELS, name: str = "<memory>") -> np.ndarray:
    """Decode encoded bytes (JPEG/PNG) into a uint8 (H, W, 3) RGB array."""
    return _C.image_decode(bytes(data) if not isinstance(data, (bytes, bytearray, memoryview)) else data,
                           max_pixels, str(name))
