"""Shared fixtures: the real app started on a free local port, and the example images.

`app_url` starts `python app.py` once per test session (GRADIO_SERVER_NAME=127.0.0.1 and a free
GRADIO_SERVER_PORT), waits until GET /api/v1/health answers 200 (the app answers 503 "starting"
until its examples are cached), and stops it at the end. The app's output goes to
tests/artifacts/app.log, whose tail is shown if it fails to start.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.common import free_port, log_tail
from inference.tasks import present_examples

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
STARTUP_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def app_url(tmp_path_factory) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        # The checkpoints bundled in the repository serve; the Hub fallback has its own tests.
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio_tmp")),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SHARE", None)
    log_path = ARTIFACTS / "app.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with code {proc.returncode} during start-up:\n{log_tail(log_path)}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer /api/v1/health within {STARTUP_TIMEOUT_S} s:\n{log_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def example_images() -> dict[str, list[tuple[Path, dict[str, str]]]]:
    """task -> [(image path, manifest row)] for the example images present; skips when there are none.

    The images are not in git: `python scripts/fetch_examples.py` (run by scripts/setup.sh) puts them in place.
    """
    found = {task: present_examples(task) for task in ("collectibles", "car")}
    if not all(found.values()):
        pytest.skip("example images absent: run `python scripts/fetch_examples.py` first")
    return found
