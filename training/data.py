"""Training data: load a labelled image set for a task, check it, and split it without leaks.

``load_dataset`` detects the format from the path:

1. Folders: ``<root>/<label>/<image>`` for single-head tasks (collectibles). The folder name is the
   label (case-insensitive; spaces and hyphens count as underscores). Images may sit in deeper
   sub-folders; the first one below the class folder becomes the sample's ``source``, otherwise
   the source is ``"folders"``. Extensions: jpg, jpeg, png, webp, bmp, gif (any case).
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
``grouped_split`` makes a stratified train/val split in which near-duplicate images (perceptual-hash
distance <= 6) always land on the same side.
"""
from __future__ import annotations

import csv
import json
import logging
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import imagehash
import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold
from tqdm import tqdm

from inference.tasks import TaskSpec

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
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


@dataclass(frozen=True)
class Sample:
    path: Path
    labels: dict[str, str | None]  # every head of the task -> label, or None when unknown
    source: str


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
                 check_images: bool = True) -> Dataset:
    """Load and validate a labelled image set for ``spec`` from any supported format.

    ``label_map`` (Label Studio only) is merged over ``DEFAULT_LABEL_MAP``. Raises ``DataError`` for
    unknown labels, an empty set, a head with no known label, or a class with < ``min_per_class`` images.
    """
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
    samples, skipped = _check_files(samples, check_images)
    if skipped:
        listed = "\n".join(f"  {p}: {reason}" for p, reason in skipped[:_MAX_LOGGED_SKIPS])
        more = f"\n  ... and {len(skipped) - _MAX_LOGGED_SKIPS} more" if len(skipped) > _MAX_LOGGED_SKIPS else ""
        logger.warning("skipped %d image(s) in %s:\n%s%s", len(skipped), root, listed, more)
    if not samples:
        extra = f" ({len(skipped)} file(s) skipped as missing or unreadable)" if skipped else ""
        raise DataError(f"no labelled images found in {root}{extra}; expected {EXPECTED_FORMATS}")
    _check_counts(spec, samples, root, min_per_class)
    if conflicts:
        logger.warning("%d Label Studio task head(s) had conflicting labels; kept the more severe one", conflicts)
    return Dataset(samples, skipped, fmt, conflicts)


def label_counts(spec: TaskSpec, samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Head -> label -> number of samples with that label (unknown labels are not counted)."""
    result = {}
    for head, labels in spec.heads.items():
        counts = Counter(s.labels.get(head) for s in samples)
        result[head] = {label: counts[label] for label in labels}
    return result


def image_phash(path: str | Path) -> imagehash.ImageHash:
    """64-bit perceptual hash of an image, cached per path for the life of the process."""
    return _cached_phash(Path(path))


def grouped_split(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0,
                  max_distance: int = 6) -> tuple[list[Sample], list[Sample]]:
    """Stratified, reproducible train/val split that keeps near-duplicate images on one side.

    Images whose pHashes differ by <= ``max_distance`` bits are grouped (transitively); groups are
    split with ``StratifiedGroupKFold`` on the joined labels of all heads, one fold becoming val.
    Afterwards whole groups are moved so that every label with >= 2 groups is on both sides.
    """
    if not 0 < val_fraction <= 0.5:
        raise ValueError(f"val_fraction must be in (0, 0.5], got {val_fraction}")
    n_splits = round(1 / val_fraction)
    hashes = []
    for sample in samples:
        try:
            hashes.append(image_phash(sample.path).hash.flatten())
        except Exception as exc:  # noqa: BLE001 - PIL raises many exception types
            raise DataError(f"cannot read {sample.path} for near-duplicate grouping ({exc}); "
                            "load the dataset with check_images=True to skip unreadable files") from exc
    packed = np.packbits(np.array(hashes, dtype=bool).reshape(len(samples), 64), axis=1)
    groups = _near_duplicate_groups(packed.view(">u8").ravel().astype(np.uint64), max_distance)
    if len(set(groups.tolist())) < n_splits:
        raise DataError(f"need at least {n_splits} distinct images (after grouping near-duplicates) "
                        f"for a {val_fraction:.0%} validation split, got {len(set(groups.tolist()))}")
    strata = ["|".join(v or "?" for v in s.labels.values()) for s in samples]
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, val_idx = next(folds.split(np.zeros(len(samples)), strata, groups))
    in_val = np.zeros(len(samples), dtype=bool)
    in_val[val_idx] = True
    _cover_both_sides(samples, groups, in_val)
    train = [s for s, v in zip(samples, in_val) if not v]
    val = [s for s, v in zip(samples, in_val) if v]
    return train, val


@lru_cache(maxsize=None)
def _cached_phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as image:
        return imagehash.phash(image)


def _near_duplicate_groups(hashes: np.ndarray, max_distance: int, block: int = 512) -> np.ndarray:
    """Group ids (union-find roots) joining every pair of uint64 hashes within ``max_distance`` bits."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        rows = hashes[start:start + block]
        distances = np.bitwise_count(rows[:, None] ^ hashes[None, start:])
        for i, j in zip(*np.nonzero(distances <= max_distance)):
            if j > i:  # upper triangle only; j is relative to ``start`` like i
                a, b = find(start + int(i)), find(start + int(j))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(n)])


def _cover_both_sides(samples: list[Sample], groups: np.ndarray, in_val: np.ndarray) -> None:
    """Move whole groups (in place) until each label held by >= 2 groups is in train and in val."""
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups.tolist()):
        members.setdefault(group, []).append(index)
    group_labels = {g: {(h, v) for i in idx for h, v in samples[i].labels.items() if v is not None}
                    for g, idx in members.items()}
    side = {g: bool(in_val[idx[0]]) for g, idx in members.items()}
    label_groups = Counter(hl for labels in group_labels.values() for hl in labels)
    eligible = {hl for hl, count in label_groups.items() if count >= 2}
    counts = {False: Counter(), True: Counter()}
    for g, labels in group_labels.items():
        counts[side[g]].update(labels)

    def gain(g: int) -> int:
        """How many (label, side) gaps moving group g closes, minus how many it opens."""
        src = side[g]
        return sum((counts[not src][hl] == 0) - (counts[src][hl] == 1) for hl in group_labels[g] & eligible)

    while any(counts[s][hl] == 0 for hl in eligible for s in (False, True)):
        best = max(members, key=lambda g: (gain(g), -len(members[g]), -g))
        if gain(best) <= 0:
            break
        counts[side[best]].subtract(group_labels[best])
        side[best] = not side[best]
        counts[side[best]].update(group_labels[best])
        in_val[members[best]] = side[best]


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


def _check_files(samples: list[Sample], check_images: bool) -> tuple[list[Sample], list[tuple[Path, str]]]:
    kept, skipped = [], []
    show = check_images and len(samples) > _PROGRESS_THRESHOLD
    for sample in tqdm(samples, desc="checking images", leave=False, disable=not show):
        reason = _unreadable(sample.path) if check_images else (None if sample.path.is_file() else "file not found")
        if reason:
            skipped.append((sample.path, reason))
        else:
            kept.append(sample)
    return kept, skipped


def _check_counts(spec: TaskSpec, samples: list[Sample], root: Path, min_per_class: int) -> None:
    counts = label_counts(spec, samples)
    for head, per_label in counts.items():
        if not any(per_label.values()):
            raise DataError(f"no image in {root} has a {head!r} label; every {head} value is empty/unknown")
    too_few = [f"{head}={label}: {n}" for head, per_label in counts.items()
               for label, n in per_label.items() if n < min_per_class]
    if too_few:
        raise DataError(f"too few images per class in {root} (need at least {min_per_class}): {'; '.join(too_few)}")
