"""inference/ocr.py: the real OCR engine on rendered text with known strings and on an example cover."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from benchmarks.ocr import cer, render
from inference import ocr
from inference.ocr import ReadText, TextLine, read_text, reading_order, text_answer
from inference.files import EXAMPLES_DIR
from inference.images import load_image
from support import require

# Clean renders should come back almost exactly; the bound leaves room for one slip in a long line.
MAX_CER = 0.1


@pytest.mark.parametrize("text,font,size,rotation,dark", [
    ("THE OLD MAN AND THE SEA", "DejaVuSerif.ttf", 32, 0, False),
    ("Ernest Hemingway", "DejaVuSans.ttf", 28, 7, True),
    ("REPUBLIQUE FRANCAISE 0,50", "DejaVuSans-Bold.ttf", 36, -15, False),
    ("ONE DOLLAR 1921", "STIXGeneral.ttf", 40, 10, True),
])
def test_rendered_text_is_read_back(text, font, size, rotation, dark):
    found = read_text(render(text, font, size, rotation, dark, photo_like=False))
    assert found.lines and all(0.0 < line.confidence <= 1.0 for line in found.lines)
    assert cer(" ".join(line.text for line in found.lines), text) <= MAX_CER, found.text


def test_an_example_cover_title_is_found():
    cover = EXAMPLES_DIR / "collectibles" / "books_1.jpg"
    require(cover.is_file(), f"{cover} (python -m inference.files)")
    words = " ".join(line.text for line in read_text(load_image(cover)).lines).upper()
    assert "THE ROAD" in words and "MCCARTHY" in words


def test_no_text_is_an_empty_list_not_an_error():
    for blank in (Image.new("RGB", (320, 240), "white"), Image.fromarray(np.full((200, 300, 3), 90, np.uint8))):
        assert read_text(blank) == ReadText([])
        assert text_answer(blank) == {"lines": [], "text": ""}


def test_lines_come_in_reading_order():
    def line(text, x, y):
        return TextLine(text, 0.9, ((x, y), (x + 50, y), (x + 50, y + 20), (x, y + 20)))
    shuffled = [line("world", 120, 12), line("second", 10, 60), line("hello", 10, 10)]
    assert [item.text for item in reading_order(shuffled)] == ["hello", "world", "second"]
    assert ReadText(reading_order(shuffled)).text == "hello / world / second"


def test_the_engine_loads_once_and_is_shared_by_threads():
    from concurrent.futures import ThreadPoolExecutor

    image = render("LIBERTY 1999", "DejaVuSans.ttf", 32, 0, False, photo_like=False)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: " ".join(line.text for line in read_text(image).lines), range(4)))
    assert len(set(results)) == 1 and cer(results[0], "LIBERTY 1999") <= MAX_CER
    assert ocr._get_engine() is ocr._get_engine()


def test_a_missing_engine_turns_the_option_off_with_a_log_line(tmp_path):
    image = tmp_path / "card.png"
    render("LIBERTY 1999", "DejaVuSans.ttf", 32, 0, False, photo_like=False).save(image)
    code = ("import json, sys; sys.modules['rapidocr'] = None\n"
            "from inference import ocr\nfrom inference.images import load_image\n"
            f"print(json.dumps([ocr.available(), ocr.text_answer(load_image({str(image)!r}))]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    available, answer = json.loads(out.stdout.splitlines()[-1])
    assert available is False and answer["lines"] == [] and "not available" in answer["error"]
    assert "OCR is off" in out.stderr
