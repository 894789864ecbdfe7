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

from inference.images import IMAGE_EXTENSIONS, MAX_FILE_BYTES, ImageError, load_image, sniff_format
from inference.ocr import text_answer
from inference.messages import best_guess_text
from inference.predictor import BATCH_SIZE, Prediction, load_model
from inference.tasks import TaskSpec, get_task

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
    return sniff_format(_head_bytes(content, 8)) == "ZIP"


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
                yield _Item(label, error=f"The file is too large (over {MAX_FILE_BYTES // (1024 * 1024)} MB).")
                continue
            if budget["bytes"] + info.file_size > MAX_TOTAL_BYTES:
                raise BatchError(f"The archive is too large: at most {MAX_TOTAL_BYTES // (1024 * 1024)} MB "
                                 "of images per batch.")
            try:
                with archive.open(info) as member:
                    data = member.read(MAX_FILE_BYTES + 1)   # the header's size may lie
            except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, EOFError, NotImplementedError):
                yield _Item(label, error="The file could not be read from the archive (damaged or unsupported).")
                continue
            if len(data) > MAX_FILE_BYTES:
                yield _Item(label, error=f"The file is too large (over {MAX_FILE_BYTES // (1024 * 1024)} MB).")
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


def columns(task: str | TaskSpec) -> list[str]:
    """The CSV columns: a photo not judged (out of domain) has empty label columns and a `best_guess`;
    a task that reads text has a `text` column (filled when asked to read it)."""
    spec = get_task(task) if isinstance(task, str) else task
    cols = ["file"]
    for head in spec.head_names:
        cols += [head, f"{head}_confidence", f"{head}_needs_review"]
    return cols + ["needs_review", "in_domain", "ood_score", "best_guess", *(["text"] if spec.reads_text else []),
                   "error"]


def _row(spec: TaskSpec, name: str, prediction: Prediction | None = None, error: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {c: "" for c in columns(spec)}
    row["file"] = name
    if prediction is not None:
        if prediction.in_domain:
            for head, p in prediction.heads.items():
                row[head] = p.label
                row[f"{head}_confidence"] = round(p.confidence, 4)
                row[f"{head}_needs_review"] = p.needs_review
            row["needs_review"] = prediction.needs_review
        row["in_domain"] = prediction.in_domain
        row["ood_score"] = "" if prediction.ood_score is None else round(prediction.ood_score, 4)
        row["best_guess"] = best_guess_text(prediction)
    row["error"] = error
    return row


@dataclass
class BatchResult:
    rows: list[dict[str, Any]]                   # one per file, in input order (the CSV)
    thumbnails: dict[str, bytes] = field(default_factory=dict)   # file -> small JPEG, for a look on demand


def _thumbnail(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def predict_files(task: str, items: Sequence[tuple[str, Content]],
                  on_progress: Callable[[int, int], None] | None = None, read_text: bool = False) -> BatchResult:
    """One row per file (archives expanded), in input order; unusable files carry an `error`.

    `on_progress(done, total)` is called after every chunk of photos. With `read_text` (tasks that read
    text), the `text` column holds the text read on each photo (an OCR problem is noted there).
    """
    spec = get_task(task)
    read_text = read_text and spec.reads_text
    predictor = load_model(task)
    expanded = expand(items)
    if not expanded:
        raise BatchError("No files to process. Upload images or a ZIP archive of images.")
    result = BatchResult([])
    for start in range(0, len(expanded), BATCH_SIZE):
        chunk = expanded[start:start + BATCH_SIZE]
        slots: list[dict[str, Any] | None] = []
        images, positions = [], []
        for item in chunk:
            if item.error is not None:
                slots.append(_row(spec, item.name, error=item.error))
                continue
            try:
                images.append(load_image(item.data))
            except ImageError as err:
                slots.append(_row(spec, item.name, error=err.message))
                continue
            positions.append(len(slots))
            slots.append(None)
        if images:
            for pos, image, prediction in zip(positions, images, predictor.predict_batch(images)):
                slots[pos] = _row(spec, chunk[pos].name, prediction)
                if read_text:
                    found = text_answer(image)
                    slots[pos]["text"] = found["text"] or (f"({found['error']})" if "error" in found else "")
                result.thumbnails[chunk[pos].name] = _thumbnail(image)
        result.rows.extend(slot for slot in slots if slot is not None)
        if on_progress is not None:
            on_progress(start + len(chunk), len(expanded))
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
