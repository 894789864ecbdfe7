"""The fleet batch job (inference.batch_job) on a local Ray instance of 1 CPU: shared car photos, a corrupt file and
a photo of limes in two car folders go through the real code, and must come out as the in-process batch
(inference.batch.predict_files) answers them; a second run over the same output analyses only what is missing.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest

from inference.batch import predict_files
from inference.batch_job import PARTS_DIR, JobError, PhotoAnalyzer, list_photos, read_parts, run_job
from inference.inspection import car_row
from inference.tasks import get_task
from support import require, shared

NON_CAR = "everyday/limes__IMG_20211008_092041.jpg"   # the car model turns it away (ood score ~1.0)
LABEL_KINDS = ("clean,intact", "very_dirty,intact", ",damaged")   # two photos of each, cleanliness,damage
CORRUPT = "car_b/broken.jpg"


@pytest.fixture(scope="module")
def ray_one_cpu():
    require(importlib.util.find_spec("ray") is not None, "Ray (pip install -e '.[batch]')")
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING, object_store_memory=128 * 2**20)
    yield
    ray.shutdown()


def car_photos() -> list[Path]:
    """Two shared car photos of each label kind, found through the photos' labels."""
    folder = shared("car_photos")
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    picks = [[r["image"] for r in rows if f"{r['cleanliness']},{r['damage']}" == kind][:2] for kind in LABEL_KINDS]
    return [folder / image for pair in picks for image in pair]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """car_a: 3 car photos and the limes; car_b: 3 car photos and a truncated JPEG (links to ../shared)."""
    root = tmp_path_factory.mktemp("fleet") / "photos"
    photos = car_photos()
    for car, chunk in (("car_a", photos[:3]), ("car_b", photos[3:])):
        (root / car).mkdir(parents=True)
        for photo in chunk:
            (root / car / photo.name).symlink_to(photo)
    (root / "car_a" / "limes.jpg").symlink_to(shared("negatives", NON_CAR))
    (root / CORRUPT).write_bytes(photos[0].read_bytes()[:2000])
    (root / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def in_process(fleet):
    """The Batch tab's answer for the same files: rows by file name."""
    files = sorted(p for p in fleet.rglob("*.jpg"))
    result = predict_files("car", [(p.relative_to(fleet).as_posix(), p) for p in files])
    return {row["file"]: row for row in result.rows}


@pytest.fixture(scope="module")
def first_run(ray_one_cpu, fleet, tmp_path_factory):
    out = tmp_path_factory.mktemp("job")
    return run_job("car", fleet, out, batch_size=4, progress=False), out


def parquet_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def photo_rows(out: Path) -> dict[str, dict]:
    """The job's photo rows by file name; each photo must be there once."""
    rows = parquet_rows(out / "photos.parquet")
    assert len({row["path"] for row in rows}) == len(rows)
    return {row["file"]: row for row in rows}


def answers(rows: dict[str, dict]) -> dict[str, tuple]:
    """What a photo was answered: status and labels (confidences may differ in the last digit by batch)."""
    return {name: (row["status"], row["cleanliness"], row["damage"], row["car_id"]) for name, row in rows.items()}


def test_job_answers_as_the_in_process_batch(first_run, in_process):
    result, out = first_run
    rows = photo_rows(out)
    assert result.processed == result.photos == len(rows) == 8 and result.skipped == 0
    assert set(rows) == set(in_process)
    spec = get_task("car")
    for name, expected in in_process.items():
        row = rows[name]
        assert row["status"] == expected["status"], name
        for head in spec.head_names:
            assert (row[head] or "") == expected[head], name
            assert (row[f"{head}_needs_review"] or False) == (expected[f"{head}_needs_review"] or False), name
            if expected[f"{head}_confidence"] != "":
                assert row[f"{head}_confidence"] == pytest.approx(expected[f"{head}_confidence"], abs=1e-3), name
        assert row["car_id"] == name.split("/")[0]


def test_bad_file_and_foreign_photo(first_run, in_process):
    rows = photo_rows(first_run[1])
    assert rows[CORRUPT]["status"] == "unreadable" and "damaged" in rows[CORRUPT]["error"]
    assert rows["car_a/limes.jpg"]["status"] == "not_judged" and rows["car_a/limes.jpg"]["in_domain"] is False
    assert sum(row["status"] == "judged" for row in rows.values()) == 6


def test_one_row_per_car_and_the_fleet_summary(first_run, in_process):
    result, out = first_run
    with open(out / "cars.csv", newline="") as f:
        cars = {row["car_id"]: row for row in csv.DictReader(f)}
    assert set(cars) == {"car_a", "car_b"} and result.cars == 2
    spec = get_task("car")
    for car_id, car in cars.items():
        expected = car_row(spec, car_id, [r for name, r in in_process.items() if name.startswith(car_id + "/")])
        assert (car["photos"], car["unreadable"], car["not_judged"]) == tuple(
            str(expected[k]) for k in ("photos", "unreadable", "not_judged"))
        assert [car[h] for h in spec.head_names] == [expected[h] for h in spec.head_names]
        assert car["driver_note"] == expected["driver_note"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["n_files"], summary["n_judged"], summary["n_not_judged"], summary["n_unreadable"]) == (8, 6, 1, 1)
    assert all((out / name).stat().st_size > 0 for name in ("photos.csv", "summary.csv", "label_counts.png"))


def test_second_run_analyses_only_what_is_missing(first_run, fleet):
    _, out = first_run
    before = photo_rows(out)
    parts = sorted((out / PARTS_DIR).glob("part-*.parquet"))
    assert len(parts) >= 2   # batches of 4: the first run saved its work in pieces
    lost = len(parquet_rows(parts[0]))
    parts[0].unlink()        # as if the job had been stopped before saving that batch
    again = run_job("car", fleet, out, batch_size=4, progress=False)
    assert (again.processed, again.skipped, again.photos) == (lost, 8 - lost, 8)
    assert answers(photo_rows(out)) == answers(before)
    with open(out / "photos.csv", newline="") as f:
        assert sorted(row["file"] for row in csv.DictReader(f)) == sorted(before)
    assert run_job("car", fleet, out, progress=False).processed == 0   # nothing left: Ray is not even needed


def test_zip_and_manifest_inputs(fleet, tmp_path):
    """Car ids from folders inside a ZIP (its one top folder left out) and from a manifest; ZIP members decode."""
    require(importlib.util.find_spec("pyarrow") is not None, "pyarrow (pip install -e '.[batch]')")
    import pyarrow as pa

    archive = tmp_path / "fleet.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for photo in sorted(fleet.rglob("*.jpg")):
            z.write(photo, f"fleet/{photo.relative_to(fleet).as_posix()}")
    refs = list_photos(archive)
    assert {(r.file, r.car_id) for r in refs} == {(p.relative_to(fleet).as_posix(), p.parent.name)
                                                  for p in fleet.rglob("*.jpg")}
    rows = PhotoAnalyzer("car")(pa.Table.from_pylist([asdict(ref) for ref in refs])).to_pylist()
    assert {row["file"]: row["status"] for row in rows}[CORRUPT] == "unreadable"
    assert sum(row["status"] == "judged" for row in rows) == 6
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"image,car_id\n{fleet}/car_a/limes.jpg,K-1\nmissing.jpg,K-2\n")
    assert [(r.car_id, r.path) for r in list_photos(manifest)] == [("K-1", f"{fleet}/car_a/limes.jpg"),
                                                                   ("K-2", str(tmp_path / "missing.jpg"))]


def test_another_tasks_output_is_refused(first_run):
    with pytest.raises(JobError, match="another task"):
        read_parts(first_run[1] / PARTS_DIR, get_task("collectibles"))
