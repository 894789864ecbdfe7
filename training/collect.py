"""Grow a training set: import photos from files, URLs or the app's flag log, in the formats training reads.

    python -m training.collect files PATH     --task T --out DIR [--label LABEL | --label HEAD=LABEL ...]
    python -m training.collect urls LIST      --task T --out DIR [--label ...] [--timeout 20] [--retries 3]
    python -m training.collect flags          --task T --out DIR [--flag-dir DIR]
    common: [--against DIR ...] [--source NAME] [--size 256] [--quality 88] [--max-distance 6]
            [--max-bytes N] [--max-pixels N] [--no-progress]

Inputs:
  files PATH   a folder or a ZIP of photos, all with the --label given; without --label (single-head tasks)
               the first sub-folder is the label (``coins/a.jpg``); or a CSV ``image,label[,source]``
               (car: ``image,cleanliness,damage[,source]``; an empty cell = unknown; paths relative to the CSV)
  urls LIST    a text file, one image URL a line (``#`` comments), all with the --label given; or a CSV
               ``url,label[,source]`` (car: ``url,cleanliness,damage[,source]``)
  flags        the app's "Wrong answer?" log (``inference.flags``): each correction becomes a row with
               source ``flags`` and origin ``flag:<id>``. Flags saying "not this kind at all" are reported
               and skipped: the log does not say what the photo shows instead (a negatives row needs a
               ``what``), and an unchecked "not a car" would teach the in-domain check to turn cars away.

The target (``--out``): a single-head task gets class folders + ``MANIFEST.csv`` (image,label,source,origin),
a multi-head task ``images/`` + ``labels.csv`` (image,<heads>,source,origin), as in ../shared/data. An
existing manifest (the folder's one CSV) is extended with its own columns; rows are only ever appended.

Every photo goes through the app's checks (``inference.images.load_image``: size and pixel limits, decode,
EXIF upright, RGB), is resized so its longest side is ``--size`` (small ones upscaled, as the shared data was
stored, so size says nothing about the label) and saved as ``<source>__<name>.jpg``. A photo within
``--max-distance`` perceptual-hash bits of a picture already in the target or in an ``--against`` folder is
dropped, naming the picture it matched. An origin already in the manifest is not fetched again, so a second
run adds nothing. Each photo is written to a temporary name and renamed before its row is appended, so an
interruption loses at most the photo in flight. What was dropped and what failed (and why) are written to
``<out>/.collect/duplicates.csv`` and ``failures.csv`` (in a hidden folder: training reads a dataset folder
holding exactly one CSV) and summed up at the end.
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import re
import sys
import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlparse

import httpx
import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from inference.flags import is_not_this_kind, read_flags
from inference.images import IMAGE_EXTENSIONS, MAX_FILE_BYTES, MAX_PIXELS, ImageError, load_image
from inference.tasks import TASKS, TaskSpec, get_task
from training.data import DataError
from training.splits import NEAR_DUPLICATE_BITS, image_phash

log = logging.getLogger(__name__)

STORED_SIDE = 256        # the longest side of every picture in ../shared/data
STORED_QUALITY = 88      # their JPEG quality
# The split joins pictures within NEAR_DUPLICATE_BITS (6) into one unit and ../shared/data was deduplicated
# at the same distance: a photo the collector lets in is then never a near-copy the split would have to join.
MAX_DISTANCE = NEAR_DUPLICATE_BITS
REPORT_DIR = ".collect"
MAX_NAME = 40            # characters of each part of <source>__<name>.jpg (shared names stay under 85)
MAX_LISTED = 20          # duplicates / failures printed in the summary (all are in the report files)
USER_AGENT = "image-understanding-space-collector/1.0 (training-data collector)"


class CollectError(Exception):
    """Why one photo could not be imported (reported, the run goes on)."""


class _Transient(CollectError):
    """A failure worth retrying: a timeout, a dropped connection, 5xx, 429."""


@dataclass(frozen=True)
class Item:
    """One photo to import."""
    origin: str                          # URL, file path, ZIP member or flag:<id>
    labels: dict[str, str | None]        # every head of the task -> label or None (unknown)
    source: str
    name: str                            # file-name hint (a stem)
    read: Callable[[], bytes | Path]     # what load_image decodes; raises CollectError


@dataclass
class Limits:
    max_bytes: int = MAX_FILE_BYTES
    max_pixels: int = MAX_PIXELS


# --------------------------------------------------------------------------------------------
# Labels, names
# --------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """A file-name-safe piece: letters, digits, '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:MAX_NAME] or "image"


def match_label(spec: TaskSpec, head: str, raw: str) -> str:
    """A label of `head` as training.data reads it (case, spaces and hyphens ignored); DataError if unknown."""
    key = re.sub(r"[\s-]+", "_", raw.strip().casefold())
    if key not in spec.heads[head]:
        raise DataError(f"{raw!r} is not a {head!r} label of task {spec.name!r}; allowed: "
                        f"{', '.join(spec.heads[head])}")
    return key


def parse_labels(spec: TaskSpec, given: Sequence[str]) -> dict[str, str | None] | None:
    """`--label LABEL` (single-head task) or `--label HEAD=LABEL` (repeatable) -> head -> label; None if none."""
    if not given:
        return None
    labels: dict[str, str | None] = dict.fromkeys(spec.heads)
    for text in given:
        head, sep, raw = text.rpartition("=")
        if not sep:
            if len(spec.heads) != 1:
                raise DataError(f"--label {text!r}: task {spec.name!r} has heads {', '.join(spec.heads)}; "
                                "write HEAD=LABEL")
            head = next(iter(spec.heads))
        if head not in spec.heads:
            raise DataError(f"--label {text!r}: {head!r} is not a head of task {spec.name!r}")
        labels[head] = match_label(spec, head, raw)
    return labels


def row_labels(spec: TaskSpec, row: dict[str, str], where: str) -> dict[str, str | None]:
    """The labels of an input CSV row: a column per head (``label`` for a single head); empty = unknown."""
    single = len(spec.heads) == 1
    labels: dict[str, str | None] = {}
    for head in spec.heads:
        raw = (row.get(head) or (row.get("label") if single else None) or "").strip()
        try:
            labels[head] = match_label(spec, head, raw) if raw else None
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
    if all(label is None for label in labels.values()):
        raise DataError(f"{where}: no label (give {', '.join(spec.heads)})")
    return labels


def _read_csv(path: Path, key: str) -> list[tuple[str, dict[str, str]]]:
    """(where, row) of an input CSV that must have column `key`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if key not in (reader.fieldnames or []):
                raise DataError(f"{path}: no {key!r} column; found {', '.join(reader.fieldnames or []) or 'nothing'}")
            return [(f"{path} line {reader.line_num}", row) for row in reader if (row.get(key) or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Inputs: files, ZIP, CSV; URLs; flags
# --------------------------------------------------------------------------------------------


def items_from_files(spec: TaskSpec, path: Path, labels: dict[str, str | None] | None, source: str | None,
                     limits: Limits | None = None) -> list[Item]:
    """Photos of a folder, a ZIP or a CSV (see the module docstring); origins are absolute paths."""
    path = Path(path).expanduser().resolve()
    if path.suffix.lower() == ".csv":
        return _items_from_csv(spec, path, source)
    if zipfile.is_zipfile(path):
        limit = (limits or Limits()).max_bytes
        names = [n for n in _open_zip(path).namelist() if _is_photo_name(n)]
        return [_labelled_item(spec, f"{path}!{name}", name, labels, source or slug(path.stem).lower(),
                               lambda name=name: _read_member(path, name, limit)) for name in names]
    if not path.is_dir():
        raise DataError(f"{path} is not a folder, a ZIP or a CSV")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _is_photo_name(p.relative_to(path).as_posix()))
    return [_labelled_item(spec, str(p), p.relative_to(path).as_posix(), labels, source or slug(path.name).lower(),
                           lambda p=p: p) for p in files]


def _is_photo_name(name: str) -> bool:
    """An image file name outside hidden folders (and macOS's __MACOSX)."""
    parts = name.split("/")
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS and not any(
        part.startswith(".") or part == "__MACOSX" for part in parts)


def _labelled_item(spec: TaskSpec, origin: str, relative: str, labels: dict[str, str | None] | None,
                   source: str, read: Callable[[], bytes | Path]) -> Item:
    """An item labelled by --label, or else by its class sub-folder (single-head tasks)."""
    if labels is None:
        parts = relative.split("/")
        if len(spec.heads) != 1 or len(parts) < 2:
            raise DataError(f"{origin}: no label; give --label, put the photos in class sub-folders "
                            f"(single-head tasks) or use a CSV")
        head = next(iter(spec.heads))
        labels = {head: match_label(spec, head, parts[0])}
    return Item(origin, labels, source, Path(relative).stem, read)


@lru_cache(maxsize=1)
def _open_zip(path: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)   # kept open for the run: one central-directory read, not one per member


def _read_member(path: Path, name: str, limit: int) -> bytes:
    try:
        archive = _open_zip(path)
        if archive.getinfo(name).file_size > limit:
            raise CollectError(f"larger than {limit} bytes")
        with archive.open(name) as member:
            return member.read(limit + 1)   # load_image refuses more than the limit
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:   # RuntimeError: an encrypted member
        raise CollectError(f"cannot read from the ZIP ({exc})") from exc


def _items_from_csv(spec: TaskSpec, path: Path, source: str | None) -> list[Item]:
    items = []
    for where, row in _read_csv(path, "image"):
        image = (path.parent / row["image"].strip()).resolve()   # an absolute cell stays as it is
        items.append(Item(str(image), row_labels(spec, row, where),
                          (row.get("source") or "").strip() or source or slug(path.parent.name).lower(),
                          image.stem, lambda image=image: image))
    return items


def items_from_urls(spec: TaskSpec, path: Path, labels: dict[str, str | None] | None, source: str | None,
                    downloader: "Downloader") -> list[Item]:
    """Image URLs of a text file (one a line, all with `labels`) or a CSV url,<labels>[,source]."""
    path = Path(path).expanduser()
    if path.suffix.lower() == ".csv":
        rows = [(row["url"].strip(), row_labels(spec, row, where), (row.get("source") or "").strip())
                for where, row in _read_csv(path, "url")]
    else:
        if labels is None:
            raise DataError("a URL list without labels: give --label, or a CSV url,<labels>[,source]")
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc
        rows = [(line.strip(), labels, "") for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [Item(url, row_label, row_source or source or _host_source(url), Path(urlparse(url).path).stem,
                 lambda url=url: downloader.fetch(url)) for url, row_label, row_source in rows]


def _host_source(url: str) -> str:
    host = (urlparse(url).hostname or "web").removeprefix("www.")
    return slug(host.replace(".", "_")).lower()


def items_from_flags(spec: TaskSpec, flag_dir: Path | None, source: str | None) -> tuple[list[Item], list[str]]:
    """Labelled items from the flag log, and the ids of the flags saying "not this kind at all"."""
    items, not_this_kind = [], []
    for flag in read_flags(spec.name, flag_dir):
        if is_not_this_kind(flag["correction"]):
            not_this_kind.append(flag["flag_id"])
            continue
        labels = {head: flag["correction"].get(head) for head in spec.heads}
        items.append(Item(f"flag:{flag['flag_id']}", labels, source or "flags", flag["flag_id"],
                          lambda image=flag["image"]: image))
    return items, not_this_kind


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


@dataclass
class Downloader:
    """Polite, bounded image downloads: one at a time, `min_interval` s apart per host, retried with back-off."""
    limits: Limits = field(default_factory=Limits)
    timeout: float = 20.0        # seconds per attempt, the whole body included
    retries: int = 3             # extra attempts after a transient failure
    backoff: float = 1.0         # seconds before the first retry; doubles each time
    min_interval: float = 1.0    # seconds between two requests to one host
    _last_request: dict[str, float] = field(default_factory=dict, init=False)
    _client: httpx.Client | None = field(default=None, init=False)

    def fetch(self, url: str) -> bytes:
        """The image bytes at `url`; CollectError saying why not."""
        if urlparse(url).scheme not in ("http", "https"):
            raise CollectError("not an http(s) URL")
        attempt = 0
        while True:
            try:
                return self._get(url)
            except _Transient as exc:
                if attempt >= self.retries:
                    raise CollectError(f"{exc} (tried {attempt + 1} times)") from None
            time.sleep(self.backoff * 2 ** attempt)
            attempt += 1

    def _get(self, url: str) -> bytes:
        self._wait_turn(urlparse(url).netloc)
        deadline = time.monotonic() + self.timeout
        try:
            with self.client.stream("GET", url) as response:
                self._check_response(response)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.limits.max_bytes:
                        raise CollectError(f"larger than {self.limits.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise _Transient(f"timed out after {self.timeout:g} s")
                return bytes(body)
        except httpx.TimeoutException:
            raise _Transient(f"timed out after {self.timeout:g} s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise CollectError(f"request failed ({type(exc).__name__}: {exc})") from None

    def _check_response(self, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 500 or status == 429:   # 429 "too many requests" means: come back later
            raise _Transient(f"HTTP {status}")
        if status >= 400:
            raise CollectError(f"HTTP {status}")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind.startswith("image/"):
            raise CollectError(f"not an image (content-type {kind or 'missing'})")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limits.max_bytes:
            raise CollectError(f"larger than {self.limits.max_bytes} bytes ({length} announced)")

    def _wait_turn(self, host: str) -> None:
        wait = self._last_request.get(host, -self.min_interval) + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request[host] = time.monotonic()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:   # identity encoding: the byte limit counts what is stored, not gzip
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=True, max_redirects=5,
                                        headers={"User-Agent": USER_AGENT, "Accept": "image/*",
                                                 "Accept-Encoding": "identity"})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# --------------------------------------------------------------------------------------------
# The target dataset and the near-duplicate index
# --------------------------------------------------------------------------------------------


class PhashIndex:
    """Perceptual hashes of the pictures already held, searched by Hamming distance."""

    def __init__(self) -> None:
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.paths: list[str] = []

    def add(self, phash: imagehash.ImageHash, path: str | Path) -> None:
        self.hashes = np.append(self.hashes, np.uint64(int(str(phash), 16)))
        self.paths.append(str(path))

    def nearest(self, phash: imagehash.ImageHash) -> tuple[str, int] | None:
        """The closest held picture and its distance in bits (None while empty)."""
        if not self.paths:
            return None
        distances = np.bitwise_count(self.hashes ^ np.uint64(int(str(phash), 16)))
        best = int(np.argmin(distances))
        return self.paths[best], int(distances[best])

    def add_files(self, paths: Iterable[Path], progress: bool) -> None:
        for path in tqdm(list(paths), desc="hashing held pictures", unit="img", disable=not progress):
            try:
                self.add(image_phash(path), path)
            except Exception as exc:  # noqa: BLE001 - PIL raises many exception types
                log.warning("cannot hash %s for the duplicate check (%s); ignored", path, exc)


class Target:
    """The dataset folder being grown: its manifest (appended to, never rewritten) and the names in use."""

    def __init__(self, spec: TaskSpec, root: Path):
        self.spec, self.root = spec, Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.single = len(spec.heads) == 1
        self.manifest = self._find_manifest()
        if not self.manifest.exists():
            self._create_manifest()
        self.columns, self.rows, self.newline = _read_manifest(self.manifest)
        self.head_columns = {head: head if head in self.columns or not self.single else "label"
                             for head in spec.heads}
        missing = [c for c in ("image", *self.head_columns.values()) if c not in self.columns]
        if missing:
            raise DataError(f"{self.manifest} lacks column(s) {', '.join(missing)}; pick another --out")
        if "origin" not in self.columns:
            log.warning("%s has no origin column: a second run relies on the duplicate check alone", self.manifest)
        self.origins = {row.get("origin", "") for row in self.rows} - {""}
        self.images = {_image_cell(row).lower() for row in self.rows}

    def _find_manifest(self) -> Path:
        csvs = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
        if len(csvs) > 1:
            raise DataError(f"{self.root} holds several CSV files; training reads a folder with exactly one")
        if csvs:
            return csvs[0]
        if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in self.root.rglob("*")):
            raise DataError(f"{self.root} holds pictures but no manifest: a new manifest would hide them from "
                            "training; collect into a new folder and pass this one with --against")
        return self.root / ("MANIFEST.csv" if self.single else "labels.csv")

    def _create_manifest(self) -> None:
        heads = ["label"] if self.single else list(self.spec.heads)
        buffer = io.StringIO()
        csv.writer(buffer).writerow(["image", *heads, "source", "origin"])
        _write_atomic(self.manifest, buffer.getvalue().encode())

    def held_files(self) -> list[Path]:
        return [path for path in (self.root / _image_cell(row) for row in self.rows) if path.is_file()]

    def add(self, item: Item, jpeg: bytes) -> Path:
        """Write the photo, then append its row; returns the photo's path."""
        folder = item.labels[next(iter(self.spec.heads))] if self.single else "images"
        relative = self._free_name(folder, f"{slug(item.source)}__{slug(item.name)}")
        _write_atomic(self.root / relative, jpeg)
        row = {"image": relative, "source": item.source, "origin": item.origin,
               **{column: item.labels[head] or "" for head, column in self.head_columns.items()}}
        with self.manifest.open("a", newline="", encoding="utf-8") as handle:
            csv.writer(handle, lineterminator=self.newline).writerow([row.get(c, "") for c in self.columns])
            handle.flush()
            os.fsync(handle.fileno())
        self.origins.add(item.origin)
        self.images.add(relative.lower())
        return self.root / relative

    def _free_name(self, folder: str, stem: str) -> str:
        """`folder/stem.jpg`, or with _2, _3... when a row or a file already has that name."""
        for n in range(1, 10_000):
            relative = f"{folder}/{stem}{'' if n == 1 else f'_{n}'}.jpg"
            if relative.lower() not in self.images and not (self.root / relative).exists():
                return relative
        raise DataError(f"no free file name for {stem} in {self.root / folder}")


def _image_cell(row: dict[str, str]) -> str:
    return (row.get("image") or "").strip()


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]], str]:
    """Columns, rows and line ending of a manifest; a missing final line ending is added."""
    try:
        raw = path.read_bytes()
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        reader.fieldnames = [c.strip() for c in reader.fieldnames or []]
        rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    newline = "\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else "\n"
    if raw and not raw.endswith((b"\n", b"\r")):
        with path.open("a", newline="", encoding="utf-8") as handle:
            handle.write(newline)
    return list(reader.fieldnames), rows, newline


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name beside `path`, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def stored_jpeg(image: Image.Image, size: int, quality: int) -> bytes:
    """The longest side resized to exactly `size` (up or down), JPEG as the shared data is stored."""
    scale = size / max(image.size)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    added: list[tuple[Item, Path]] = field(default_factory=list)
    already_present: int = 0
    duplicates: list[dict[str, str | int]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    not_this_kind: list[str] = field(default_factory=list)

    def summary(self, spec: TaskSpec, target: Target) -> dict:
        per_label: dict[str, Counter] = defaultdict(Counter)
        for item, _ in self.added:
            for head, label in item.labels.items():
                per_label[head][label or "unknown"] += 1
        return {"manifest": str(target.manifest), "added": len(self.added),
                "added_per_label": {head: dict(per_label[head]) for head in spec.heads if per_label[head]},
                "added_per_source": dict(Counter(item.source for item, _ in self.added)),
                "added_files": [str(path) for _, path in self.added],
                "already_present": self.already_present, "duplicates": self.duplicates,
                "failures": self.failures, "not_this_kind": self.not_this_kind}


def collect(spec: TaskSpec, out: Path, items: Sequence[Item], *, against: Sequence[Path] = (),
            size: int = STORED_SIDE, quality: int = STORED_QUALITY, max_distance: int = MAX_DISTANCE,
            limits: Limits | None = None, not_this_kind: Sequence[str] = (), progress: bool = True) -> dict:
    """Import `items` into the dataset at `out`; returns the summary (also printed, and the reports written)."""
    limits = limits or Limits()
    others = [p for folder in against for p in _pictures(Path(folder))]
    target = Target(spec, out)
    index = PhashIndex()
    index.add_files(target.held_files() + others, progress)
    report = Report(not_this_kind=list(not_this_kind))
    try:
        for item in tqdm(items, desc="importing", unit="photo", disable=not progress):
            if item.origin in target.origins:
                report.already_present += 1
                continue
            try:
                image = load_image(item.read(), max_bytes=limits.max_bytes, max_pixels=limits.max_pixels)
            except ImageError as exc:
                report.failures.append({"origin": item.origin, "reason": exc.message})
                continue
            except CollectError as exc:
                report.failures.append({"origin": item.origin, "reason": str(exc)})
                continue
            jpeg = stored_jpeg(image, size, quality)
            phash = imagehash.phash(Image.open(io.BytesIO(jpeg)))   # as image_phash sees the stored file
            match = index.nearest(phash)
            if match and match[1] <= max_distance:
                report.duplicates.append({"origin": item.origin, "matches": match[0], "distance": match[1]})
                continue
            path = target.add(item, jpeg)
            index.add(phash, path)
            report.added.append((item, path))
    finally:
        _write_reports(target.root / REPORT_DIR, report)
    summary = report.summary(spec, target)
    print_summary(summary, target.root / REPORT_DIR)
    return summary


def _pictures(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"--against {folder}: not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _write_reports(folder: Path, report: Report) -> None:
    for name, rows, columns in (("duplicates.csv", report.duplicates, ("origin", "matches", "distance")),
                                ("failures.csv", report.failures, ("origin", "reason"))):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(folder / name, buffer.getvalue().encode())


def print_summary(summary: dict, reports: Path) -> None:
    print(f"added {summary['added']} photo(s) to {summary['manifest']}")
    for head, counts in summary["added_per_label"].items():
        print(f"  {head}: " + ", ".join(f"{label} {n}" for label, n in sorted(counts.items())))
    if summary["added_per_source"]:
        print("  sources: " + ", ".join(f"{s} {n}" for s, n in sorted(summary["added_per_source"].items())))
    print(f"already in the dataset (not fetched again): {summary['already_present']}")
    for key, title, line in (
            ("duplicates", "near-duplicates dropped", lambda d: f"{d['origin']} ~ {d['matches']} ({d['distance']} bits)"),
            ("failures", "failed", lambda f: f"{f['origin']}: {f['reason']}")):
        rows = summary[key]
        print(f"{title}: {len(rows)}" + (f" (all in {reports / f'{key}.csv'})" if rows else ""))
        for row in rows[:MAX_LISTED]:
            print(f"  {line(row)}")
    if summary["not_this_kind"]:
        print(f"flags saying 'not this kind at all', skipped: {', '.join(summary['not_this_kind'])}")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--task", required=True, choices=sorted(TASKS))
    common.add_argument("--out", required=True, type=Path, help="the dataset folder to create or extend")
    common.add_argument("--against", action="append", type=Path, default=[], metavar="DIR",
                        help="another data folder whose pictures count for the duplicate check (repeatable)")
    common.add_argument("--source", help="the source of every row (default: the folder, ZIP or host name, "
                                         "'flags' for flags; a CSV's source column wins); photos of one "
                                         "source are held out together")
    common.add_argument("--size", type=int, default=STORED_SIDE, help="longest side of a stored photo, px")
    common.add_argument("--quality", type=int, default=STORED_QUALITY, help="JPEG quality of a stored photo")
    common.add_argument("--max-distance", type=int, default=MAX_DISTANCE,
                        help="perceptual-hash bits within which a photo is a near-duplicate")
    common.add_argument("--max-bytes", type=int, default=MAX_FILE_BYTES, help="largest photo file accepted")
    common.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="most pixels a photo may have")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    labels = argparse.ArgumentParser(add_help=False)
    labels.add_argument("--label", action="append", default=[], metavar="[HEAD=]LABEL",
                        help="label of every photo; HEAD=LABEL for a multi-head task (repeat per head)")

    parser = argparse.ArgumentParser(prog="python -m training.collect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = argparse.ArgumentDefaultsHelpFormatter
    commands.add_parser("files", parents=[common, labels], formatter_class=defaults,
                        help="a folder, a ZIP or a CSV of photos").add_argument("path", type=Path)
    urls = commands.add_parser("urls", parents=[common, labels], formatter_class=defaults,
                               help="a list of image URLs (text or CSV)")
    urls.add_argument("path", type=Path, help="a text file, one URL a line, or a CSV url,<labels>[,source]")
    urls.add_argument("--timeout", type=float, default=20.0, help="seconds per download attempt")
    urls.add_argument("--retries", type=int, default=3, help="retries after a timeout, a dropped connection, 5xx")
    urls.add_argument("--backoff", type=float, default=1.0, help="seconds before the first retry (doubles)")
    urls.add_argument("--min-interval", type=float, default=1.0, help="seconds between requests to one host")
    commands.add_parser("flags", parents=[common], formatter_class=defaults, help="the app's flag log"
                        ).add_argument("--flag-dir", type=Path, help="default: FLAG_DIR or <repo>/flagged")
    return parser


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse the command line and collect; returns the summary. Raises DataError for bad input."""
    args = build_parser().parse_args(argv)
    spec = get_task(args.task)
    limits = Limits(args.max_bytes, args.max_pixels)
    options = dict(against=args.against, size=args.size, quality=args.quality, max_distance=args.max_distance,
                   limits=limits, progress=not args.no_progress)
    if args.command == "flags":
        items, not_this_kind = items_from_flags(spec, args.flag_dir, args.source)
        return collect(spec, args.out, items, not_this_kind=not_this_kind, **options)
    labels = parse_labels(spec, args.label)
    if args.command == "files":
        return collect(spec, args.out, items_from_files(spec, args.path, labels, args.source, limits), **options)
    downloader = Downloader(limits, args.timeout, args.retries, args.backoff, args.min_interval)
    try:
        items = items_from_urls(spec, args.path, labels, args.source, downloader)
        return collect(spec, args.out, items, **options)
    finally:
        downloader.close()


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        run(argv)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
