"""Fleet-scale batch job on Ray Data: a folder, a ZIP or a CSV manifest of photos -> one row per photo (and per
car) as Parquet and CSV, plus the fleet summary the Batch tab shows.

    python -m inference.batch_job --task car --input photos/ --output out/ [--address ray://head:10001]
                                  [--workers 2] [--batch-size 32]

The photos take the app's one path (`load_image`, then `analyze_photos`: quality check, model, in-domain check,
needs review) in a pool of Ray Data actors that each load the served model once and read their photos
themselves (only paths travel through Ray). The driver writes every finished batch at once to
`parts/part-*.parquet` (written aside, then renamed), so an interrupted job keeps all it finished, and a run with
the same output skips the photos already there (by `path`). At the end the parts are merged into:

    photos.parquet, photos.csv    one row per photo: inference.render.batch_row + car_id + path
    cars.parquet, cars.csv        one row per car (inference.inspection.car_row), when photos have car ids
    summary.json, summary.csv     the fleet summary (inference.batch_report.batch_summary)
    label_counts.png              its label chart

A photo's car id is the manifest's `car_id` column, else the folder holding it when the photos sit in two or more
folders (`car_id/front.jpg`), else a file-name prefix (`car_id__front.jpg`): inference.batch.car_ids_from_paths, as
in the Batch tab. A ZIP holding one top folder is read from inside it.
Ray and pyarrow are an optional extra (`pip install -e '.[batch]'`) imported only inside the job. Without
--address the job starts a local Ray instance with --workers CPUs and stops it at the end; with --address it
uses that cluster's CPUs, where every node needs this project installed and the inputs at the same paths.
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import os
import sys
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

from PIL import Image

from inference.batch import analyze_readers, car_ids_from_paths, car_verdicts, display_name, rows_to_csv
from inference.batch_report import SUMMARY_COLUMNS, batch_summary, label_chart, summary_rows
from inference.images import IMAGE_EXTENSIONS, MAX_FILE_BYTES, ImageError, load_image
from inference.inspection import car_columns
from inference.predictor import BATCH_SIZE, load_model
from inference.render import batch_columns, batch_row
from inference.tasks import TASKS, TaskSpec, get_task

PARTS_DIR = "parts"
THREADS_PER_WORKER = 1      # one model thread per actor and one actor per CPU
# Only paths and rows go through Ray's object store, never the photos: a small store is plenty locally.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
UNREADABLE_MEMBER = "The file could not be read from the archive (damaged, encrypted or unsupported)."
INSTALL_HINT = "Ray is not installed: pip install -e '.[batch]'"


class JobError(Exception):
    """The job cannot start (no photos, an unusable input or output); the message says why."""


@dataclass(frozen=True)
class PhotoRef:
    """Where a photo is; only this travels through Ray."""
    path: str          # the file, or `archive.zip/member`: the key a resumed run skips by
    file: str          # its name inside the input (the rows' `file`)
    car_id: str        # "" when the input does not say
    archive: str = ""  # the ZIP holding it, "" for a plain file
    member: str = ""   # its name in that ZIP


@dataclass
class JobResult:
    output: Path
    photos: int        # rows in the output (this run's and earlier runs')
    processed: int     # photos analysed by this run
    skipped: int       # photos of the input already in the output
    cars: int
    seconds: float
    summary: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Inputs: a folder, a ZIP or a CSV manifest -> PhotoRefs
# --------------------------------------------------------------------------------------------

def is_photo_name(name: PurePosixPath) -> bool:
    return name.suffix.lower() in IMAGE_EXTENSIONS and not name.name.startswith(".")


def folder_photos(root: Path) -> list[PhotoRef]:
    """Image files under `root` (recursive, hidden folders skipped; symlinks are kept as their own paths)."""
    relatives = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d != "__MACOSX")
        relatives += [PurePosixPath(Path(folder, name).relative_to(root).as_posix()) for name in sorted(files)]
    relatives = [relative for relative in relatives if is_photo_name(relative)]
    return [PhotoRef(os.path.abspath(root / relative), display_name(relative.as_posix()), car_id)
            for relative, car_id in zip(relatives, car_ids_from_paths(relatives))]


def zip_photos(archive: Path) -> list[PhotoRef]:
    """Image members of a ZIP (directories and macOS metadata skipped); one common top folder is left out of
    their names when the photos sit deeper, so `fleet/car_1/front.jpg` belongs to car_1."""
    try:
        with zipfile.ZipFile(archive) as opened:
            members = [PurePosixPath(info.filename.replace("\\", "/")) for info in opened.infolist()
                       if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise JobError(f"{archive}: not a readable ZIP archive ({err})") from None
    members = [m for m in members if "__MACOSX" not in m.parts and is_photo_name(m)]
    one_top = len({m.parts[0] for m in members}) == 1 and all(len(m.parts) > 1 for m in members)
    strip = 1 if one_top and any(len(m.parts) > 2 for m in members) else 0
    relatives = [PurePosixPath(*member.parts[strip:]) for member in members]
    return [PhotoRef(f"{os.path.abspath(archive)}/{member}", display_name(relative.as_posix()), car_id,
                     os.path.abspath(archive), str(member))
            for member, relative, car_id in zip(members, relatives, car_ids_from_paths(relatives))]


def manifest_photos(manifest: Path) -> list[PhotoRef]:
    """A CSV `image[,car_id]`, image paths relative to the CSV's folder; every listed file is a row."""
    try:
        with open(manifest, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise JobError(f"{manifest}: the manifest could not be read ({err})") from None
    if not rows or "image" not in rows[0]:
        raise JobError(f"{manifest}: a manifest needs an `image` column (and optionally `car_id`)")
    return [PhotoRef(os.path.abspath(manifest.parent / row["image"].strip()), display_name(row["image"].strip()),
                     (row.get("car_id") or "").strip())
            for row in rows if (row.get("image") or "").strip()]


def list_photos(source: Path) -> list[PhotoRef]:
    """The photos of a folder, ZIP or CSV manifest, each path once."""
    if source.is_dir():
        refs = folder_photos(source)
    elif source.suffix.lower() == ".csv":
        refs = manifest_photos(source)
    elif zipfile.is_zipfile(source):
        refs = zip_photos(source)
    else:
        raise JobError(f"{source}: expected a folder, a ZIP archive or a CSV manifest")
    return list({ref.path: ref for ref in refs}.values())


# --------------------------------------------------------------------------------------------
# The Ray Data actor: photo refs -> photo rows
# --------------------------------------------------------------------------------------------

def row_columns(spec: TaskSpec) -> list[str]:
    return [*batch_columns(spec), "car_id", "path"]


def arrow_schema(spec: TaskSpec):
    """The photo rows' Arrow types: confidences and scores float, flags bool (null when not judged), text str."""
    import pyarrow as pa

    def arrow_type(column: str):
        if column.endswith("_confidence") or column == "ood_score":
            return pa.float64()
        if column.endswith("needs_review") or column == "in_domain":
            return pa.bool_()
        return pa.string()

    return pa.schema([(column, arrow_type(column)) for column in row_columns(spec)])


def rows_table(rows: Sequence[dict[str, Any]], schema):
    """Rows -> an Arrow table of `schema`: "" becomes null in typed columns, anything else in text columns str."""
    import pyarrow as pa

    def cell(value: Any, text: bool) -> Any:
        if text:
            return "" if value is None else str(value)
        return None if value == "" else value

    return pa.Table.from_pylist([{f.name: cell(row.get(f.name, ""), f.type == pa.string()) for f in schema}
                                 for row in rows], schema=schema)


@functools.lru_cache(maxsize=8)
def open_archive(path: str) -> zipfile.ZipFile:
    """One open ZIP per archive and worker process (actors run one batch at a time)."""
    return zipfile.ZipFile(path)


def read_photo(ref: dict[str, str]) -> Image.Image:
    """The decoded photo of a ref; ImageError for anything unusable (bounded read of a ZIP member)."""
    if not ref["archive"]:
        return load_image(ref["path"])
    try:
        with open_archive(ref["archive"]).open(ref["member"]) as member:
            data = member.read(MAX_FILE_BYTES + 1)   # load_image refuses more; the header's size may lie
    except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, NotImplementedError, KeyError, ValueError):
        raise ImageError(UNREADABLE_MEMBER) from None
    return load_image(data)


class PhotoAnalyzer:
    """A Ray Data actor: loads the served model once, then turns batches of refs into photo rows."""

    def __init__(self, task: str):
        self.task = task
        self.schema = arrow_schema(get_task(task))
        self.predictor = load_model(task)

    def __call__(self, batch):
        refs = batch.to_pylist()
        answers = analyze_readers(self.task, [functools.partial(read_photo, ref) for ref in refs],
                                  predictor=self.predictor)
        return rows_table([{**batch_row(ref["file"], answer), "car_id": ref["car_id"], "path": ref["path"]}
                           for ref, answer in zip(refs, answers)], self.schema)


# --------------------------------------------------------------------------------------------
# The output: parts written as batches finish, merged at the end
# --------------------------------------------------------------------------------------------

def write_atomic(path: Path, write: Callable[[Path], Any]) -> None:
    """Write beside `path`, then rename: a reader or a resumed run never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def read_parts(parts: Path, spec: TaskSpec):
    """Every finished row so far (one Arrow table), None when there are none. Refuses another task's output."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        return None
    schema = arrow_schema(spec)
    tables = [pq.read_table(f) for f in files]
    if any(not table.schema.equals(schema) for table in tables):
        raise JobError(f"{parts.parent} holds other results (another task or version): use a new --output")
    return pa.concat_tables(tables)


def analyze_pending(task: str, pending: Sequence[PhotoRef], parts: Path, workers: int, batch_size: int,
                    progress: bool) -> int:
    """Run the pending photos through the actor pool; each finished batch becomes a part file. Returns the count."""
    import pyarrow.parquet as pq
    import ray
    from tqdm import tqdm

    # One progress bar, the driver's, counting the photos saved; Ray Data's own would count blocks.
    import ray.data   # configures its loggers on import: quiet them after

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)   # "progress bars disabled"
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = ray.data.from_items([asdict(ref) for ref in pending]).map_batches(
        PhotoAnalyzer, fn_constructor_args=(task,), batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=THREADS_PER_WORKER,
        runtime_env={"env_vars": {"INFERENCE_THREADS": str(THREADS_PER_WORKER)}})
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    done = 0
    with tqdm(total=len(pending), unit="photo", disable=not progress) as bar:
        for index, table in enumerate(rows.iter_batches(batch_size=None, batch_format="pyarrow")):
            write_atomic(parts / f"part-{run}-{index:06d}.parquet", lambda p, t=table: pq.write_table(t, p))
            done += table.num_rows
            bar.update(table.num_rows)
    return done


def write_outputs(out: Path, spec: TaskSpec, table) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The final files from every finished row (each path once, sorted by path); returns the cars and summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted({row["path"]: row for row in table.to_pylist()}.values(), key=lambda row: row["path"])
    photos = rows_table(rows, arrow_schema(spec))
    write_atomic(out / "photos.parquet", lambda p: pq.write_table(photos, p))
    write_atomic(out / "photos.csv", lambda p: p.write_text(rows_to_csv(rows, row_columns(spec)), encoding="utf-8"))
    cars = car_verdicts(spec.name, rows) if any(row["car_id"] for row in rows) else []
    if cars:
        write_atomic(out / "cars.parquet", lambda p: pq.write_table(pa.Table.from_pylist(cars), p))
        write_atomic(out / "cars.csv", lambda p: p.write_text(rows_to_csv(cars, car_columns(spec)), encoding="utf-8"))
    summary = batch_summary(spec.name, rows)
    write_atomic(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2), encoding="utf-8"))
    write_atomic(out / "summary.csv",
                 lambda p: p.write_text(rows_to_csv(summary_rows(summary), SUMMARY_COLUMNS), encoding="utf-8"))
    write_atomic(out / "label_counts.png", lambda p: label_chart(summary).save(p, format="PNG"))
    return cars, summary


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------

@contextmanager
def ray_session(address: str | None, workers: int | None) -> Iterator[int]:
    """Ray as found (already initialised), at `address`, or a local instance of `workers` CPUs started and
    stopped here. Yields the number of actors to run: `workers`, else every CPU of the cluster."""
    try:
        import ray
    except ImportError:
        raise JobError(INSTALL_HINT) from None
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, logging_level=logging.WARNING)
    try:
        yield workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        if started:
            ray.shutdown()


def run_job(task: str, source: Path, output: Path, *, address: str | None = None, workers: int | None = None,
            batch_size: int = BATCH_SIZE, progress: bool = True) -> JobResult:
    """Analyse the photos of `source` not yet in `output`, then (re)write the output's final files."""
    start = time.perf_counter()
    spec = get_task(task)
    if not source.exists():
        raise JobError(f"{source}: no such file or folder")
    refs = list_photos(source)
    if not refs:
        raise JobError(f"{source}: no image files found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    parts = output / PARTS_DIR
    parts.mkdir(parents=True, exist_ok=True)
    for leftover in parts.glob(".*.tmp"):   # a part an interrupted run was writing
        leftover.unlink()
    finished = read_parts(parts, spec)
    done = set() if finished is None else set(finished.column("path").to_pylist())
    pending = [ref for ref in refs if ref.path not in done]
    processed = 0
    if pending:
        with ray_session(address, workers) as actors:
            processed = analyze_pending(task, pending, parts, actors, batch_size, progress)
    cars, summary = write_outputs(output, spec, read_parts(parts, spec))
    return JobResult(output, summary["n_files"], processed, len(refs) - len(pending), len(cars),
                     round(time.perf_counter() - start, 2), summary)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.batch_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="car")
    parser.add_argument("--input", type=Path, required=True, help="a folder, a ZIP archive or a CSV manifest")
    parser.add_argument("--output", type=Path, required=True, help="the output folder (a rerun resumes it)")
    parser.add_argument("--address", help="an existing Ray cluster (ray://host:10001 or auto); default: local")
    parser.add_argument("--workers", type=int, help="model actors, one CPU each (default: every CPU)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="photos per actor call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        result = run_job(args.task, args.input, args.output, address=args.address, workers=args.workers,
                         batch_size=args.batch_size, progress=not args.no_progress)
    except JobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the finished photos are kept in {args.output / PARTS_DIR}; run the same command again "
              "to go on", file=sys.stderr)
        return 130
    s = result.summary
    print(f"{result.photos} photos in {result.output} ({result.processed} analysed now, {result.skipped} already "
          f"done), {result.cars} cars, {result.seconds:.1f} s: {s['n_judged']} judged, {s['n_not_judged']} not "
          f"judged, {s['n_retake']} to retake, {s['n_unreadable']} unreadable")
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not __main__'s: Ray then ships PhotoAnalyzer to the workers by reference.
    from inference.batch_job import main as job_main

    sys.exit(job_main())
