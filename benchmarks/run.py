"""Speed benchmark, measured in one run on this machine: model-only latency and throughput (torch
eager, onnxruntime, timm efficientnet_b4 as the earlier system's backbone), end-to-end latency
through the running app (gradio_client with and without Grad-CAM, REST), cold start and resident
memory. (A training run's own time, caching included, is measured by the run and stored in its
metrics.json and model card.)

    python -m benchmarks.run [--quick] [--out benchmarks/results/latest.json]

Prints markdown tables (docs/benchmarks.md keeps them) and writes everything to JSON, with the
targets marked PASS/FAIL. A figure-producing command, not a test: run it on an otherwise idle
machine. `--quick` uses fewer repetitions (rough figures, ~1.5 minutes).

Model-only timings use the predictor's own torch model and onnxruntime session on preprocessed
real example photos. When the checkpoint has no model.onnx, one is exported to a temporary
folder for this run (the app then serves torch, which the table says). efficientnet_b4 has
random weights (timing only).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from inference.images import load_image
from inference.tasks import get_task

from benchmarks.common import ENDPOINTS, RESULTS, ROOT, TASK_NAMES, AppProcess, fmt_num, fmt_ratio, \
    latency_stats, pass_fail, ratio, require_examples, write_json
from inference.render import markdown_table

DEFAULT_OUT = RESULTS / "latest.json"
B4_NAME = "efficientnet_b4"

TARGET_ONNX_SPEEDUP = 2.0
TARGET_VS_B4 = 4.0
TARGET_E2E_MS = 60.0
TARGET_E2E_CAM_MS = 250.0
TARGET_COLD_START_S = 10.0
TARGET_RSS_BYTES = 1.2e9
TARGET_PHONE_PHOTO_RATIO = 4.0   # predict() on a 12 MP JPEG vs on a 256 px one
PHONE_PHOTO_SIZE = (4000, 3000)
RSS_SETTLE_S = 3.0
INTERLEAVE_BLOCK = 10
MIB = 2**20
BUSY_LOAD = 0.7   # 1-minute load average above which the machine is not idle enough to measure


class Settings:
    """Repetition counts for a full or a quick run."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.warmup_b1 = 3 if quick else 5
        self.reps_b1 = 15 if quick else 50
        self.reps_b32 = 2 if quick else 5
        self.b4_reps_b1 = 8 if quick else 30
        self.b4_reps_b32 = 1 if quick else 3
        self.e2e_warmup = 2 if quick else 3
        self.e2e_calls = 8 if quick else 30
        self.cold_runs = 1 if quick else 2


# --------------------------------------------------------------------------------------------
# Timing helpers
# --------------------------------------------------------------------------------------------

def time_calls(fn: Callable[[], Any], reps: int, warmup: int = 0) -> list[float]:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def model_timings(forward: Callable[[Any], Any], x1, x32, s: Settings, reps_b1: int, reps_b32: int) -> dict[str, Any]:
    """Batch-1 latency (ms per image) and batch-32 throughput (images/s) of one forward function."""
    b1 = latency_stats(time_calls(lambda: forward(x1), reps_b1, s.warmup_b1), 1000)
    b32_times = time_calls(lambda: forward(x32), reps_b32, 1)
    b32 = latency_stats(b32_times, 1000)
    n = int(x32.shape[0])
    return {"batch1_ms": b1,
            "batch32": {"batch_ms": b32, "ms_per_image": round(b32["p50"] / n, 2),
                        "images_per_s": round(n / (b32["p50"] / 1000), 1)}}


# --------------------------------------------------------------------------------------------
# Model-only: our predictors and efficientnet_b4
# --------------------------------------------------------------------------------------------

def onnx_predictor(task: str, torch_source, workdir: Path):
    """An onnxruntime Predictor for the same checkpoint: its own model.onnx, else one exported into
    `workdir` once per run (later sections reuse it)."""
    from inference.hub import CheckpointSource
    from inference.model import CONFIG_NAME, HEADS_NAME, ONNX_NAME, WEIGHTS_NAME
    from inference.predictor import Predictor

    if (torch_source.folder / ONNX_NAME).is_file():
        return Predictor(torch_source, "onnx"), f"{torch_source.folder / ONNX_NAME} (shipped with the checkpoint)"
    from training.export_onnx import export_onnx

    folder = workdir / task
    source = CheckpointSource(folder=folder, origin="local", name=str(folder), revision=torch_source.revision)
    if (folder / ONNX_NAME).is_file():
        return Predictor(source, "onnx"), f"exported earlier in this run from {torch_source.name}"
    folder.mkdir(parents=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME, HEADS_NAME):
        if (torch_source.folder / name).is_file():
            shutil.copy2(torch_source.folder / name, folder / name)
    t0 = time.perf_counter()
    export_onnx(folder)
    took = time.perf_counter() - t0
    return Predictor(source, "onnx"), f"exported for this run from {torch_source.name} ({took:.1f} s)"


def batch_of(predictor, paths: list[Path], n: int):
    import torch

    photos = [load_image(p) for p in paths]
    one = predictor.preprocess(photos[:1])
    images = predictor.preprocess(photos)
    reps = -(-n // len(paths))
    return one, torch.cat([images] * reps)[:n].contiguous()


def bench_models(examples: dict[str, list[Path]], s: Settings, workdir: Path) -> dict[str, Any]:
    import numpy as np
    import torch
    from inference.hub import resolve_checkpoint
    from inference.predictor import NUM_THREADS, Predictor, softmax

    torch.set_num_threads(NUM_THREADS)
    out: dict[str, Any] = {}
    for task in TASK_NAMES:
        print(f"[model] {task}: loading torch and onnxruntime predictors", flush=True)
        source = resolve_checkpoint(task)
        torch_pred = Predictor(source, "torch")
        onnx_pred, onnx_origin = onnx_predictor(task, source, workdir)
        x1, x32 = batch_of(torch_pred, examples[task], 32)
        # Same outputs from both backends on real photos (a sanity check of what is timed).
        _, lt = torch_pred.forward(x32)
        _, lo = onnx_pred.forward(x32)
        diff = max(float(np.abs(softmax(lt[h]) - softmax(lo[h])).max()) for h in lt)
        print(f"[model] {task}: torch eager", flush=True)
        t = model_timings(torch_pred.forward, x1, x32, s, s.reps_b1, s.reps_b32)
        print(f"[model] {task}: onnxruntime", flush=True)
        o = model_timings(onnx_pred.forward, x1, x32, s, s.reps_b1, s.reps_b32)
        out[task] = {"checkpoint": source.describe(), "architecture": torch_pred.config.architecture,
                     "input_size": list(torch_pred.config.data_config["input_size"]),
                     "onnx_model": onnx_origin, "onnx_vs_torch_max_prob_diff": round(diff, 6),
                     "torch": t, "onnx": o}
        del torch_pred, onnx_pred
    return out


def bench_b4(s: Settings, workdir: Path, with_onnx: bool) -> dict[str, Any]:
    import numpy as np
    import timm
    import torch
    from inference.predictor import NUM_THREADS

    print(f"[model] {B4_NAME} (random weights, 224 px): torch eager", flush=True)
    torch.manual_seed(0)
    model = timm.create_model(B4_NAME, pretrained=False, num_classes=3).eval()
    x1, x32 = torch.randn(1, 3, 224, 224), torch.randn(32, 3, 224, 224)

    def eager(x):
        with torch.inference_mode():
            return model(x)

    result: dict[str, Any] = {"model": f"timm {B4_NAME}, pretrained=False, num_classes=3, 224x224",
                              "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                              "torch": model_timings(eager, x1, x32, s, s.b4_reps_b1, s.b4_reps_b32)}
    if with_onnx:
        import onnxruntime as ort

        print(f"[model] {B4_NAME}: ONNX export and onnxruntime", flush=True)
        path = workdir / f"{B4_NAME}.onnx"
        t0 = time.perf_counter()
        torch.onnx.export(model, (x1,), str(path), input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamo=False, dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        export_s = time.perf_counter() - t0
        options = ort.SessionOptions()
        options.intra_op_num_threads = NUM_THREADS
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        def run(x):
            return session.run(None, {"image": x.numpy()})

        result["onnx"] = model_timings(run, x1, x32, s, s.b4_reps_b1, s.b4_reps_b32)
        result["onnx_export_s"] = round(export_s, 1)
        result["onnx_vs_torch_max_logit_diff"] = round(float(np.abs(run(x1)[0] - eager(x1).numpy()).max()), 5)
    return result


def bench_interleaved(examples: dict[str, list[Path]], s: Settings, workdir: Path) -> dict[str, Any]:
    """Batch-1 latency of our torch eager, our onnxruntime and efficientnet_b4 eager, timed in turns
    of `INTERLEAVE_BLOCK` calls (the first of each turn untimed). On this shared VM the speed drifts
    by tens of percent within minutes; measured model by model, one slow minute decides a ratio.
    Taken in turns, every model sees the same stretches of time, so the targets use these."""
    import timm
    import torch
    from inference.hub import resolve_checkpoint
    from inference.predictor import NUM_THREADS, Predictor

    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(0)
    b4 = timm.create_model(B4_NAME, pretrained=False, num_classes=3).eval()
    forwards: dict[str, Callable[[], Any]] = {}
    for task in TASK_NAMES:
        source = resolve_checkpoint(task)
        torch_pred = Predictor(source, "torch")
        onnx_pred = onnx_predictor(task, source, workdir)[0]
        x1 = torch_pred.preprocess([load_image(examples[task][0])])
        forwards[f"{task}/torch"] = lambda p=torch_pred, x=x1: p.forward(x)
        forwards[f"{task}/onnx"] = lambda p=onnx_pred, x=x1: p.forward(x)
    x_b4 = torch.randn(1, 3, 224, 224)

    def b4_eager():
        with torch.inference_mode():
            return b4(x_b4)

    forwards[f"{B4_NAME}/torch"] = b4_eager
    times: dict[str, list[float]] = {name: [] for name in forwards}
    turns = max(1, 2 * s.reps_b1 // INTERLEAVE_BLOCK)
    print(f"[interleaved] {len(forwards)} models x {turns} turns of {INTERLEAVE_BLOCK} calls", flush=True)
    for _ in range(turns):
        for name, fn in forwards.items():
            times[name] += time_calls(fn, INTERLEAVE_BLOCK, warmup=1)
    return {name: latency_stats(t, 1000) for name, t in times.items()}


# --------------------------------------------------------------------------------------------
# End to end: the running app
# --------------------------------------------------------------------------------------------

def bench_app(examples: dict[str, list[Path]], s: Settings) -> dict[str, Any]:
    import httpx
    from gradio_client import Client, handle_file

    print("[app] starting app.py", flush=True)
    app = AppProcess()
    downloads = Path(tempfile.mkdtemp(prefix="bench-downloads-"))
    try:
        app.start()
        # The first answer a person gets: a car photo with its heat maps, through the UI's own API
        # (connecting the client included, as a browser loads the page's config first).
        first = examples["car"][0]
        t0 = time.perf_counter()
        Client(app.url, verbose=False, analytics_enabled=False, download_files=str(downloads),
               ssl_verify=False).predict(handle_file(str(first)), api_name=ENDPOINTS["car"][1])
        first_photo_s = app.ready_s + time.perf_counter() - t0
        time.sleep(1.0)
        result: dict[str, Any] = {"url": app.url, "first_http_answer_s": round(app.first_answer_s, 2),
                                  "ready_s": round(app.ready_s, 2),
                                  "start_to_first_photo_answer_s": round(first_photo_s, 2),
                                  "rss_mb_ready": app.rss_mb()}
        health = httpx.get(f"{app.url}/api/v1/health", timeout=30).json()
        result["serving"] = health.get("models", {})
        # Where the start-up went: the app times its phases after the imports; the rest is the interpreter
        # and the imports (and up to 0.2 s of health polling).
        result["startup_s"] = {"interpreter_and_imports": round(app.ready_s - sum(health["startup_s"].values()), 2),
                               **health["startup_s"]}
        # The app is served over plain http here, so certificate checks have nothing to check:
        # `ssl_verify=False` spares the client building a certificate store for each of the 3-5
        # HTTP connections it opens per call. The client's defaults are measured too.
        clients = {"": Client(app.url, verbose=False, analytics_enabled=False, download_files=str(downloads),
                              ssl_verify=False),
                   "_default_client": Client(app.url, verbose=False, analytics_enabled=False,
                                             download_files=str(downloads))}
        http = httpx.Client(timeout=120)
        per_task: dict[str, Any] = {}
        for task in TASK_NAMES:
            paths = examples[task]
            plain, explained = ENDPOINTS[task]

            def gradio_call(api_name: str, i: int, variant: str = "") -> None:
                clients[variant].predict(handle_file(str(paths[i % len(paths)])), api_name=api_name)

            def rest_call(i: int) -> None:
                path = paths[i % len(paths)]
                r = http.post(f"{app.url}/api/v1/{task}/predict",
                              files={"image": (path.name, path.read_bytes(), "image/jpeg")})
                r.raise_for_status()

            timings = {}
            calls = {"rest": rest_call}
            for variant in clients:
                calls[f"gradio{variant}"] = lambda i, v=variant: gradio_call(plain, i, v)
                calls[f"gradio_gradcam{variant}"] = lambda i, v=variant: gradio_call(explained, i, v)
            for label, call in calls.items():
                print(f"[app] {task}: {label} x {s.e2e_calls}", flush=True)
                for i in range(s.e2e_warmup):
                    call(i)
                times = []
                for i in range(s.e2e_calls):
                    t0 = time.perf_counter()
                    call(i)
                    times.append(time.perf_counter() - t0)
                timings[label] = latency_stats(times, 1000)
            timings["endpoints"] = {"gradio": plain, "gradio_gradcam": explained, "rest": f"/api/v1/{task}/predict"}
            per_task[task] = timings
        http.close()
        result["rss_mb_after_calls"] = app.rss_mb()
        time.sleep(RSS_SETTLE_S)   # the app hands freed heap memory back every 2 s (app.tune_malloc)
        result["rss_mb_settled"] = app.rss_mb()
        result["e2e"] = per_task
        return result
    finally:
        app.stop()
        shutil.rmtree(downloads, ignore_errors=True)


def bench_photo_sizes(examples: dict[str, list[Path]], s: Settings, workdir: Path) -> dict[str, Any]:
    """`predict(task, path)` end to end in this process (read, decode, preprocess, model) on the same example
    saved as a 256 px JPEG and as a 12 MP phone-sized JPEG (quality 92), timed in turns."""
    from PIL import Image
    from inference.predictor import predict

    with Image.open(examples["car"][0]) as im:
        photo = im.convert("RGB")
    small, large = workdir / "photo_256.jpg", workdir / "photo_12mp.jpg"
    photo.resize((256, 192)).save(small, quality=92)
    photo.resize(PHONE_PHOTO_SIZE, Image.BICUBIC).save(large, quality=92)
    times: dict[str, list[float]] = {"256 px": [], "12 MP": []}
    for _ in range(s.warmup_b1):
        predict("car", small), predict("car", large)
    for _ in range(max(10, s.reps_b1 // 4)):
        for name, path in (("256 px", small), ("12 MP", large)):
            t0 = time.perf_counter()
            predict("car", path)
            times[name].append(time.perf_counter() - t0)
    stats = {name: latency_stats(t, 1000) for name, t in times.items()}
    return {"what": "predict('car', path), read + decode + preprocess + model, timed in turns", "ms": stats,
            "bytes": {"256 px": small.stat().st_size, "12 MP": large.stat().st_size},
            "ratio": ratio(stats["12 MP"]["p50"], stats["256 px"]["p50"])}


COLD_START_CODE = r"""
import json, sys, time
t_import = time.perf_counter()
from inference.predictor import load_model
imported = time.perf_counter() - t_import
steps = {"import_s": round(imported, 2)}
for task, image in zip(sys.argv[1::2], sys.argv[2::2]):
    t0 = time.perf_counter()
    predictor = load_model(task)
    steps[f"load_{task}_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    label = next(iter(predictor.predict(image).heads.values())).label
    steps[f"first_predict_{task}_s"] = round(time.perf_counter() - t0, 3)
    steps[f"backend_{task}"] = predictor.backend
print("RESULT " + json.dumps(steps), flush=True)
"""


def bench_cold_start(examples: dict[str, list[Path]], s: Settings) -> dict[str, Any]:
    """Fresh interpreter: import inference, load both models, predict one photo each (timed from the parent)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [str(x) for task in TASK_NAMES for x in (task, examples[task][0])]
    runs = []
    for i in range(s.cold_runs):
        print(f"[cold start] run {i + 1}/{s.cold_runs}", flush=True)
        with tempfile.TemporaryFile("w+") as errors:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", COLD_START_CODE, *args], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=errors, text=True)
            result = None
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    elapsed = time.perf_counter() - t0
                    result = {"spawn_to_result_s": round(elapsed, 2), **json.loads(line[7:])}
                    break
            proc.stdout.close()
            proc.wait(timeout=60)
            errors.seek(0)
            if result is None:
                raise RuntimeError(f"cold-start child failed (exit {proc.returncode}):\n{errors.read()[-2000:]}")
        runs.append(result)
    worst = max(r["spawn_to_result_s"] for r in runs)
    return {"what": "fresh `python -c`: import inference, load both models, one prediction each; "
                    "spawn to result line, timed by the parent",
            "runs": runs, "spawn_to_result_s": worst}


# --------------------------------------------------------------------------------------------
# Machine, targets, tables
# --------------------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    import psutil
    import torch
    from inference.predictor import NUM_THREADS

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "timm", "onnxruntime", "onnx", "gradio", "gradio_client", "numpy", "Pillow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu_count": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False), "cpu_model": cpu_model,
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "torch_threads": torch.get_num_threads(),
            "inference_threads": NUM_THREADS, "python": platform.python_version(), "platform": platform.platform(),
            "versions": versions, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []

    def add(name: str, value: float | None, threshold: float, higher_is_better: bool, unit: str) -> None:
        ok = None if value is None else bool(value >= threshold if higher_is_better else value <= threshold)
        targets.append({"target": name, "value": value, "threshold": threshold,
                        "rule": ">=" if higher_is_better else "<=", "unit": unit, "pass": ok})

    # Ratios from the timings taken in turns when present (see bench_interleaved).
    inter = r.get("interleaved")
    b4 = (inter[f"{B4_NAME}/torch"] if inter else r["reference"][B4_NAME]["torch"]["batch1_ms"])["p50"]
    for task in TASK_NAMES:
        m = r["models"][task]
        t, o = ((inter[f"{task}/torch"]["p50"], inter[f"{task}/onnx"]["p50"]) if inter
                else (m["torch"]["batch1_ms"]["p50"], m["onnx"]["batch1_ms"]["p50"]))
        add(f"{task}: onnxruntime vs our torch eager, batch 1", ratio(t, o), TARGET_ONNX_SPEEDUP, True, "x")
        add(f"{task}: ours (onnxruntime) vs {B4_NAME} eager, batch 1", ratio(b4, o), TARGET_VS_B4, True, "x")
    if "app" in r:
        for task in TASK_NAMES:
            e = r["app"]["e2e"][task]
            add(f"{task}: end-to-end p50, gradio_client (ssl_verify=False), no Grad-CAM", e["gradio"]["p50"], TARGET_E2E_MS, False, "ms")
            add(f"{task}: end-to-end p50, gradio_client (ssl_verify=False), with Grad-CAM", e["gradio_gradcam"]["p50"],
                TARGET_E2E_CAM_MS, False, "ms")
        rss = max(x for x in (r["app"]["rss_mb_ready"], r["app"].get("rss_mb_settled")) if x is not None)
        add("app start to its first photo answer (car, heat maps)", r["app"]["start_to_first_photo_answer_s"],
            TARGET_COLD_START_S, False, "s")
        add(f"app RSS with both models loaded (max of ready / {RSS_SETTLE_S:.0f} s after the calls)", rss,
            round(TARGET_RSS_BYTES / MIB, 1), False, "MiB")
    if "photo_sizes" in r:
        add("predict() on a 12 MP phone JPEG vs a 256 px one, p50", r["photo_sizes"]["ratio"],
            TARGET_PHONE_PHOTO_RATIO, False, "x")
    if "cold_start" in r:
        add("cold start: process start to first prediction", r["cold_start"]["spawn_to_result_s"],
            TARGET_COLD_START_S, False, "s")
    return targets


def p50_p95(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "–"
    return f"{fmt_num(stats['p50'])} / {fmt_num(stats['p95'])}"


def render_tables(r: dict[str, Any]) -> str:
    m, b4 = r["models"], r["reference"][B4_NAME]
    tasks = list(TASK_NAMES)
    titles = {t: get_task(t).title for t in tasks}
    rows = []
    rows.append(["Model, batch 1, torch eager: p50 / p95 ms", *[p50_p95(m[t]["torch"]["batch1_ms"]) for t in tasks]])
    rows.append(["Model, batch 1, onnxruntime: p50 / p95 ms", *[p50_p95(m[t]["onnx"]["batch1_ms"]) for t in tasks]])
    rows.append([f"{B4_NAME} (224 px), batch 1, torch eager: p50 / p95 ms", *[p50_p95(b4["torch"]["batch1_ms"])] * 2])
    if "onnx" in b4:
        rows.append([f"{B4_NAME} (224 px), batch 1, onnxruntime: p50 / p95 ms", *[p50_p95(b4["onnx"]["batch1_ms"])] * 2])
    rows.append(["Throughput, batch 32, torch eager: images/s",
                 *[fmt_num(m[t]["torch"]["batch32"]["images_per_s"]) for t in tasks]])
    rows.append(["Throughput, batch 32, onnxruntime: images/s",
                 *[fmt_num(m[t]["onnx"]["batch32"]["images_per_s"]) for t in tasks]])
    rows.append([f"Throughput, batch 32, {B4_NAME} torch eager: images/s",
                 *[fmt_num(b4["torch"]["batch32"]["images_per_s"])] * 2])
    if "onnx" in b4:
        rows.append([f"Throughput, batch 32, {B4_NAME} onnxruntime: images/s",
                     *[fmt_num(b4["onnx"]["batch32"]["images_per_s"])] * 2])
    b4_p50 = b4["torch"]["batch1_ms"]["p50"]
    if "interleaved" in r:
        i = r["interleaved"]
        rows.append([f"Batch 1 timed in turn (torch / onnxruntime / {B4_NAME} eager): p50 ms",
                     *[f"{fmt_num(i[f'{t}/torch']['p50'])} / {fmt_num(i[f'{t}/onnx']['p50'])} / "
                       f"{fmt_num(i[f'{B4_NAME}/torch']['p50'])}" for t in tasks]])
        rows.append([f"Speed-up, timed in turn: onnxruntime vs our torch / onnxruntime vs {B4_NAME} eager",
                     *[f"{fmt_ratio(ratio(i[f'{t}/torch']['p50'], i[f'{t}/onnx']['p50']))} / "
                       f"{fmt_ratio(ratio(i[f'{B4_NAME}/torch']['p50'], i[f'{t}/onnx']['p50']))}" for t in tasks]])
    rows.append(["Speed-up onnxruntime vs our torch eager, batch 1",
                 *[fmt_ratio(ratio(m[t]["torch"]["batch1_ms"]["p50"], m[t]["onnx"]["batch1_ms"]["p50"])) for t in tasks]])
    rows.append([f"Speed-up vs {B4_NAME} eager, batch 1: ours torch / ours onnxruntime",
                 *[f"{fmt_ratio(ratio(b4_p50, m[t]['torch']['batch1_ms']['p50']))} / "
                   f"{fmt_ratio(ratio(b4_p50, m[t]['onnx']['batch1_ms']['p50']))}" for t in tasks]])
    if "app" in r:
        e = r["app"]["e2e"]
        for variant, how in (("", "ssl_verify=False (plain http)"), ("_default_client", "default settings")):
            if f"gradio{variant}" in e[tasks[0]]:
                rows.append([f"End to end, gradio_client {how}, no Grad-CAM: p50 / p95 ms",
                             *[p50_p95(e[t][f"gradio{variant}"]) for t in tasks]])
                rows.append([f"End to end, gradio_client {how}, with Grad-CAM: p50 / p95 ms",
                             *[p50_p95(e[t][f"gradio_gradcam{variant}"]) for t in tasks]])
        rows.append(["End to end, REST: p50 / p95 ms", *[p50_p95(e[t]["rest"]) for t in tasks]])
    per_task = markdown_table(["Measure", *[titles[t] for t in tasks]], rows)

    rows = []
    if "cold_start" in r:
        c = r["cold_start"]
        rows.append(["Cold start: new process to first prediction (import, load both models, predict)",
                     f"{fmt_num(c['spawn_to_result_s'], 2)} s"])
    if "photo_sizes" in r:
        ps = r["photo_sizes"]
        rows.append(["predict('car', path): 256 px JPEG / 12 MP JPEG, p50 (ratio)",
                     f"{fmt_num(ps['ms']['256 px']['p50'])} / {fmt_num(ps['ms']['12 MP']['p50'])} ms "
                     f"({fmt_ratio(ps['ratio'])})"])
    if "app" in r:
        a = r["app"]
        rows.append(["App start to ready (`/api/v1/health` 200) / to its first photo answer (car, heat maps)",
                     f"{fmt_num(a['ready_s'], 1)} / {fmt_num(a['start_to_first_photo_answer_s'], 1)} s"])
        rows.append(["App start-up by phase: " + ", ".join(a["startup_s"]).replace("_", " "),
                     " / ".join(f"{fmt_num(v, 1)}" for v in a["startup_s"].values()) + " s"])
        rows.append([f"App resident memory (RSS, incl. children): both models loaded / right after the calls / "
                     f"{RSS_SETTLE_S:.0f} s later", f"{fmt_num(a['rss_mb_ready'], 0)} / {fmt_num(a['rss_mb_after_calls'], 0)}"
                     f" / {fmt_num(a.get('rss_mb_settled'), 0)} MiB"])
    overall = markdown_table(["Measure", "Value"], rows)

    targets = markdown_table(["Target", "Measured", "Result"],
                             [[f"{t['target']} {t['rule']} {fmt_num(t['threshold'], 1)} {t['unit']}",
                               f"{fmt_num(t['value'], 2)} {t['unit']}", pass_fail(t["pass"])] for t in r["targets"]],
                             align=["l", "r", "l"])
    mi = r["machine"]
    header = (f"Measured {r['generated'][:10]} on {mi['cpu_count']} CPU cores ({mi['cpu_model'] or 'unknown CPU'}), "
              f"{mi['inference_threads']} inference threads, torch {mi['versions']['torch']}, onnxruntime "
              f"{mi['versions']['onnxruntime']}; load average at start {mi['load_average_at_start'][0]}"
              f"{' (NOT IDLE: figures distorted by other work)' if mi['load_average_at_start'][0] > BUSY_LOAD else ''}"
              f"{'; quick run, few repetitions' if r['quick'] else ''}. Model-only figures use preprocessed real "
              f"photos; {B4_NAME} has random weights. The app served: "
              + "; ".join(f"{t}: {d}" for t, d in r.get("app", {}).get("serving", {}).items()) + ".")
    return "\n\n".join([header, per_task, overall, targets])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few repetitions (rough figures, ~1.5 min)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--skip-app", action="store_true", help="no end-to-end / app memory measurements")
    p.add_argument("--b4-onnx", choices=("auto", "yes", "no"), default="auto",
                   help=f"also time {B4_NAME} in onnxruntime (auto: full runs only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before huggingface_hub / tqdm are first imported (all heavy imports are inside functions):
    # no Hub probe (the bundled or cached checkpoints serve, as in the tests; no internet here).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    s = Settings(args.quick)
    examples = require_examples()
    started = time.perf_counter()
    results: dict[str, Any] = {"generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               "quick": args.quick, "command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:]),
                               "machine": machine_info(),
                               "environment": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE")},
                               "settings": vars(s)}
    load = results["machine"]["load_average_at_start"][0]
    if load > BUSY_LOAD:
        print(f"warning: load average {load:.2f} at start: another job is using the CPU, the figures will not "
              "be representative", file=sys.stderr, flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    sections: dict[str, float] = {}
    results["section_seconds"] = sections

    def section(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        results[name] = fn()
        sections[name] = round(time.perf_counter() - t0, 1)

    try:
        # Cold start first: the page cache is what any later start would see too.
        section("cold_start", lambda: bench_cold_start(examples, s))
        section("models", lambda: bench_models(examples, s, workdir))
        with_b4_onnx = args.b4_onnx == "yes" or (args.b4_onnx == "auto" and not args.quick)
        section("reference", lambda: {B4_NAME: bench_b4(s, workdir, with_b4_onnx)})
        section("interleaved", lambda: bench_interleaved(examples, s, workdir))
        section("photo_sizes", lambda: bench_photo_sizes(examples, s, workdir))
        if not args.skip_app:
            section("app", lambda: bench_app(examples, s))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = evaluate_targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["markdown"] = render_tables(results)
    print()
    print(results["markdown"])
    print()
    write_json(args.out, results)
    print(f"Wrote {args.out} in {results['seconds']:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
