"""Publish a run folder (Hub layout) to a Hugging Face model repo.

    python -m training.publish --folder checkpoints/car --repo-id your-name/car-condition
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import HfApi

# Resume state and caches, and the worst-errors figure (it shows training photos, which may be
# third-party: the card lists those errors by file name instead).
IGNORE = [".work/*", ".work/**", "*.tmp", "worst_errors.png"]


class PublishError(RuntimeError):
    pass


def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the repo if needed and upload the folder; returns the commit URL."""
    folder = Path(folder)
    if not (folder / "model.safetensors").is_file():
        raise PublishError(f"{folder}: no model.safetensors to publish")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model",
                                 ignore_patterns=IGNORE, commit_message=f"Upload {folder.name} checkpoint")
    except Exception as err:  # network, auth and HTTP errors all end the same way: a clear message
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise PublishError(f"could not publish {folder} to the Hugging Face Hub repo {repo_id}: "
                           f"{type(err).__name__}: {first_line} (is the Hub reachable and are you logged in "
                           f"with `hf auth login` or HF_TOKEN?)") from None
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True, type=Path)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    try:
        print(push_to_hub(args.folder, args.repo_id, args.private))
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
