"""Safe decoding of untrusted uploaded images into 8-bit RGB PIL images.

The public demo receives anything, so every input goes through `load_image`, which:

* bounds what it reads (`MAX_FILE_BYTES`, checked from `os.stat` / `len` before reading, and
  file-like objects are read at most `max_bytes + 1` bytes);
* decides what the upload is from its content (magic bytes), never from its file name, and only
  lets PIL open the few formats a photo comes in (so plugins such as EPS/Ghostscript are never
  reached);
* rejects decompression bombs from the header size before any pixel is decoded;
* fully decodes the first frame to detect damaged/truncated files (``LOAD_TRUNCATED_IMAGES`` is
  left alone);
* applies the EXIF orientation, converts any mode to RGB (16-bit scaled, alpha flattened onto
  white), and returns a detached image without metadata.

Errors the user can fix are raised as `ImageError` (a `ValueError`) carrying the HTTP status to
answer with (400, 413 or 415) and a short message that never contains the file name or content.
Programming errors (an unsupported Python type) raise `TypeError`.

Nothing here mutates global state per call, so `load_image` is safe to call from several threads.
This module must not import gradio.
"""
from __future__ import annotations

import codecs
import io
import logging
import os
import stat
from typing import IO, Union

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "ImageError",
    "load_image",
    "sniff_format",
]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    if value <= 0:
        logger.warning("Ignoring invalid %s=%r (expected a positive integer); using %d", name, raw, default)
        return default
    return value


MAX_FILE_BYTES: int = _env_int("IMAGE_MAX_BYTES", 20 * 1024 * 1024)
MAX_PIXELS: int = _env_int("IMAGE_MAX_PIXELS", 50_000_000)
MIN_SIDE: int = 16

_PLEASE_UPLOAD = "Please upload a photo (JPEG, PNG or WebP)."

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Image.Image, np.ndarray, None]


class ImageError(ValueError):
    """A user-facing problem with an uploaded image; .status is the HTTP status to answer with (400, 413 or 415)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status

    def __reduce__(self):  # keep .status when pickled (e.g. across worker processes)
        return (type(self), (self.message, self.status))


# --------------------------------------------------------------------------------------------
# Content sniffing
# --------------------------------------------------------------------------------------------

# Sniffed image formats PIL may open (PIL format ids), restricted to what this PIL build has.
Image.init()  # register plugins once at import, not lazily from concurrent calls
_DECODABLE = {f: [f] for f in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF") if f in Image.OPEN}
# File-name extensions of those formats: which files in a folder or an archive are worth decoding.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif"})

# Human descriptions used in messages ("it looks like ...").
_DESCRIPTIONS = {
    "PDF": "a PDF document",
    "ZIP": "a ZIP archive or office document",
    "GZIP": "a compressed archive",
    "RAR": "a RAR archive",
    "7Z": "a 7-Zip archive",
    "text": "a text file",
    "HTML": "a web page",
    "PostScript": "a PostScript document",
    "video": "a video",
    "audio": "an audio file",
    "executable": "a program",
}
# Recognised image formats that are not accepted (or not decodable by this PIL build).
_IMAGE_LIKE = {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIC", "SVG", "PSD", "ICO", "JPEG2000", "JPEGXL"}

_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def _looks_like_text(data: bytes) -> bool:
    head = data[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in head:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(data) <= 4096)
    except UnicodeDecodeError:
        return False
    if not text:
        return False
    bad = sum(1 for ch in text if not ch.isprintable() and ch not in "\t\n\r\f\v\x1b")
    return bad <= len(text) // 100


def sniff_format(data: bytes) -> str | None:
    """Identify `data` from its first bytes (never from a file name).

    Returns 'JPEG', 'PNG', 'GIF', 'WEBP', 'BMP' or 'TIFF' (also 'AVIF'), the name of another
    known image format ('HEIC', 'SVG', 'PSD', 'ICO', 'JPEG2000', 'JPEGXL'), a human name of a
    known non-image ('PDF', 'ZIP', 'text', 'HTML', 'GZIP', 'RAR', '7Z', 'PostScript', 'video',
    'audio', 'executable'), or None when unknown.
    """
    data = bytes(data[:4096])
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] == b"RIFF" and data[8:12] in (b"WAVE", b"AVI "):
        return "audio" if data[8:12] == b"WAVE" else "video"
    if data[:2] == b"BM" and len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "BMP"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if data[4:8] == b"ftyp":
        box_len = int.from_bytes(data[:4], "big")
        box = data[8 : max(16, min(box_len, len(data)))]
        brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIC"
        return "video"
    if data.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG2000"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEGXL"
    if data.startswith(b"8BPS"):
        return "PSD"
    if data.startswith((b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")) and len(data) >= 6 and data[4:6] != b"\x00\x00":
        return "ICO"
    if data.startswith(b"%PDF"):
        return "PDF"
    if data.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "PostScript"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "ZIP"
    if data.startswith(b"\x1f\x8b"):
        return "GZIP"
    if data.startswith(b"Rar!\x1a\x07"):
        return "RAR"
    if data.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7Z"
    if data.startswith((b"\x1aE\xdf\xa3",)):
        return "video"
    if data.startswith((b"ID3", b"OggS", b"fLaC")):
        return "audio"
    if data.startswith((b"\x7fELF", b"MZ")):
        return "executable"
    if _looks_like_text(data):
        lowered = data.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if lowered.startswith(b"<") and b"<svg" in lowered:
            return "SVG"
        if lowered.startswith((b"<!doctype html", b"<html")) or b"<body" in lowered or b"<script" in lowered:
            return "HTML"
        return "text"
    return None


# --------------------------------------------------------------------------------------------
# Reading sources into bytes with bounded size
# --------------------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB" if n >= 1024 * 1024 else f"{max(1, round(n / 1024))} KB"


def _too_large_file(max_bytes: int) -> ImageError:
    return ImageError(f"The file is too large (over {_mb(max_bytes)}). Please upload a smaller image.", 413)


def _read_path(path: str | os.PathLike, max_bytes: int) -> bytes:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        raise ImageError("The uploaded file could not be found. Please upload it again.", 400) from None
    if stat.S_ISDIR(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise ImageError("The upload is not a regular file. " + _PLEASE_UPLOAD, 400)
    if st.st_size > max_bytes:
        raise _too_large_file(max_bytes)
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)  # the file may have grown since stat
    except OSError:
        raise ImageError("The uploaded file could not be read. Please upload it again.", 400) from None


def _read_stream(stream: IO[bytes], max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    remaining = max_bytes + 1
    try:
        while remaining > 0:
            chunk = stream.read(remaining)
            if chunk is None:  # non-blocking stream with no data available
                raise ImageError("The upload could not be read. Please try again.", 400)
            if not chunk:
                break
            if isinstance(chunk, str):
                raise TypeError("load_image needs a binary file object (opened with 'rb')")
            chunks.append(bytes(chunk))
            remaining -= len(chunk)
    except OSError:
        raise ImageError("The upload could not be read. Please try again.", 400) from None
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Decoding and conversion
# --------------------------------------------------------------------------------------------


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"The image is too large ({width} x {height} pixels). "
            f"Please upload an image of at most {max_pixels / 1e6:g} megapixels.",
            413,
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is too small ({width} x {height} pixels). "
            f"Please upload a photo at least {MIN_SIDE} pixels wide and high.",
            400,
        )


def _damaged() -> ImageError:
    return ImageError("The image file is damaged or incomplete. Please upload it again or try another photo.", 400)


def _bomb(max_pixels: int) -> ImageError:
    return ImageError(
        f"The image dimensions are too large. Please upload an image of at most {max_pixels / 1e6:g} megapixels.",
        413,
    )


def _effective_max_pixels(max_pixels: int | None) -> int:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError("max_pixels must be a positive integer")
    # PIL warns (DecompressionBombWarning) above Image.MAX_IMAGE_PIXELS; treating that warning as an
    # error is the same as never accepting more pixels than that. This is done by comparison instead
    # of warnings.catch_warnings(), which swaps process-wide filters and is not thread-safe.
    pil_limit = Image.MAX_IMAGE_PIXELS
    if pil_limit:
        limit = min(limit, int(pil_limit))
    return limit


def _exif_upright(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # malformed EXIF must not reject an otherwise valid photo
        logger.debug("Ignoring unreadable EXIF orientation", exc_info=True)
        return im.copy()


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    """I;16* -> L by x/257 (PIL's own convert clips everything above 255 to white)."""
    arr = np.asarray(im)
    if arr.dtype.kind == "i":  # signed 16-bit: shift into 0..65535
        arr = arr.astype(np.int32) + 32768
    return Image.fromarray(np.rint(arr.astype(np.float32) / 257.0).clip(0, 255).astype(np.uint8), "L")


def _wide_to_l(im: Image.Image) -> Image.Image:
    """'I' (int32) and 'F' (float32) -> L, scaled by their evident range."""
    arr = np.asarray(im).astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return Image.new("L", im.size, 0)
    arr = np.where(finite, arr, 0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = arr
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = arr / 257.0
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), "L")


def _flatten_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode.startswith("I;16"):
        im = _sixteen_bit_to_l(im)
    elif mode in ("I", "F"):
        im = _wide_to_l(im)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _flatten_on_white(im)
    if im.mode == "RGB":
        return im.copy()
    # CMYK (incl. Adobe-inverted, undone by PIL's JPEG reader), YCbCr, L, 1, P, RGBX, HSV...
    return im.convert("RGB")


def _finish(im: Image.Image, max_pixels: int) -> Image.Image:
    """Loaded image -> upright, detached 8-bit RGB without metadata."""
    im = _exif_upright(im)
    try:
        out = _to_rgb(im)
    except (ValueError, OSError):
        raise ImageError(
            f"The image uses an unsupported colour format ({im.mode}). "
            "Please save it as an ordinary RGB JPEG or PNG and upload it again.",
            415,
        ) from None
    _check_dimensions(*out.size, max_pixels)
    if out is im:
        out = out.copy()
    out.info = {}  # drop EXIF/GPS, ICC, comments: nothing user-provided travels further
    return out


def _decode_bytes(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("The file is empty. " + _PLEASE_UPLOAD, 400)
    kind = sniff_format(data)
    if kind in _DECODABLE:
        formats = _DECODABLE[kind]
    elif kind in _IMAGE_LIKE:
        raise ImageError(
            f"This image format ({kind}) is not supported. "
            "Please convert the photo to JPEG or PNG and upload it again.",
            415,
        )
    elif kind is not None:
        raise ImageError(f"The file is not an image (it looks like {_DESCRIPTIONS[kind]}). " + _PLEASE_UPLOAD, 415)
    else:
        raise ImageError("The file is not an image in a supported format. " + _PLEASE_UPLOAD, 415)

    try:
        with Image.open(io.BytesIO(data), formats=formats) as im:
            # Image.open is lazy: only the header has been read. Refuse bombs before decoding.
            _check_dimensions(*im.size, max_pixels)
            im.load()  # decodes the first frame only; raises on truncated/corrupt data
            return _finish(im, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives here as an exception only if a caller made it one (e.g. -W error).
        raise _bomb(max_pixels) from None
    except MemoryError:
        raise _bomb(max_pixels) from None
    except Exception:  # UnidentifiedImageError, OSError("truncated"), SyntaxError, struct.error, zlib...
        logger.debug("Image decoding failed", exc_info=True)
        raise _damaged() from None


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(
            f"The image array has an unsupported shape {tuple(int(s) for s in arr.shape)}; "
            "expected height x width with 1, 3 or 4 channels.",
            400,
        )
    height, width = int(arr.shape[0]), int(arr.shape[1])
    _check_dimensions(width, height, max_pixels)
    if arr.dtype == np.uint8:
        arr8 = arr
    elif arr.dtype == np.uint16:
        arr8 = np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageError("The image array contains invalid values (NaN or infinity).", 400)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ImageError("A floating-point image array must have values between 0 and 1.", 400)
        arr8 = np.rint(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ImageError(
            f"The image array has an unsupported pixel type ({arr.dtype.name}); use uint8, uint16 or float in 0..1.",
            400,
        )
    arr8 = np.ascontiguousarray(arr8)
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[arr8.ndim if arr8.ndim == 2 else arr8.shape[2]]
    return _finish(Image.fromarray(arr8, mode), max_pixels)


def _from_pil(image: Image.Image, max_pixels: int) -> Image.Image:
    _check_dimensions(*image.size, max_pixels)
    try:
        image.load()  # a lazily opened image is decoded only after the size check
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise _bomb(max_pixels) from None
    except Exception:
        raise _damaged() from None
    return _finish(image, max_pixels)


def load_image(
    source: Source,
    *,
    max_bytes: int | None = None,
    max_pixels: int | None = None,
) -> Image.Image:
    """Decode an untrusted image into a fully loaded, detached 8-bit RGB `PIL.Image.Image`.

    `source` may be a path (str / os.PathLike), the file's bytes (bytes / bytearray /
    memoryview), a binary file-like object (read from its current position, not closed), a
    `PIL.Image.Image` or a numpy array (HxW, HxWx1, HxWx3, HxWx4; uint8, uint16, or float in
    0..1). `max_bytes` / `max_pixels` default to `MAX_FILE_BYTES` / `MAX_PIXELS`.

    Raises `ImageError` (with `.status` 400, 413 or 415) for anything the user should fix.
    """
    limit_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    if not isinstance(limit_bytes, int) or isinstance(limit_bytes, bool) or limit_bytes <= 0:
        raise ValueError("max_bytes must be a positive integer")
    limit_pixels = _effective_max_pixels(max_pixels)

    if source is None or (isinstance(source, str) and not source.strip()):
        raise ImageError("No image was provided. " + _PLEASE_UPLOAD, 400)
    if isinstance(source, Image.Image):
        return _from_pil(source, limit_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, limit_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        if size > limit_bytes:  # before copying anything
            raise _too_large_file(limit_bytes)
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, limit_bytes)
    elif callable(getattr(source, "read", None)):
        data = _read_stream(source, limit_bytes)
    else:
        raise TypeError(f"load_image cannot read a {type(source).__name__}")
    if len(data) > limit_bytes:
        raise _too_large_file(limit_bytes)
    return _decode_bytes(data, limit_pixels)
