"""A short version of the load test (benchmarks/load_test.py) against the real app, bounded to about
a minute: 8 concurrent clients, 80 requests mixing both tasks, Grad-CAM, REST and bad inputs.

Every valid request must get the answer it gets alone, every bad input its clean rejection, no
request may fail, and idle after the load the app may hold no more than MAX_GROWTH_MB above its
idle memory before the load. Timings are reported, never asserted.
"""
from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from benchmarks.common import pid_listening_on
from benchmarks.load_test import render, run_load_test

CLIENTS = 8
REQUESTS = 80
MAX_SECONDS = 150          # a safety bound; the run normally takes well under a minute
MAX_GROWTH_MB = 100.0


@pytest.fixture(scope="module")
def load_report(app_url, example_images, tmp_path_factory):
    pid = pid_listening_on(urlparse(app_url).port)
    report = run_load_test(app_url, pid, clients=CLIENTS, requests=REQUESTS, max_seconds=MAX_SECONDS,
                           odd_per_task=4, examples_per_task=3, max_growth_mb=MAX_GROWTH_MB, log=lambda _: None)
    out = tmp_path_factory.mktemp("load") / "load_test.json"
    out.write_text(json.dumps(report, indent=2))
    print("\n" + render(report))
    return report


@pytest.mark.timeout(300)
def test_every_request_is_answered_or_cleanly_rejected(load_report):
    r = load_report
    assert r["completed"] == r["requested"] == REQUESTS, render(r)
    assert r["checks"]["baseline_answered"], r["problems"]["baseline"]
    assert r["failed"] == 0 and r["warmup_failed"] == 0 and r["stuck_clients"] == 0, render(r)
    assert r["expected_rejections"] > 0 and r["ok"] > 0          # the mix really had both
    groups = set(r["by_group"])
    assert {"REST", "gradio", "gradio + Grad-CAM", "bad input (rest)", "bad input (gradio)"} <= groups, groups


@pytest.mark.timeout(300)
def test_answers_under_load_match_the_answers_alone(load_report):
    assert load_report["checks"]["same_answer_through_every_door"], load_report["problems"]["cross_door"]
    assert load_report["inconsistent"] == 0, load_report["problems"]["inconsistent"]


@pytest.mark.timeout(300)
def test_memory_does_not_grow_under_load(load_report):
    memory = load_report["memory"]
    assert load_report["app_pid"], "the app's process was not found: RSS could not be sampled"
    assert memory["pass"] is True, f"RSS grew {memory.get('growth_mb')} MiB (limit {MAX_GROWTH_MB}): {memory}"
