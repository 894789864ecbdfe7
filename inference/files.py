"""Files the Space reads and writes besides the models: the example photos (listed in
examples/<task>/<manifest>.csv, not in git: `python -m inference.files` puts them in place) and the
temporary output files Gradio serves (heat maps, CSVs, charts).

Example source, in order: --source / EXAMPLES_SOURCE (a folder, or `hf-dataset:OWNER/NAME`), else the
project's Hub dataset repo, else ../shared/examples beside the repository. Images already present are
kept. The app runs without examples, so a missing source is a warning, not an error.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from inference.hub import HUB_TIMEOUT, within
from inference.images import ImageError, load_image
from inference.tasks import REPO_ROOT, TASKS

if TYPE_CHECKING:
    from PIL import Image

EXAMPLES_DIR = REPO_ROOT / "examples"
HUB_DATASET = "hf-dataset:image-understanding-space/space-examples"
LOCAL_FALLBACK = REPO_ROOT.parent / "shared" / "examples"
OUTPUT_MAX_AGE_S = 3600


def example_manifest(task: str) -> list[dict[str, str]]:
    """Rows of examples/<task>/<manifest>.csv (image file name, expected labels, source); [] if none.

    Only plain file names count (never a path). The images themselves are not in git:
    `python -m inference.files` puts them in place.
    """
    manifests = sorted((EXAMPLES_DIR / task).glob("*.csv"))
    if not manifests:
        return []
    with manifests[0].open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("image") and "/" not in row["image"]]


def present_examples(task: str) -> list[tuple[Path, dict[str, str]]]:
    """(image path, manifest row) for the example images that are actually on disk."""
    folder = EXAMPLES_DIR / task
    return [(folder / row["image"], row) for row in example_manifest(task) if (folder / row["image"]).is_file()]


def example_files(task: str) -> list[str]:
    """Example images listed in examples/<task>/<manifest>.csv that are actually present."""
    return [str(path) for path, _ in present_examples(task)]


def from_hub(repo_id: str, wanted: list[str]) -> Path | None:
    from huggingface_hub import snapshot_download
    try:
        return Path(within(HUB_TIMEOUT * 6, snapshot_download, repo_id, repo_type="dataset",
                           allow_patterns=wanted, etag_timeout=HUB_TIMEOUT))
    except Exception as err:  # offline, unknown repo, timeout: try the next source
        print(f"examples: Hub dataset {repo_id} unavailable ({type(err).__name__})", file=sys.stderr)
        return None


def fetch_examples(source: str | None = None) -> int:
    wanted = {task: [f"{task}/{row['image']}" for row in example_manifest(task)] for task in TASKS}
    missing = [rel for rels in wanted.values() for rel in rels if not (EXAMPLES_DIR / rel).is_file()]
    if not missing:
        return 0
    sources = [source] if source else [HUB_DATASET, str(LOCAL_FALLBACK)]
    for src in sources:
        root = from_hub(src.removeprefix("hf-dataset:"), missing) if src.startswith("hf-dataset:") else Path(src)
        if root is None or not root.is_dir():
            continue
        for rel in list(missing):
            candidate = root / rel
            if not candidate.is_file():
                continue
            try:
                load_image(candidate)
            except ImageError as err:
                print(f"examples: skipping {candidate}: {err}", file=sys.stderr)
                continue
            (EXAMPLES_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, EXAMPLES_DIR / rel)
            missing.remove(rel)
        print(f"examples: {sum(map(len, wanted.values())) - len(missing)} in place (source {src})")
        if not missing:
            return 0
    if missing:
        print(f"examples: {len(missing)} example image(s) not found; the app runs without them", file=sys.stderr)
    return 0


_output_dir: Path | None = None
_output_lock = threading.Lock()


def output_file(name: str, write: Callable[[Path], None]) -> str:
    """A new file in this process's own temporary folder for Gradio to serve (uniquely named, so
    concurrent requests never overwrite each other's); files older than an hour are pruned."""
    global _output_dir
    with _output_lock:
        if _output_dir is None:
            _output_dir = Path(tempfile.mkdtemp(prefix="space-outputs-"))
            atexit.register(shutil.rmtree, _output_dir, ignore_errors=True)
        now = time.time()
        for old in _output_dir.iterdir():
            if now - old.stat().st_mtime > OUTPUT_MAX_AGE_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = _output_dir / uuid.uuid4().hex
        folder.mkdir()
    path = folder / name
    write(path)
    return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=os.environ.get("EXAMPLES_SOURCE"),
                   help="folder with <task>/<image> files, or hf-dataset:OWNER/NAME")
    return fetch_examples(p.parse_args(argv).source)


if __name__ == "__main__":
    sys.exit(main())


def image_files(images: dict[str, "Image.Image"], names: Iterable[str], prefix: str = "heatmap") -> list[str | None]:
    """Pictures as uniquely named JPEG files, one per name (None where `images` has none). A path is copied by
    Gradio atomically; a PIL image would be written under a content hash that two requests for the same photo
    overwrite while the other downloads it."""
    return [output_file(f"{prefix}-{name}.jpg", lambda path, im=images[name]: im.save(path, quality=90))
            if name in images else None for name in names]
