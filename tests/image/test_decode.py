"""Decoding (csrc/image/decode.c): formats, channel conversion, and every kind of bad file."""
import base64
import os
import struct
import threading

import numpy as np
import pytest

import affectfer.io as aio

from ..images import (JPEG_7X5, JPEG_BASELINE, JPEG_PROGRESSIVE, _chunk, bmp_bytes, gradient7x5, gradient16, png_bytes,
                      png_header_only)


# A malformed JPEG (from fuzzing) that stb accepts although no scan covers one of its components: stb
# reads that component's plane without ever writing it.
JPEG_UNCOVERED_COMPONENT = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw//AxofHh0aHBwgJNsAQwEJCQkMCwyBkQ0YMiEcITIyMjIyMjIy"
    "Mv82MjIyMjIyMiUyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyKTIyMv/AABEIAAckBQMBIgACEQEDEQH/KsQAHwAAAQUBAQEBAQEAAAAAAAAAAAEC"
    "AwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBLAAAAF9AQIDAAQRBRIhMEEG+fr/2gAMAwEAAhEDEQA/ANgBAAAAme5uoI2RGU+YCXYLtf7pxgFQO3Q3AGCS"
    "iivlMbmE41naEdUnrFPVpN6u73Z586yhJx5V+P8Amf/Z")


@pytest.fixture
def img(rng):
    return rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)


def test_png_rgb_roundtrip(img):
    np.testing.assert_array_equal(aio.decode_image(png_bytes(img)), img)


def test_png_gray_becomes_rgb(img):
    gray = img[:, :, 0]
    out = aio.decode_image(png_bytes(gray))
    assert out.shape == (9, 13, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))


def test_png_rgba_drops_alpha(img, rng):
    alpha = rng.integers(0, 256, img.shape[:2] + (1,), dtype=np.uint8)
    np.testing.assert_array_equal(aio.decode_image(png_bytes(np.concatenate([img, alpha], 2))), img)
    ga = np.concatenate([img[:, :, :1], alpha], 2)
    np.testing.assert_array_equal(aio.decode_image(png_bytes(ga)), np.repeat(img[:, :, :1], 3, axis=2))


def test_png_16bit_keeps_high_byte(img):
    np.testing.assert_array_equal(aio.decode_image(png_bytes(img, bit_depth=16)), img)


def test_bmp_is_refused(tmp_path, img):
    """Only the JPEG and PNG decoders are compiled in (the formats face datasets use)."""
    p = tmp_path / "face.bmp"
    p.write_bytes(bmp_bytes(img))
    with pytest.raises(ValueError, match=r"cannot decode '.*face.bmp': .*\(JPEG and PNG are supported\)"):
        aio.read_image(p)


def test_unknown_critical_png_chunk_names_the_file(tmp_path, img):
    """stb quotes the chunk type's raw bytes in its reason: shown escaped, never a UnicodeDecodeError."""
    data = png_bytes(img)
    data = data[:-12] + _chunk(b"\x80\xffZZ", b"") + data[-12:]  # before IEND; bit 5 of byte 0 clear = critical
    p = tmp_path / "odd_chunk.png"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=r"odd_chunk.png.*\\x80\\xffZZ"):
        aio.read_image(p)


def test_non_utf8_file_name_in_message(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9.png"
    with open(name, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ValueError, match=r"caf\\xe9.png"):
        aio.read_image(name)


def _in_thread(fn, timeout=10):
    """Runs fn in a thread; fails if it is still blocked after `timeout` s; returns its exception."""
    out = {}

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001  (handed back to the test)
            out["error"] = e
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked"
    return out.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    err = _in_thread(lambda: aio.read_image(fifo))
    assert isinstance(err, OSError) and "pipe.png" in str(err) and "not a regular file (a FIFO)" in str(err)


def test_directory_is_refused(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OSError, match="dir.png.*not a regular file \\(a directory\\)"):
        aio.read_image(tmp_path / "dir.png")


def test_decoding_bomb_refused_by_default():
    """A tiny JPEG declaring 16000 x 16000 (768 MB decoded) is refused from its header."""
    sof = JPEG_BASELINE.index(b"\xff\xc0")
    bomb = JPEG_BASELINE[:sof + 5] + struct.pack(">HH", 16000, 16000) + JPEG_BASELINE[sof + 9:]
    assert len(bomb) < 1000
    with pytest.raises(ValueError, match="256000000 pixels is over the limit of 16777216"):
        aio.decode_image(bomb)
    assert aio.MAX_PIXELS == 4096 * 4096


@pytest.mark.parametrize("bad", [0, -1])
def test_max_pixels_must_be_positive(img, bad):
    with pytest.raises(ValueError, match=f"'max_pixels' must be in \\[1, .*got {bad}"):
        aio.decode_image(png_bytes(img), max_pixels=bad)


def test_huge_max_pixels_names_the_argument(tmp_path, img):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(img))
    with pytest.raises(ValueError, match="'max_pixels'"):
        aio.read_image(p, max_pixels=1 << 70)


@pytest.mark.parametrize("data", [JPEG_BASELINE, JPEG_PROGRESSIVE], ids=["baseline", "progressive"])
def test_jpeg_decodes_close_to_source(data):
    out = aio.decode_image(data)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(int) - gradient16())
    assert err.mean() < 3 and err.max() < 24  # lossy at quality 95


def test_colour_jpeg_with_a_ragged_last_block():
    """Colour JPEGs are decoded to RGBA and packed to RGB 4 pixels at a time: 35 pixels leave 3 for the
    tail, and every channel must still land in its place."""
    out = aio.decode_image(JPEG_7X5)
    assert out.shape == (5, 7, 3)
    assert np.abs(out.astype(int) - gradient7x5()).max() <= 4  # quality 100, no subsampling


def test_malformed_jpeg_decodes_the_same_every_time():
    """stb's allocations are zeroed, so a plane it never writes reads as zeros, not as whatever the
    memory held (before, each decode of this file gave different pixels)."""
    first = aio.decode_image(JPEG_UNCOVERED_COMPONENT)
    for k in range(8):
        np.full((300, 300, 3), 17 * k + 1, np.uint8)  # other memory comes and goes in between
        aio.decode_image(JPEG_BASELINE)
        assert np.array_equal(aio.decode_image(JPEG_UNCOVERED_COMPONENT), first)


def test_read_file(tmp_path, img):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(img))
    np.testing.assert_array_equal(aio.read_image(p), img)
    np.testing.assert_array_equal(aio.read_image(str(p)), img)


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError, match="nope.png"):
        aio.read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated_png", "truncated_jpeg", "truncated_progressive",
                                  "bmp", "corrupt_png", "gif"])
def test_bad_files_name_the_file(tmp_path, img, kind):
    data = {
        "empty": b"",
        "garbage": b"this is not an image at all" * 5,
        "truncated_png": png_bytes(img)[:40],
        "truncated_jpeg": JPEG_BASELINE[:-40],
        "truncated_progressive": JPEG_PROGRESSIVE[:-100],
        "bmp": bmp_bytes(img),
        "corrupt_png": png_bytes(img)[:33] + b"\xff" * 60,
        "gif": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    }[kind]
    p = tmp_path / f"bad_{kind}.img"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=f"bad_{kind}.img"):
        aio.read_image(p)
    with pytest.raises(ValueError, match="<memory>"):
        aio.decode_image(data)


def test_huge_image_refused_before_decoding(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(png_header_only(10000, 10000))  # 100 megapixels claimed, a 100-byte file
    with pytest.raises(ValueError, match="huge.png.*over the limit"):
        aio.read_image(p, max_pixels=10**7)
    p.write_bytes(png_header_only(60000, 60000))  # over stb's own 2^30-byte cap
    with pytest.raises(ValueError, match="huge.png"):
        aio.read_image(p)
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="400 pixels is over the limit of 399"):
        aio.decode_image(png_bytes(img), max_pixels=399)
    assert aio.decode_image(png_bytes(img), max_pixels=400).shape == (20, 20, 3)


def test_header_beyond_stb_dimension_cap():
    with pytest.raises(ValueError):
        aio.decode_image(png_header_only(100000, 2), max_pixels=1 << 62)  # no pixel limit: stb's own cap


def test_png_with_empty_first_idat_refused(img):
    # stb_image does NULL + 0 on this (UBSan); legal PNG but never produced by encoders
    data = png_bytes(img)
    at = data.index(b"IDAT") - 4
    crafted = data[:at] + _chunk(b"IDAT", b"") + data[at:]
    with pytest.raises(ValueError, match="empty first IDAT"):
        aio.decode_image(crafted)
