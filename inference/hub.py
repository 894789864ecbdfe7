"""Where a checkpoint comes from: the Hugging Face Hub (or its local cache), else the bundled copy.

`resolve_checkpoint` returns a local folder in Hub layout plus a description of its origin. The Hub
path is the real one (`hf_hub_download`, honouring HF_HUB_OFFLINE, HF_HOME/HF_HUB_CACHE and a
revision); when the Hub cannot be reached within the time limits, the copy bundled in this
repository under checkpoints/<task>/ serves instead, and the log says so.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from inference.model import CONFIG_NAME, ONNX_NAME, OOD_NAME, WEIGHTS_NAME
from inference.tasks import get_task

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
# Seconds to wait for the Hub before falling back (metadata request; downloads have their own).
HUB_TIMEOUT = float(os.environ.get("HUB_TIMEOUT", "5"))
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)
OPTIONAL_FILES = (OOD_NAME, ONNX_NAME)


@dataclass(frozen=True)
class CheckpointSource:
    folder: Path
    origin: str              # "hub", "local" or "bundled"
    name: str                # repo id or folder path
    revision: str            # Hub commit hash, or a short content hash of the weights

    def describe(self) -> str:
        where = {"hub": "Hugging Face Hub", "local": "local folder", "bundled": "bundled checkpoint"}[self.origin]
        return f"{self.name} ({where}, revision {self.revision})"


def weights_digest(folder: Path) -> str:
    digest = hashlib.sha256((Path(folder) / WEIGHTS_NAME).read_bytes()).hexdigest()
    return f"sha256:{digest[:12]}"


def download_from_hub(repo_id: str, revision: str | None = None) -> CheckpointSource:
    """Fetch the checkpoint files from the Hub (or the HF cache when offline)."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(HUB_TIMEOUT))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(max(HUB_TIMEOUT, 30)))
    paths = [Path(hf_hub_download(repo_id, name, revision=revision, etag_timeout=HUB_TIMEOUT))
             for name in REQUIRED_FILES]
    for name in OPTIONAL_FILES:
        try:
            hf_hub_download(repo_id, name, revision=revision, etag_timeout=HUB_TIMEOUT)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            log.info("%s has no %s", repo_id, name)
    folder = paths[0].parent
    # Cache snapshots live in .../snapshots/<commit hash>/.
    commit = folder.name if folder.parent.name == "snapshots" else (revision or "unknown")
    return CheckpointSource(folder=folder, origin="hub", name=repo_id, revision=commit)


def bundled_source(task: str) -> CheckpointSource:
    folder = get_task(task).bundled_dir
    return CheckpointSource(folder=folder, origin="bundled", name=str(folder.relative_to(folder.parents[1])),
                            revision=weights_digest(folder))


def resolve_checkpoint(task: str, source: str | os.PathLike | None = None,
                       revision: str | None = None) -> CheckpointSource:
    """Local folder if `source` is one; otherwise the Hub repo (default: the task's), else the bundled copy."""
    if source is not None and Path(source).is_dir():
        folder = Path(source)
        return CheckpointSource(folder=folder, origin="local", name=str(folder), revision=weights_digest(folder))
    repo_id = str(source or get_task(task).hub_repo).removeprefix(HUB_PREFIX)
    try:
        found = download_from_hub(repo_id, revision)
        log.info("%s model: using %s", task, found.describe())
        return found
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        fallback = bundled_source(task)
        log.warning("%s model: Hub repo %s unavailable (%s: %s); serving %s", task, repo_id,
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "", fallback.describe())
        return fallback
