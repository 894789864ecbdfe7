"""Read the text on a photo (the earlier collectibles system's OCR helpers): a book's title and author,
an album's artist, a stamp's country and value, a coin's year.

The engine is RapidOCR (PP-OCR detection and recognition models in ONNX, shipped inside the `rapidocr`
wheel, run by onnxruntime on the CPU, no download): chosen over Tesseract by `python -m benchmarks.ocr`
(docs/benchmarks.md). It loads once, on first use, and calls are serialised by a lock, so concurrent
requests share it safely. When the package is not installed `available()` is False (logged once) and
the app turns the option off instead of failing.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
# The text detector scales a photo so its shorter side is at least this (RapidOCR's default 736 blows a 256 px
# cover up ~3x): 480 read the example covers' text the same at ~3.5x less time (docs/benchmarks.md).
DETECT_SIDE = 480
ROW_OVERLAP = 0.5   # two boxes are on one line when they overlap by this share of the smaller height


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float
    box: tuple[tuple[int, int], ...]   # corners in the photo's pixels, clockwise from top left


@dataclass(frozen=True)
class ReadText:
    lines: list[TextLine]              # in reading order: top to bottom, left to right; [] when none

    @property
    def text(self) -> str:
        """The lines joined by " / ", a short string for a table cell."""
        return " / ".join(line.text for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": [{"text": line.text, "confidence": round(line.confidence, 4), "box": [list(p) for p in line.box]}
                          for line in self.lines], "text": self.text}


class OcrUnavailable(RuntimeError):
    """The OCR engine is not installed here."""


_engine = None
_engine_lock = threading.Lock()
_checked: bool | None = None


def available() -> bool:
    """Whether the OCR engine can be imported (checked once; its absence is logged once)."""
    global _checked
    if _checked is None:
        try:
            import rapidocr  # noqa: F401
            _checked = True
        except ImportError as err:
            log.warning("OCR is off: the rapidocr package is not installed (%s)", err)
            _checked = False
    return _checked


def _get_engine():
    global _engine
    if _engine is None:
        if not available():
            raise OcrUnavailable("Reading text is not available here (the OCR engine is not installed).")
        from rapidocr import RapidOCR
        _engine = RapidOCR(params={"Global.log_level": "warning", "Det.limit_side_len": DETECT_SIDE})
    return _engine


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Group boxes into rows (vertical overlap), rows top to bottom, boxes in a row left to right."""
    def span(line: TextLine) -> tuple[float, float]:
        ys = [p[1] for p in line.box]
        return min(ys), max(ys)

    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: span(item)[0]):
        top, bottom = span(line)
        for row in rows:
            r_top, r_bottom = span(row[0])
            overlap = min(bottom, r_bottom) - max(top, r_top)
            if overlap > ROW_OVERLAP * min(bottom - top, r_bottom - r_top):
                row.append(line)
                break
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: min(p[0] for p in item.box))]


def read_text(photo: Image.Image) -> ReadText:
    """The text lines in a decoded RGB photo, in reading order with a confidence each.

    Raises OcrUnavailable without the engine.
    """
    engine = _get_engine()
    bgr = np.asarray(photo)[:, :, ::-1]   # RapidOCR takes BGR arrays, as OpenCV does
    with _engine_lock:
        result = engine(bgr)
    if not result.txts:
        return ReadText([])
    lines = [TextLine(text.strip(), float(score), tuple((int(x), int(y)) for x, y in box))
             for text, score, box in zip(result.txts, result.scores, result.boxes) if text.strip()]
    return ReadText(reading_order(lines))


def text_answer(photo: Image.Image) -> dict[str, Any]:
    """The `text` field of an answer: the lines read ({"lines", "text"}), never an exception. A photo the
    engine cannot read, or no engine here, gives no lines and an `error` saying so."""
    try:
        return read_text(photo).to_dict()
    except OcrUnavailable as err:
        return {"lines": [], "text": "", "error": str(err)}
    except Exception:   # the engine failed on this photo: the rest of the answer still stands
        log.exception("OCR failed on a photo")
        return {"lines": [], "text": "", "error": "The text on this photo could not be read."}
