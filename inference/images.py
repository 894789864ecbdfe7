"""Safe decoding of an untrusted upload into an upright 8-bit RGB PIL image, once, at the edge.

`load_image(path_or_bytes)` reads at most `MAX_FILE_BYTES`, lets PIL open only the formats a photo comes
in (`Image.open(formats=...)`, so plugins such as EPS/Ghostscript are never reached), refuses more than
`MAX_PIXELS` from the header before any pixel is decoded, decodes large JPEGs at a reduced scale
(`Image.draft`: a 12 MP phone photo needs no more than `MAX_SIDE` pixels for the model, the heat map or
the text reader), applies the EXIF orientation and returns a detached RGB image without metadata
(transparency flattened onto white).

What the user can fix raises `ImageError` (a ValueError) with the HTTP status to answer (400, 413, 415)
and a message that never contains the file name or content. No global state changes per call.
"""
from __future__ import annotations

import codecs
import io
import logging
import os
import stat
from typing import Union

from PIL import Image, ImageOps

from inference.messages import PLEASE_UPLOAD, too_large

log = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if value:
        log.warning("Ignoring invalid %s=%r (expected a positive integer); using %d", name, value, default)
    return default


MAX_FILE_BYTES = _env_int("IMAGE_MAX_BYTES", 20 * 1024 * 1024)
MAX_PIXELS = _env_int("IMAGE_MAX_PIXELS", 50_000_000)
MIN_SIDE = 16
# The longest side kept after decoding: the heat map shows at most 512 px, the model sees 224-240 px,
# the text reader detects at 736 px. A 4000 x 3000 JPEG decodes at 1/2 scale and is then reduced.
MAX_SIDE = 1024

Image.init()   # register the plugins once at import, not lazily from concurrent calls
PHOTO_FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF") if f in Image.OPEN)
# File-name extensions of those formats: which files in a folder or an archive are worth decoding.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif"})

# What a file that is not a photo looks like, from its first bytes: (prefix, description).
NOT_PHOTOS = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive or office document"),
              (b"%!PS", "a PostScript document"), (b"\x1f\x8b", "a compressed archive"),
              (b"Rar!", "a RAR archive"), (b"\x7fELF", "a program"), (b"MZ", "a program"))
OTHER_IMAGE_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1")
PHOTO_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF")   # a photo too damaged to open

DAMAGED = "The image file is damaged or incomplete. Please upload it again or try another photo."
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, None]


class ImageError(ValueError):
    """A problem with an upload the user can fix; `.status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status

    def __reduce__(self):   # keep .status when pickled (worker processes)
        return type(self), (self.message, self.status)


def is_zip(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def _what_it_is(data: bytes) -> ImageError:
    """The error for bytes PIL would not open as a photo, saying what they look like."""
    head = data[:512]
    if head.startswith(PHOTO_SIGNATURES):
        return ImageError(DAMAGED)
    if head[4:8] == b"ftyp" and any(brand in head[8:32] for brand in OTHER_IMAGE_BRANDS):
        return ImageError("This image format (HEIC) is not supported. Please convert the photo to JPEG or PNG "
                          "and upload it again.", 415)
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<") and b"<svg" in text:
        return ImageError("This image format (SVG) is not supported. Please convert the picture to JPEG or PNG "
                          "and upload it again.", 415)
    kind = next((what for prefix, what in NOT_PHOTOS if head.startswith(prefix)), None)
    if kind is None and b"\x00" not in head:
        try:   # an incremental decoder accepts a character cut at the end of the head
            codecs.getincrementaldecoder("utf-8")().decode(head)
            kind = "a web page" if text.startswith((b"<!doctype html", b"<html")) or b"<body" in text else "a text file"
        except UnicodeDecodeError:
            pass
    if kind:
        return ImageError(f"The file is not an image (it looks like {kind}). {PLEASE_UPLOAD}", 415)
    return ImageError(f"The file is not an image in a supported format. {PLEASE_UPLOAD}", 415)


def _read(source: str | os.PathLike, max_bytes: int) -> bytes:
    try:
        info = os.stat(source)
    except (OSError, ValueError):
        raise ImageError("The uploaded file could not be found. Please upload it again.") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"The upload is not a regular file. {PLEASE_UPLOAD}")
    if info.st_size > max_bytes:
        raise ImageError(too_large(max_bytes), 413)
    try:
        with open(source, "rb") as f:
            return f.read(max_bytes + 1)   # the file may have grown since stat
    except OSError:
        raise ImageError("The uploaded file could not be read. Please upload it again.") from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(f"The image is too large ({width} x {height} pixels). Please upload an image of at most "
                         f"{max_pixels / 1e6:g} megapixels.", 413)
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"The image is too small ({width} x {height} pixels). Please upload a photo at least "
                         f"{MIN_SIDE} pixels wide and high.")


def _upright_rgb(im: Image.Image, max_side: int) -> Image.Image:
    """A loaded image -> upright, detached RGB of at most max_side, transparency on white, no metadata."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:   # malformed EXIF must not reject an otherwise valid photo
        log.debug("ignoring unreadable EXIF orientation", exc_info=True)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
    out = im.convert("RGB")   # always a new image: detached from the file
    out.thumbnail((max_side, max_side), Image.BICUBIC)
    out.info = {}
    return out


def _decode(data: bytes, max_pixels: int, max_side: int) -> Image.Image:
    if not data:
        raise ImageError(f"The file is empty. {PLEASE_UPLOAD}")
    try:
        with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as im:
            _check_size(*im.size, max_pixels)   # from the header, before decoding
            im.draft("RGB", (max_side // 2, max_side // 2))   # JPEG: decode at the smallest scale still enough
            im.load()   # the first frame only; raises on damaged or truncated data
            return _upright_rgb(im, max_side)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise _what_it_is(data) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise ImageError(f"The image dimensions are too large. Please upload an image of at most "
                         f"{max_pixels / 1e6:g} megapixels.", 413) from None
    except Exception:   # OSError("truncated"), SyntaxError, struct.error, zlib errors...
        log.debug("image decoding failed", exc_info=True)
        raise ImageError(DAMAGED) from None


def load_image(source: Source, *, max_bytes: int | None = None, max_pixels: int | None = None,
               max_side: int = MAX_SIDE) -> Image.Image:
    """Decode an untrusted image (a path, the file's bytes, or a PIL image) into upright 8-bit RGB of at
    most `max_side` pixels. Raises `ImageError` (status 400, 413 or 415) for anything the user should fix."""
    max_bytes = max_bytes or MAX_FILE_BYTES
    max_pixels = min(max_pixels or MAX_PIXELS, Image.MAX_IMAGE_PIXELS or MAX_PIXELS)
    if source is None or (isinstance(source, str) and not source.strip()):
        raise ImageError(f"No image was provided. {PLEASE_UPLOAD}")
    if isinstance(source, Image.Image):
        _check_size(*source.size, max_pixels)
        return _upright_rgb(source, max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > max_bytes:   # before copying anything
            raise ImageError(too_large(max_bytes), 413)
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read(source, max_bytes)
    else:
        raise TypeError(f"load_image cannot read a {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageError(too_large(max_bytes), 413)
    return _decode(data, max_pixels, max_side)
