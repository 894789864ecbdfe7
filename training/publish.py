"""Publish a checkpoint folder (timm Hub layout) to a Hugging Face model repo.

    python -m training.publish --folder checkpoints/car --repo-id your-name/car-condition [--dry-run]

huggingface_hub's `create_repo` + `upload_folder` (large files go the Hub's way, not through a git push).
The model card is validated by the Hub before anything is uploaded. `--dry-run` prints which files would
go where and touches nothing. Without Hub access (or a token) it stops with one clear line.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

from huggingface_hub import HfApi, ModelCard

from inference.model import CONFIG_NAME, WEIGHTS_NAME

# Resume state and caches never leave the run folder.
IGNORE = [".work/*", ".work/**", "*.tmp"]


class PublishError(RuntimeError):
    pass


def hub_error(err: Exception, what: str) -> PublishError:
    first_line = (str(err).strip().splitlines() or [""])[0]
    return PublishError(f"could not {what}: {type(err).__name__}: {first_line} (is the Hub reachable and are you "
                        "logged in with `hf auth login` or HF_TOKEN?)")


def planned_files(folder: Path, ignore: list[str] = IGNORE) -> list[Path]:
    """The files `upload_folder` sends: everything below `folder` but the ignored patterns."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [p for p in files if not any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pat) for pat in ignore)]


def describe(folder: Path, files: list[Path], repo: str) -> str:
    total = sum(p.stat().st_size for p in files)
    lines = [f"{repo}: {len(files)} files, {total / 2**20:.1f} MB"]
    lines += [f"  {p.relative_to(folder).as_posix():<40} {p.stat().st_size / 2**20:8.2f} MB" for p in files]
    return "\n".join(lines)


def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Validate the card, create the repo if needed and upload the folder; returns the commit URL."""
    folder = Path(folder)
    for name in (CONFIG_NAME, WEIGHTS_NAME, "README.md"):
        if not (folder / name).is_file():
            raise PublishError(f"{folder}: no {name} to publish")
    api = HfApi(token=token)
    try:
        ModelCard.load(folder / "README.md").validate(repo_type="model")
    except ValueError as err:   # the Hub's answer about the card's metadata
        raise PublishError(f"{folder / 'README.md'}: the Hub refused the model card: {err}") from None
    except Exception as err:  # network, auth and HTTP errors all end the same way: a clear message
        raise hub_error(err, f"validate {folder / 'README.md'} with the Hugging Face Hub") from None
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", ignore_patterns=IGNORE,
                                 commit_message=f"Upload {folder.name} checkpoint")
    except Exception as err:
        raise hub_error(err, f"publish {folder} to the Hugging Face Hub repo {repo_id}") from None
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", required=True, type=Path)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the files that would be uploaded; upload nothing")
    args = p.parse_args(argv)
    if args.dry_run:
        print(describe(args.folder, planned_files(args.folder), f"model repo {args.repo_id}"))
        return 0
    try:
        print(push_to_hub(args.folder, args.repo_id, args.private))
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
