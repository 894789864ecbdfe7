"""Training data: load a labelled image set for a task, check it, and split it without leaks.

``load_dataset`` detects the format from the path:

1. Folders: ``<root>/<label>/<image>`` for single-head tasks (collectibles). The folder name is the
   label (case-insensitive; spaces and hyphens count as underscores). Images may sit in deeper
   sub-folders; the first one below the class folder becomes the sample's ``source``, otherwise
   the source is ``"folders"``. Extensions: those of ``inference.images.IMAGE_EXTENSIONS`` (any case).
2. CSV manifest: columns ``image`` plus one column per head (``image,label[,source]`` for
   collectibles, where ``label`` may stand in for the single head; ``image,cleanliness,damage[,source]``
   for car). Image paths are relative to the CSV's folder. An empty cell means "unknown" (None) and
   that head is masked out of the loss for that image. Without a ``source`` column the source is
   ``"csv"``; an empty source cell gives ``"unknown"``. A folder holding exactly one ``*.csv`` is read
   as that CSV, even when it also has class sub-folders.
3. Label Studio JSON export: a folder with ``annotations.json`` and an ``images/`` folder (or the JSON
   file itself). ``data.image`` may be an upload path (``/data/upload/3/1a2b3c4d-photo.jpg``), a URL
   (``...?d=images/photo.jpg``) or a relative path; the file is looked up relative to the JSON, then
   by basename in ``images/``, then by basename without Label Studio's ``xxxxxxxx-`` upload prefix.
   The latest non-cancelled annotation of each task is used (tasks without one are ignored). Results
   of type ``choices`` and ``*labels`` (``rectanglelabels``, ``polygonlabels``, ...) are mapped to
   ``(head, label)`` through the label map. A head with no such result in a task is unknown (None):
   no damage rectangle means "damage unknown", not "intact". Two different labels for one head in one
   task resolve to the more severe one (the later one in the task's label order) and are counted in
   ``Dataset.conflicts``. Labels mapped to heads the task does not have are ignored; labels missing
   from the map are an error.

Label map: ``DEFAULT_LABEL_MAP`` covers the Russian and English labels used so far. Matching is
case-insensitive, ignores surrounding and repeated whitespace, and treats "ё" as "е". Override or
extend it with a JSON file ``{"raw label": ["head", "label"], ...}`` read by ``load_label_map``; its
entries win over the defaults.

Files that are missing or cannot be decoded are skipped and listed in ``Dataset.skipped``.
Several folders at once: ``load_sources`` reads each ``--data`` folder with its kind (``scan``:
catalogue pictures and studio shots; ``photo``: real photos) and ``load_negatives`` reads folders of
pictures that belong to none of the task's labels (a negatives manifest, or another task's data):
they teach and test the in-domain check. Splits live in ``training.splits``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, unquote, urlparse

from PIL import Image
from tqdm import tqdm

from inference.images import IMAGE_EXTENSIONS
from inference.tasks import TaskSpec

logger = logging.getLogger(__name__)

EXPECTED_FORMATS = ("a folder of class sub-folders, a CSV manifest (image,<head columns>[,source]) "
                    "or a folder holding exactly one, or a Label Studio JSON export "
                    "(annotations.json + images/)")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-", re.IGNORECASE)
_PROGRESS_THRESHOLD = 200
_MAX_LOGGED_SKIPS = 20

DEFAULT_LABEL_MAP: dict[str, tuple[str, str]] = {
    # Car condition, Russian.
    "Чистый": ("cleanliness", "clean"),
    "Пыльный": ("cleanliness", "slightly_dirty"),
    "Грязный": ("cleanliness", "very_dirty"),
    "Битый": ("damage", "damaged"),
    "Поврежденный": ("damage", "damaged"),
    "Повреждённый": ("damage", "damaged"),
    "Целый": ("damage", "intact"),
    # Car condition, English.
    "clean": ("cleanliness", "clean"),
    "dusty": ("cleanliness", "slightly_dirty"),
    "slightly dirty": ("cleanliness", "slightly_dirty"),
    "slightly_dirty": ("cleanliness", "slightly_dirty"),
    "dirty": ("cleanliness", "very_dirty"),
    "very dirty": ("cleanliness", "very_dirty"),
    "very_dirty": ("cleanliness", "very_dirty"),
    "damaged": ("damage", "damaged"),
    "wrecked": ("damage", "damaged"),
    "broken": ("damage", "damaged"),
    "intact": ("damage", "intact"),
    "whole": ("damage", "intact"),
    "undamaged": ("damage", "intact"),
    # Collectibles.
    "books": ("category", "books"),
    "book": ("category", "books"),
    "coins": ("category", "coins"),
    "coin": ("category", "coins"),
    "drumsticks": ("category", "drumsticks"),
    "drumstick": ("category", "drumsticks"),
    "stamps": ("category", "stamps"),
    "stamp": ("category", "stamps"),
    "vinyls": ("category", "vinyls"),
    "vinyl": ("category", "vinyls"),
    "record": ("category", "vinyls"),
    "records": ("category", "vinyls"),
}


class DataError(ValueError):
    """A problem with the training data, worded for the person who supplied it."""


KINDS = ("scan", "photo")                 # what a labelled --data folder holds
OUTLIER_KINDS = ("negative", "other_task")  # "none of these" pictures for the in-domain check


@dataclass(frozen=True)
class Sample:
    path: Path
    labels: dict[str, str | None]  # every head of the task -> label, or None when unknown
    source: str
    kind: str = "scan"             # one of KINDS or OUTLIER_KINDS
    what: str = ""                 # negatives: the kind of object shown (banknote, cup, ...)

    @property
    def holdout_group(self) -> str | None:
        """What is held out as a whole: a photo's source, a negative's (source, what); None for scans."""
        if self.kind == "scan":
            return None
        return f"{self.source}/{self.what}" if self.what else self.source

    @property
    def in_domain(self) -> bool:
        return self.kind in KINDS


@dataclass
class Dataset:
    samples: list[Sample]
    skipped: list[tuple[Path, str]]  # (file, reason) for missing or unreadable images
    format: str  # "folders" | "csv" | "labelstudio"
    conflicts: int = 0  # Label Studio heads with two different labels in one task


def load_label_map(path: str | Path) -> dict[str, tuple[str, str]]:
    """Read a JSON label map ``{"raw label": ["head", "label"]}`` and merge it over the default."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"label map not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read label map {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"label map {path} must be a JSON object {{\"raw label\": [\"head\", \"label\"]}}")
    overrides = {}
    for key, value in raw.items():
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise DataError(f"label map {path}: entry {key!r} must be [\"head\", \"label\"], got {value!r}")
        overrides[key] = (value[0], value[1])
    return {**DEFAULT_LABEL_MAP, **overrides}


def load_dataset(spec: TaskSpec, path: str | Path, label_map: dict | None = None, min_per_class: int = 5,
                 check_images: bool = True, kind: str = "scan") -> Dataset:
    """Load and validate a labelled image set for ``spec`` from any supported format.

    ``label_map`` (Label Studio only) is merged over ``DEFAULT_LABEL_MAP``. Raises ``DataError`` for
    unknown labels, an empty set, a head with no known label, or a class with < ``min_per_class`` images.
    Every sample gets ``kind`` (one of ``KINDS``).
    """
    if kind not in KINDS:
        raise DataError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)}")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"dataset not found: {root}")
    fmt, location = _detect_format(root)
    conflicts = 0
    if fmt == "folders":
        samples = _read_folders(spec, location)
    elif fmt == "csv":
        samples = _read_csv(spec, location)
    else:
        samples, conflicts = _read_labelstudio(spec, location, {**DEFAULT_LABEL_MAP, **(label_map or {})})

    unlabelled = sum(all(v is None for v in s.labels.values()) for s in samples)
    if unlabelled:
        logger.info("%d images in %s have no label for any head of task %r; ignored", unlabelled, root, spec.name)
        samples = [s for s in samples if any(v is not None for v in s.labels.values())]
    samples, skipped = _check_files([replace(s, kind=kind) for s in samples], check_images, root)
    if not samples:
        extra = f" ({len(skipped)} file(s) skipped as missing or unreadable)" if skipped else ""
        raise DataError(f"no labelled images found in {root}{extra}; expected {EXPECTED_FORMATS}")
    _check_counts(spec, samples, root, min_per_class)
    if conflicts:
        logger.warning("%d Label Studio task head(s) had conflicting labels; kept the more severe one", conflicts)
    return Dataset(samples, skipped, fmt, conflicts)


@dataclass(frozen=True)
class DataFolder:
    """One --data argument: a folder (or file) in a supported format and what kind of pictures it holds."""
    path: Path
    kind: str

    @classmethod
    def parse(cls, text: str) -> "DataFolder":
        """``[scan=|photo=]PATH``; without a prefix, a folder whose name says "photo" holds photos."""
        prefix, sep, rest = text.partition("=")
        if sep and prefix in KINDS:
            return cls(Path(rest).expanduser(), prefix)
        path = Path(text).expanduser()
        return cls(path, "photo" if "photo" in path.name.lower() else "scan")

    def to_dict(self, n: int) -> dict:
        return {"path": str(self.path), "kind": self.kind, "n_images": n}


def load_sources(spec: TaskSpec, folders: Sequence[DataFolder], label_map: dict | None = None,
                 min_per_class: int = 5, check_images: bool = True) -> tuple[list[Sample], list[dict]]:
    """The samples of several data folders merged (sources and kinds kept), and a record per folder.

    A folder may lack some labels; the class counts are checked on the merged set.
    """
    if not folders:
        raise DataError("no data folder given")
    samples, record = [], []
    for folder in folders:
        dataset = load_dataset(spec, folder.path, label_map, min_per_class=0, check_images=check_images,
                               kind=folder.kind)
        samples += dataset.samples
        record.append({**folder.to_dict(len(dataset.samples)), "format": dataset.format,
                       "skipped": [f"{path}: {reason}" for path, reason in dataset.skipped]})
    _check_counts(spec, samples, ", ".join(str(f.path) for f in folders), min_per_class)
    return samples, record


OTHER_TASK_PER_SOURCE = 60  # other-task pictures kept per source: enough variety, little caching


def add_data_arguments(parser: argparse.ArgumentParser, tasks: Sequence[str]) -> None:
    """The data options training and evaluation share (and read with `load_all`, split with the same seed)."""
    parser.add_argument("--task", required=True, choices=sorted(tasks))
    parser.add_argument("--data", required=True, action="append", metavar="[KIND=]DIR",
                        help="labelled pictures: class folders, a CSV manifest or a Label Studio export; repeat for "
                             "several folders; KIND is scan or photo (default: photo if the folder name says so)")
    parser.add_argument("--negatives", action="append", default=[], metavar="DIR",
                        help="pictures of neither task (CSV manifest with image[,source,what] or image files)")
    parser.add_argument("--other-task", action="append", default=[], metavar="DIR",
                        help=f"another task's data folder: its pictures are 'none of these' too (at most "
                             f"{OTHER_TASK_PER_SOURCE} per source)")
    parser.add_argument("--label-map", type=Path, help="JSON file mapping raw Label Studio labels to [head, label]")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share held out for validation (whole photo sources)")
    parser.add_argument("--seed", type=int, default=0)


def load_all(spec: TaskSpec, data: Sequence[str], negatives: Sequence[str] = (), other_task: Sequence[str] = (),
             label_map: dict | None = None, seed: int = 0, min_per_class: int = 5,
             check_images: bool = True) -> tuple[list[Sample], list[dict]]:
    """What training and evaluation read: the labelled --data folders ([KIND=]PATH each), then the
    negatives and the other tasks' pictures (at most OTHER_TASK_PER_SOURCE per source); with a record
    per folder (path, kind, count)."""
    samples, folders = load_sources(spec, [DataFolder.parse(d) for d in data], label_map, min_per_class, check_images)
    for kind, paths in (("negative", negatives), ("other_task", other_task)):
        for path in paths:
            found = load_outliers(spec, path, kind, check_images,
                                  per_source=OTHER_TASK_PER_SOURCE if kind == "other_task" else None, seed=seed)
            samples += found
            folders.append({"path": str(path), "kind": kind, "n_images": len(found)})
    return samples, folders


def load_outliers(spec: TaskSpec, path: str | Path, kind: str, check_images: bool = True,
                  per_source: int | None = None, seed: int = 0) -> list[Sample]:
    """Pictures that belong to none of the task's labels, for the in-domain check.

    ``path`` is a folder holding one CSV manifest (column ``image``; ``source`` and ``what`` kept when
    present, every other column ignored, so another task's labels.csv or MANIFEST.csv works as is) or
    a folder of images (the first sub-folder below it is the source). ``kind`` is "negative" or
    "other_task"; every label of the task is unknown for these samples. With ``per_source``, at most
    that many pictures of each source are kept (a seeded sample), so one big source does not dominate.
    """
    if kind not in OUTLIER_KINDS:
        raise DataError(f"unknown outlier kind {kind!r}; expected one of {', '.join(OUTLIER_KINDS)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{kind.replace('_', ' ')} folder not found: {root}")
    unknown = {head: None for head in spec.heads}
    fmt, location = _detect_format(root)
    samples = []
    if fmt == "csv":
        try:
            with location.open(newline="", encoding="utf-8-sig") as handle:
                for row in csv.DictReader(handle):
                    image = (row.get("image") or "").strip()
                    if image:
                        samples.append(Sample(location.parent / image, unknown, (row.get("source") or "").strip()
                                              or root.name, kind, (row.get("what") or "").strip()))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"cannot read CSV {location}: {exc}") from exc
    else:
        for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
            parts = image.relative_to(root).parts
            samples.append(Sample(image, unknown, parts[0] if len(parts) > 1 else root.name, kind))
    if per_source is not None:
        by_source: dict[str, list[Sample]] = {}
        for sample in samples:
            by_source.setdefault(sample.source, []).append(sample)
        rng = random.Random(seed)
        samples = [s for group in by_source.values()
                   for s in (group if len(group) <= per_source else sorted(rng.sample(group, per_source),
                                                                           key=group.index))]
    samples, _ = _check_files(samples, check_images, root)
    if not samples:
        raise DataError(f"no images found in {root}; expected a CSV manifest with an 'image' column or image files")
    return samples


def label_counts(spec: TaskSpec, samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Head -> label -> number of samples with that label (unknown labels are not counted)."""
    result = {}
    for head, labels in spec.heads.items():
        counts = Counter(s.labels.get(head) for s in samples)
        result[head] = {label: counts[label] for label in labels}
    return result


def _detect_format(root: Path) -> tuple[str, Path]:
    if root.is_file():
        suffix = root.suffix.lower()
        if suffix == ".csv":
            return "csv", root
        if suffix == ".json":
            return "labelstudio", root
        raise DataError(f"unsupported dataset file {root}; expected {EXPECTED_FORMATS}")
    if (root / "annotations.json").is_file():
        return "labelstudio", root / "annotations.json"
    csvs = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    if len(csvs) > 1:
        raise DataError(f"{root} holds several CSV files ({', '.join(p.name for p in csvs)}); "
                        "pass the path of the one to use")
    return ("csv", csvs[0]) if csvs else ("folders", root)


def _match_label(labels: tuple[str, ...], raw: str) -> str | None:
    key = re.sub(r"[\s-]+", "_", raw.strip().casefold())
    return key if key in labels else None


def _read_folders(spec: TaskSpec, root: Path) -> list[Sample]:
    if len(spec.heads) != 1:
        raise DataError(f"{root}: class sub-folders only work for single-head tasks; task {spec.name!r} has "
                        f"heads {', '.join(spec.heads)}, so use a CSV manifest or a Label Studio export")
    (head, labels), = spec.heads.items()
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(folder).parts))
        if not images:
            continue
        label = _match_label(labels, folder.name)
        if label is None:
            raise DataError(f"folder {folder} is not a {head!r} label of task {spec.name!r}; "
                            f"allowed folder names: {', '.join(labels)}")
        for image in images:
            parts = image.relative_to(folder).parts
            samples.append(Sample(image, {head: label}, parts[0] if len(parts) > 1 else "folders"))
    return samples


def _read_csv(spec: TaskSpec, csv_path: Path) -> list[Sample]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = fields
            # A single-head task may call its column "label".
            single = len(spec.heads) == 1
            columns = {head: "label" if single and head not in fields else head for head in spec.heads}
            missing = [col for col in ["image", *columns.values()] if col not in fields]
            if missing:
                raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected "
                                f"image,{','.join(spec.heads)}[,source]; found {','.join(fields) or 'nothing'}")
            samples = []
            for row in reader:
                image = (row["image"] or "").strip()
                if not image:
                    raise DataError(f"{csv_path} line {reader.line_num}: empty image path")
                labels: dict[str, str | None] = {}
                for head, column in columns.items():
                    raw = (row[column] or "").strip()
                    labels[head] = _match_label(spec.heads[head], raw) if raw else None
                    if raw and labels[head] is None:
                        raise DataError(f"{csv_path} line {reader.line_num} ({image}): {raw!r} is not a {head!r} "
                                        f"label of task {spec.name!r}; allowed: {', '.join(spec.heads[head])} "
                                        "(leave the cell empty if unknown)")
                source = ((row.get("source") or "").strip() or "unknown") if "source" in fields else "csv"
                samples.append(Sample(csv_path.parent / image, labels, source))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV {csv_path}: {exc}") from exc
    return samples


def _normalise_key(raw: str) -> str:
    return " ".join(raw.casefold().replace("ё", "е").split())


def _resolve_image(ref: str, base: Path, images_dir: Path) -> Path:
    """Find a Label Studio image reference on disk; returns the best guess even if it is missing."""
    parsed = urlparse(ref)
    query_path = parse_qs(parsed.query).get("d")
    rel = unquote(query_path[0] if query_path else parsed.path)
    name = Path(rel).name
    candidates = [] if parsed.scheme or rel.startswith("/") else [base / rel, images_dir / rel]
    candidates += [images_dir / name, images_dir / _UPLOAD_PREFIX.sub("", name)]
    return next((c for c in candidates if c.is_file()), candidates[-1])


def _read_labelstudio(spec: TaskSpec, json_path: Path,
                      label_map: dict[str, tuple[str, str]]) -> tuple[list[Sample], int]:
    try:
        tasks = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read Label Studio export {json_path}: {exc}") from exc
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise DataError(f"{json_path} is not a Label Studio JSON export (a list of tasks with 'data' and "
                        "'annotations'); export with the 'JSON' option, not 'JSON-MIN'")
    mapping = {_normalise_key(k): tuple(v) for k, v in label_map.items()}
    images_dir = json_path.parent / "images"
    samples, conflicts, unannotated = [], 0, 0
    for position, task in enumerate(tasks):
        task_id = task.get("id", f"#{position}")
        ref = task["data"].get("image")
        if not isinstance(ref, str) or not ref:
            raise DataError(f"{json_path}: task {task_id} has no data.image")
        annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
        if not annotations:
            unannotated += 1
            continue
        _, latest = max(enumerate(annotations),
                        key=lambda ia: (ia[1].get("updated_at") or ia[1].get("created_at") or "", ia[0]))
        found: dict[str, set[str]] = {head: set() for head in spec.heads}
        for result in latest.get("result") or []:
            kind = result.get("type", "")
            if kind != "choices" and not kind.endswith("labels"):
                continue
            for raw in (result.get("value") or {}).get(kind) or []:
                if _normalise_key(raw) not in mapping:
                    example = json.dumps({raw: ["head", "label"]}, ensure_ascii=False)
                    raise DataError(f"{json_path}: task {task_id}: label {raw!r} is not in the label map; "
                                    f"add it to a label-map JSON file, e.g. {example}")
                head, label = mapping[_normalise_key(raw)]
                if head not in spec.heads:
                    continue
                if label not in spec.heads[head]:
                    raise DataError(f"label map sends {raw!r} to {head}={label!r}, but head {head!r} of task "
                                    f"{spec.name!r} has labels {', '.join(spec.heads[head])}")
                found[head].add(label)
        labels: dict[str, str | None] = {}
        for head, values in found.items():
            conflicts += len(values) > 1
            labels[head] = max(values, key=spec.heads[head].index) if values else None
        samples.append(Sample(_resolve_image(ref, json_path.parent, images_dir), labels, "labelstudio"))
    if unannotated:
        logger.info("%s: %d task(s) without a non-cancelled annotation ignored", json_path, unannotated)
    return samples, conflicts


def _unreadable(path: Path) -> str | None:
    """Why the image cannot be decoded, or None if it loads."""
    if not path.is_file():
        return "file not found"
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, DecompressionBombError, ...
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def _check_files(samples: list[Sample], check_images: bool, root: Path
                 ) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """The samples whose file exists (and decodes, with `check_images`), and the others with a reason (logged)."""
    kept, skipped = [], []
    show = check_images and len(samples) > _PROGRESS_THRESHOLD
    for sample in tqdm(samples, desc=f"checking images in {root.name}", leave=False, disable=not show):
        reason = _unreadable(sample.path) if check_images else (None if sample.path.is_file() else "file not found")
        if reason:
            skipped.append((sample.path, reason))
        else:
            kept.append(sample)
    if skipped:
        listed = "\n".join(f"  {p}: {reason}" for p, reason in skipped[:_MAX_LOGGED_SKIPS])
        more = f"\n  ... and {len(skipped) - _MAX_LOGGED_SKIPS} more" if len(skipped) > _MAX_LOGGED_SKIPS else ""
        logger.warning("skipped %d image(s) in %s:\n%s%s", len(skipped), root, listed, more)
    return kept, skipped


def _check_counts(spec: TaskSpec, samples: list[Sample], root: Path | str, min_per_class: int) -> None:
    counts = label_counts(spec, samples)
    for head, per_label in counts.items():
        if not any(per_label.values()):
            raise DataError(f"no image in {root} has a {head!r} label; every {head} value is empty/unknown")
    too_few = [f"{head}={label}: {n}" for head, per_label in counts.items()
               for label, n in per_label.items() if n < min_per_class]
    if too_few:
        raise DataError(f"too few images per class in {root} (need at least {min_per_class}): {'; '.join(too_few)}")
