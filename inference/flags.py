"""The "Wrong answer?" flag log: a photo someone says was judged wrongly, the answer and their correction.

Layout, one folder per task under ``flag_folder()``::

    <folder>/<task>/flags.csv             flag_id,time,task,image,answer,correction,comment
    <folder>/<task>/images/<flag_id>.jpg   the photo as judged: upright RGB, longest side <= 1600 px

``answer`` and ``correction`` are compact JSON objects head -> label. In ``answer`` a null label means
the photo was not judged (turned away by the in-domain check). A correction names a label of the task
for each head it corrects (heads left out are unknown), or ``NOT_THIS_KIND`` for every head it names:
"this is not a <collectible/car> at all". ``python -m training.collect ... flags`` turns the log into
training rows.

Privacy: a flag stores the photo (re-encoded, so without EXIF/GPS metadata), the model's answer, the
correction and the optional comment, with the time; no name, IP address or account. Everything stays
on the machine running the app, in ``FLAG_DIR`` (default ``<repo>/flagged``, ignored by git). Set
``FLAGGING=0`` to switch flagging off; delete the folder to forget every flag.

No web framework here: the app calls ``save_flag`` from its handler threads.
"""
from __future__ import annotations

import csv
import json
import os
import re
import threading
import unicodedata
import uuid
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageOps

from inference.images import load_image
from inference.messages import display_label
from inference.tasks import REPO_ROOT, TaskSpec, get_task

NOT_THIS_KIND = "not_this_kind"
COLUMNS = ("flag_id", "time", "task", "image", "answer", "correction", "comment")
MAX_COMMENT_CHARS = 500
MAX_SIDE = 1600
JPEG_QUALITY = 92
_OFF = {"0", "false", "no", "off"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")   # what a spreadsheet may run as a formula
_append_lock = threading.Lock()


def flagging_enabled() -> bool:
    """On unless the environment says FLAGGING=0/false/no/off."""
    return os.environ.get("FLAGGING", "").strip().lower() not in _OFF


def flag_folder() -> Path:
    """FLAG_DIR, or <repo root>/flagged."""
    configured = os.environ.get("FLAG_DIR", "").strip()
    return Path(configured).expanduser() if configured else REPO_ROOT / "flagged"


def save_flag(task: str, photo: Image.Image, answer: dict[str, str | None], correction: dict[str, str],
              comment: str = "", folder: Path | None = None) -> str:
    """Store one flag (the photo and a CSV row) and return its id.

    Raises ValueError for an unknown task, head or label, an empty or mixed correction; RuntimeError
    when flagging is switched off.
    """
    if not flagging_enabled():
        raise RuntimeError("flagging is switched off (FLAGGING environment variable)")
    spec = get_task(task)
    if not isinstance(photo, Image.Image):
        raise TypeError(f"photo must be a PIL image, got {type(photo).__name__}")
    _check_answer(spec, answer)
    _check_correction(spec, correction)
    task_dir = Path(folder if folder is not None else flag_folder()) / spec.name
    flag_id = uuid.uuid4().hex
    image = Path("images") / f"{flag_id}.jpg"
    _write_photo(photo, task_dir / image)
    row = {"flag_id": flag_id, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "task": spec.name, "image": image.as_posix(), "answer": _compact(answer),
           "correction": _compact(correction), "comment": _neutralise(_clean_comment(comment))}
    _append_row(task_dir / "flags.csv", row)
    return flag_id


def read_flags(task: str, folder: Path | None = None) -> list[dict]:
    """The task's flags, oldest first: the CSV columns, with ``image`` an absolute Path and
    ``answer``/``correction`` parsed to dicts. No log yet: []."""
    spec = get_task(task)
    task_dir = Path(folder if folder is not None else flag_folder()) / spec.name
    log = task_dir / "flags.csv"
    if not log.is_file():
        return []
    flags = []
    with log.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            try:
                answer, correction = json.loads(row["answer"]), json.loads(row["correction"])
            except (TypeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{log} line {reader.line_num}: unreadable answer or correction ({exc})") from exc
            flags.append({**row, "image": task_dir / row["image"], "answer": answer, "correction": correction})
    return flags


def is_not_this_kind(correction: dict[str, str]) -> bool:
    return NOT_THIS_KIND in correction.values()


def _check_heads(spec: TaskSpec, labels: dict, what: str) -> None:
    if not isinstance(labels, dict):
        raise ValueError(f"the {what} must be a dict head -> label, got {type(labels).__name__}")
    unknown = [head for head in labels if head not in spec.heads]
    if unknown:
        raise ValueError(f"the {what} names head(s) {', '.join(map(repr, unknown))} that task {spec.name!r} "
                         f"does not have; heads: {', '.join(spec.heads)}")


def _check_answer(spec: TaskSpec, answer: dict[str, str | None]) -> None:
    _check_heads(spec, answer, "answer")
    for head, label in answer.items():
        if label is not None and label not in spec.heads[head]:
            raise ValueError(f"the answer's {head} label {label!r} is not one of {', '.join(spec.heads[head])}")


def _check_correction(spec: TaskSpec, correction: dict[str, str]) -> None:
    _check_heads(spec, correction, "correction")
    if not correction:
        raise ValueError("the correction is empty: give the right label of at least one head")
    if is_not_this_kind(correction):
        if set(correction.values()) != {NOT_THIS_KIND}:
            raise ValueError(f"a correction saying {NOT_THIS_KIND!r} cannot also give labels")
        return
    for head, label in correction.items():
        if label not in spec.heads[head]:
            raise ValueError(f"{label!r} is not a {head!r} label of task {spec.name!r}; expected one of "
                             f"{', '.join(spec.heads[head])} or {NOT_THIS_KIND!r}")


def _write_photo(photo: Image.Image, path: Path) -> None:
    """Upright RGB, longest side capped, written to a temporary name and renamed."""
    image = ImageOps.exif_transpose(photo).convert("RGB")
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    image.save(partial, "JPEG", quality=JPEG_QUALITY)
    os.replace(partial, path)


def _compact(labels: dict) -> str:
    return json.dumps(labels, separators=(",", ":"), ensure_ascii=False)


def _clean_comment(comment: str) -> str:
    """One line of at most MAX_COMMENT_CHARS: control characters (newlines too) become spaces."""
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in str(comment or ""))
    return re.sub(r"\s+", " ", text).strip()[:MAX_COMMENT_CHARS]


def _neutralise(text: str) -> str:
    """A leading quote keeps a spreadsheet from running the cell as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _append_row(log: Path, row: dict[str, str]) -> None:
    with _append_lock:
        new = not log.exists() or log.stat().st_size == 0
        with log.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
            os.fsync(handle.fileno())


def answer_labels(answer) -> dict[str, str | None]:
    """What an Answer (inference.answer) said, per head, for the log: None for a head not judged."""
    heads = answer.prediction.heads if answer.judged else {}
    return {head: heads[head].label if heads else None for head in answer.spec.heads}


def parse_correction(task: str, text: str) -> dict[str, str]:
    """A correction as people type it: "coins" for a one-head task, "damage=damaged, cleanliness=clean"
    (any heads), or "not_this_kind". Display names ("slightly dirty") are accepted."""
    spec = get_task(task)
    parts = [part.strip() for part in re.split(r"[,;]", text or "") if part.strip()]
    correction = {}
    for part in parts:
        head, _, label = part.rpartition("=")
        label = label.strip().replace(" ", "_")
        head = head.strip() or (spec.head_names[0] if len(spec.heads) == 1 or label == NOT_THIS_KIND else "")
        if not head:
            head = next((h for h, labels in spec.heads.items() if label in labels), "")
        correction[head] = label
    if correction.get(spec.head_names[0]) == NOT_THIS_KIND:
        correction = dict.fromkeys(spec.heads, NOT_THIS_KIND)
    return correction


def flag_upload(task: str, upload, answer: dict[str, str | None], correction: str, comment: str = "") -> str:
    """A flag from the app: the upload (decoded here), the app's answer and the correction as people type it."""
    return save_flag(task, load_image(upload), answer, parse_correction(task, correction), comment)


def correction_choices(task: str, head: str) -> list[tuple[str, str]]:
    """What a person can pick as the right answer for a head: nothing (it was right), a label, not this kind."""
    spec = get_task(task)
    return [("(right as it is)", "")] + [(display_label(label), label) for label in spec.heads[head]] + \
        [("none: not this kind of photo at all", NOT_THIS_KIND)]
