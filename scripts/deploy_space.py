"""Deploy the app as a Hugging Face Space in one command.

    python -m scripts.deploy_space --repo-id your-name/image-understanding [--dry-run] [--with-checkpoints]

Uploads what the Space runs: app.py, serve.py, rest_api.py, the inference package, requirements.txt
(serving only: no training packages), the README with its Spaces YAML header, the example manifests and
the example fetcher (the app fetches the example photos from the Hub dataset at start). The checkpoints
stay in their model repos (`python -m training.publish`) and the app downloads them; `--with-checkpoints`
bundles checkpoints/ too, for a Space without model repos. huggingface_hub's `create_repo` +
`upload_folder` stores large files the Hub's way. `--dry-run` prints exactly which files would go where
and touches nothing; without Hub access the command stops with one clear line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard

from inference.tasks import TASKS
from training.publish import PublishError, describe, hub_error

ROOT = Path(__file__).resolve().parent.parent
SPACE_FILES = ["app.py", "serve.py", "rest_api.py", "requirements.txt", "README.md", "inference/*.py",
               "examples/*/*.csv"]
CHECKPOINT_FILES = ["checkpoints/*/*"]


def space_files(with_checkpoints: bool) -> list[Path]:
    patterns = SPACE_FILES + (CHECKPOINT_FILES if with_checkpoints else [])
    files = sorted({p for pattern in patterns for p in ROOT.glob(pattern) if p.is_file()})
    return [p for p in files if "__pycache__" not in p.parts]


def check_space_card() -> SpaceCard:
    """The README's YAML header must be a valid Spaces header (sdk, app_file): huggingface_hub parses it."""
    card = SpaceCard.load(ROOT / "README.md")
    if card.data.sdk != "gradio" or card.data.app_file != "serve.py":
        raise PublishError("README.md: the Spaces header needs sdk: gradio and app_file: serve.py")
    return card


def deploy(repo_id: str, files: list[Path], private: bool = False, token: str | None = None) -> str:
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=ROOT, repo_id=repo_id, repo_type="space",
                                 allow_patterns=[p.relative_to(ROOT).as_posix() for p in files],
                                 commit_message="Deploy the Space")
    except Exception as err:  # network, auth and HTTP errors: one clear line
        raise hub_error(err, f"deploy the Space {repo_id} to the Hugging Face Hub") from None
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo-id", required=True, help="the Space, e.g. your-name/image-understanding")
    p.add_argument("--private", action="store_true")
    p.add_argument("--with-checkpoints", action="store_true", help="bundle checkpoints/ (no model repos)")
    p.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded; upload nothing")
    args = p.parse_args(argv)
    try:
        card = check_space_card()
        files = space_files(args.with_checkpoints)
        print(describe(ROOT, files, f"Space {args.repo_id} (sdk {card.data.sdk} {card.data.sdk_version}, "
                                    f"app_file {card.data.app_file})"))
        if not args.with_checkpoints:
            print("Checkpoints are not uploaded: the app downloads them from "
                  + ", ".join(spec.hub_repo for spec in TASKS.values()) + " (python -m training.publish).")
        if not args.dry_run:
            print(deploy(args.repo_id, files, args.private))
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
