"""Which OCR engine reads collectibles best on this machine: RapidOCR against Tesseract, in one run.

    python -m benchmarks.ocr [--quick] [--out benchmarks/results/ocr.json]

Two measures per engine, and the p50 time per photo:
* rendered text with known strings: several fonts (matplotlib's own, so every machine has them),
  sizes, rotations up to 15 degrees, light and dark backgrounds, with and without a photo-like blur and
  JPEG; scored by character error rate (edit distance / length, case and spacing ignored);
* the example book covers whose titles are known: is the title (and the author) found in what is read.

Tesseract runs through pytesseract on Debian's tesseract-ocr (English); both are looked up at run time
and an engine that is missing is reported as such.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from benchmarks.common import RESULTS, write_json
from inference.render import markdown_table
from inference.ocr import read_text
from inference.files import EXAMPLES_DIR

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf")
STRINGS = ("THE OLD MAN AND THE SEA", "Ernest Hemingway", "REPUBLIQUE FRANCAISE 0,50", "LIBERTY 1999",
           "Abbey Road", "THE BEATLES", "Pink Floyd - The Wall", "HELVETIA 85", "ONE DOLLAR 1921",
           "Pride and Prejudice", "ROYAL MAIL 2nd", "Miles Davis Kind of Blue")
SIZES = (20, 32, 48)
ROTATIONS = (0, 7, -15)
# Example photos whose words are known (what is printed on the cover), for the "title found" check.
KNOWN_COVERS = {"books_1.jpg": ("THE ROAD", "CORMAC McCARTHY"), "books_2.jpg": ("EXCAVATION", "JAMES ROLLINS")}


def normalise(text: str) -> str:
    return " ".join(text.upper().split())


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def cer(read: str, truth: str) -> float:
    """Character error rate of `read` against `truth`, case and spacing ignored (capped at 1)."""
    read, truth = normalise(read), normalise(truth)
    return min(1.0, edit_distance(read, truth) / max(1, len(truth)))


def render(text: str, font: str, size: int, rotation: float, dark: bool, photo_like: bool) -> Image.Image:
    """`text` on a plain card, rotated, optionally blurred and JPEG-compressed like a phone photo."""
    face = ImageFont.truetype(str(FONT_DIR / font), size)
    left, top, right, bottom = face.getbbox(text)
    w, h = right - left + 2 * size, bottom - top + 2 * size
    ink, paper = ((235, 230, 220), (35, 40, 60)) if dark else ((25, 25, 30), (245, 240, 228))
    card = Image.new("RGB", (w, h), paper)
    ImageDraw.Draw(card).text((size - left, size - top), text, font=face, fill=ink)
    card = card.rotate(rotation, resample=Image.BICUBIC, expand=True, fillcolor=paper)
    if photo_like:
        card = card.filter(ImageFilter.GaussianBlur(size / 28))
        buffer = io.BytesIO()
        card.save(buffer, "JPEG", quality=55)
        card = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return card


def rendered_cases(quick: bool) -> list[tuple[dict, Image.Image]]:
    cases, i = [], 0
    for text in STRINGS[: 4 if quick else None]:
        for size in SIZES:
            for rotation in ROTATIONS:
                font = FONTS[i % len(FONTS)]
                dark, photo_like = i % 2 == 1, i % 3 == 2
                cases.append(({"text": text, "font": font, "size": size, "rotation": rotation, "dark": dark,
                               "photo_like": photo_like}, render(text, font, size, rotation, dark, photo_like)))
                i += 1
    return cases


def rapidocr_engine() -> Callable[[Image.Image], str]:
    return lambda image: read_text(image).text.replace(" / ", " ")


def tesseract_engine() -> Callable[[Image.Image], str]:
    import pytesseract

    pytesseract.get_tesseract_version()   # raises when the binary is missing
    return lambda image: " ".join(pytesseract.image_to_string(image, lang="eng").split())


ENGINES = {"rapidocr": rapidocr_engine, "tesseract": tesseract_engine}


def measure(name: str, make: Callable[[], Callable[[Image.Image], str]], cases, covers) -> dict:
    try:
        engine = make()
    except Exception as err:  # noqa: BLE001 - a missing package or binary: reported, not fatal
        return {"available": False, "error": f"{type(err).__name__}: {err}"}
    engine(cases[0][1])   # warm-up: model loading is not a per-photo cost
    times, rows = [], []
    for info, image in cases:
        t0 = time.perf_counter()
        read = engine(image)
        times.append(time.perf_counter() - t0)
        rows.append({**info, "read": read, "cer": round(cer(read, info["text"]), 4)})
    found = {}
    for path, words in covers:
        t0 = time.perf_counter()
        read = normalise(engine(Image.open(path).convert("RGB")))
        times.append(time.perf_counter() - t0)
        found[path.name] = {"read": read, **{w: normalise(w) in read for w in words}}
    by = {}
    for key in ("rotation", "dark", "photo_like", "size"):
        by[key] = {str(v): round(statistics.mean(r["cer"] for r in rows if r[key] == v), 4)
                   for v in sorted({r[key] for r in rows}, key=str)}
    return {"available": True, "cer_mean": round(statistics.mean(r["cer"] for r in rows), 4),
            "exact_share": round(float(np.mean([r["cer"] == 0 for r in rows])), 4), "cer_by": by,
            "covers": found, "covers_words_found": sum(v for f in found.values() for k, v in f.items() if k != "read"),
            "covers_words": sum(len(w) for _, w in covers),
            "p50_ms_per_photo": round(1000 * statistics.median(times), 1), "n_rendered": len(rows), "rendered": rows}


def render_table(result: dict) -> str:
    rows = []
    for name, r in result["engines"].items():
        if not r["available"]:
            rows.append([name, "not available: " + r["error"], "", "", "", ""])
            continue
        rows.append([name, f"{r['cer_mean']:.3f}", f"{r['exact_share']:.0%}",
                     f"{r['cer_by']['rotation']['-15']:.3f} / {r['cer_by']['photo_like']['True']:.3f}",
                     f"{r['covers_words_found']} of {r['covers_words']}", f"{r['p50_ms_per_photo']:.0f} ms"])
    return markdown_table(["engine", "CER, rendered text", "read exactly", "CER at 15° / photo-like",
                           "cover words found", "p50 per photo"], rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 of the 12 strings")
    p.add_argument("--out", type=Path, default=RESULTS / "ocr.json")
    args = p.parse_args(argv)
    cases = rendered_cases(args.quick)
    covers = [(EXAMPLES_DIR / "collectibles" / name, words) for name, words in KNOWN_COVERS.items()
              if (EXAMPLES_DIR / "collectibles" / name).is_file()]
    if not covers:
        print("warning: the example covers are missing (python -m inference.files)", file=sys.stderr)
    result = {"n_rendered": len(cases), "engines": {name: measure(name, make, cases, covers)
                                                    for name, make in ENGINES.items()}}
    result["markdown"] = render_table(result)
    write_json(args.out, result)
    print(result["markdown"])
    print(json.dumps({n: {k: v for k, v in r.items() if k not in ("rendered", "cer_by")}
                      for n, r in result["engines"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
