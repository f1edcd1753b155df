"""Tiny image writers for the data tests (no Pillow needed): PNG via zlib, 24-bit BMP."""
import struct
import zlib

import numpy as np


def write_png(path, img):
    """img: uint8 (H, W, 3) or (H, W)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    color = 2 if img.ndim == 3 else 0
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_bmp(path, img):
    """img: uint8 (H, W, 3) RGB -> bottom-up 24-bit BMP."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape[:2]
    stride = (w * 3 + 3) & ~3
    rows = b"".join(img[i, :, ::-1].tobytes().ljust(stride, b"\x00") for i in range(h - 1, -1, -1))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(rows), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    with open(path, "wb") as f:
        f.write(header + info + rows)
