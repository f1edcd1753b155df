"""The test suite's image writers (Pillow is not a test dependency): PNG via zlib, BMP by hand (to
check it is refused), plus two JPEGs (baseline and progressive) of a 16x16 gradient written once by
Pillow 13 at quality 95 and embedded here, and a 1-component (gray) JPEG of a noisy 16x16 ramp,
the kind FER2013 ships."""
import base64
import struct
import zlib

import numpy as np


def gradient16():
    y, x = np.mgrid[0:16, 0:16]
    return np.stack([x * 16, y * 16, (x + y) * 8], -1).astype(np.uint8)


JPEG_BASELINE = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/"
    "2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wAARCAAQABADASIAAhEBAxEB/8QAHwAA"
    "AQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRol"
    "JicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW"
    "19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdh"
    "cRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJma"
    "oqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD83/gx+yH/AKr/AIlfp/BX1t8F/wBkPPlf"
    "8Sv0/gr6U+C/7IePK/4lfp/BX1t8GP2Q/wDVf8Sv0/goyfONtQ+jz9Ib+D++7dT/2Q==")
JPEG_PROGRESSIVE = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/"
    "2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wgARCAAQABADASIAAhEBAxEB/8QAFQAB"
    "AQAAAAAAAAAAAAAAAAAABwj/xAAUAQEAAAAAAAAAAAAAAAAAAAAA/9oADAMBAAIQAxAAAAGb1tKWz//EABYQAAMAAAAAAAAAAAAAAAAAAAAFBv/aAAgBAQABBQJN"
    "ICWQEsgJpA//xAAXEQEAAwAAAAAAAAAAAAAAAAAHACIy/9oACAEDAQE/ATxDxef/xAAVEQEBAAAAAAAAAAAAAAAAAAAEAP/aAAgBAgEBPwEbL//EABYQAAMAAAAA"
    "AAAAAAAAAAAAAAABI//aAAgBAQAGPwJSFIUhSP/EABUQAQEAAAAAAAAAAAAAAAAAAADx/9oACAEBAAE/IZCAgJD/2gAMAwEAAgADAAAAEAP/xAAWEQADAAAAAAAA"
    "AAAAAAAAAAAAQaH/2gAIAQMBAT8QgM//xAAWEQADAAAAAAAAAAAAAAAAAAAAITH/2gAIAQIBAT8Qgz//xAAXEAEAAwAAAAAAAAAAAAAAAAAAEYGh/9oACAEBAAE/"
    "EMpkqYKnKf/Z")

JPEG_GRAY = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/wAAL"
    "CAAQABABAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS"
    "0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5"
    "usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/9oACAEBAAA/APzb/wCCa+j6dc+KtIfw/ZXsmptBDk3F88SRTjdIjrKf3YRhGUOB+6UHO8l6"
    "/oJ/4Ju6N4eM2l2una9Gk0k0U8kc91Iogkz5K+UpKMiM7KduELOjLk7yp/CL/gnWLDTLrRzBdanbW1jIZ5LyK1UiCGPLCd5iwYb4pFj+TGVCp+64I/e7/gnjBokv"
    "huK+0W8lku7NraK/a3uoJ7VWkDK0bkOxSRVEm3dG0n7zcF+da//Z")


def gradient7x5():
    """A 7x5 colour ramp: 35 pixels, not a multiple of the 4-pixel blocks decoding packs RGBA to RGB in."""
    y, x = np.mgrid[0:5, 0:7]
    return np.stack([x * 30 + 20, y * 40 + 30, 200 - x * 10 - y * 10], -1).astype(np.uint8)


JPEG_7X5 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQH/2wBD"
    "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQH/wAARCAAFAAcDAREAAhEBAxEB/8QAHwAAAQUB"
    "AQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJico"
    "KSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ"
    "2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMi"
    "MoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOk"
    "paanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDsv2e/2C/g39liHkf8u5/5h8GP9Ue3n16n0q/p"
    "keKKx1dOs3/tUXrjq3/P5f8ATln5p+z1+ld4j/2Tg37XbL5/8xdXrhpf9Oj/2Q==")  # gradient7x5(), Pillow quality 100, no chroma subsampling


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(img, bit_depth=8):
    """PNG of a uint8 (H, W) / (H, W, 1|2|3|4) image (gray, gray+alpha, RGB, RGBA); bit_depth 16
    stores value * 257."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    H, W, C = img.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[C]
    data = img.astype(">u2") * 257 if bit_depth == 16 else img.astype(np.uint8)
    raw = b"".join(b"\x00" + data[i].tobytes() for i in range(H))  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", W, H, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def write_png(path, img):
    """Writes png_bytes(img) to path."""
    with open(path, "wb") as f:
        f.write(png_bytes(img))


def png_header_only(width, height):
    """A PNG whose header claims width x height, with a tiny (invalid) image body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _chunk(b"IEND", b"")


def bmp_bytes(img):
    """24-bit bottom-up BMP of a uint8 (H, W, 3) RGB image."""
    img = np.asarray(img, dtype=np.uint8)
    H, W, _ = img.shape
    row = (W * 3 + 3) // 4 * 4
    pixels = bytearray()
    for i in range(H - 1, -1, -1):
        line = img[i, :, ::-1].tobytes()  # BGR
        pixels += line + b"\x00" * (row - len(line))
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, W, H, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + bytes(pixels)
