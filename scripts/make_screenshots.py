"""Screenshots of the running app for the README, made with pictures this script draws itself
(the example photos are third-party and must not end up in the repository).

    python -m scripts.make_screenshots --url http://127.0.0.1:7860 --out docs

It also writes docs/screenshots.sha256, the fingerprint of the files that shape the screens (UI_FILES):
a test fails when they change and the screenshots were not made again.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


ROOT = Path(__file__).resolve().parent.parent

UI_FILES = ("app.py", "inference/messages.py", "inference/render.py", "inference/batch_report.py",
            "inference/inspection.py")
FINGERPRINT = "screenshots.sha256"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def ui_fingerprint() -> str:
    """The SHA-256 of the files that shape what the screenshots show (line endings as checked out)."""
    digest = hashlib.sha256()
    for name in UI_FILES:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()


def wooden_table(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Brown planks with a wandering grain."""
    w, h = size
    y = np.arange(h)[:, None] + 6 * np.sin(np.arange(w)[None, :] / 37.0)
    grain = 0.08 * np.sin(y / 2.3) + 0.05 * rng.standard_normal((h, w)) - 0.25 * ((y % 90) < 2)
    tone = np.array([150, 100, 60], np.float32)
    return Image.fromarray(np.uint8(np.clip((1 + grain)[..., None] * tone, 0, 255)))


def drawn_coins(size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A few metallic discs with a rim and a relief, lying on a drawn wooden table."""
    rng = np.random.default_rng(7)
    picture = wooden_table(rng, size)
    draw = ImageDraw.Draw(picture)
    for (cx, cy, r, tone) in ((150, 170, 95, (205, 170, 90)), (330, 150, 75, (190, 190, 195)),
                              (320, 280, 55, (185, 120, 70))):
        shadow = Image.new("L", size, 0)
        ImageDraw.Draw(shadow).ellipse((cx - r + 8, cy - r + 10, cx + r + 8, cy + r + 10), fill=120)
        picture.paste((30, 20, 10), mask=shadow.filter(ImageFilter.GaussianBlur(8)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tone, outline=tuple(int(c * 0.7) for c in tone), width=6)
        inner = int(r * 0.78)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), outline=tuple(int(c * 0.8) for c in tone), width=3)
        draw.text((cx - 8, cy - 10), str(int(rng.integers(1, 50))), fill=tuple(int(c * 0.6) for c in tone))
    return picture


def landscape(size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A drawn landscape: not a car, so the car tab says so."""
    w, h = size
    y = np.arange(h)[:, None] * np.ones((1, w))
    sky = np.stack([110 + 0.4 * y, 160 + 0.3 * y, 230 - 0.1 * y], -1)
    hills = h * (0.55 + 0.08 * np.sin(np.arange(w) / 45.0))
    grass = np.stack([50 + 0 * y, 130 + 0 * y, 50 + 0 * y], -1)
    return Image.fromarray(np.uint8(np.where((y > hills)[..., None], grass, sky)))


def screenshot_above_examples(page, path: Path) -> None:
    """Screenshot of the visible tab, cut off above its example gallery (third-party thumbnails)."""
    width = page.viewport_size["width"]
    height = page.viewport_size["height"]
    for label in page.get_by_text("Examples (click one)").all():
        box = label.bounding_box()
        if box and label.is_visible():
            height = min(height, int(box["y"]) - 8)
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": width, "height": height})


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import expect, sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        coins, field = Path(tmp) / "coins.png", Path(tmp) / "landscape.png"
        drawn_coins().save(coins)
        landscape().save(field)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(args.url, wait_until="domcontentloaded")
            page.locator("#collectibles-image input[type=file]").set_input_files(str(coins))
            expect(page.locator("#collectibles-cam-category img")).to_be_visible(timeout=90_000)
            page.wait_for_timeout(1500)
            screenshot_above_examples(page, args.out / "screenshot_collectibles.png")
            page.get_by_role("tab", name="Car condition").click()   # a picture of something else: not judged
            page.locator("#car-image input[type=file]").set_input_files(str(field))
            expect(page.locator("#car-summary")).to_contain_text("Not judged", timeout=90_000)
            page.wait_for_timeout(1500)
            screenshot_above_examples(page, args.out / "screenshot_car.png")
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-files input[type=file]").set_input_files([str(coins), str(field)])
            page.get_by_role("radio", name="Collectibles").click()
            page.get_by_role("button", name="Run batch").click()
            expect(page.locator("#batch-chart img")).to_be_visible(timeout=90_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(args.out / "screenshot_batch.png"), full_page=True)
            browser.close()
    (args.out / FINGERPRINT).write_text(ui_fingerprint() + "\n")
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
