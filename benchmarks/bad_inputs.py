"""A reusable catalogue of awkward uploads for the image loader, the REST API and the Gradio app.

* `bad_inputs()`  -> name -> (file bytes, upload filename) for uploads that must be REJECTED;
  `REJECTIONS[name]` gives the expected (HTTP status, message substring).
* `odd_inputs(base)` -> name -> (file bytes, upload filename) for unusual images that must be
  ACCEPTED; each decodes (first frame, EXIF applied, alpha on white) to `base` or its greyscale.
* `oversize_bytes(limit)` -> a valid JPEG of exactly `limit + 1` bytes.
* `sample_photo()` -> a small non-square RGB test image with asymmetric content.

Everything is generated in memory, deterministically and cheaply (the 20000 x 20000 bomb is a
~50 KB PNG built chunk by chunk; no pixel buffer of that size is ever allocated).
"""
from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

__all__ = ["REJECTIONS", "bad_inputs", "odd_inputs", "oversize_bytes", "sample_photo", "bomb_png"]

# name -> (expected HTTP status, substring of the user-facing message)
REJECTIONS: dict[str, tuple[int, str]] = {
    "empty": (400, "The file is empty"),
    "text_as_jpg": (415, "not an image (it looks like a text file)"),
    "html_as_png": (415, "not an image (it looks like a web page)"),
    "pdf_as_jpg": (415, "not an image (it looks like a PDF document)"),
    "zip_as_jpg": (415, "not an image (it looks like a ZIP archive"),
    "postscript_as_jpg": (415, "not an image (it looks like a PostScript document)"),
    "random_bytes_as_png": (415, "not an image"),
    "heic_as_jpg": (415, "format (HEIC) is not supported"),
    "svg_as_png": (415, "format (SVG) is not supported"),
    "jpeg_magic_only": (400, "damaged or incomplete"),
    "truncated_jpeg": (400, "damaged or incomplete"),
    "truncated_png": (400, "damaged or incomplete"),
    "corrupt_png_crc": (400, "damaged or incomplete"),
    "one_pixel_png": (400, "too small"),
    "bomb_png": (413, "too large"),
}


def sample_photo(width: int = 96, height: int = 64) -> Image.Image:
    """Smooth, non-square, asymmetric RGB content (rotations and flips are detectable)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 30 + 200 * x / max(1, width - 1)
    g = 20 + 180 * y / max(1, height - 1)
    blob = np.exp(-(((x - width * 0.25) ** 2 + (y - height * 0.3) ** 2) / (2 * (min(width, height) * 0.18) ** 2)))
    b = 40 + 190 * blob
    arr = np.stack([r, g, b], axis=-1)
    return Image.fromarray(np.rint(arr).clip(0, 255).astype(np.uint8), "RGB")


def _save(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=4)
def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit greyscale PNG of width x height, all black, written row-block by row-block."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey, no interlace
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    rows_per_block = 512
    block = row * rows_per_block
    comp = zlib.compressobj(9)
    parts = []
    full, rest = divmod(height, rows_per_block)
    for _ in range(full):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * rest))
    parts.append(comp.flush())
    idat = b"".join(parts)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("photo.jpg", _save(sample_photo(32, 32), "JPEG"))
        zf.writestr("readme.txt", "not a photo\n")
    return buf.getvalue()


def _random_bytes() -> bytes:
    rng = random.Random(1234)
    data = bytes(rng.getrandbits(8) for _ in range(4096))
    return b"\x00\x13\x37" + data  # leading NUL: never text, matches no known signature


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """Uploads that must be rejected: name -> (file bytes, upload filename). See REJECTIONS."""
    photo = sample_photo()
    jpeg = _save(photo, "JPEG", quality=90)
    png = _save(photo, "PNG")
    # A PNG whose IDAT chunk has a wrong CRC (PIL verifies chunk CRCs while decoding).
    idat = png.index(b"IDAT")
    corrupt = bytearray(png)
    corrupt[idat + 10] ^= 0xFF
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic" + b"\x00" * 200
    inputs = {
        "empty": (b"", "empty.jpg"),
        "text_as_jpg": (b"Dear team,\nthis is a plain text note, not a photo.\n" * 20, "holiday.jpg"),
        "html_as_png": (
            b"<!DOCTYPE html><html><body><script>alert('xss')</script></body></html>\n",
            "<img src=x onerror=alert(1)>.png",
        ),
        "pdf_as_jpg": (_pdf_bytes(), "scan.jpg"),
        "zip_as_jpg": (_zip_bytes(), "album.jpg"),
        "postscript_as_jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "figure.jpg"),
        "random_bytes_as_png": (_random_bytes(), "noise.png"),
        "heic_as_jpg": (heic, "IMG_0001.jpg"),
        "svg_as_png": (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
            b'<rect width="64" height="64" fill="red"/></svg>\n',
            "logo.png",
        ),
        "jpeg_magic_only": (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "header.jpg"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "truncated.jpg"),
        "truncated_png": (png[: idat + 200], "truncated.png"),
        "corrupt_png_crc": (bytes(corrupt), "corrupt.png"),
        "one_pixel_png": (_save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "pixel.png"),
        "bomb_png": (bomb_png(), "bomb.png"),
    }
    assert set(inputs) == set(REJECTIONS)
    return inputs


def odd_inputs(base: Image.Image) -> dict[str, tuple[bytes, str]]:
    """Unusual images that must be accepted: name -> (file bytes, upload filename).

    Decoded (first frame, EXIF orientation applied, transparency flattened onto white) each one
    equals `base` (lossy formats: approximately), or `base` in greyscale for the grey variants. Transparent regions: `rgba_png` has its left third fully transparent and its middle
    third half transparent; `la_png` its left third; `palette_png_transparency` its top-left
    quadrant. In transparent pixels the stored colour is black, so flattening onto black or
    dropping alpha is detectable.
    """
    base = base.convert("RGB")
    w, h = base.size
    grey = base.convert("L")
    out: dict[str, tuple[bytes, str]] = {}

    inverted = Image.fromarray(255 - np.asarray(base))
    out["animated_gif"] = (
        _save(base, "GIF", save_all=True, append_images=[inverted, base], duration=100, loop=0),
        "animation.gif",
    )
    out["apng"] = (_save(base, "PNG", save_all=True, append_images=[inverted], duration=100), "animation.png")
    out["cmyk_jpeg"] = (_save(base.convert("CMYK"), "JPEG", quality=95), "print.jpg")  # Adobe-inverted CMYK
    out["greyscale_jpeg"] = (_save(grey, "JPEG", quality=95), "grey.jpg")
    out["bilevel_png"] = (_save(base.convert("1"), "PNG"), "bilevel.png")

    arr = np.asarray(base).copy()
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 3] = 0
    alpha[:, w // 3 : 2 * w // 3] = 128
    arr[alpha == 0] = 0
    out["rgba_png"] = (_save(Image.fromarray(np.dstack([arr, alpha]), "RGBA"), "PNG"), "cutout.png")

    la_alpha = np.full((h, w), 255, np.uint8)
    la_alpha[:, : w // 3] = 0
    la_grey = np.asarray(grey).copy()
    la_grey[la_alpha == 0] = 0
    out["la_png"] = (_save(Image.fromarray(np.dstack([la_grey, la_alpha]), "LA"), "PNG"), "grey_cutout.png")

    pal = base.quantize(colors=255)  # indices 0..254
    palette = pal.getpalette()[: 255 * 3] + [0, 0, 0]  # index 255: black, made transparent
    pal.putpalette(palette)
    pal_arr = np.asarray(pal).copy()
    pal_arr[: h // 2, : w // 2] = 255
    pal = Image.fromarray(pal_arr, "P")
    pal.putpalette(palette)
    out["palette_png_transparency"] = (_save(pal, "PNG", transparency=255), "palette.png")

    out["webp"] = (_save(base, "WEBP", quality=95), "photo.webp")

    for orientation, stored in ((6, base.transpose(Image.Transpose.ROTATE_90)), (8, base.transpose(Image.Transpose.ROTATE_270))):
        exif = Image.Exif()
        exif[0x0112] = orientation
        name = "exif_rotated_jpeg" if orientation == 6 else "exif_rotated_jpeg_8"
        out[name] = (_save(stored, "JPEG", quality=95, exif=exif), f"IMG_{orientation}.jpg")

    out["bmp"] = (_save(base, "BMP"), "photo.bmp")
    out["tiff"] = (_save(base, "TIFF"), "photo.tiff")
    out["png_named_pdf"] = (_save(base, "PNG"), "document.pdf")  # content decides, not the name
    return out


def oversize_bytes(limit: int) -> bytes:
    """A valid JPEG of exactly `limit + 1` bytes (a small photo padded with COM segments)."""
    small = _save(sample_photo(16, 16), "JPEG", quality=50)
    pad = limit + 1 - len(small)
    if pad < 0:
        raise ValueError(f"limit must be at least {len(small) - 1} bytes")
    segments = []
    while pad >= 4:
        payload = min(pad - 4, 65533)
        if 0 < pad - 4 - payload < 4:  # leave a remainder that still fits a whole segment
            payload -= 4
        segments.append(b"\xff\xfe" + struct.pack(">H", payload + 2) + b"\x00" * payload)
        pad -= payload + 4
    data = small[:2] + b"".join(segments) + small[2:] + b"\x00" * pad  # SOI, COM..., rest; trailing
    assert len(data) == limit + 1
    return data
