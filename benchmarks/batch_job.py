"""The fleet batch job (inference.batch_job, Ray Data) against the in-process batch (inference.batch.predict_files)
on the same photos, in one run on this machine.

    python -m benchmarks.batch_job [--photos 2000] [--node-cpus 8] [--out benchmarks/results/batch_job.json]
    python -m benchmarks.batch_job --photos 64      # a quick run

The photos are made by cycling the shared car photos (symlinks in a temporary folder, 4 per car folder). Each
variant runs in a process of its own, timed from its start to its exit and sampled every SAMPLE_S for the memory of
its process tree (for the job: Ray's GCS, raylet and workers too):

    predict_files        the in-process batch of the app's Batch tab (its 500-file limit lifted), one process
    process pool         predict_files in 2 spawned processes of 1 model thread, half the photos each: no Ray
    ray job, 1 worker    python -m inference.batch_job --workers 1
    ray job, 2 workers   python -m inference.batch_job --workers 2 (every core here)

Figures: photos/s end to end (start-up and model loading included), the steady rate (photos/s between the first
and the last saved batch: start-up left out), peak RSS (the sum over the tree, counting shared pages once per
process) and peak PSS (shared pages split between the processes). Both answers are compared photo by photo. The
1-worker steady rate is the per-core rate of the paper estimate for a cluster of CPU nodes.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.common import RESULTS, ROOT, fmt_num, write_json
from inference.batch_job import PARTS_DIR
from inference.images import IMAGE_EXTENSIONS
from inference.render import markdown_table

CAR_PHOTOS = ROOT.parent / "shared" / "data" / "car_photos" / "images"
DEFAULT_OUT = RESULTS / "batch_job.json"
PHOTOS_PER_CAR = 4
SAMPLE_S = 0.25
MIN_STEADY_S = 5.0
WORKER_COUNTS = (1, 2)
FLEET_DAY = 40_000   # photos a day: 10,000 cars, 4 photos each (issue 32)
CLUSTER_NODES = (1, 4, 16)
POOL = "process pool, 2 x predict_files"


def make_photos(n: int, folder: Path) -> None:
    """n photos in car folders of PHOTOS_PER_CAR: symlinks cycling the shared car photos."""
    sources = sorted(p for p in CAR_PHOTOS.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not sources:
        raise SystemExit(f"no photos in {CAR_PHOTOS} (../shared/data beside the repository)")
    for i in range(n):
        source = sources[i % len(sources)]
        car = folder / f"car_{i // PHOTOS_PER_CAR:05d}"
        car.mkdir(exist_ok=True)
        (car / f"view{i % PHOTOS_PER_CAR}{source.suffix.lower()}").symlink_to(source)


def sample_tree(pid: int, cpu_seen: dict[int, float]) -> tuple[float, float, int]:
    """RSS and PSS (MB) summed over a process and its descendants, and how many there are; records each one's
    CPU seconds so far in `cpu_seen`."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0, 0
    rss = pss = 0
    for proc in procs:
        try:
            info, cpu = proc.memory_full_info(), proc.cpu_times()
        except psutil.Error:
            continue
        rss, pss = rss + info.rss, pss + info.pss
        cpu_seen[proc.pid] = cpu.user + cpu.system
    return rss / 2**20, pss / 2**20, len(procs)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy."""
    import psutil

    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq


def run_measured(command: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command to its end: wall seconds, the peak memory of its process tree, and the CPU seconds other
    processes took meanwhile (this machine is shared: more than a few seconds means the figures are low). The
    bundled model serves (HF_HUB_OFFLINE=1 unless set): no Hub probe in the timings."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), **(env or {})}
    peak_rss = peak_pss = 0.0
    processes = 0
    cpu_seen: dict[int, float] = {}
    busy, start = busy_cpu_s(), time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            rss, pss, count = sample_tree(proc.pid, cpu_seen)
            peak_rss, peak_pss, processes = max(peak_rss, rss), max(peak_pss, pss), max(processes, count)
            time.sleep(SAMPLE_S)
    seconds, busy = time.perf_counter() - start, busy_cpu_s() - busy
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss), "peak_pss_mb": round(peak_pss),
            "processes": processes, "cpu_s": round(sum(cpu_seen.values()), 1),
            "other_cpu_s": round(max(0.0, busy - sum(cpu_seen.values())), 1)}


def steady_rate(marks: list[tuple[float, int]]) -> float | None:
    """Photos/s from (time, photos saved then) marks, between the first and the last: start-up left out. None
    for a run too short to tell (a quick run: the end-to-end rate stands in)."""
    marks = sorted(marks)
    if len(marks) < 3 or marks[-1][0] - marks[0][0] < MIN_STEADY_S:
        return None
    return round((marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0]), 2)


def predict_shard(folder: Path, files: list[Path]) -> dict[str, Any]:
    """The in-process batch on some photos of `folder`: answers by file, and (time, photos done in that chunk)."""
    from inference.batch import predict_files

    events: list[tuple[float, int]] = []

    def on_progress(done: int, total: int) -> None:
        events.append((time.time(), done - sum(count for _, count in events)))

    result = predict_files("car", [(p.relative_to(folder).as_posix(), p) for p in files], on_progress=on_progress)
    return {"events": events, "answers": {row["file"]: answer(row) for row in result.rows}}


def predict_files_child(folder: Path, report: Path, processes: int) -> None:
    """In a process of its own: the in-process batch on every photo of `folder`, split among `processes` spawned
    processes when more than one (a plain process pool: the same work without Ray)."""
    files = sorted(folder.rglob("*.jpg"))
    shards = [files[i::processes] for i in range(processes)]
    if processes == 1:
        results = [predict_shard(folder, files)]
    else:
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(predict_shard, [folder] * processes, shards))
    events = sorted(event for result in results for event in result["events"])
    marks = [(t, sum(count for _, count in events[:i + 1])) for i, (t, _) in enumerate(events)]
    report.write_text(json.dumps({"marks": marks, "answers": {k: v for r in results for k, v in r["answers"].items()}}))


def answer(row: dict[str, Any]) -> list[str]:
    return [row["status"], row["cleanliness"] or "", row["damage"] or ""]


def run_predict_files(folder: Path, work: Path, n: int, processes: int) -> tuple[dict[str, Any], dict[str, list]]:
    """predict_files in one process with the app's threads, or in a pool of `processes` with one thread each."""
    report = work / f"predict_files-{processes}.json"
    command = [sys.executable, "-c", "import sys; from pathlib import Path; from benchmarks.batch_job import "
               "predict_files_child as run; run(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))",
               str(folder), str(report), str(processes)]
    env = {"BATCH_MAX_FILES": str(n)}   # the Batch tab's upload limit does not apply to this comparison
    if processes > 1:
        env["INFERENCE_THREADS"] = "1"
    measured = run_measured(command, work / f"predict_files-{processes}.log", env)
    data = json.loads(report.read_text())
    return {**measured, "steady_photos_per_s": steady_rate([tuple(m) for m in data["marks"]])}, data["answers"]


def run_ray_job(folder: Path, work: Path, workers: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
    output = work / f"ray-{workers}"
    command = [sys.executable, "-m", "inference.batch_job", "--task", "car", "--input", str(folder),
               "--output", str(output), "--workers", str(workers), "--no-progress"]
    measured = run_measured(command, work / f"ray-{workers}.log")
    parts = sorted(output.joinpath(PARTS_DIR).glob("part-*.parquet"), key=lambda p: p.stat().st_mtime)
    marks, saved = [], 0
    for part in parts:
        saved += pq.read_metadata(part).num_rows
        marks.append((part.stat().st_mtime, saved))
    rows = pq.read_table(output / "photos.parquet").to_pylist()
    return {**measured, "steady_photos_per_s": steady_rate(marks)}, {r["file"]: answer(r) for r in rows}


def cluster_estimate(per_core: float, efficiency: float, startup_s: float, node_cpus: int) -> list[dict[str, Any]]:
    """Photos/s and the time of a fleet-day for clusters of `node_cpus`-CPU nodes, one actor per CPU."""
    rows = []
    for nodes in CLUSTER_NODES:
        rate = per_core * efficiency * nodes * node_cpus
        rows.append({"nodes": nodes, "cpus": nodes * node_cpus, "photos_per_s": round(rate, 1),
                     "fleet_day_minutes": round((startup_s + FLEET_DAY / rate) / 60, 1)})
    return rows


def benchmark(n: int, node_cpus: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="batch-job-bench-") as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        make_photos(n, folder)
        runs, answers = {}, {}
        runs["predict_files"], answers["predict_files"] = run_predict_files(folder, work, n, 1)
        runs[POOL], answers[POOL] = run_predict_files(folder, work, n, 2)
        for workers in WORKER_COUNTS:
            name = f"ray job, {workers} worker{'s' if workers > 1 else ''}"
            runs[name], answers[name] = run_ray_job(folder, work, workers)
    for figures in runs.values():
        figures["photos_per_s"] = round(n / figures["seconds"], 2)
    reference = answers["predict_files"]
    for name, found in answers.items():
        runs[name]["same_answers_as_predict_files"] = sum(found.get(f) == a for f, a in reference.items())
    result = {"photos": n, "cpus": os.cpu_count(), "runs": runs, "scaling": None, "cluster": None}
    one, two = runs["ray job, 1 worker"]["steady_photos_per_s"], runs["ray job, 2 workers"]["steady_photos_per_s"]
    if one and two:   # a quick run is too short for steady rates: no scaling figures
        startup_s = round(max(0.0, runs["ray job, 1 worker"]["seconds"] - n / one), 1)
        result["scaling"] = {"per_core_photos_per_s": one, "two_worker_efficiency": round(two / (2 * one), 3),
                             "startup_s": startup_s}
        result["cluster"] = {"node_cpus": node_cpus, "assumptions": ASSUMPTIONS,
                             "estimate": cluster_estimate(one, two / (2 * one), startup_s, node_cpus)}
    return result


ASSUMPTIONS = ("per-core rate = the 1-worker steady rate here; every node's cores as fast as these; scaling "
               "efficiency per core as measured from 1 to 2 workers; photos of the same size mix; inputs on storage "
               "every node reads at the needed rate (a few MB/s); start-up (Ray, actors loading the model) once, "
               "as measured here with 1 worker")


def print_report(result: dict[str, Any]) -> None:
    n = result["photos"]
    rows = [[name, fmt_num(r["seconds"]), fmt_num(r["photos_per_s"]), fmt_num(r["steady_photos_per_s"]),
             fmt_num(r["peak_rss_mb"], 0), fmt_num(r["peak_pss_mb"], 0), r["processes"], fmt_num(r["cpu_s"]),
             fmt_num(r["other_cpu_s"]), f"{r['same_answers_as_predict_files']}/{n}"]
            for name, r in result["runs"].items()]
    print(markdown_table(["run", "seconds", "photos/s", "steady photos/s", "peak RSS MB", "peak PSS MB", "processes",
                          "CPU s", "others' CPU s", "same answers"], rows))
    scaling, cluster = result["scaling"], result["cluster"]
    if scaling is None:
        print("\ntoo few photos for steady rates: no scaling figures or cluster estimate (try --photos 1000)")
        return
    print(f"\nper core: {scaling['per_core_photos_per_s']} photos/s; 2 workers: {scaling['two_worker_efficiency']:.0%} "
          f"of twice that; start-up {scaling['startup_s']} s")
    print(markdown_table([f"nodes of {cluster['node_cpus']} CPUs", "CPUs", "photos/s (paper)",
                          f"{FLEET_DAY:,} photos (min)"],
                         [[c["nodes"], c["cpus"], fmt_num(c["photos_per_s"]), fmt_num(c["fleet_day_minutes"])]
                          for c in cluster["estimate"]]))
    print(f"assumptions: {cluster['assumptions']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=2000, help="how many photos (64 for a quick run)")
    parser.add_argument("--node-cpus", type=int, default=8, help="CPUs per node of the paper cluster")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = benchmark(args.photos, args.node_cpus)
    print_report(result)
    write_json(args.out, result)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
