"""Bounded concurrent load test of the running app, loopback only; stops by itself.

    python -m benchmarks.load_test [--url http://127.0.0.1:7860 | (starts app.py itself)]
                                   [--clients 8] [--requests 400] [--max-seconds 300]

1. Baseline: every valid input (example photos of both tasks and odd-but-valid variants from
   tests/bad_inputs.py) is sent ALONE, one request at a time, through gradio_client and REST; the
   answers are recorded (and must agree across the two doors).
2. Load: `--clients` threads, each with its own gradio_client Client and httpx client, send
   `--requests` requests drawn (seeded) from a mix of both tasks, the Grad-CAM endpoints, REST and
   bad inputs. Every valid request must get the answer it got alone (same labels and in-domain
   flag, probabilities within 1e-4); every bad input must be refused cleanly (REST: the expected
   4xx JSON error; gradio_client: an AppError with the expected message) and counts as an expected
   rejection; anything else (5xx, timeouts, queue full, a bad input accepted) is a failure.
   A short concurrent warm-up (`--warmup-rounds`) comes first; it is checked the same way but
   left out of the latency and memory figures, so they describe steady state.
3. The app's resident memory (process and children) is sampled for a few idle seconds before the
   load, during it, and for a few idle seconds after it: the lowest idle RSS after the load may
   exceed the lowest idle RSS before it by at most `--max-growth-mb`. Working memory of requests
   in flight (a sawtooth while Grad-CAM requests come and go) is not a leak; memory still held
   after the work is done is.

Prints requests/s, p50/p95/p99 latency, errors, rejections and RSS; writes JSON; exits 1 if any
check fails. New requests stop at `--max-seconds` (whole run), in-flight ones get a short grace.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from benchmarks.common import ENDPOINTS, RESULTS, ROOT, TASK_NAMES, AppProcess, check_loopback, fmt_num, \
    latency_stats, pid_listening_on, require_examples, rss_mb, write_json
from inference.render import markdown_table

from benchmarks import bad_inputs as bad_catalogue
from inference.tasks import get_task

DEFAULT_OUT = RESULTS / "load_test.json"
PROB_TOLERANCE = 1e-4
# Share of each request kind in the load mix.
# (kind, channel, Grad-CAM) -> share of the requests; "rest-ocr" also reads the text (collectibles only).
MIX = {("valid", "gradio", False): 0.30, ("valid", "gradio", True): 0.10, ("valid", "rest", False): 0.35,
       ("valid", "rest-ocr", False): 0.05, ("bad", "gradio", False): 0.08, ("bad", "rest", False): 0.12}
OCR_TASK = "collectibles"
REQUEST_TIMEOUT_S = 120.0
GRACE_S = 30.0
SAMPLE_EVERY_S = 0.25
IDLE_S = 3.0            # how long RSS is sampled while the app is idle, before and after the load


# --------------------------------------------------------------------------------------------
# Inputs and answers
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    name: str          # e.g. "car/clean_intact.jpg", "car/odd/webp", "bad/truncated_jpeg"
    task: str | None   # None for bad inputs (sent to either task)
    data: bytes
    filename: str      # the upload's file name (REST multipart); gradio uploads `path`
    path: Path         # the same bytes on disk under a plain name, for gradio_client


def build_uploads(workdir: Path, odd_per_task: int | None, examples_per_task: int | None) -> tuple[list[Upload], list[Upload]]:
    """(valid uploads of both tasks, bad uploads), written under `workdir` for gradio_client."""
    from PIL import Image

    valid: list[Upload] = []
    examples = require_examples()
    for task in TASK_NAMES:
        paths = examples[task][:examples_per_task] if examples_per_task else examples[task]
        for p in paths:
            valid.append(_upload(workdir, f"{task}/{p.name}", task, p.read_bytes(), p.name))
        with Image.open(examples[task][0]) as im:
            base = im.convert("RGB")
        base.thumbnail((160, 160))
        odd = sorted(bad_catalogue.odd_inputs(base).items())
        for name, (data, filename) in odd[:odd_per_task] if odd_per_task is not None else odd:
            valid.append(_upload(workdir, f"{task}/odd/{name}", task, data, filename))
    bad = [_upload(workdir, f"bad/{name}", None, data, filename)
           for name, (data, filename) in sorted(bad_catalogue.bad_inputs().items())]
    return valid, bad


def _upload(workdir: Path, name: str, task: str | None, data: bytes, filename: str) -> Upload:
    safe = name.replace("/", "__")
    path = workdir / f"{safe}{Path(filename).suffix.lower()[:8]}"
    path.write_bytes(data)
    return Upload(name, task, data, filename, path)


def normalize(task: str, payload: dict[str, Any], channel: str) -> dict[str, Any]:
    """{head: {"label", "probabilities"}, "in_domain"} from a gradio_client or REST payload (a photo
    that was not judged: from its best guess; a photo to retake: its quality problems)."""
    heads = get_task(task).head_names
    if payload.get("status") == "retake":
        return {"in_domain": None, "problems": payload["quality"]["problems"]}
    if not payload["in_domain"]:
        best = payload["best_guess"]
        answers = {heads[0]: best} if len(heads) == 1 else best
    elif len(heads) == 1:
        answers = {heads[0]: payload}
    elif channel == "rest":
        answers = {h: {"label": payload[h], "probabilities": payload["probabilities"][h]} for h in heads}
    else:
        answers = {h: payload[h] for h in heads}
    return {"in_domain": payload["in_domain"],
            **{h: {"label": answers[h]["label"], "probabilities": answers[h]["probabilities"]} for h in heads}}


def compare(expected: dict[str, Any], got: dict[str, Any], tolerance: float = PROB_TOLERANCE) -> str | None:
    """None if the answers agree (labels, in_domain, probabilities within tolerance), else why not."""
    if expected["in_domain"] != got["in_domain"]:
        return f"in_domain {got['in_domain']} != {expected['in_domain']}"
    for head, e in expected.items():
        if head in ("in_domain", "problems"):
            continue
        g = got.get(head)
        if g is None:
            return f"head {head} missing"
        if g["label"] != e["label"]:
            return f"{head}: label {g['label']!r} != {e['label']!r}"
        if set(g["probabilities"]) != set(e["probabilities"]):
            return f"{head}: labels {sorted(g['probabilities'])} != {sorted(e['probabilities'])}"
        worst = max(abs(g["probabilities"][k] - v) for k, v in e["probabilities"].items())
        if worst > tolerance:
            return f"{head}: probabilities differ by {worst:.2e} (> {tolerance:g})"
    return None


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    kind: str          # "valid" or "bad"
    channel: str       # "gradio" or "rest"
    task: str
    gradcam: bool
    upload: Upload

    @property
    def endpoint(self) -> str:
        if self.channel.startswith("rest"):
            return f"/api/v1/{self.task}/predict" + ("?ocr=1" if self.channel == "rest-ocr" else "")
        return ENDPOINTS[self.task][1 if self.gradcam else 0]

    @property
    def group(self) -> str:
        if self.kind == "bad":
            return f"bad input ({self.channel})"
        names = {"rest": "REST", "rest-ocr": "REST + OCR"}
        return names.get(self.channel) or ("gradio + Grad-CAM" if self.gradcam else "gradio")


@dataclass
class Outcome:
    index: int
    group: str
    endpoint: str
    input: str
    status: str        # "ok", "rejected" (expected), "failed"
    seconds: float
    detail: str = ""


class Door:
    """One client's connections: a gradio_client Client and an httpx client (not shared across threads)."""

    def __init__(self, url: str, downloads: Path):
        import httpx
        from gradio_client import Client

        self.url = url
        self.gradio = Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT_S)

    def close(self) -> None:
        self.http.close()
        try:
            self.gradio.close()
        except Exception:   # older clients have no close(); nothing to release then
            pass

    def send(self, req: Request, timeout: float) -> tuple[str, dict[str, Any] | None, str]:
        """(status, normalized answer or None, detail). Never raises."""
        try:
            if req.channel.startswith("rest"):
                return self._rest(req, timeout)
            return self._gradio(req, timeout)
        except Exception as err:   # transport errors, timeouts, anything unexpected
            return "failed", None, f"{type(err).__name__}: {str(err)[:300]}"

    def _rest(self, req: Request, timeout: float):
        r = self.http.post(f"{self.url}{req.endpoint}", timeout=timeout,
                           files={"image": (req.upload.filename, req.upload.data, "application/octet-stream")})
        try:
            body = r.json()
        except ValueError:
            body = None
        if req.kind == "bad":
            status, message = bad_catalogue.REJECTIONS[req.upload.name.split("/", 1)[1]]
            error = body.get("error", "") if isinstance(body, dict) else ""
            if r.status_code == status and message in error:
                return "rejected", None, f"{r.status_code}"
            return "failed", None, f"bad input answered {r.status_code} {r.text[:200]!r} (expected {status}, {message!r})"
        if r.status_code != 200 or not isinstance(body, dict):
            return "failed", None, f"HTTP {r.status_code} {r.text[:200]!r}"
        if req.channel == "rest-ocr" and not (isinstance(body.get("text"), dict) and "lines" in body["text"]):
            return "failed", None, f"no text field in an OCR answer: {str(body)[:200]!r}"
        return "ok", normalize(req.task, body, "rest"), ""

    def _gradio(self, req: Request, timeout: float):
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        job = self.gradio.submit(handle_file(str(req.upload.path)), api_name=req.endpoint)
        try:
            result = job.result(timeout=timeout)
        except AppError as err:
            if req.kind == "bad":
                message = bad_catalogue.REJECTIONS[req.upload.name.split("/", 1)[1]][1]
                if message in str(err):
                    return "rejected", None, "AppError"
                return "failed", None, f"bad input refused with an unexpected message: {str(err)[:200]!r}"
            return "failed", None, f"AppError: {str(err)[:300]}"
        if req.kind == "bad":
            return "failed", None, "bad input was accepted"
        payload = result[0] if isinstance(result, (tuple, list)) else result
        if req.gradcam and payload.get("status") != "retake":   # a photo to retake is not judged: no heat maps
            overlays = result[1:]
            if len(overlays) != len(get_task(req.task).heads) or not all(overlays):
                return "failed", None, f"expected {len(get_task(req.task).heads)} Grad-CAM overlay(s), got {overlays!r}"
        return "ok", normalize(req.task, payload, "gradio"), ""


def build_schedule(valid: list[Upload], bad: list[Upload], n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX.items())
    by_task = {t: [u for u in valid if u.task == t] for t in TASK_NAMES}
    schedule = []
    for _ in range(n):
        kind, channel, gradcam = rng.choices(kinds, weights)[0]
        task = OCR_TASK if channel == "rest-ocr" else rng.choice(TASK_NAMES)
        upload = rng.choice(by_task[task] if kind == "valid" else bad)
        schedule.append(Request(kind, channel, task, gradcam, upload))
    return schedule


# --------------------------------------------------------------------------------------------
# Memory sampling
# --------------------------------------------------------------------------------------------

class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = SAMPLE_EVERY_S):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self._halt.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((round(time.perf_counter() - t0, 2), value))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        value = rss_mb(self.pid)   # one last sample at the end of the load
        if value is not None:
            self.samples.append((self.samples[-1][0] if self.samples else 0.0, value))


def idle_samples(pid: int, seconds: float = IDLE_S) -> list[float]:
    """RSS samples (MiB) while the app has no request to work on."""
    sampler = RssSampler(pid)
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return [value for _, value in sampler.samples]


def memory_report(before: list[float], during: list[float], after: list[float],
                  max_growth_mb: float) -> dict[str, Any]:
    """Lowest idle RSS before the load vs lowest idle RSS after it (MiB): growth beyond
    `max_growth_mb` fails. The peak during the load is reported, not judged."""
    n = len(before) + len(during) + len(after)
    if not before or not during or not after:
        return {"pass": None, "reason": f"RSS samples: {len(before)} before, {len(during)} during, {len(after)} after",
                "samples": n}
    start, settled = min(before), min(after)
    growth = settled - start
    return {"pass": growth <= max_growth_mb, "start_mb": start, "peak_mb": max(during), "settled_mb": settled,
            "growth_mb": round(growth, 1), "max_growth_mb": max_growth_mb, "samples": n}


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def run_phase(schedule: list[Request], doors: list[Door], baseline: dict[tuple[str, str], dict[str, Any]],
              deadline: float, pid: int | None = None) -> tuple[list[Outcome], float, int, list[tuple[float, float]]]:
    """Send `schedule` from one thread per door; (outcomes by index, seconds, stuck threads, RSS samples)."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    cursor = iter(range(len(schedule)))

    def worker(door: Door) -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None or time.perf_counter() > deadline:
                return
            req = schedule[i]
            timeout = min(REQUEST_TIMEOUT_S, max(5.0, deadline + GRACE_S - time.perf_counter()))
            t0 = time.perf_counter()
            status, answer, detail = door.send(req, timeout)
            seconds = time.perf_counter() - t0
            if status == "ok":
                expected = baseline.get(("rest" if req.channel.startswith("rest") else "gradio", req.upload.name))
                if expected is None:
                    status, detail = "failed", "no baseline answer for this input"
                elif (why := compare(expected, answer)):
                    status, detail = "inconsistent", why
            with lock:
                outcomes.append(Outcome(i, req.group, req.endpoint, req.upload.name, status, seconds, detail))

    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(d,), name=f"client-{n}", daemon=True) for n, d in enumerate(doors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, deadline + GRACE_S + REQUEST_TIMEOUT_S - time.perf_counter()))
    seconds = time.perf_counter() - start
    if sampler:
        sampler.stop()
    outcomes.sort(key=lambda o: o.index)
    return outcomes, seconds, sum(t.is_alive() for t in threads), sampler.samples if sampler else []


def run_load_test(url: str, pid: int | None, clients: int = 8, requests: int = 400, max_seconds: float = 300,
                  seed: int = 0, odd_per_task: int | None = None, examples_per_task: int | None = None,
                  max_growth_mb: float = 100.0, warmup_rounds: int = 1,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Baseline alone, then the concurrent load; returns the report (report["passed"] says it all)."""
    url = check_loopback(url)
    started = time.perf_counter()
    deadline = started + max_seconds
    workdir = Path(tempfile.mkdtemp(prefix="load-test-"))
    downloads = workdir / "downloads"
    downloads.mkdir()
    uploads = workdir / "uploads"
    uploads.mkdir()
    doors: list[Door] = []
    try:
        valid, bad = build_uploads(uploads, odd_per_task, examples_per_task)

        # 1. Every valid input alone, sequentially, through both doors.
        log(f"baseline: {len(valid)} valid inputs alone via gradio_client and REST")
        door = Door(url, downloads)
        doors.append(door)
        baseline: dict[tuple[str, str], dict[str, Any]] = {}
        baseline_failures: list[dict[str, str]] = []
        for upload in valid:
            for channel in ("gradio", "rest"):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"--max-seconds {max_seconds:g} reached during the baseline")
                status, answer, detail = door.send(Request("valid", channel, upload.task, False, upload), REQUEST_TIMEOUT_S)
                if status != "ok":
                    baseline_failures.append({"input": upload.name, "channel": channel, "detail": detail})
                else:
                    baseline[(channel, upload.name)] = answer
        cross = []
        for upload in valid:
            g, r = baseline.get(("gradio", upload.name)), baseline.get(("rest", upload.name))
            if g is not None and r is not None and (why := compare(g, r)):
                cross.append({"input": upload.name, "detail": f"REST vs gradio_client: {why}"})
        # Grad-CAM path warmed up once per task before the load (its JSON must match the plain answer).
        for task in TASK_NAMES:
            upload = next(u for u in valid if u.task == task)
            status, answer, detail = door.send(Request("valid", "gradio", task, True, upload), REQUEST_TIMEOUT_S)
            if status != "ok":
                baseline_failures.append({"input": upload.name, "channel": "gradio + Grad-CAM", "detail": detail})
            elif (why := compare(baseline[("gradio", upload.name)], answer)):
                cross.append({"input": upload.name, "detail": f"Grad-CAM endpoint vs plain: {why}"})

        # 2. A short concurrent warm-up (per round, every valid input through every door, from
        #    `clients` clients): checked like the rest, left out of the latency and memory figures,
        #    so the memory comparison sees steady state rather than the first concurrent use of
        #    each code path and image size (allocator high-water marks are not leaks).
        doors += [Door(url, downloads) for _ in range(clients - 1)]
        warm = [Request("valid", channel, upload.task, gradcam, upload)
                for _ in range(warmup_rounds) for upload in valid
                for channel, gradcam in (("gradio", True), ("gradio", False), ("rest", False))]
        log(f"warm-up: {len(warm)} concurrent requests from {clients} clients")
        warm_outcomes, _, warm_stuck, _ = run_phase(warm, doors, baseline, deadline)

        # 3. The load.
        schedule = build_schedule(valid, bad, requests, seed)
        log(f"load: {len(schedule)} requests from {clients} concurrent clients "
            f"(new requests stop after {max(0.0, deadline - time.perf_counter()):.0f} s)")
        idle_before = idle_samples(pid) if pid else []
        outcomes, load_seconds, stuck, samples = run_phase(schedule, doors, baseline, deadline, pid)
        failed_warmup = [o for o in warm_outcomes if o.status != "ok"]
        stuck += warm_stuck

        # 4. Report.
        failed = [o for o in outcomes if o.status == "failed"]
        inconsistent = [o for o in outcomes if o.status == "inconsistent"]
        rejected = [o for o in outcomes if o.status == "rejected"]
        ok = [o for o in outcomes if o.status == "ok"]
        groups = sorted({o.group for o in outcomes})
        latency = {"all": latency_stats([o.seconds for o in outcomes], 1000, 1),
                   **{g: latency_stats([o.seconds for o in outcomes if o.group == g], 1000, 1) for g in groups}}
        memory = memory_report(idle_before, [v for _, v in samples], idle_samples(pid), max_growth_mb) if pid else \
            {"pass": None, "reason": "app process not found: RSS not sampled"}
        step = max(1, len(samples) // 200)
        memory["trace_s_mb"] = samples[::step]
        checks = {
            "baseline_answered": not baseline_failures,
            "same_answer_through_every_door": not cross,
            "no_failed_requests": not failed and not failed_warmup and not stuck,
            "same_answer_as_alone": not inconsistent,
            "memory_bounded": memory["pass"] is not False,
        }
        report = {
            "url": url, "app_pid": pid, "clients": clients, "requested": len(schedule), "completed": len(outcomes),
            "stopped_by_deadline": len(outcomes) < len(schedule), "max_seconds": max_seconds, "seed": seed,
            "valid_inputs": len(valid), "bad_inputs": len(bad),
            "mix": {f"{k[0]}/{k[1]}{'/gradcam' if k[2] else ''}": w for k, w in MIX.items()},
            "load_seconds": round(load_seconds, 2),
            "requests_per_s": round(len(outcomes) / load_seconds, 2) if load_seconds > 0 else None,
            "ok": len(ok), "expected_rejections": len(rejected), "failed": len(failed),
            "inconsistent": len(inconsistent), "stuck_clients": stuck,
            "latency_ms": latency, "memory": memory, "checks": checks, "passed": all(checks.values()),
            "warmup_requests": len(warm_outcomes), "warmup_failed": len(failed_warmup),
            "problems": {"baseline": baseline_failures, "cross_door": cross,
                         "warmup": [asdict(o) for o in failed_warmup[:20]],
                         "failed": [asdict(o) for o in failed[:50]],
                         "inconsistent": [asdict(o) for o in inconsistent[:50]]},
            "by_group": {g: {s: sum(1 for o in outcomes if o.group == g and o.status == s)
                             for s in ("ok", "rejected", "failed", "inconsistent")} for g in groups},
            "seconds": round(time.perf_counter() - started, 1),
        }
        return report
    finally:
        for d in doors:
            d.close()
        shutil.rmtree(workdir, ignore_errors=True)


def render(report: dict[str, Any]) -> str:
    lat, mem = report["latency_ms"], report["memory"]
    summary = markdown_table(
        ["Clients", "Requests", "Requests/s", "p50 ms", "p95 ms", "p99 ms", "Failed", "Inconsistent",
         "Rejected (expected)", "RSS idle before → after MiB"],
        [[report["clients"], f"{report['completed']}/{report['requested']}", fmt_num(report["requests_per_s"], 1),
          fmt_num(lat["all"]["p50"]), fmt_num(lat["all"]["p95"]), fmt_num(lat["all"]["p99"]), report["failed"],
          report["inconsistent"], report["expected_rejections"],
          f"{fmt_num(mem.get('start_mb'), 0)} → {fmt_num(mem.get('settled_mb'), 0)}"]],
        align=["r"] * 10)
    groups = markdown_table(
        ["Request kind", "n", "p50 ms", "p95 ms", "p99 ms", "ok", "rejected", "failed"],
        [[g, lat[g]["n"], fmt_num(lat[g]["p50"]), fmt_num(lat[g]["p95"]), fmt_num(lat[g]["p99"]),
          c["ok"], c["rejected"], c["failed"] + c["inconsistent"]] for g, c in report["by_group"].items()])
    lines = [summary, "", groups, ""]
    if mem.get("pass") is None:
        lines.append(f"Memory: not checked ({mem.get('reason')}).")
    else:
        lines.append(f"Memory: {mem['start_mb']} MiB idle before the load, peak {mem['peak_mb']} MiB during it, "
                     f"{mem['settled_mb']} MiB idle after it (growth {mem['growth_mb']:+} MiB, limit "
                     f"{mem['max_growth_mb']}; {mem['samples']} samples).")
    for name, ok in report["checks"].items():
        lines.append(f"- {name.replace('_', ' ')}: {'PASS' if ok else 'FAIL'}")
    if report["stopped_by_deadline"]:
        lines.append(f"warning: stopped at --max-seconds {report['max_seconds']:g} after "
                     f"{report['completed']} of {report['requested']} requests")
    for kind, items in report["problems"].items():
        for item in items[:10]:
            lines.append(f"  {kind}: {item}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running app on this machine (default: start app.py on a free port)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    p.add_argument("--requests", type=int, default=400, help="requests sent under load")
    p.add_argument("--max-seconds", type=float, default=300, help="stop sending new requests after this long")
    p.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    p.add_argument("--odd-per-task", type=int, help="odd-but-valid image variants per task (default: all)")
    p.add_argument("--examples-per-task", type=int, help="example photos per task (default: all)")
    p.add_argument("--max-growth-mb", type=float, default=100.0,
                   help="allowed RSS growth: idle after the load vs idle before it")
    p.add_argument("--warmup-rounds", type=int, default=1,
                   help="concurrent warm-up before the measured load: per round, --clients requests of every "
                        "valid kind (both tasks; gradio_client with and without Grad-CAM; REST)")
    p.add_argument("--app-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for the app this command starts, e.g. QUEUE_CONCURRENCY=1 or MALLOC_ARENA_MAX=2")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.max_seconds <= 0:
        p.error("--clients, --requests and --max-seconds must be positive")
    if args.url:
        try:
            args.url = check_loopback(args.url)
        except ValueError as err:
            p.error(str(err))
    if args.url and args.app_env:
        p.error("--app-env applies only to the app this command starts (no --url)")
    env = {}
    for item in args.app_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--app-env {item!r}: expected KEY=VALUE")
        env[key] = value
    args.app_env = env
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    app = None
    try:
        if args.url:
            url = args.url
            pid = pid_listening_on(urlparse(url).port or 80)
        else:
            print("starting app.py ...", flush=True)
            app = AppProcess(env=args.app_env).start()
            url, pid = app.url, app.pid
            print(f"app ready at {url} in {app.ready_s:.1f} s (pid {pid})", flush=True)
        report = run_load_test(url, pid, args.clients, args.requests, args.max_seconds, args.seed,
                               args.odd_per_task, args.examples_per_task, args.max_growth_mb, args.warmup_rounds)
    except TimeoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if app is not None:
            app.stop()
    report["command"] = "python -m benchmarks.load_test " + " ".join(argv if argv is not None else sys.argv[1:])
    report["app_env"] = args.app_env
    write_json(args.out, report)
    print()
    print(render(report))
    print(f"\n{'PASSED' if report['passed'] else 'FAILED'}; wrote {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
