"""Put the example images listed in examples/<task>/<manifest> in place (they are not in git).

Source, in order: --source / EXAMPLES_SOURCE (a folder, or `hf-dataset:OWNER/NAME`), else the
project's Hub dataset repo, else ../shared/examples beside the repository. Images already present
are kept. The app runs without examples, so a missing source is a warning, not an error.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from inference.hub import HUB_TIMEOUT, within
from inference.images import ImageError, load_image
from inference.tasks import EXAMPLES_DIR as EXAMPLES, TASKS, example_manifest

ROOT = Path(__file__).resolve().parent.parent

HUB_DATASET = "hf-dataset:image-understanding-space/space-examples"
LOCAL_FALLBACK = ROOT.parent / "shared" / "examples"


def from_hub(repo_id: str, wanted: list[str]) -> Path | None:
    from huggingface_hub import snapshot_download
    try:
        return Path(within(HUB_TIMEOUT * 6, snapshot_download, repo_id, repo_type="dataset",
                           allow_patterns=wanted, etag_timeout=HUB_TIMEOUT))
    except Exception as err:  # offline, unknown repo, timeout: try the next source
        print(f"examples: Hub dataset {repo_id} unavailable ({type(err).__name__})", file=sys.stderr)
        return None


def fetch(source: str | None = None) -> int:
    wanted = {task: [f"{task}/{row['image']}" for row in example_manifest(task)] for task in TASKS}
    missing = [rel for rels in wanted.values() for rel in rels if not (EXAMPLES / rel).is_file()]
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
            (EXAMPLES / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate, EXAMPLES / rel)
            missing.remove(rel)
        print(f"examples: {sum(map(len, wanted.values())) - len(missing)} in place (source {src})")
        if not missing:
            return 0
    if missing:
        print(f"examples: {len(missing)} example image(s) not found; the app runs without them", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=os.environ.get("EXAMPLES_SOURCE"),
                   help="folder with <task>/<image> files, or hf-dataset:OWNER/NAME")
    return fetch(p.parse_args(argv).source)


if __name__ == "__main__":
    sys.exit(main())
