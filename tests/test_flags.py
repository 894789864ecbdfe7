"""The "Wrong answer?" flag log: what save_flag stores, what it refuses, and what read_flags gives back."""
from __future__ import annotations

import csv
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.flags import (COLUMNS, MAX_COMMENT_CHARS, NOT_THIS_KIND, flag_folder, flagging_enabled, read_flags,
                             save_flag)
from inference.tasks import REPO_ROOT

CAR_ANSWER = {"cleanliness": "clean", "damage": "intact"}


def photo(size: tuple[int, int] = (320, 240), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def rows(log: Path) -> list[dict[str, str]]:
    with log.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("value, enabled", [(None, True), ("1", True), ("yes", True), ("0", False),
                                            ("false", False), (" No ", False), ("OFF", False)])
def test_flagging_switch(monkeypatch, value, enabled):
    if value is None:
        monkeypatch.delenv("FLAGGING", raising=False)
    else:
        monkeypatch.setenv("FLAGGING", value)
    assert flagging_enabled() is enabled


def test_flag_folder_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("FLAG_DIR", raising=False)
    assert flag_folder() == REPO_ROOT / "flagged"
    monkeypatch.setenv("FLAG_DIR", str(tmp_path / "elsewhere"))
    assert flag_folder() == tmp_path / "elsewhere"


def test_save_flag_stores_upright_capped_photo_and_row(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6   # orientation: the camera was turned; upright the photo is portrait
    buffer = io.BytesIO()
    photo((2400, 1200)).save(buffer, "JPEG", exif=exif)
    turned = Image.open(io.BytesIO(buffer.getvalue()))

    flag_id = save_flag("car", turned, CAR_ANSWER, {"cleanliness": "very_dirty"}, "mud on the doors", tmp_path)

    log = tmp_path / "car" / "flags.csv"
    assert log.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    (row,) = rows(log)
    assert row["flag_id"] == flag_id and row["task"] == "car" and row["comment"] == "mud on the doors"
    assert row["image"] == f"images/{flag_id}.jpg"
    assert row["answer"] == '{"cleanliness":"clean","damage":"intact"}'
    assert row["correction"] == '{"cleanliness":"very_dirty"}'
    with Image.open(tmp_path / "car" / row["image"]) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB"
        assert stored.size == (800, 1600)   # upright (portrait) and capped at 1600 px
        assert not stored.getexif()

    (flag,) = read_flags("car", tmp_path)
    assert flag["image"] == tmp_path / "car" / "images" / f"{flag_id}.jpg" and flag["image"].is_file()
    assert flag["answer"] == CAR_ANSWER and flag["correction"] == {"cleanliness": "very_dirty"}


def test_not_judged_answer_and_not_this_kind(tmp_path):
    first = save_flag("collectibles", photo(), {"category": None}, {"category": "coins"}, folder=tmp_path)
    second = save_flag("collectibles", photo(seed=1), {"category": "stamps"}, {"category": NOT_THIS_KIND},
                       folder=tmp_path)
    assert first != second
    flags = read_flags("collectibles", tmp_path)
    assert [f["flag_id"] for f in flags] == [first, second]
    assert flags[0]["answer"] == {"category": None}
    assert flags[1]["correction"] == {"category": NOT_THIS_KIND}
    assert read_flags("car", tmp_path) == []


@pytest.mark.parametrize("task, answer, correction, message", [
    ("boats", {}, {"category": "coins"}, "unknown task"),
    ("collectibles", {"category": "coins"}, {"category": "spoons"}, "'spoons' is not a 'category' label"),
    ("collectibles", {"category": "coins"}, {"colour": "red"}, "head(s) 'colour'"),
    ("collectibles", {"category": "coins"}, {}, "correction is empty"),
    ("car", CAR_ANSWER, {"cleanliness": NOT_THIS_KIND, "damage": "damaged"}, "cannot also give labels"),
    ("car", {"damage": "dented"}, {"damage": "damaged"}, "answer's damage label 'dented'"),
    ("car", CAR_ANSWER, ["damaged"], "must be a dict"),
])
def test_invalid_flags_are_refused_and_nothing_is_written(tmp_path, task, answer, correction, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        save_flag(task, photo(), answer, correction, folder=tmp_path)
    assert not any(tmp_path.iterdir())


def test_flagging_off_writes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("FLAGGING", "off")
    with pytest.raises(RuntimeError, match="switched off"):
        save_flag("car", photo(), CAR_ANSWER, {"damage": "damaged"}, folder=tmp_path)
    assert not any(tmp_path.iterdir())


def test_comment_is_one_bounded_line_and_never_a_formula(tmp_path):
    comment = "=HYPERLINK(\"http://x\")\nsecond\x00line\r\n" + "x" * 1000
    save_flag("car", photo(), CAR_ANSWER, {"damage": "damaged"}, comment, tmp_path)
    log = tmp_path / "car" / "flags.csv"
    assert len(log.read_text(encoding="utf-8").splitlines()) == 2   # header + one physical line
    (row,) = rows(log)
    assert row["comment"].startswith("'=HYPERLINK(\"http://x\") second line xxx")
    assert len(row["comment"]) == MAX_COMMENT_CHARS + 1   # the quote, then the bounded text


def test_concurrent_saves_give_one_header_and_every_row(tmp_path):
    ids: list[str] = []

    def flag_five(seed: int) -> None:
        for i in range(5):
            ids.append(save_flag("car", photo((64, 48), seed * 10 + i), CAR_ANSWER, {"damage": "damaged"},
                                 folder=tmp_path))

    threads = [threading.Thread(target=flag_five, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = tmp_path / "car" / "flags.csv"
    assert log.read_text(encoding="utf-8").count("flag_id,") == 1
    flags = read_flags("car", tmp_path)
    assert sorted(f["flag_id"] for f in flags) == sorted(ids) and len(set(ids)) == 40
    assert all(f["image"].is_file() for f in flags)
    assert all(json.loads(r["correction"]) == {"damage": "damaged"} for r in rows(log))
