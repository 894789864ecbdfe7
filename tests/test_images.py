"""Tests for inference.images: safe decoding of untrusted uploads."""
from __future__ import annotations

import gc
import io
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image, ImageFile

from benchmarks import bad_inputs as catalogue
from inference import images
from inference.images import ImageError, load_image

BAD = catalogue.bad_inputs()
BASE = catalogue.sample_photo()  # 96 x 64, asymmetric
ODD = catalogue.odd_inputs(BASE)
HTML_UNSAFE = set("<>&\"'`")


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float64)


def _mean_abs(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    a = _arr(a) if isinstance(a, Image.Image) else a.astype(np.float64)
    b = _arr(b) if isinstance(b, Image.Image) else b.astype(np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).mean())


def _assert_clean_rgb(im: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(im, Image.Image)
    assert not isinstance(im, ImageFile.ImageFile), "result must be detached from any file"
    assert im.mode == "RGB"
    assert im.size == size
    assert np.asarray(im).dtype == np.uint8
    assert "exif" not in im.info and "icc_profile" not in im.info


def _assert_user_facing(message: str, filename: str | None = None) -> None:
    assert message and len(message) < 220
    assert "Please" in message, "the message should say what to do"
    assert "Traceback" not in message and "Error" not in message
    assert not (set(message) & HTML_UNSAFE), message
    if filename:
        assert filename not in message
        stem = Path(filename).stem
        assert len(stem) < 8 or stem not in message


# ------------------------------------------------------------------ rejected inputs


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_rejected(name, tmp_path):
    data, filename = BAD[name]
    status, substring = catalogue.REJECTIONS[name]
    path = tmp_path / filename
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path)):
        with pytest.raises(ImageError) as info:
            load_image(source)
        err = info.value
        assert err.status == status, (name, type(source).__name__, str(err))
        assert substring in str(err), (name, str(err))
        assert isinstance(err, ValueError)
        _assert_user_facing(str(err), filename)


def test_html_content_is_not_echoed():
    data, _ = BAD["html_as_png"]
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert "script" not in str(info.value) and "alert" not in str(info.value)


@pytest.mark.parametrize("source", [None, "", "   "])
def test_no_image(source):
    with pytest.raises(ImageError) as info:
        load_image(source)
    assert info.value.status == 400
    assert str(info.value).startswith("No image was provided")


def test_missing_path_and_directory(tmp_path):
    secret = tmp_path / "my-private-name.jpg"
    with pytest.raises(ImageError) as info:
        load_image(secret)
    assert info.value.status == 400 and "my-private-name" not in str(info.value)
    with pytest.raises(ImageError) as info:
        load_image(tmp_path)
    assert info.value.status == 400


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = {}

    def run():
        try:
            load_image(fifo)
        except ImageError as exc:
            result["status"] = exc.status

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(2)
    if thread.is_alive():  # unblock the reader so the test process can finish
        with open(fifo, "wb"):
            pass
        pytest.fail("load_image blocked on a FIFO")
    assert result == {"status": 400}


def test_unsupported_python_type_is_a_programming_error():
    with pytest.raises(TypeError):
        load_image(12345)


def test_minimum_side():
    ok = Image.new("RGB", (images.MIN_SIDE, images.MIN_SIDE), (1, 2, 3))
    assert load_image(ok).size == (images.MIN_SIDE, images.MIN_SIDE)
    for size in ((images.MIN_SIDE - 1, 100), (100, images.MIN_SIDE - 1)):
        buf = io.BytesIO()
        Image.new("RGB", size).save(buf, "PNG")
        with pytest.raises(ImageError) as info:
            load_image(buf.getvalue())
        assert info.value.status == 400 and "too small" in str(info.value)


# ------------------------------------------------------------------ accepted odd inputs


def _expected(name: str) -> tuple[np.ndarray, float]:
    """(expected RGB pixels, mean-abs-difference tolerance) for an odd input."""
    w, h = BASE.size
    base = _arr(BASE)
    grey = _arr(BASE.convert("L").convert("RGB"))
    if name in ("apng", "bmp", "tiff", "png_named_pdf"):
        return base, 0.01
    if name == "bilevel_png":
        return _arr(BASE.convert("1").convert("RGB")), 0.01
    if name in ("cmyk_jpeg", "webp", "exif_rotated_jpeg", "exif_rotated_jpeg_8"):
        return base, 3.0
    if name == "greyscale_jpeg":
        return grey, 3.0
    if name == "animated_gif":
        return base, 6.0
    if name == "rgba_png":
        exp = base.copy()
        exp[:, : w // 3] = 255
        a = 128 / 255
        mid = slice(w // 3, 2 * w // 3)
        exp[:, mid] = base[:, mid] * a + 255 * (1 - a)
        return exp, 1.0
    if name == "la_png":
        exp = grey.copy()
        exp[:, : w // 3] = 255
        return exp, 0.6
    if name == "palette_png_transparency":
        exp = base.copy()
        exp[: h // 2, : w // 2] = 255
        return exp, 6.0
    raise KeyError(name)


def test_every_odd_input_has_an_expectation():
    for name in ODD:
        _expected(name)


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_input_decodes_to_base(name, tmp_path):
    data, filename = ODD[name]
    expected, tol = _expected(name)
    path = tmp_path / filename
    path.write_bytes(data)
    for source in (data, path):
        im = load_image(source)
        _assert_clean_rgb(im, BASE.size)
        got = _arr(im)
        assert 5 < got.mean() < 250, "decoded to an (almost) all-black or all-white image"
        diff = _mean_abs(got, expected)
        assert diff <= tol, f"{name}: mean abs diff {diff:.2f} > {tol}"


# The catalogue must really contain what its names say, or the tests above prove nothing.
_ODD_KIND = {
    "animated_gif": lambda im: im.format == "GIF" and im.n_frames > 1,
    "apng": lambda im: im.format == "PNG" and getattr(im, "n_frames", 1) > 1,
    "cmyk_jpeg": lambda im: im.format == "JPEG" and im.mode == "CMYK",
    "greyscale_jpeg": lambda im: im.format == "JPEG" and im.mode == "L",
    "bilevel_png": lambda im: im.mode == "1",
    "rgba_png": lambda im: im.mode == "RGBA",
    "la_png": lambda im: im.mode == "LA",
    "palette_png_transparency": lambda im: im.mode == "P" and "transparency" in im.info,
    "webp": lambda im: im.format == "WEBP",
    "exif_rotated_jpeg": lambda im: im.getexif().get(0x0112) == 6 and im.size == BASE.size[::-1],
    "exif_rotated_jpeg_8": lambda im: im.getexif().get(0x0112) == 8 and im.size == BASE.size[::-1],
    "bmp": lambda im: im.format == "BMP",
    "tiff": lambda im: im.format == "TIFF",
    "png_named_pdf": lambda im: im.format == "PNG",
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_inputs_are_really_odd(name):
    with Image.open(io.BytesIO(ODD[name][0])) as im:
        assert _ODD_KIND[name](im), name


def test_transparent_areas_are_white_not_black():
    w, h = BASE.size
    rgba = np.asarray(load_image(ODD["rgba_png"][0]))
    assert (rgba[:, : w // 3] == 255).all()
    pal = np.asarray(load_image(ODD["palette_png_transparency"][0]))
    assert (pal[: h // 2, : w // 2] == 255).all()


def test_exif_rotation_is_not_just_a_size_swap():
    im = load_image(ODD["exif_rotated_jpeg"][0])
    assert _mean_abs(im, BASE) < 3.0
    assert _mean_abs(im, BASE.transpose(Image.Transpose.ROTATE_180)) > 30  # orientation really matters


def test_animated_gif_uses_first_frame():
    im = load_image(ODD["animated_gif"][0])
    inverted = Image.fromarray(255 - np.asarray(BASE))
    assert _mean_abs(im, BASE) < _mean_abs(im, inverted) / 5


# ------------------------------------------------------------------ numpy and PIL inputs

# ------------------------------------------------------------------ PIL inputs


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "1", "YCbCr"])
def test_pil_inputs(mode):
    src = BASE.convert(mode)
    assert src.mode == mode
    before = src.tobytes()
    im = load_image(src)
    assert im is not src
    _assert_clean_rgb(im, BASE.size)
    assert src.tobytes() == before and src.mode == mode
    expected = BASE.convert(mode).convert("RGB") if mode in ("RGBA", "P", "CMYK", "1", "YCbCr", "RGB") else None
    if expected is None:
        expected = BASE.convert("L").convert("RGB")
    assert _mean_abs(im, expected) <= 1.0, mode


def test_pil_input_transparent_on_white_and_limits():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert (np.asarray(load_image(rgba)) == 255).all()
    with pytest.raises(ImageError) as info:
        load_image(Image.new("RGB", (8, 8)))
    assert info.value.status == 400
    with pytest.raises(ImageError) as info:
        load_image(Image.new("RGB", (200, 200)), max_pixels=10_000)
    assert info.value.status == 413


def test_pil_input_applies_exif_orientation():
    with Image.open(io.BytesIO(ODD["exif_rotated_jpeg"][0])) as lazy:  # lazily opened, not loaded
        im = load_image(lazy)
    assert _mean_abs(im, BASE) < 3.0


# ------------------------------------------------------------------ size limits and bombs


def test_size_limit_bytes():
    limit = 50_000
    too_big = catalogue.oversize_bytes(limit)
    assert len(too_big) == limit + 1 and too_big.startswith(b"\xff\xd8\xff")
    with pytest.raises(ImageError) as info:
        load_image(too_big, max_bytes=limit)
    assert info.value.status == 413 and "too large" in str(info.value)
    _assert_user_facing(str(info.value))
    assert load_image(too_big, max_bytes=limit + 1).size == (16, 16)  # exactly at the limit: fine


def test_size_limit_path(tmp_path):
    limit = 50_000
    path = tmp_path / "big.jpg"
    path.write_bytes(catalogue.oversize_bytes(limit))
    with pytest.raises(ImageError) as info:
        load_image(path, max_bytes=limit)
    assert info.value.status == 413
    assert load_image(path, max_bytes=limit + 1).size == (16, 16)


def test_size_limit_default(monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 40_000)
    with pytest.raises(ImageError) as info:
        load_image(catalogue.oversize_bytes(40_000))
    assert info.value.status == 413
    assert images.load_image(catalogue.oversize_bytes(39_999)).size == (16, 16)


def test_oversized_path_is_not_read(tmp_path):
    """A 64 MB (sparse) file is refused from its size, reading (almost) nothing."""
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.write(catalogue.oversize_bytes(1000))
        f.truncate(64 * 1024 * 1024)
    proc = psutil.Process()
    before = proc.io_counters().read_chars
    with pytest.raises(ImageError) as info:
        load_image(path, max_bytes=1024 * 1024)
    assert info.value.status == 413
    assert proc.io_counters().read_chars - before < 1024 * 1024


def test_file_growing_after_stat_is_read_at_most_limit_plus_one(tmp_path, monkeypatch):
    """os.stat said small, but the file is (now) 64 MB: read no more than max_bytes + 1."""
    path = tmp_path / "growing.jpg"
    with open(path, "wb") as f:
        f.write(catalogue.oversize_bytes(1000))
        f.truncate(64 * 1024 * 1024)
    real_stat = os.stat

    def stale_stat(p, *args, **kwargs):
        st = real_stat(p, *args, **kwargs)
        if os.fspath(p) == str(path):
            fields = list(st[:10])
            fields[6] = 1000  # st_size
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "stat", stale_stat)
    proc = psutil.Process()
    before = proc.io_counters().read_chars
    with pytest.raises(ImageError) as info:
        load_image(path, max_bytes=1024 * 1024)
    assert info.value.status == 413
    assert proc.io_counters().read_chars - before < 2 * 1024 * 1024


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    original = ImageFile.ImageFile.load

    def counting_load(self, *args, **kwargs):
        calls.append(self.size)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return calls


def test_decode_counter_works(count_decodes):
    load_image(ODD["tiff"][0])
    assert count_decodes, "the decode counter must see ordinary decodes"


def test_bomb_rejected_without_decoding(count_decodes):
    data, _ = BAD["bomb_png"]
    assert len(data) < 500_000
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.status == 413
    assert count_decodes == []


def test_bomb_rejected_by_own_header_check(monkeypatch, count_decodes):
    """Even with PIL's own bomb protection switched off, the header size is checked before decoding."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError) as info:
        load_image(BAD["bomb_png"][0])
    assert info.value.status == 413 and "20000 x 20000" in str(info.value)
    assert count_decodes == []


def test_max_pixels_checked_before_decoding(count_decodes):
    buf = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buf, "PNG")
    with pytest.raises(ImageError) as info:
        load_image(buf.getvalue(), max_pixels=300 * 200 - 1)
    assert info.value.status == 413 and "300 x 200" in str(info.value)
    assert count_decodes == []
    assert load_image(buf.getvalue(), max_pixels=300 * 200).size == (300, 200)


def _pil_warning_sized_png(monkeypatch) -> bytes:
    # Between Image.MAX_IMAGE_PIXELS and twice that, PIL warns instead of raising.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    buf = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buf, "PNG")  # 1600 px
    return buf.getvalue()


def test_pil_bomb_warning_is_an_error(monkeypatch):
    data = _pil_warning_sized_png(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageError) as info:
            load_image(data)
    assert info.value.status == 413


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pil_bomb_warning_raised_as_exception_is_caught(monkeypatch):
    data = _pil_warning_sized_png(monkeypatch)
    with pytest.raises(ImageError) as info:
        load_image(data)
    assert info.value.status == 413


# ------------------------------------------------------------------ resources, threads, globals


def test_no_fd_leak_after_many_loads(tmp_path):
    paths = []
    for name in ("webp", "cmyk_jpeg", "animated_gif", "tiff"):
        p = tmp_path / ODD[name][1]
        p.write_bytes(ODD[name][0])
        paths.append((p, True))
    for name in ("truncated_jpeg", "bomb_png", "pdf_as_jpg", "one_pixel_png"):
        p = tmp_path / (name + ".bin")
        p.write_bytes(BAD[name][0])
        paths.append((p, False))
    proc = psutil.Process()
    gc.collect()
    fds_before, files_before = proc.num_fds(), sorted(f.path for f in proc.open_files())
    for _ in range(15):
        for p, ok in paths:
            if ok:
                load_image(p)
            else:
                with pytest.raises(ImageError):
                    load_image(p)
    # no gc.collect() here: handles must be closed deterministically, not by the collector
    assert sorted(f.path for f in proc.open_files()) == files_before
    assert proc.num_fds() == fds_before


def test_no_temp_files(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("load_image must not create temporary files")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, forbidden)
    p = tmp_path / "x.gif"
    p.write_bytes(ODD["animated_gif"][0])
    before = sorted(os.listdir(tmp_path))
    load_image(p)
    load_image(ODD["cmyk_jpeg"][0])
    assert sorted(os.listdir(tmp_path)) == before


def test_thread_safe_and_no_global_state_changes():
    jobs = [ODD[n][0] for n in sorted(ODD)] + [BAD[n][0] for n in sorted(BAD)]

    def run(data):
        try:
            return np.asarray(load_image(data)).tobytes()
        except ImageError as exc:
            return (exc.status, str(exc))

    filters_before = list(warnings.filters)
    truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
    bomb_limit_before = Image.MAX_IMAGE_PIXELS
    sequential = [run(d) for d in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, jobs * 2))
    assert concurrent == sequential * 2
    assert list(warnings.filters) == filters_before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is truncated_before is False
    assert Image.MAX_IMAGE_PIXELS == bomb_limit_before


# ------------------------------------------------------------------ small API pieces


def test_large_jpeg_decodes_small_and_upright(count_decodes):
    """A 12 MP phone JPEG (EXIF: rotate 90) decodes at a reduced scale to at most MAX_SIDE, upright."""
    stored = BASE.resize((4000, 3000)).transpose(Image.Transpose.ROTATE_90)   # stored sideways, 3000 x 4000
    exif = Image.Exif()
    exif[0x0112] = 6
    data = catalogue._save(stored, "JPEG", quality=90, exif=exif)
    im = load_image(data)
    assert max(im.size) <= images.MAX_SIDE and im.size[0] > im.size[1]   # upright: landscape again
    assert set(count_decodes) == {(750, 1000)}   # decoded at 1/4 scale (JPEG draft), never at 12 MP
    assert _mean_abs(im.resize(BASE.size), BASE) < 4


def test_image_error():
    err = ImageError("The image is too large. Please upload a smaller one.", 413)
    assert isinstance(err, ValueError) and err.status == 413
    assert ImageError("x").status == 400
    clone = pickle.loads(pickle.dumps(err))
    assert clone.status == 413 and str(clone) == str(err)


def test_env_overrides_and_no_gradio_import():
    code = (
        "import sys, inference.images as m;"
        "print(m.MAX_FILE_BYTES, m.MAX_PIXELS, 'gradio' in sys.modules)"
    )
    env = dict(os.environ, IMAGE_MAX_BYTES="1234", IMAGE_MAX_PIXELS="5678")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["1234", "5678", "False"]


def test_the_bomb_is_small_and_says_20000_px():
    catalogue.bomb_png.cache_clear()
    data = catalogue.bomb_png()
    assert len(data) < 500_000
    # IHDR width/height, read without PIL (which would refuse the bomb)
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (20000, 20000)
