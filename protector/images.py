"""Photo files in and out: decode anything a user may hand us to RGB, encode without leaks.

Reading applies EXIF orientation, turns every mode (alpha, palette, grayscale, 16-bit,
CMYK) into 8-bit RGB, and converts a photo with an ICC colour profile to sRGB. Writing starts
from bare sRGB pixels, so no EXIF (GPS included), XMP, IPTC, comment block or ICC profile can
survive: a profile is free text (device and maker names, anything planted in a tag), and an
untagged photo is read as sRGB everywhere, so colour needs none.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from protector.limits import MAX_PHOTO_BYTES, FileTooLargeError, pixel_cost_problem
from protector.paths import NotAFileError, read_regular_file
from protector.settings import check_quality

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# Photos a folder may hold that are not read here (no decoder in the allow-list): a run says so.
UNREAD_PHOTO_SUFFIXES = frozenset({
    ".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".psd", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
    ".rw2", ".raf", ".pef", ".srw",
})

# Pillow's own decompression-bomb threshold (about 89 megapixels): far above a
# 12-megapixel phone photo, far below what would exhaust memory.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

# The one table between file suffixes and encoder formats (lower case, as --format spells them).
FORMAT_FOR_SUFFIX = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff",
                     ".bmp": "bmp"}
SUFFIX_FOR_FORMAT = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif", "bmp": ".bmp"}
# What `protect --format` offers: "same" keeps each input's format (GIF becomes PNG).
OUTPUT_FORMATS = ("jpeg", "png", "same")
# Pillow's name for each spelling a user may give ("jpg", "JPEG", ".png", ...).
_FORMATS = {suffix.lstrip("."): fmt.upper() for suffix, fmt in FORMAT_FOR_SUFFIX.items()}

# The only decoders an input may reach, whatever its extension: Pillow would otherwise
# also try EPS (handed to Ghostscript), PSD, ICO and dozens more on untrusted bytes. The
# JPEG decoder also opens MPO, a JPEG with extra pictures (a camera's second view, an
# Ultra HDR gain map), as format "MPO".
DECODER_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")

# What Pillow raises while decoding a corrupt or hostile file, beyond OSError/SyntaxError:
# found by mutating valid files (tests/test_reliability.py). A corrupt multi-page TIFF
# raises TypeError or KeyError when its next page is parsed, a cut GIF struct.error;
# EOFError is how Pillow signals a frame that is not there.
_CORRUPT_FILE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, LookupError, EOFError, struct.error)


class ImageReadError(ValueError):
    """A file could not be turned into an RGB photo; the message names the file and the cause."""


@dataclass(frozen=True)
class Photo:
    """A decoded photo.

    Attributes:
        pixels: (H, W, 3) uint8 sRGB, EXIF orientation applied, the ICC profile (if any) applied.
        format: Pillow's name of the source format ("JPEG", "PNG", ...), None if unknown.
    """

    pixels: np.ndarray
    format: str | None


def read_photo(source: str | Path | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Photo:
    """Decode a photo file (path or bytes) to 8-bit RGB.

    Raises:
        ImageReadError: empty, truncated or unreadable file, not an image in one of
            ``DECODER_FORMATS``, animated image, or more than `max_pixels` pixels.
            The message starts with `name`.
    """
    label = name if name is not None else ("<bytes>" if isinstance(source, bytes) else str(source))
    data = _read_bytes(source, label)
    if not data:
        raise ImageReadError(f"{label}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODER_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"{label}: {width}x{height} = {width * height:,} pixels exceeds the limit of "
                    f"{max_pixels:,} (decompression-bomb guard)"
                )
            implausible = pixel_cost_problem(width, height, len(data))
            if implausible is not None:
                raise ImageReadError(f"{label}: {implausible}")
            # An MPO's first picture is the photo; the others are not frames of an animation.
            if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
                raise ImageReadError(
                    f"{label}: animated image with {image.n_frames} frames is not supported; "
                    "save the frame to protect as a still image"
                )
            image.load()
            source_format = image.format
            gray_peak = _integer_gray_peak(image)
            image = ImageOps.exif_transpose(image)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{label}: not an image, or not one of the formats read here ({', '.join(DECODER_FORMATS)})"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(f"{label}: too many pixels ({err})") from None
    except _CORRUPT_FILE_ERRORS as err:
        # Pillow reports truncated streams as OSError; corrupt headers surface as many types.
        kind = type(err).__qualname__
        kind = kind if type(err).__module__ == "builtins" else f"{type(err).__module__}.{kind}"  # struct.error
        raise ImageReadError(f"{label}: corrupt or truncated image ({kind}: {err})") from None
    return Photo(pixels=_to_rgb(image, gray_peak), format=source_format)


_ORIENTATION_TAG = 0x0112
_ORIENTATIONS_SWAPPING_AXES = {5, 6, 7, 8}


def read_photo_size(source: str | Path | bytes) -> tuple[int, int] | None:
    """(width, height) as displayed (EXIF orientation applied), from the header only.

    The same decoders as `read_photo`; None when the header cannot be read (decoding the
    photo then says what is wrong, naming the file).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            file = io.BytesIO(source) if isinstance(source, bytes) else source
            with Image.open(file, formats=DECODER_FORMATS) as image:
                width, height = image.size
                orientation = image.getexif().get(_ORIENTATION_TAG)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return (height, width) if orientation in _ORIENTATIONS_SWAPPING_AXES else (width, height)


def _read_bytes(source: str | Path | bytes, label: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return read_regular_file(source, MAX_PHOTO_BYTES, "photo")
    except FileNotFoundError:
        raise
    except FileTooLargeError as err:
        raise ImageReadError(f"{label}: {err.reason}") from None
    except NotAFileError as err:
        raise ImageReadError(f"{label}: is a {err.kind}, not an image file") from None
    except OSError as err:
        raise ImageReadError(f"{label}: cannot be read ({err.strerror or err})") from None


_INTEGER_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _integer_gray_peak(image: Image.Image) -> float | None:
    """The white level of an integer grayscale image, from how it is stored (never its values).

    A dark 16-bit photo (values 0..200 of 65535) is still 16-bit: guessing from the largest
    value would brighten it 257-fold. Pillow opens 16-bit PNG as "I;16" or (older versions) "I".
    """
    if image.mode not in _INTEGER_GRAY_MODES:
        return None
    if image.mode.startswith("I;16") or image.format == "PNG":
        return 65535.0
    bits = getattr(image, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    bits = bits[0] if isinstance(bits, tuple) else bits
    return float(2 ** int(bits) - 1) if bits else 65535.0


def _to_rgb(image: Image.Image, gray_peak: float | None = None) -> np.ndarray:
    icc_profile = image.info.get("icc_profile") or None
    mode = image.mode
    if mode == "CMYK":
        return np.asarray(_to_srgb(image, icc_profile), dtype=np.uint8).copy()
    if mode in _INTEGER_GRAY_MODES:
        # Integer grayscale: scale to 8 bits instead of letting convert() clip at 255.
        values = np.asarray(image, dtype=np.float64)
        peak = gray_peak or 65535.0
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as most viewers show them on a page.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    # An RGB profile describes the colours; a grayscale one is left aside (gray stays gray).
    rgb_profile = icc_profile if image.mode in ("RGB", "RGBA") and mode not in ("L", "LA", "1") else None
    return np.asarray(_to_srgb(image.convert("RGB"), rgb_profile), dtype=np.uint8).copy()


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """RGB or CMYK pixels under `icc_profile` as sRGB RGB pixels (the output carries no profile)."""
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(image, source, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken or mismatched profile: the pixels are taken as sRGB
    return image.convert("RGB")


_SRGB = ImageCms.createProfile("sRGB")


def normalize_format(fmt: str) -> str:
    """Map a user's format name ('jpg', 'jpeg', 'PNG', ...) to Pillow's name."""
    key = fmt.lower().lstrip(".")
    if key not in _FORMATS:
        raise ValueError(f"unsupported output format {fmt!r}; choose one of {sorted(set(_FORMATS))}")
    return _FORMATS[key]


def encode_photo(pixels: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode (H, W, 3) uint8 sRGB pixels. Nothing but the pixels is written: no metadata, no profile.

    Args:
        pixels: (H, W, 3) uint8 sRGB (what :func:`read_photo` returns).
        fmt: jpeg, png, webp, bmp or tiff.
        quality: JPEG/WebP quality 1..100 (ignored by lossless formats).
    """
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    check_quality(quality)
    pil_format = normalize_format(fmt)
    image = Image.fromarray(pixels, mode="RGB")
    options: dict = {}
    if pil_format in ("JPEG", "WEBP"):
        options["quality"] = quality
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def write_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> None:
    """Write `data` to `path` so that a crash leaves either the old state or the whole file.

    The bytes go to a hidden temporary file in the same folder, are flushed to disk,
    then renamed over `path`.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = _write_temporary(path.parent, path.name, data)
    try:
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _write_temporary(folder: Path, name: str, data: bytes) -> str:
    """Write `data` to a new hidden ``.name.*.tmp`` file in `folder`, flushed to disk; its path.

    The one place bytes reach the disk for write_atomic and probe_writable (tests make it fail
    with ENOSPC or EROFS to stand in for a full disk or a read-only folder).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp creates 0600; give the photo the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def probe_writable(folder: str | Path) -> None:
    """Create and remove a small file in `folder`: raises OSError when files cannot be written there.

    Permission bits say nothing as root or on a read-only mount; writing says it all.
    """
    Path(_write_temporary(Path(folder), "protector-probe", b"probe")).unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (B, 3, H, W) float in [0, 1] -> (H, W, 3) or (B, H, W, 3) uint8, rounded."""
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (3, H, W) or (B, 3, H, W), got shape {tuple(x.shape)}")
    scaled = x.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()
