"""Launch the Space: options, queue, memory tuning, temporary output files and the REST routes.

`python serve.py` builds the Gradio Blocks of `app.py` and serves them. Queue: every event goes through
Gradio's queue with at most QUEUE_CONCURRENCY (default 2, one per CPU core) running at once per event
and at most QUEUE_MAX_SIZE (default 64) waiting; beyond that new requests are refused at once ("queue
full") instead of waiting for minutes. Uploads above 20 MB are refused by Gradio (max_file_size) and
by the REST routes (`rest_api.py`), which are served by the same server.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import threading
import time


import rest_api
from app import build_demo
from inference import load_model
from inference.explain import import_grad_cam
from inference.files import fetch_examples
from inference.images import MAX_FILE_BYTES
from inference.model import CheckpointError
from inference.tasks import TASKS

QUEUE_CONCURRENCY = int(os.environ.get("QUEUE_CONCURRENCY", 2))
QUEUE_MAX_SIZE = int(os.environ.get("QUEUE_MAX_SIZE", 64))
TRIM_INTERVAL_S = 2.0
DEFAULT_PORT = 7860
DEFAULT_HOST = "0.0.0.0"

PRIVACY_NOTE = ("Privacy: anyone with the share link can use this app and upload photos; those photos "
                "travel through the share relay to this machine and are processed here. Share the link "
                "only with people you trust, and stop the app (Ctrl-C) to close it.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Image understanding Space: collectibles and car condition")
    parser.add_argument("--share", action="store_true",
                        default=os.environ.get("SHARE", "").lower() in ("1", "true", "yes"),
                        help="ask Gradio for a temporary public share link (also SHARE=1)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                        help="interface to listen on (GRADIO_SERVER_NAME, default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                        help="port (GRADIO_SERVER_PORT, default 7860)")
    return parser.parse_args(argv)


def tune_malloc(arenas: int = 2, trim_every_s: float = TRIM_INTERVAL_S) -> None:
    """glibc gives each worker thread its own malloc arena; with concurrent Grad-CAM requests that
    multiplies resident memory. Two arenas keep it flat (measured with benchmarks.load_test).
    glibc also keeps memory a finished request freed; a daemon thread hands it back to the system
    every few seconds (malloc_trim: ~80 MiB after a burst of requests, ~0.2 ms when idle)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, arenas)   # M_ARENA_MAX
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return   # not glibc: nothing to tune

    def trim_forever() -> None:
        while True:
            time.sleep(trim_every_s)
            trim(0)

    threading.Thread(target=trim_forever, name="malloc-trim", daemon=True).start()


def preload_models() -> None:
    """Load both models before serving, so the first request is fast and a bad checkpoint stops here."""
    for task in TASKS:
        try:
            predictor = load_model(task)
        except (CheckpointError, OSError, ValueError, RuntimeError) as err:
            print(f"error: cannot load the {task!r} model: {err}", file=sys.stderr)
            print("Check checkpoints/<task>/ (config.json, model.safetensors) or the Hub repo settings.",
                  file=sys.stderr)
            raise SystemExit(2) from None
        print(f"* {predictor.description}", flush=True)


def launch(argv: list[str] | None = None) -> None:
    tune_malloc()
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    phases, started = {}, time.perf_counter()   # where the start-up time goes (after the imports)

    def phase_done(name: str) -> None:
        nonlocal started
        phases[name], started = round(time.perf_counter() - started, 2), time.perf_counter()

    fetch_examples()   # a fresh Space has only the manifests; a set-up checkout has the photos already
    phase_done("examples")
    preload_models()
    phase_done("models")
    demo = build_demo()
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_MAX_SIZE)
    phase_done("interface")
    if args.share:
        print(PRIVACY_NOTE, flush=True)
    rest_api.set_ready(False)   # health answers "starting" until launch() returns
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_BYTES,
                # REST routes on the same FastAPI app (Gradio passes app_kwargs to its FastAPI App).
                app_kwargs={"routes": list(rest_api.router.routes)}, ssr_mode=False, show_error=False,
                prevent_thread_lock=True)
    phase_done("server")
    rest_api.set_ready(True, startup_s=phases)
    # Examples are answered on click (app.py), and the heat-map library is imported here, after the server
    # is up: neither sits between the start and the first answer.
    threading.Thread(target=import_grad_cam, name="import-grad-cam", daemon=True).start()
    print(f"* Start-up seconds after the imports: {phases}", flush=True)
    print("* Ready. REST: /api/v1/health, /api/v1/car/predict, /api/v1/collectibles/predict", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    launch()
