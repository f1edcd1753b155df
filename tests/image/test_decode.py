"""Decoding (csrc/image/decode.c): formats, channel conversion, and every kind of bad file."""
import numpy as np
import pytest

import affectfer.io as aio

from ..images import JPEG_BASELINE, JPEG_PROGRESSIVE, _chunk, bmp_bytes, gradient16, png_bytes, png_header_only


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


def test_bmp_roundtrip(img):
    np.testing.assert_array_equal(aio.decode_image(bmp_bytes(img)), img)


@pytest.mark.parametrize("data", [JPEG_BASELINE, JPEG_PROGRESSIVE], ids=["baseline", "progressive"])
def test_jpeg_decodes_close_to_source(data):
    out = aio.decode_image(data)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    err = np.abs(out.astype(int) - gradient16())
    assert err.mean() < 3 and err.max() < 24  # lossy at quality 95


def test_read_file(tmp_path, img):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes(img))
    np.testing.assert_array_equal(aio.read_image(p), img)
    np.testing.assert_array_equal(aio.read_image(str(p)), img)


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(OSError, match="nope.png"):
        aio.read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated_png", "truncated_jpeg", "truncated_progressive",
                                  "truncated_bmp", "corrupt_png", "gif"])
def test_bad_files_name_the_file(tmp_path, img, kind):
    data = {
        "empty": b"",
        "garbage": b"this is not an image at all" * 5,
        "truncated_png": png_bytes(img)[:40],
        "truncated_jpeg": JPEG_BASELINE[:-40],
        "truncated_progressive": JPEG_PROGRESSIVE[:-100],
        "truncated_bmp": bmp_bytes(img)[:-10],
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
        aio.decode_image(png_header_only(100000, 2), max_pixels=0)  # no pixel limit: stb's own cap


def test_png_with_empty_first_idat_refused(img):
    # stb_image does NULL + 0 on this (UBSan); legal PNG but never produced by encoders
    data = png_bytes(img)
    at = data.index(b"IDAT") - 4
    crafted = data[:at] + _chunk(b"IDAT", b"") + data[at:]
    with pytest.raises(ValueError, match="empty first IDAT"):
        aio.decode_image(crafted)
