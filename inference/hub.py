"""Where a checkpoint comes from: the Hugging Face Hub (or its local cache), else the bundled copy.

`resolve_checkpoint` returns a local folder in Hub layout plus a description of its origin. The Hub
path is the real one (`hf_hub_download`, honouring HF_HUB_OFFLINE, HF_HOME/HF_HUB_CACHE and a
revision). The Hub gets HUB_TIMEOUT seconds to answer; if it does not, a copy in the HF cache
serves, and failing that the copy bundled in this repository under checkpoints/<task>/. The log
and `CheckpointSource.describe()` (shown in the app's footer) say which one serves.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor, TimeoutError as FuturesTimeout

import huggingface_hub.constants
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, \
    RepositoryNotFoundError, RevisionNotFoundError

from inference.model import CONFIG_NAME, HEADS_NAME, ONNX_NAME, WEIGHTS_NAME
from inference.tasks import get_task

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"
# Seconds the Hub gets to answer before the cache or the bundled copy serves instead.
HUB_TIMEOUT = float(os.environ.get("HUB_TIMEOUT", "5"))
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)
OPTIONAL_FILES = (HEADS_NAME, ONNX_NAME)


@dataclass(frozen=True)
class CheckpointSource:
    folder: Path
    origin: str              # "hub", "hf-cache", "local" or "bundled"
    name: str                # repo id or folder path
    revision: str            # Hub commit hash, or a short content hash of the weights

    def describe(self) -> str:
        where = {"hub": "Hugging Face Hub", "hf-cache": "Hugging Face cache, Hub not reached",
                 "local": "local folder", "bundled": "bundled checkpoint"}[self.origin]
        return f"{self.name} ({where}, revision {self.revision})"


def weights_digest(folder: Path) -> str:
    digest = hashlib.sha256((Path(folder) / WEIGHTS_NAME).read_bytes()).hexdigest()
    return f"sha256:{digest[:12]}"


def within(seconds: float, fn, *args, **kwargs):
    """Run `fn` but give up after `seconds` (huggingface_hub retries connection errors for ~30 s)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-probe")
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=seconds)
    except FuturesTimeout:
        raise TimeoutError(f"no answer from the Hub within {seconds:g} s") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit the Hub serves for this revision, or None when it cannot be reached in time."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return None
    try:
        return within(HUB_TIMEOUT, HfApi().model_info, repo_id, revision=revision, timeout=HUB_TIMEOUT).sha
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise
    except Exception as err:  # unreachable, slow, proxy errors: all mean "use the cache or the bundle"
        log.warning("Hugging Face Hub not reached for %s (%s: %s)", repo_id, type(err).__name__,
                    (str(err).splitlines() or [""])[0])
        return None


def download_from_hub(repo_id: str, revision: str | None = None) -> CheckpointSource:
    """Fetch the checkpoint files from the Hub, or from the HF cache when the Hub is out of reach."""
    commit = hub_commit(repo_id, revision)
    offline = commit is None

    def fetch(name: str) -> Path:
        return Path(hf_hub_download(repo_id, name, revision=commit or revision,
                                    local_files_only=offline, etag_timeout=HUB_TIMEOUT))

    paths = [fetch(name) for name in REQUIRED_FILES]
    for name in OPTIONAL_FILES:
        try:
            fetch(name)
        except (EntryNotFoundError, LocalEntryNotFoundError):
            log.info("%s has no %s", repo_id, name)
    folder = paths[0].parent
    # Cache snapshots live in .../snapshots/<commit hash>/.
    snapshot = folder.name if folder.parent.name == "snapshots" else (commit or revision or "unknown")
    return CheckpointSource(folder=folder, origin="hf-cache" if offline else "hub", name=repo_id, revision=snapshot)


def bundled_source(task: str) -> CheckpointSource:
    folder = get_task(task).bundled_dir
    return CheckpointSource(folder=folder, origin="bundled", name=str(folder.relative_to(folder.parents[1])),
                            revision=weights_digest(folder))


def resolve_checkpoint(task: str, source: str | os.PathLike | None = None,
                       revision: str | None = None) -> CheckpointSource:
    """Local folder if `source` is one; else the Hub repo (default: the task's) or its HF cache; else the bundle."""
    if source is not None and Path(source).is_dir():
        folder = Path(source)
        return CheckpointSource(folder=folder, origin="local", name=str(folder), revision=weights_digest(folder))
    repo_id = str(source or get_task(task).hub_repo).removeprefix(HUB_PREFIX)
    try:
        found = download_from_hub(repo_id, revision)
        log.info("%s model: using %s", task, found.describe())
        return found
    except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as err:
        fallback = bundled_source(task)
        log.warning("%s model: %s not available from the Hub or the HF cache (%s); serving %s", task, repo_id,
                    type(err).__name__, fallback.describe())
        return fallback
