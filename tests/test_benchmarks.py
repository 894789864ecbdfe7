"""The benchmark's pure helpers (statistics, tables, answer comparison, memory verdict, targets).

`python -m benchmarks.run` is a figure-producing command, not a timed test: it runs here only with
RUN_BENCHMARKS=1 (then in --quick mode, into a temporary file). No timing is asserted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import common, load_test, run
from inference.render import markdown_table

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# Statistics and formatting
# --------------------------------------------------------------------------------------------

def test_latency_stats_scale_and_round():
    s = common.latency_stats([0.010, 0.020, 0.030, 0.040], scale=1000)
    assert s["n"] == 4 and s["min"] == 10.0 and s["max"] == 40.0
    assert s["mean"] == 25.0 and s["p50"] == 25.0
    assert s["p95"] == pytest.approx(38.5)
    assert common.latency_stats([])["p50"] is None
    assert json.loads(json.dumps(s)) == s   # plain numbers, so the results file can be written


def test_markdown_table():
    table = markdown_table(["Measure", "a|b"], [["x", 1.5], ["y|z", "–"]])
    lines = table.splitlines()
    assert lines[0] == "| Measure | a\\|b |"
    assert lines[1] == "| --- | ---: |"
    assert lines[3] == "| y\\|z | – |"
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [["only one"]])


def test_number_formats_and_ratio():
    assert common.fmt_num(1234.567) == "1,234.6"
    assert common.fmt_num(None) == "–" and common.fmt_num(float("nan")) == "–"
    assert common.fmt_ratio(2.345) == "2.35x" and common.fmt_ratio(None) == "–"
    assert common.ratio(10, 4) == 2.5 and common.ratio(1, 0) is None and common.ratio(None, 1) is None
    assert common.pass_fail(True) == "PASS" and common.pass_fail(False) == "FAIL" and common.pass_fail(None) == "n/a"


@pytest.mark.parametrize("url", ["http://127.0.0.1:7860/", "http://localhost:8000", "http://[::1]:7860"])
def test_loopback_urls_are_accepted(url):
    assert not common.check_loopback(url).endswith("/")


@pytest.mark.parametrize("url", ["http://0.0.0.0:7860", "http://example.com", "https://hf.space/x", "http://10.0.0.2"])
def test_other_hosts_are_refused(url):
    with pytest.raises(ValueError, match="loopback"):
        common.check_loopback(url)


def test_load_test_cli_refuses_a_remote_url():
    with pytest.raises(SystemExit):
        load_test.parse_args(["--url", "http://example.com:7860"])


# --------------------------------------------------------------------------------------------
# Load test: answers, memory, request mix
# --------------------------------------------------------------------------------------------

CAR_GRADIO = {"cleanliness": {"label": "clean", "confidence": 0.7,
                              "probabilities": {"clean": 0.7, "slightly_dirty": 0.2, "very_dirty": 0.1}},
              "damage": {"label": "intact", "confidence": 0.9, "probabilities": {"intact": 0.9, "damaged": 0.1}},
              "in_domain": True, "ood_score": None}
CAR_REST = {"cleanliness": "clean", "damage": "intact", "confidence": {"cleanliness": 0.7, "damage": 0.9},
            "probabilities": {"cleanliness": {"clean": 0.70005, "slightly_dirty": 0.2, "very_dirty": 0.09995},
                              "damage": {"intact": 0.9, "damaged": 0.1}},
            "in_domain": True, "ood_score": None}
COLLECTIBLE = {"label": None, "confidence": None, "probabilities": None, "in_domain": False, "ood_score": 0.9,
               "message": "...", "best_guess": {"label": "coins", "confidence": 0.8, "probabilities": {
                   "books": 0.05, "coins": 0.8, "drumsticks": 0.05, "stamps": 0.05, "vinyls": 0.05}}}


def test_normalize_and_compare_across_payload_shapes():
    g = load_test.normalize("car", CAR_GRADIO, "gradio")
    r = load_test.normalize("car", CAR_REST, "rest")
    assert g["damage"]["label"] == r["damage"]["label"] == "intact"
    assert load_test.compare(g, r) is None                        # 5e-5 apart: within 1e-4
    c = load_test.normalize("collectibles", COLLECTIBLE, "gradio")
    assert c == load_test.normalize("collectibles", COLLECTIBLE, "rest")
    assert c["in_domain"] is False and c["category"]["label"] == "coins"


def test_compare_reports_what_differs():
    base = load_test.normalize("car", CAR_GRADIO, "gradio")
    other = json.loads(json.dumps(base))
    other["cleanliness"]["probabilities"]["clean"] += 2e-4
    assert "differ" in load_test.compare(base, other)
    other = json.loads(json.dumps(base))
    other["damage"]["label"] = "damaged"
    assert "label" in load_test.compare(base, other)
    other = json.loads(json.dumps(base))
    other["in_domain"] = False
    assert "in_domain" in load_test.compare(base, other)


def test_memory_report():
    start = [1000.0 + (i % 3) for i in range(10)]
    # Working memory that comes and goes while requests are in flight is not growth...
    sawtooth = start + [1100.0, 1200.0, 1270.0, 1105.0, 1250.0, 1275.0]
    report = load_test.memory_report([1020.0, 1000.0], sawtooth, [1180.0, 1060.0, 1010.0], 64)
    assert report["pass"] is True and report["growth_mb"] == 10.0 and report["peak_mb"] == 1275.0
    # ...memory still held once the app is idle again is.
    leaking = [1000.0 + 5 * i for i in range(40)]
    report = load_test.memory_report([1000.0, 1001.0], leaking, [1195.0, 1190.0, 1192.0], 64)
    assert report["pass"] is False and report["growth_mb"] == 190.0
    assert load_test.memory_report([], [1.0], [2.0], 64)["pass"] is None
    assert load_test.memory_report([1.0], [1.0, 2.0], [], 64)["pass"] is None


def test_schedule_is_seeded_and_mixes_every_kind(tmp_path):
    def upload(name, task):
        return load_test.Upload(name, task, b"x", "x.jpg", tmp_path / "x.jpg")

    valid = [upload("car/a.jpg", "car"), upload("collectibles/b.jpg", "collectibles")]
    bad = [upload("bad/empty", None)]
    a = load_test.build_schedule(valid, bad, 400, seed=3)
    assert a == load_test.build_schedule(valid, bad, 400, seed=3)
    assert a != load_test.build_schedule(valid, bad, 400, seed=4)
    assert {(r.kind, r.channel, r.gradcam) for r in a} == set(load_test.MIX)
    assert {r.task for r in a} == {"car", "collectibles"}
    assert all(r.upload.task == r.task for r in a if r.kind == "valid")
    assert {r.endpoint for r in a} >= {"/assess_car", "/classify_collectible_explained", "/api/v1/car/predict",
                                       "/api/v1/collectibles/predict?ocr=1"}
    assert {r.task for r in a if r.channel == "rest-ocr"} == {"collectibles"}


def test_load_test_render(tmp_path):
    stats = common.latency_stats([0.05, 0.06, 0.2], 1000, 1)
    report = {"clients": 8, "completed": 3, "requested": 3, "requests_per_s": 12.5, "failed": 0, "inconsistent": 0,
              "expected_rejections": 1, "latency_ms": {"all": stats, "REST": stats},
              "by_group": {"REST": {"ok": 2, "rejected": 1, "failed": 0, "inconsistent": 0}},
              "memory": load_test.memory_report([1000.0], [1000.0] * 8, [1000.0], 64),
              "checks": {"no_failed_requests": True},
              "stopped_by_deadline": False, "max_seconds": 60, "problems": {"failed": []}}
    text = load_test.render(report)
    assert "| 8 | 3/3 | 12.5 |" in text and "growth +0.0 MiB" in text and "no failed requests: PASS" in text


# --------------------------------------------------------------------------------------------
# Benchmark: targets and tables from a synthetic result (no measurement)
# --------------------------------------------------------------------------------------------

def _timing(p50: float) -> dict:
    return {"batch1_ms": {"p50": p50, "p95": p50 * 1.2},
            "batch32": {"images_per_s": 1000 / p50 * 1.5, "ms_per_image": p50 / 1.5}}


def synthetic_results() -> dict:
    def e2e(p50):
        return {"p50": p50, "p95": p50 * 1.3}

    return {
        "generated": "2026-01-01T00:00:00+00:00", "quick": False,
        "machine": {"cpu_count": 2, "cpu_model": "Test CPU", "inference_threads": 2, "load_average_at_start": [0.1],
                    "versions": {"torch": "x", "onnxruntime": "y"}},
        "models": {"collectibles": {"torch": _timing(20.0), "onnx": _timing(8.0)},
                   "car": {"torch": _timing(20.0), "onnx": _timing(12.0)}},
        "reference": {run.B4_NAME: {"torch": _timing(130.0)}},
        "app": {"ready_s": 12.0, "start_to_first_photo_answer_s": 12.4,
                "startup_s": {"interpreter_and_imports": 5.0, "examples": 0.1, "models": 2.0, "interface": 1.5,
                              "server": 0.2}, "rss_mb_ready": 900.0, "rss_mb_after_calls": 1100.0, "rss_mb_settled": 1000.0,
                "serving": {"car": "checkpoints/car, torch backend"},
                "e2e": {t: {"gradio": e2e(50.0), "gradio_gradcam": e2e(300.0), "rest": e2e(25.0),
                            "gradio_default_client": e2e(90.0), "gradio_gradcam_default_client": e2e(340.0)}
                        for t in ("collectibles", "car")}},
        "cold_start": {"spawn_to_result_s": 6.0},
    }


def test_targets_are_evaluated_with_pass_and_fail():
    r = synthetic_results()
    r["photo_sizes"] = {"ratio": np.float64(1.7)}   # numpy numbers as timings give them
    json.dumps(run.evaluate_targets(r))              # still writable as JSON
    targets = {t["target"]: t for t in run.evaluate_targets(r)}
    assert targets["collectibles: onnxruntime vs our torch eager, batch 1"]["pass"] is True      # 2.5x
    assert targets["car: onnxruntime vs our torch eager, batch 1"]["pass"] is False              # 1.67x
    assert targets[f"car: ours (onnxruntime) vs {run.B4_NAME} eager, batch 1"]["value"] == pytest.approx(10.833, abs=1e-3)
    assert f"car: ours (torch eager) vs {run.B4_NAME} eager, batch 1" not in targets   # the app serves onnxruntime
    assert targets["car: end-to-end p50, gradio_client (ssl_verify=False), no Grad-CAM"]["pass"] is True
    assert targets["car: end-to-end p50, gradio_client (ssl_verify=False), with Grad-CAM"]["pass"] is False
    assert targets["cold start: process start to first prediction"]["pass"] is True
    assert targets["app start to its first photo answer (car, heat maps)"]["pass"] is False   # 12.4 s
    rss = targets["app RSS with both models loaded (max of ready / 3 s after the calls)"]
    assert rss["value"] == 1000.0 and rss["pass"] is True


def test_tables_render_from_results():
    r = synthetic_results()
    r["targets"] = run.evaluate_targets(r)
    text = run.render_tables(r)
    assert "| Measure | Collectibles | Car condition |" in text
    assert "| Model, batch 1, onnxruntime: p50 / p95 ms | 8.0 / 9.6 | 12.0 / 14.4 |" in text
    assert "2.50x" in text and "FAIL" in text and "PASS" in text
    assert "Cold start" in text and "| Cold start: new process to first prediction (import, load both models, " \
        "predict) | 6.00 s |" in text
    assert "| App start-up by phase: interpreter and imports, examples, models, interface, server " \
        "| 5.0 / 0.1 / 2.0 / 1.5 / 0.2 s |" in text
    assert "| End to end, gradio_client default settings, no Grad-CAM: p50 / p95 ms | 90.0 / 117.0 | 90.0 / 117.0 |" in text
    for block in text.split("\n\n")[1:]:            # every table is well formed
        rows = block.splitlines()
        assert len({row.count(" | ") for row in rows}) == 1, block


def test_percentile_helpers_agree_with_timing_helper():
    calls = []
    times = run.time_calls(lambda: calls.append(1), reps=5, warmup=2)
    assert len(times) == 5 and len(calls) == 7 and all(t >= 0 for t in times)


def test_ratio_targets_use_the_timings_taken_in_turns():
    r = synthetic_results()
    r["interleaved"] = {f"{t}/{b}": {"p50": v, "p95": v} for t in ("collectibles", "car")
                        for b, v in (("torch", 12.0), ("onnx", 4.0))}
    r["interleaved"][f"{run.B4_NAME}/torch"] = {"p50": 36.0, "p95": 36.0}
    targets = {t["target"]: t for t in run.evaluate_targets(r)}
    assert targets["car: onnxruntime vs our torch eager, batch 1"]["value"] == pytest.approx(3.0)
    assert targets[f"car: ours (onnxruntime) vs {run.B4_NAME} eager, batch 1"]["value"] == pytest.approx(9.0)
    r["targets"] = list(targets.values())
    text = run.render_tables(r)
    assert "| Batch 1 timed in turn (torch / onnxruntime / efficientnet_b4 eager): p50 ms | 12.0 / 4.0 / 36.0 |" in text
    assert "| Speed-up, timed in turn: onnxruntime vs our torch / onnxruntime vs efficientnet_b4 eager | 3.00x / 9.00x |" in text
