"""Shared fixtures: the real app started on a free local port, and the example images.

`app_process` starts `python serve.py` once per test session through `benchmarks.common.AppProcess` (the
same start-up the benchmarks use: 127.0.0.1, a free port, HF_HUB_OFFLINE=1 so the bundled checkpoints
serve) and waits until GET /api/v1/health answers 200 (503 "starting" until launch has finished).
The app's output goes to tests/artifacts/app.log, whose tail is shown if it fails to start.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import AppProcess
from inference.files import example_manifest, present_examples
from support import ROOT, require

ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session")
def app_process() -> AppProcess:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = AppProcess(log_path=ARTIFACTS / "app.log", startup_timeout=180)
    try:
        app.start()
    except RuntimeError as err:
        pytest.fail(str(err))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="session")
def app_url(app_process: AppProcess) -> str:
    return app_process.url


@pytest.fixture(scope="session")
def example_images() -> dict[str, list[tuple[Path, dict[str, str]]]]:
    """task -> [(image path, manifest row)] for every example image of the manifests.

    The images are not in git: `python -m inference.files` (run by scripts/setup.sh) puts them in
    place. A missing one skips the test locally and fails it in CI.
    """
    found = {task: present_examples(task) for task in ("collectibles", "car")}
    for task, present in found.items():
        require(len(present) == len(example_manifest(task)) > 0,
                f"example images of {task} (run `python -m inference.files`)")
    return found
