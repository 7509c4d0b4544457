"""protector.images: every kind of photo a user hands in decodes to RGB or fails clearly."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from protector.images import (
    ImageReadError,
    encode_photo,
    read_photo,
    to_tensor,
    to_uint8,
    write_atomic,
)

from icc_profiles import rgb_profile


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=2).astype(np.uint8)


def test_rgb_jpeg_roundtrip_keeps_size():
    pixels = _gradient()
    photo = read_photo(encode_photo(pixels, "jpeg", quality=95))
    assert photo.pixels.shape == (30, 40, 3) and photo.pixels.dtype == np.uint8
    assert photo.format == "JPEG"
    assert np.abs(photo.pixels.astype(int) - pixels).mean() < 3


def test_png_is_lossless():
    pixels = _gradient()
    assert np.array_equal(read_photo(encode_photo(pixels, "png")).pixels, pixels)


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 2:, 3] = 255
    pixels = read_photo(_encode(Image.fromarray(rgba, "RGBA"), "PNG")).pixels
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 3].tolist() == [255, 0, 0]


def test_grayscale_palette_and_16bit():
    gray = Image.fromarray(np.full((5, 6), 100, np.uint8), "L")
    assert read_photo(_encode(gray, "PNG")).pixels[0, 0].tolist() == [100, 100, 100]
    palette = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    assert read_photo(_encode(palette, "PNG")).pixels.shape == (30, 40, 3)
    deep = Image.fromarray(np.full((5, 6), 65535, np.uint16))  # 16-bit white
    assert read_photo(_encode(deep, "PNG")).pixels[0, 0].tolist() == [255, 255, 255]
    mid = Image.fromarray(np.full((5, 6), 32896, np.uint16))  # 128 * 257
    assert read_photo(_encode(mid, "PNG")).pixels[0, 0].tolist() == [128, 128, 128]


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF")])
def test_dark_16bit_grayscale_is_scaled_by_its_depth_not_its_values(mode, fmt):
    """Values 0..200 of 65535 are nearly black, in every integer gray mode (32-bit "I" darker still)."""
    values = np.tile(np.arange(0, 201, 40, dtype=np.uint16), (4, 1))  # 0, 40, ..., 200
    image = Image.fromarray(values).convert(mode) if mode == "I" else Image.fromarray(values)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    pixels = read_photo(buffer.getvalue()).pixels
    assert pixels.max() <= 1  # 200 / 257 rounds to 1, not 200
    bright = Image.fromarray(np.full((4, 6), 51400, np.uint16))  # 200 * 257
    assert read_photo(_encode(bright, fmt)).pixels[0, 0].tolist() == [200, 200, 200]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # red in CMYK
    pixels = read_photo(_encode(cmyk, "JPEG", quality=95)).pixels
    assert pixels.shape == (8, 8, 3)
    assert pixels[4, 4, 0] > 200 and pixels[4, 4, 1] < 60


def test_exif_orientation_is_applied():
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :10] = 255  # white left half of a landscape image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    photo = read_photo(_encode(image, "JPEG", quality=95, exif=exif.tobytes()))
    assert photo.pixels.shape == (20, 10, 3)  # portrait after orientation
    assert photo.pixels[2, 5].mean() > 200  # the white half is now on top


def test_icc_profile_is_applied_while_reading_and_never_written():
    """Before: the profile was carried byte for byte (with any text it held). Now its colours are
    applied (pixels become sRGB) and the written file has no profile."""
    planted = "PLANTED-SECRET owner Alice, iPhone 15"
    icc = rgb_profile(planted, copyright_text="PLANTED-COPYRIGHT")  # Adobe-RGB-like primaries
    raw = np.array([[[100, 150, 100], [128, 128, 128], [200, 60, 60], [255, 255, 255]]], np.uint8)
    photo = read_photo(_encode(Image.fromarray(raw), "PNG", icc_profile=icc))
    green, gray, red, white = (photo.pixels[0, i].astype(int) for i in range(4))
    # Adobe RGB's green primary lies outside sRGB: the same numbers mean a more saturated green,
    # which in sRGB numbers has less red and blue; its red primary is sRGB's, so a red gains saturation.
    assert green[0] < 100 - 20 and abs(green[1] - 150) <= 5 and green[2] < 100
    assert red[0] > 200 + 15 and red[1] <= 60 and red[2] <= 60
    assert np.abs(gray - 128).max() <= 3 and (white >= 254).all()  # neutrals stay neutral
    for fmt in ("jpeg", "png", "webp", "tiff"):
        data = encode_photo(photo.pixels, fmt)
        assert b"PLANTED" not in data and b"acsp" not in data, fmt  # no profile, no planted text
        assert "icc_profile" not in Image.open(io.BytesIO(data)).info


def test_a_broken_icc_profile_is_ignored():
    data = _encode(Image.fromarray(_gradient()), "PNG", icc_profile=b"not a profile at all" * 10)
    assert np.array_equal(read_photo(data).pixels, _gradient())


def test_encode_writes_no_metadata():
    image = Image.open(io.BytesIO(encode_photo(_gradient(), "jpeg")))
    assert len(image.getexif()) == 0
    assert not {"exif", "xmp", "comment", "icc_profile"} & set(image.info)


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
        (encode_photo(_gradient(200, 200), "jpeg")[:400], "truncated"),
    ],
)
def test_bad_bytes_name_the_file_and_cause(data, cause):
    with pytest.raises(ImageReadError, match=rf"^holiday\.jpg: .*{cause}"):
        read_photo(data, name="holiday.jpg")


def test_animated_gif_is_rejected():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="animated image with 2 frames"):
        read_photo(buffer.getvalue(), name="a.gif")


def test_decompression_bomb_limit():
    data = encode_photo(np.zeros((100, 100, 3), np.uint8), "png")
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_photo(data, name="big.png", max_pixels=5_000)


def test_missing_and_directory(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        read_photo(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        read_photo(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.timeout(60)
def test_a_fifo_named_like_a_photo_fails_at_once(tmp_path: Path):
    os.mkfifo(tmp_path / "photo.jpg")
    with pytest.raises(ImageReadError, match="photo.jpg: is a FIFO, not an image file"):
        read_photo(tmp_path / "photo.jpg")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_the_documented_error(data):
    try:
        photo = read_photo(data)
    except ImageReadError:
        return
    assert photo.pixels.dtype == np.uint8 and photo.pixels.shape[2] == 3


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.sampled_from(["RGB", "L", "RGBA", "P", "LA"]),
    st.sampled_from(["PNG", "JPEG", "BMP", "WEBP", "TIFF"]),
)
def test_random_valid_images_decode_to_their_size(width, height, mode, fmt):
    base = Image.fromarray(np.random.default_rng(width * height).integers(0, 256, (height, width, 3), np.uint8))
    try:
        data = _encode(base.convert(mode), fmt)
    except OSError:  # Pillow cannot write this mode in this format (e.g. LA as BMP)
        assume(False)
    photo = read_photo(data)
    assert photo.pixels.shape == (height, width, 3)


def test_write_atomic_never_overwrites_by_default(tmp_path: Path):
    target = tmp_path / "out" / "a.jpg"
    write_atomic(target, b"first")
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second")
    assert target.read_bytes() == b"first"
    write_atomic(target, b"second", overwrite=True)
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["a.jpg"]  # no temporary left


def test_write_atomic_uses_normal_file_permissions(tmp_path: Path):
    old_mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.jpg", b"x")
    finally:
        os.umask(old_mask)
    assert (tmp_path / "a.jpg").stat().st_mode & 0o777 == 0o644


def test_tensor_conversions_roundtrip():
    pixels = _gradient()
    x = to_tensor(pixels)
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(to_uint8(x), pixels)
    assert to_uint8(x[None]).shape == (1, 30, 40, 3)
