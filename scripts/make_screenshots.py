"""Screenshots of the running app for the README, on the bundled example photos.

    python -m scripts.make_screenshots --url http://127.0.0.1:7860 --out docs

The answers are the app's own for the real example photos (examples/, put in place by scripts/setup.sh),
but the photos are third-party and must not end up in the repository, not even inside a screenshot: every
picture of them (the upload, the heat maps drawn over it, thumbnails) is covered by a grey box before the
shot. The "not judged" screen uses a landscape this script draws itself, shown as it is.

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
from PIL import Image

from inference.files import example_files
from inference.tasks import get_task


ROOT = Path(__file__).resolve().parent.parent

UI_FILES = ("app.py", "inference/messages.py", "inference/render.py", "inference/batch_report.py",
            "inference/inspection.py")
FINGERPRINT = "screenshots.sha256"
CHROMIUM = Path("/usr/bin/chromium")   # Debian's chromium; Playwright downloads no browser here
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def ui_fingerprint() -> str:
    """The SHA-256 of the files that shape what the screenshots show (line endings as checked out)."""
    digest = hashlib.sha256()
    for name in UI_FILES:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()


def landscape(size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A drawn landscape: not a car, so the car tab says so."""
    w, h = size
    y = np.arange(h)[:, None] * np.ones((1, w))
    sky = np.stack([110 + 0.4 * y, 160 + 0.3 * y, 230 - 0.1 * y], -1)
    hills = h * (0.55 + 0.08 * np.sin(np.arange(w) / 45.0))
    grass = np.stack([50 + 0 * y, 130 + 0 * y, 50 + 0 * y], -1)
    return Image.fromarray(np.uint8(np.where((y > hills)[..., None], grass, sky)))


# Covers every <img> matching the selector with a grey box of the same size saying what was there.
COVER_JS = """([selector, text]) => {
  for (const img of document.querySelectorAll(selector)) {
    const r = img.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const box = document.createElement('div');
    Object.assign(box.style, {position: 'absolute', left: `${r.left + scrollX}px`, top: `${r.top + scrollY}px`,
      width: `${r.width}px`, height: `${r.height}px`, background: '#e5e7eb', color: '#374151', zIndex: 10000,
      display: 'flex', alignItems: 'center', justifyContent: 'center', textAlign: 'center',
      font: '13px sans-serif', padding: '6px', boxSizing: 'border-box'});
    box.textContent = text;
    document.body.appendChild(box);
  }
}"""
PHOTO_TEXT = "example photo (third-party: not reproduced here)"
HEAT_MAP_TEXT = "heat map over the example photo (not reproduced here)"


def cover_photos(page, task: str) -> None:
    """Grey boxes over the example photo, the heat maps drawn on it and the example thumbnails."""
    page.evaluate(COVER_JS, [f"#{task}-image img, #{task}-examples img, #batch-photo img", PHOTO_TEXT])
    page.evaluate(COVER_JS, [f"[id^={task}-cam-] img", HEAT_MAP_TEXT])


def wait_until_idle(page) -> None:
    """Until no event is still running anywhere on the page (Gradio shows "processing | 0.3s")."""
    page.wait_for_function("() => !document.body.innerText.includes('processing |')", timeout=90_000)


def screenshot_above_examples(page, path: Path) -> None:
    """Screenshot of the visible tab down to its example gallery."""
    width = page.viewport_size["width"]
    height = page.viewport_size["height"]
    for label in page.get_by_text("Examples (click one)").all():
        box = label.bounding_box()
        if box and label.is_visible():
            height = min(height, int(box["y"]) - 8)
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": width, "height": height})


def example(task: str, name: str) -> Path:
    """An example photo by file name; the examples are put in place by scripts/setup.sh."""
    found = [Path(p) for p in example_files(task) if Path(p).name == name]
    if not found:
        raise SystemExit(f"error: example photo {task}/{name} not found: run `python -m inference.files` first")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import expect, sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--collectible", default="coins_1.jpg", help="example photo for the collectibles tab")
    p.add_argument("--car", default="very_dirty.jpg", help="example photo for the car tab")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    collectible, car = example("collectibles", args.collectible), example("car", args.car)
    with tempfile.TemporaryDirectory() as tmp:
        field = Path(tmp) / "landscape.png"
        landscape().save(field)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})

            def shot(task: str, photo: Path, done: str, name: str, cover: bool = True) -> None:
                page.goto(args.url, wait_until="domcontentloaded")
                page.get_by_role("tab", name=get_task(task).title).click()
                page.locator(f"#{task}-image input[type=file]").set_input_files(str(photo))
                if cover:   # a judged photo: wait for its heat maps
                    expect(page.locator(f"[id^={task}-cam-] img").first).to_be_visible(timeout=90_000)
                expect(page.locator(f"#{task}-summary")).to_contain_text(done, timeout=90_000)
                wait_until_idle(page)
                page.wait_for_timeout(1500)
                if cover:
                    cover_photos(page, task)
                screenshot_above_examples(page, args.out / name)

            shot("collectibles", collectible, "", "screenshot_collectibles.png")
            shot("car", car, "For the driver", "screenshot_car.png")
            shot("car", field, "Not judged", "screenshot_not_judged.png", cover=False)   # our own drawing
            page.goto(args.url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-files input[type=file]").set_input_files(
                [*example_files("car"), str(field)])
            page.get_by_role("button", name="Run batch").click()
            expect(page.locator("#batch-chart img")).to_be_visible(timeout=90_000)
            page.wait_for_timeout(1500)
            cover_photos(page, "car")
            page.screenshot(path=str(args.out / "screenshot_batch.png"), full_page=True)
            browser.close()
    (args.out / FINGERPRINT).write_text(ui_fingerprint() + "\n")
    print(f"screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
