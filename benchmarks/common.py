"""Shared pieces of the benchmark and the load test: statistics, tables, example images, and the
real app started as a subprocess on a free loopback port (with its resident memory).

Pure helpers (`latency_stats`, `fmt_*`, `check_loopback`) have no
heavy imports, so the tests can exercise them cheaply.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import numpy as np

from inference.files import EXAMPLES_DIR as EXAMPLES, present_examples
from inference.tasks import TASKS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TASK_NAMES = tuple(TASKS)
# The app's client-API endpoints per task: (plain, with Grad-CAM); see app.py.
ENDPOINTS = {"collectibles": ("/classify_collectible", "/classify_collectible_explained"),
             "car": ("/assess_car", "/assess_car_explained")}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


# --------------------------------------------------------------------------------------------
# Statistics and formatting (pure)
# --------------------------------------------------------------------------------------------

def latency_stats(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict[str, Any]:
    """n, mean, p50, p95, p99, min, max of `values` times `scale` (e.g. 1000 for s -> ms)."""
    vals = [float(v) * scale for v in values]
    if not vals:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "min": None, "max": None}
    def r(x: float) -> float:
        return round(x, digits)

    p50, p95, p99 = (float(x) for x in np.percentile(vals, [50, 95, 99]))   # plain floats: JSON
    return {"n": len(vals), "mean": r(sum(vals) / len(vals)), "p50": r(p50), "p95": r(p95), "p99": r(p99),
            "min": r(min(vals)), "max": r(max(vals))}


def fmt_num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}x"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, 3)


def pass_fail(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, if it points at this machine's loopback; else ValueError."""
    host = urlparse(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"{url}: load and benchmark traffic may only target the loopback interface "
                         f"({', '.join(sorted(LOOPBACK_HOSTS))})")
    return url.rstrip("/")


# --------------------------------------------------------------------------------------------
# Example images
# --------------------------------------------------------------------------------------------

def example_images(task: str) -> list[Path]:
    """examples/<task>/*.jpg listed in the task's manifest (else all jpgs), sorted; may be empty."""
    return [path for path, _ in present_examples(task)] or sorted((EXAMPLES / task).glob("*.jpg"))


def require_examples() -> dict[str, list[Path]]:
    found = {task: example_images(task) for task in TASK_NAMES}
    missing = [t for t, paths in found.items() if not paths]
    if missing:
        raise SystemExit(f"no example images for {', '.join(missing)}: run `python -m inference.files` first")
    return found


# --------------------------------------------------------------------------------------------
# Processes: memory, ports, the app
# --------------------------------------------------------------------------------------------

def rss_mb(pid: int, children: bool = True) -> float | None:
    """Resident memory of a process (and its children) in MB; None if it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else [])]
    except psutil.Error:
        return None
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return round(total / 2**20, 1)


def pid_listening_on(port: int) -> int | None:
    """The pid of the local process listening on a TCP port (None if not found or not permitted)."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        pass
    for proc in psutil.process_iter(["pid"]):
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return proc.pid
        except (psutil.Error, OSError):
            continue
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class AppProcess:
    """`python serve.py` on a free 127.0.0.1 port, its start-up timed, stopped by `stop()` / `with`.

    HF_HUB_OFFLINE defaults to 1 (the bundled or cached checkpoints serve; no Hub probe timeout
    counts towards start-up) unless the caller's environment sets it.
    """

    def __init__(self, log_path: Path | None = None, env: dict[str, str] | None = None,
                 startup_timeout: float = 300.0, script: Path = ROOT / "serve.py"):
        self.script = Path(script)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
        self.log_path = Path(log_path) if log_path else self.tmp / "app.log"
        self.env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                    "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False",
                    "GRADIO_TEMP_DIR": str(self.tmp / "gradio"), "PYTHONUNBUFFERED": "1",
                    "FLAG_DIR": str(self.tmp / "flagged"), **(env or {})}
        self.env.pop("SHARE", None)
        self.flag_dir = Path(self.env["FLAG_DIR"])   # "Wrong answer?" flags land here, never in the repository
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.first_answer_s: float | None = None   # first HTTP answer from /api/v1/health (any status)
        self.ready_s: float | None = None           # /api/v1/health 200: models loaded, server up

    def start(self) -> "AppProcess":
        import httpx

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, str(self.script)], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                message = f"serve.py exited with code {self.proc.returncode} during start-up:\n{log_tail(self.log_path)}"
                self.stop()
                raise RuntimeError(message)
            try:
                status = httpx.get(f"{self.url}/api/v1/health", timeout=5).status_code
                if self.first_answer_s is None:
                    self.first_answer_s = time.perf_counter() - self.started_at
                if status == 200:
                    self.ready_s = time.perf_counter() - self.started_at
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                message = f"serve.py not ready within {self.startup_timeout:.0f} s:\n{log_tail(self.log_path)}"
                self.stop()
                raise RuntimeError(message)
            time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid) if self.pid else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        shutil.rmtree(self.tmp, ignore_errors=True)   # Gradio's temporary files (and the default log)

    def __enter__(self) -> "AppProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
