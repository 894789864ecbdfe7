"""Batch prediction for fleet and collection sorting: many files (or ZIP archives) -> rows -> CSV.

`predict_files(task, items)` takes `(name, bytes | path)` pairs. A ZIP archive among them (found by
its content, not its name) is expanded in memory: at most `MAX_FILES` files and `MAX_TOTAL_BYTES`
uncompressed in all, each member at most `MAX_FILE_BYTES`, directories and macOS metadata skipped.
Member names are only ever labels in the table: nothing is written to disk. Every input becomes one
row; a file that is not a usable image gets its reason in the `error` column instead of failing the
batch. Images are decoded and predicted in chunks so memory stays bounded for large batches.

No gradio import: the app, a script or a notebook can use this module.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

from PIL import Image

from inference.answer import Answer, analyze_photos
from inference.images import IMAGE_EXTENSIONS, MAX_FILE_BYTES, ImageError, is_zip, load_image
from inference.messages import megabytes, too_large
from inference.predictor import BATCH_SIZE, Predictor
from inference.inspection import car_row
from inference.render import batch_row
from inference.tasks import get_task

MAX_FILES = int(os.environ.get("BATCH_MAX_FILES", 500))
MAX_TOTAL_BYTES = int(os.environ.get("BATCH_MAX_TOTAL_BYTES", 512 * 1024 * 1024))
MAX_NAME_CHARS = 200
THUMBNAIL_SIDE = 256

Content = Union[bytes, bytearray, memoryview, str, os.PathLike]


class BatchError(ValueError):
    """The batch as a whole is unusable (nothing to do, too many files)."""


@dataclass
class _Item:
    name: str
    data: bytes | str | os.PathLike | None = None
    error: str | None = None


def display_name(name: str) -> str:
    """A file name for the table: printable, bounded; never used as a path."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in str(name)) or "(unnamed)"
    return cleaned if len(cleaned) <= MAX_NAME_CHARS else cleaned[:MAX_NAME_CHARS - 1] + "…"


def _head_bytes(content: Content, n: int = 8) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content[:n])
    try:
        with open(content, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _is_zip(content: Content) -> bool:
    return is_zip(_head_bytes(content, 8))


def _skip_member(info: zipfile.ZipInfo) -> bool:
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    return info.is_dir() or any(p == "__MACOSX" for p in parts) or (bool(parts) and parts[-1].startswith("."))


def _expand_zip(name: str, content: Content, budget: dict[str, int]) -> Iterator[_Item]:
    source = io.BytesIO(bytes(content)) if isinstance(content, (bytes, bytearray, memoryview)) else content
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        yield _Item(name, error="The ZIP archive is damaged or incomplete.")
        return
    with archive:
        for info in archive.infolist():
            if _skip_member(info):
                continue
            label = f"{name}/{info.filename}"
            if budget["files"] >= MAX_FILES:
                raise BatchError(f"Too many files: at most {MAX_FILES} per batch.")
            budget["files"] += 1
            if Path(info.filename).suffix.lower() not in IMAGE_EXTENSIONS:
                yield _Item(label, error="Skipped: not an image file.")
                continue
            if info.flag_bits & 0x1:
                yield _Item(label, error="Skipped: the file is encrypted.")
                continue
            if info.file_size > MAX_FILE_BYTES:
                yield _Item(label, error=too_large(MAX_FILE_BYTES))
                continue
            if budget["bytes"] + info.file_size > MAX_TOTAL_BYTES:
                raise BatchError(f"The archive is too large: at most {megabytes(MAX_TOTAL_BYTES)} of images per batch.")
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_FILE_BYTES + 1)   # the header's size may lie
            except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError, NotImplementedError):
                yield _Item(label, error="The file could not be read from the archive (damaged or unsupported).")
                continue
            if len(data) > MAX_FILE_BYTES:
                yield _Item(label, error=too_large(MAX_FILE_BYTES))
                continue
            budget["bytes"] += len(data)
            yield _Item(label, data)


def expand(items: Iterable[tuple[str, Content]]) -> list[_Item]:
    """Inputs with ZIP archives replaced by their members (bounded); raises BatchError when over the limits."""
    out: list[_Item] = []
    budget = {"files": 0, "bytes": 0}
    for name, content in items:
        name = display_name(name)
        if content is not None and _is_zip(content):
            out.extend(_expand_zip(name, content, budget))
            continue
        if budget["files"] >= MAX_FILES:
            raise BatchError(f"Too many files: at most {MAX_FILES} per batch.")
        budget["files"] += 1
        out.append(_Item(name, content))
    return out


NO_CAR_ID = "(no car id)"   # the car of the photos that do not say which car they show


def car_ids_from_paths(paths: Sequence[PurePosixPath]) -> list[str]:
    """The car each photo shows, from where it is: when the photos sit in two or more folders, the folder holding
    each (`car_1/front.jpg`); else a `car_id__` file-name prefix (`car_1__front.jpg`); "" when neither says.
    One folder holding everything is only a container. The Batch tab and the fleet job share this rule."""
    if len({path.parent for path in paths if len(path.parts) > 1}) >= 2:
        return [path.parent.name if len(path.parts) > 1 else "" for path in paths]
    return [path.name.split("__", 1)[0] if "__" in path.name else "" for path in paths]


def read_car_manifest(content: Content) -> dict[str, str]:
    """A CSV `image,car_id` (image: a file name) -> file name -> car id."""
    raw = bytes(content) if isinstance(content, (bytes, bytearray, memoryview)) else Path(content).read_bytes()
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        raise BatchError("The CSV could not be read: it needs the columns image,car_id (UTF-8).") from None
    if not rows or not {"image", "car_id"} <= set(rows[0]):
        raise BatchError("The CSV needs the columns image,car_id (one row per photo).")
    return {PurePosixPath(r["image"]).name: r["car_id"].strip() for r in rows if r.get("image")}


def car_ids(names: Sequence[str], manifest: dict[str, str] | None = None) -> list[str] | None:
    """One car id per photo when the batch says which car each photo shows (a manifest, car folders in a ZIP or
    `car_id__` prefixes); None when it does not."""
    if manifest:
        return [manifest.get(PurePosixPath(n).name, "") for n in names]
    # A row's name is the upload's name, or `archive.zip/member` for a ZIP member: the car is in the member.
    ids = car_ids_from_paths([PurePosixPath(n.split("/", 1)[-1]) for n in names])
    return ids if any(ids) else None


@dataclass
class BatchResult:
    rows: list[dict[str, Any]]                   # one per file, in input order (the CSV)
    thumbnails: dict[str, bytes] = field(default_factory=dict)   # file -> small JPEG, for a look on demand
    cars: list[dict[str, Any]] = field(default_factory=list)     # one row per car, when cars are known


def _thumbnail(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def analyze_readers(task: str, readers: Sequence[Callable[[], Image.Image]], *, read_text: bool = False,
                    predictor: Predictor | None = None) -> list[Answer]:
    """One Answer per reader (a call that decodes one photo or raises ImageError): the photos that decode are
    analysed together in one batch, the others keep their error. The Batch tab and the fleet job share this."""
    answers: list[Answer | None] = []
    photos = []
    for read in readers:
        try:
            photos.append(read())
            answers.append(None)
        except ImageError as err:
            answers.append(Answer(task, error=err))
    analysed = iter(analyze_photos(task, photos, read_text=read_text, predictor=predictor))
    return [answer or next(analysed) for answer in answers]


def _reader(item: _Item) -> Callable[[], Image.Image]:
    def read() -> Image.Image:
        if item.error is not None:
            raise ImageError(item.error)
        return load_image(item.data)
    return read


def car_verdicts(task: str, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per car (inference.inspection.car_row), cars in the order first seen, from rows with a
    `car_id`; the photos without one make up one more car, NO_CAR_ID."""
    by_car: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_car.setdefault(row["car_id"] or NO_CAR_ID, []).append(row)
    return [car_row(get_task(task), car_id, car_rows) for car_id, car_rows in by_car.items()]


def predict_files(task: str, items: Sequence[tuple[str, Content]],
                  on_progress: Callable[[int, int], None] | None = None, read_text: bool = False) -> BatchResult:
    """One row per file (archives expanded), in input order; unusable files carry an `error`.

    A CSV `image,car_id` among the items, `car_id__` file-name prefixes or car folders in a ZIP say which
    car each photo shows: the rows then get a `car_id` and `cars` one verdict per car (inference.inspection).
    `on_progress(done, total)` is called after every chunk of photos. With `read_text` (tasks that read
    text), the `text` column holds the text read on each photo (an OCR problem is noted there).
    """
    get_task(task)   # an unknown task fails before any file is read
    manifests = [content for name, content in items if str(name).lower().endswith(".csv")]
    expanded = expand([(name, content) for name, content in items if not str(name).lower().endswith(".csv")])
    if not expanded:
        raise BatchError("No files to process. Upload images or a ZIP archive of images.")
    result = BatchResult([])
    for start in range(0, len(expanded), BATCH_SIZE):
        chunk = expanded[start:start + BATCH_SIZE]
        readers = [_reader(item) for item in chunk]
        for item, answer in zip(chunk, analyze_readers(task, readers, read_text=read_text)):
            result.rows.append(batch_row(item.name, answer))
            if answer.photo is not None:
                result.thumbnails[item.name] = _thumbnail(answer.photo)
        if on_progress is not None:
            on_progress(start + len(chunk), len(expanded))
    ids = car_ids([row["file"] for row in result.rows], read_car_manifest(manifests[0]) if manifests else None)
    if ids is not None:
        for row, car_id in zip(result.rows, ids):
            row["car_id"] = car_id
        result.cars = car_verdicts(task, result.rows)
    return result


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (file names come from users)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows_to_csv(rows: Sequence[dict[str, Any]], fieldnames: Sequence[str] | None = None) -> str:
    fieldnames = list(fieldnames or (rows[0].keys() if rows else ["file", "error"]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_safe(v) for k, v in row.items()})
    return buffer.getvalue()
