"""The data collector on real files and real HTTP (a local server): what it keeps, drops and reports."""
from __future__ import annotations

import csv
import io
import threading
import time
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.flags import NOT_THIS_KIND, save_flag
from inference.tasks import get_task
from support import shared
from training import collect as collect_module
from training.collect import Downloader, run
from training.data import DataError, load_dataset

QUIET = ["--no-progress"]
SLOW_SECONDS = 1.5


def pattern(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random picture: every seed gives a clearly different perceptual hash."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return coarse.resize(size, Image.Resampling.BICUBIC)


def encoded(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def manifest_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class Site(BaseHTTPRequestHandler):
    """The test pictures and the ways a download goes wrong, counting requests per path."""
    hits: Counter = Counter()
    times: dict[str, list[float]] = {}
    bodies: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 - http.server's name
        self.hits[self.path] += 1
        self.times.setdefault(self.path, []).append(time.monotonic())
        try:
            self.answer()
        except (BrokenPipeError, ConnectionResetError):   # the client gave up first, as it should
            pass

    def answer(self) -> None:
        if self.path == "/slow.jpg":
            time.sleep(SLOW_SECONDS)
        if self.path == "/flaky.jpg" and self.hits[self.path] % 2:
            return self.send_error(503)
        if self.path == "/huge.jpg":   # no Content-Length: the client must stop reading by itself
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"\xff\xd8\xff" + bytes(16_000))
            return
        if self.path not in self.bodies:
            return self.send_error(404)
        body = self.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8" if self.path.endswith(".html") else "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    Site.bodies = {"/good1.jpg": encoded(pattern(1)), "/good2.jpg": encoded(pattern(2)),
                   "/flaky.jpg": encoded(pattern(3)), "/slow.jpg": encoded(pattern(4)),
                   "/corrupt.jpg": encoded(pattern(5))[:600],
                   "/megapixels.jpg": encoded(Image.new("RGB", (4000, 3000), "white"), "PNG"),
                   "/page.html": b"<!doctype html><html><body>not a photo</body></html>"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def url_args(url_list: Path, out: Path) -> list[str]:
    return ["urls", str(url_list), "--task", "collectibles", "--out", str(out), "--label", "coins",
            "--timeout", "0.3", "--retries", "1", "--backoff", "0.01", "--min-interval", "0",
            "--max-bytes", "200000", "--max-pixels", "5000000", *QUIET]


def test_urls_keep_the_good_report_the_rest_and_a_second_run_adds_nothing(site, tmp_path):
    Site.hits.clear()
    names = ["good1.jpg", "good2.jpg", "flaky.jpg", "corrupt.jpg", "huge.jpg", "megapixels.jpg", "page.html",
             "slow.jpg", "missing.jpg"]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("# test pictures\n" + "".join(f"{site}/{name}\n" for name in names) + "\n")
    out = tmp_path / "coins_web"

    summary = run(url_args(url_list, out))

    assert summary["added"] == 3
    assert summary["added_per_label"] == {"category": {"coins": 3}}
    assert summary["added_per_source"] == {"127_0_0_1": 3}
    reasons = {f["origin"].rsplit("/", 1)[1]: f["reason"] for f in summary["failures"]}
    assert set(reasons) == {"corrupt.jpg", "huge.jpg", "megapixels.jpg", "page.html", "slow.jpg", "missing.jpg"}
    assert "damaged" in reasons["corrupt.jpg"]
    assert "larger than 200000 bytes" in reasons["huge.jpg"]
    assert "4000 x 3000 pixels" in reasons["megapixels.jpg"]
    assert "content-type text/html" in reasons["page.html"]
    assert "timed out" in reasons["slow.jpg"] and "tried 2 times" in reasons["slow.jpg"]
    assert reasons["missing.jpg"] == "HTTP 404"
    assert Site.hits["/missing.jpg"] == 1 and Site.hits["/slow.jpg"] == 2 and Site.hits["/flaky.jpg"] == 2
    with (out / ".collect" / "failures.csv").open(newline="") as handle:
        assert {row["origin"] for row in csv.DictReader(handle)} == {f["origin"] for f in summary["failures"]}

    manifest = out / "MANIFEST.csv"
    rows = manifest_rows(manifest)
    assert [r["image"] for r in rows] == ["coins/127_0_0_1__good1.jpg", "coins/127_0_0_1__good2.jpg",
                                          "coins/127_0_0_1__flaky.jpg"]
    assert all(r["label"] == "coins" and r["source"] == "127_0_0_1" for r in rows)
    assert [r["origin"] for r in rows] == [f"{site}/good1.jpg", f"{site}/good2.jpg", f"{site}/flaky.jpg"]
    for row in rows:
        with Image.open(out / row["image"]) as stored:
            assert stored.format == "JPEG" and stored.mode == "RGB" and max(stored.size) == 256
    dataset = load_dataset(get_task("collectibles"), out, min_per_class=0)
    assert len(dataset.samples) == 3 and not dataset.skipped
    assert {(s.labels["category"], s.source) for s in dataset.samples} == {("coins", "127_0_0_1")}

    before, good_hits = manifest.read_bytes(), Site.hits["/good1.jpg"]
    again = run(url_args(url_list, out))
    assert again["added"] == 0 and again["already_present"] == 3 and not again["duplicates"]
    assert manifest.read_bytes() == before
    assert Site.hits["/good1.jpg"] == good_hits   # a known origin is not fetched again


def test_a_url_csv_gives_labels_and_source_per_row(site, tmp_path):
    url_csv = tmp_path / "urls.csv"
    url_csv.write_text(f"url,cleanliness,damage,source\n{site}/good1.jpg,very dirty,,forum\n"
                       f"{site}/good2.jpg,,damaged,\n")
    out = tmp_path / "car_web"
    summary = run(["urls", str(url_csv), "--task", "car", "--out", str(out), "--min-interval", "0", *QUIET])
    assert summary["added"] == 2
    assert [(r["image"], r["cleanliness"], r["damage"], r["source"]) for r in manifest_rows(out / "labels.csv")] == [
        ("images/forum__good1.jpg", "very_dirty", "", "forum"), ("images/127_0_0_1__good2.jpg", "", "damaged",
                                                                 "127_0_0_1")]


def test_requests_to_one_host_are_spaced(site):
    Site.times.clear()
    downloader = Downloader(min_interval=0.3)
    try:
        for _ in range(2):
            downloader.fetch(f"{site}/good1.jpg")
    finally:
        downloader.close()
    first, second = Site.times["/good1.jpg"]
    assert second - first >= 0.2   # 0.3 s apart when sent; the first one also waited for the connection


def test_folder_import_drops_a_resized_copy_of_a_held_picture(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    for seed in (10, 11):
        pattern(seed).save(first / f"coin{seed}.jpg")
    out = tmp_path / "dataset"
    assert run(["files", str(first), "--task", "collectibles", "--out", str(out), "--label", "coins", *QUIET]
               )["added"] == 2

    second = tmp_path / "second"
    second.mkdir()
    pattern(10, (640, 480)).save(second / "bigger_copy.png")   # the same picture, twice the size, PNG
    pattern(12).save(second / "new.jpg")
    summary = run(["files", str(second), "--task", "collectibles", "--out", str(out), "--label", "coins", *QUIET])

    assert summary["added"] == 1 and summary["added_files"] == [str(out / "coins" / "second__new.jpg")]
    (duplicate,) = summary["duplicates"]
    assert duplicate["origin"] == str(second / "bigger_copy.png")
    assert duplicate["matches"] == str(out / "coins" / "first__coin10.jpg") and duplicate["distance"] <= 6
    with (out / ".collect" / "duplicates.csv").open(newline="") as handle:
        assert [row["origin"] for row in csv.DictReader(handle)] == [duplicate["origin"]]
    assert len(manifest_rows(out / "MANIFEST.csv")) == 3


def test_a_copy_of_a_shared_photo_is_dropped_against_that_folder(tmp_path):
    car_photos = shared("car_photos")
    original = car_photos / manifest_rows(car_photos / "labels.csv")[0]["image"]
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with Image.open(original) as image:
        image.resize((image.width * 2, image.height * 2)).save(incoming / "street.jpg", quality=95)
    pattern(20).save(incoming / "other.jpg")
    summary = run(["files", str(incoming), "--task", "car", "--out", str(tmp_path / "car_more"),
                   "--label", "cleanliness=clean", "--against", str(car_photos), *QUIET])
    assert summary["added"] == 1
    assert [(d["origin"], d["matches"]) for d in summary["duplicates"]] == [(str(incoming / "street.jpg"),
                                                                            str(original))]


def test_class_folders_in_a_zip(tmp_path):
    archive = tmp_path / "My Photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("coins/a.jpg", encoded(pattern(30)))
        zf.writestr("Stamps/b.png", encoded(pattern(31), "PNG"))
        zf.writestr("notes.txt", b"not a photo")
        zf.writestr("__MACOSX/coins/._a.jpg", b"resource fork")
    out = tmp_path / "dataset"
    summary = run(["files", str(archive), "--task", "collectibles", "--out", str(out), *QUIET])
    assert summary["added"] == 2 and not summary["failures"]
    rows = manifest_rows(out / "MANIFEST.csv")
    assert [(r["image"], r["label"], r["source"]) for r in rows] == [
        ("coins/my_photos__a.jpg", "coins", "my_photos"), ("stamps/my_photos__b.jpg", "stamps", "my_photos")]
    assert rows[0]["origin"] == f"{archive}!coins/a.jpg"


def test_car_csv_with_unknown_cells_extends_an_existing_manifest(tmp_path):
    out = tmp_path / "car"
    (out / "images").mkdir(parents=True)
    pattern(40).save(out / "images" / "old__one.jpg")
    old = b"image,cleanliness,damage,source\r\nimages/old__one.jpg,clean,intact,old\r\n"
    (out / "labels.csv").write_bytes(old)   # an older manifest without an origin column, CRLF
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    pattern(41).save(incoming / "dusty.jpg")
    pattern(42).save(incoming / "crash.jpg")
    (incoming / "list.csv").write_text("image,cleanliness,damage\ndusty.jpg,Slightly dirty,\ncrash.jpg,,damaged\n")

    summary = run(["files", str(incoming / "list.csv"), "--task", "car", "--out", str(out), "--source", "yard",
                   *QUIET])

    assert summary["added"] == 2
    assert summary["added_per_label"] == {"cleanliness": {"slightly_dirty": 1, "unknown": 1},
                                          "damage": {"unknown": 1, "damaged": 1}}
    text = (out / "labels.csv").read_bytes()
    assert text.startswith(old) and text.count(b"\r\n") == 4   # appended in the file's own columns and line ending
    dataset = load_dataset(get_task("car"), out, min_per_class=0)
    assert [(s.path.name, s.labels, s.source) for s in dataset.samples] == [
        ("old__one.jpg", {"cleanliness": "clean", "damage": "intact"}, "old"),
        ("yard__dusty.jpg", {"cleanliness": "slightly_dirty", "damage": None}, "yard"),
        ("yard__crash.jpg", {"cleanliness": None, "damage": "damaged"}, "yard")]


def test_unknown_labels_stop_before_anything_is_written(tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    pattern(50).save(incoming / "a.jpg")
    (incoming / "list.csv").write_text("image,cleanliness,damage\na.jpg,muddy,\n")
    out = tmp_path / "car"
    with pytest.raises(DataError, match="'muddy' is not a 'cleanliness' label"):
        run(["files", str(incoming / "list.csv"), "--task", "car", "--out", str(out), *QUIET])
    with pytest.raises(DataError, match="write HEAD=LABEL"):
        run(["files", str(incoming), "--task", "car", "--out", str(out), "--label", "clean", *QUIET])
    assert not out.exists()


def test_an_interrupted_run_resumes_without_losing_or_repeating(monkeypatch, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for seed in (60, 61, 62):
        pattern(seed).save(incoming / f"p{seed}.jpg")
    out = tmp_path / "dataset"
    args = ["files", str(incoming), "--task", "collectibles", "--out", str(out), "--label", "books", *QUIET]
    write = collect_module._write_atomic
    photos_written = []

    def interrupted_on_second_photo(path: Path, data: bytes) -> None:
        if path.suffix == ".jpg":
            photos_written.append(path)
            if len(photos_written) == 2:
                raise KeyboardInterrupt
        write(path, data)

    monkeypatch.setattr(collect_module, "_write_atomic", interrupted_on_second_photo)
    with pytest.raises(KeyboardInterrupt):
        run(args)
    monkeypatch.setattr(collect_module, "_write_atomic", write)
    assert [r["image"] for r in manifest_rows(out / "MANIFEST.csv")] == ["books/incoming__p60.jpg"]
    assert (out / ".collect" / "failures.csv").is_file()

    summary = run(args)
    assert summary["added"] == 2 and summary["already_present"] == 1 and not summary["duplicates"]
    assert [r["image"] for r in manifest_rows(out / "MANIFEST.csv")] == [
        "books/incoming__p60.jpg", "books/incoming__p61.jpg", "books/incoming__p62.jpg"]
    assert sorted(p.name for p in (out / "books").iterdir()) == ["incoming__p60.jpg", "incoming__p61.jpg",
                                                                  "incoming__p62.jpg"]


def test_a_flag_becomes_a_labelled_row(tmp_path):
    flags = tmp_path / "flagged"
    answer = {"cleanliness": "clean", "damage": "intact"}
    corrected = save_flag("car", pattern(70, (1200, 900)), answer, {"damage": "damaged"}, "dent", flags)
    not_a_car = save_flag("car", pattern(71), answer, {"cleanliness": NOT_THIS_KIND}, folder=flags)
    out = tmp_path / "car_flags"
    args = ["flags", "--task", "car", "--out", str(out), "--flag-dir", str(flags), *QUIET]

    summary = run(args)

    assert summary["added"] == 1 and summary["not_this_kind"] == [not_a_car]
    (row,) = manifest_rows(out / "labels.csv")
    assert row == {"image": f"images/flags__{corrected}.jpg", "cleanliness": "", "damage": "damaged",
                   "source": "flags", "origin": f"flag:{corrected}"}
    with Image.open(out / row["image"]) as stored:
        assert stored.size == (256, 192)
    again = run(args)
    assert again["added"] == 0 and again["already_present"] == 1
