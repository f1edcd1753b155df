"""Image files in and out: decoding in C (stb_image; JPEG, PNG and BMP).

    img = affectfer.io.read_image("face.jpg")        # uint8 (H, W, 3), RGB
    img = affectfer.io.decode_image(open(p, "rb").read())

Grayscale and RGBA files become RGB (alpha dropped); 16-bit PNGs keep their high byte. A corrupt,
truncated, empty or unsupported file raises ValueError naming the file; a missing one OSError;
images with more than `max_pixels` pixels are refused before decoding.
"""
import os

import numpy as np

from . import _C

MAX_PIXELS = 1 << 28  # 16384 x 16384


def read_image(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a uint8 (H, W, 3) RGB array."""
    return _C.image_read(os.fspath(path), int(max_pixels))


def decode_image(data, max_pixels: int = MAX_PIXELS, name: str = "<memory>") -> np.ndarray:
    """Decode encoded bytes (JPEG/PNG/BMP) into a uint8 (H, W, 3) RGB array."""
    return _C.image_decode(bytes(data) if not isinstance(data, (bytes, bytearray, memoryview)) else data,
                           int(max_pixels), str(name))
