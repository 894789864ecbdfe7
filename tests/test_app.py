"""The real app on a free local port: gradio_client endpoints, REST routes, batch, one browser run.

Model outputs are not assumed (checkpoints get retrained); what is checked is the contract: shapes,
probabilities that sum to 1, the same answer through every door, clear 4xx errors for bad input
and acceptance of odd-but-valid images.
"""
from __future__ import annotations

import csv
import io
import math
import re
import shutil
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from benchmarks.bad_inputs import REJECTIONS, bad_inputs, odd_inputs, oversize_bytes
from inference.batch import predict_files, rows_to_csv
from inference.batch_report import SUMMARY_COLUMNS, batch_summary, label_chart, summary_rows
from inference.files import example_files
from inference.images import MAX_FILE_BYTES
from inference.answer import Answer
from inference.flags import read_flags
from inference.messages import display_label
from inference.predictor import HeadPrediction, Prediction
from inference.quality import Quality
from inference.render import batch_columns, ui_markdown
from inference.tasks import SAFETY_LEVELS, UNSURE, get_task
from scripts.make_screenshots import CHROMIUM, CHROMIUM_ARGS, FINGERPRINT, ui_fingerprint, wait_until_idle
from scripts.make_screenshots import main as make_screenshots
from support import generated_photos, require

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CAR, COLLECTIBLES = get_task("car"), get_task("collectibles")
BAD = bad_inputs()


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def car_image(example_images) -> Path:
    return example_images["car"][0][0]


@pytest.fixture(scope="module")
def collectible_image(example_images) -> Path:
    return example_images["collectibles"][0][0]


def rest_post(app_url: str, task: str, content: bytes, filename: str = "photo.jpg", params=None) -> httpx.Response:
    return httpx.post(f"{app_url}/api/v1/{task}/predict", params=params, timeout=60,
                      files={"image": (filename, content, "application/octet-stream")})


def check_head(head: dict, labels: tuple[str, ...], min_confidence: float | None = None) -> None:
    """A head's answer; with `min_confidence` (the checkpoint's review threshold) also its needs_review."""
    assert set(head) == {"label", "confidence", "probabilities"} | ({"needs_review"} if min_confidence is not None else set())
    if min_confidence is not None:
        assert head["needs_review"] is (head["confidence"] < min_confidence)
    probs = head["probabilities"]
    assert list(probs) == list(labels)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
    assert head["label"] == max(probs, key=probs.get)
    assert head["confidence"] == pytest.approx(probs[head["label"]], abs=1e-6)


def check_domain(payload: dict, task) -> None:
    """status, in_domain and ood_score always; a photo not judged has null labels and its labels only as a
    best guess; a photo to retake (failed the quality check) has no labels at all and says what to fix."""
    assert payload["status"] in ("judged", "not_judged", "retake")
    assert payload["quality"]["ok"] is (payload["status"] != "retake")
    if payload["status"] == "retake":
        assert payload["in_domain"] is None and payload["message"].startswith("Please retake the photo: ")
        return
    assert isinstance(payload["in_domain"], bool) and payload["in_domain"] is (payload["status"] == "judged")
    assert payload["ood_score"] is None or isinstance(payload["ood_score"], float)
    if payload["in_domain"]:
        assert "message" not in payload and "best_guess" not in payload
    else:
        assert payload["message"] == task.ood_message


def check_collectible(payload: dict) -> None:
    assert {"label", "confidence", "probabilities", "in_domain", "ood_score"} <= set(payload)
    check_domain(payload, COLLECTIBLES)
    if payload["status"] == "retake":
        assert payload["label"] is payload["confidence"] is payload["probabilities"] is None
        return
    answer = payload if payload["in_domain"] else payload["best_guess"]
    if payload["in_domain"]:
        check_head({k: answer[k] for k in ("label", "confidence", "probabilities", "needs_review")},
                   COLLECTIBLES.heads["category"], review_threshold("collectibles", "category"))
    else:
        check_head(answer, COLLECTIBLES.heads["category"], review_threshold("collectibles", "category"))
        assert payload["needs_review"] is False
    if not payload["in_domain"]:
        assert payload["label"] is payload["confidence"] is payload["probabilities"] is None


def check_car(payload: dict) -> None:
    assert {"cleanliness", "damage", "in_domain", "ood_score"} <= set(payload)
    check_domain(payload, CAR)
    if payload["status"] == "retake":
        assert payload["cleanliness"] is payload["damage"] is None
        return
    for head, labels in CAR.heads.items():
        check_head(payload[head] if payload["in_domain"] else payload["best_guess"][head], labels,
                   review_threshold("car", head))
        if not payload["in_domain"]:
            assert payload[head] is None
    assert payload["needs_review"] is (payload["in_domain"] and any(payload[h]["needs_review"] for h in CAR.heads))


def review_threshold(task: str, head: str) -> float:
    """The review threshold the served checkpoint carries (config.json), never a number of the app's."""
    from inference import load_model

    return load_model(task).config.review[head]


def check_overlay(path: str) -> None:
    with Image.open(path) as im:
        im.load()
        assert im.mode in ("RGB", "RGBA")
        assert 32 <= max(im.size) <= 512


# --------------------------------------------------------------------------------------------
# Health and the gradio_client API
# --------------------------------------------------------------------------------------------

def test_health_names_the_serving_checkpoints(app_url):
    body = httpx.get(f"{app_url}/api/v1/health", timeout=10).json()
    assert body["status"] == "ok"
    assert set(body["models"]) == {"collectibles", "car"}
    assert "revision" in body["models"]["car"] and "revision" in body["models"]["collectibles"]
    phases = body["startup_s"]   # where the start-up time went, for benchmarks.run
    assert set(phases) == {"examples", "models", "interface", "server"}
    assert all(seconds >= 0 for seconds in phases.values()) and phases["models"] > 0


def test_client_api_lists_the_named_endpoints(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/classify_collectible", "/classify_collectible_explained", "/assess_car",
            "/assess_car_explained", "/batch_predict"} <= named


def test_classify_collectible(client, app_url, example_images):
    for path, _ in example_images["collectibles"][:3]:
        payload = client.predict(handle_file(str(path)), api_name="/classify_collectible")
        check_collectible(payload)
        # The same answer through REST (same model, same decoding).
        rest = rest_post(app_url, "collectibles", path.read_bytes(), path.name).json()
        assert rest["label"] == payload["label"]
        for label, p in payload["probabilities"].items():
            assert rest["probabilities"][label] == pytest.approx(p, abs=1e-4)


def test_assess_car(client, example_images):
    for path, _ in example_images["car"][:3]:
        check_car(client.predict(handle_file(str(path)), api_name="/assess_car"))


def test_classify_collectible_explained(client, collectible_image):
    plain = client.predict(handle_file(str(collectible_image)), api_name="/classify_collectible")
    payload, overlay = client.predict(handle_file(str(collectible_image)), api_name="/classify_collectible_explained")
    check_collectible(payload)
    assert payload["label"] == plain["label"]
    check_overlay(overlay)


def test_assess_car_explained(client, car_image):
    payload, cleanliness_cam, damage_cam = client.predict(handle_file(str(car_image)), api_name="/assess_car_explained")
    check_car(payload)
    check_overlay(cleanliness_cam)
    check_overlay(damage_cam)
    assert Path(cleanliness_cam).read_bytes() != Path(damage_cam).read_bytes()   # one map per head


@pytest.mark.parametrize("name", sorted(BAD))
def test_client_bad_input_gets_the_clear_message(client, tmp_path, name):
    data, filename = BAD[name]
    path = tmp_path / f"{name}{Path(filename).suffix}"   # a plain name: the client uploads it as is
    path.write_bytes(data)
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(path)), api_name="/assess_car")
    assert REJECTIONS[name][1] in str(info.value)


def test_client_oversize_upload_is_refused(client, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(oversize_bytes(MAX_FILE_BYTES))
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(big)), api_name="/assess_car")
    assert f"maximum file size of {MAX_FILE_BYTES} bytes" in str(info.value)   # launch(max_file_size=...)
    # The server enforces it too, not only the client.
    r = httpx.post(f"{client.src.rstrip('/')}/gradio_api/upload", timeout=60,
                   files={"files": ("big.jpg", big.read_bytes(), "image/jpeg")})
    assert r.status_code == 413, r.text


# --------------------------------------------------------------------------------------------
# REST
# --------------------------------------------------------------------------------------------

def check_rest_car(body: dict) -> None:
    """The seed REST format: labels at the top, confidences per head, plus probabilities and in_domain."""
    check_domain(body, CAR)
    if body["status"] != "judged":
        assert body["cleanliness"] is body["damage"] is body["confidence"] is body["probabilities"] is None
        assert body["head_needs_review"] is None and body["needs_review"] is False
    if body["status"] == "not_judged":
        for head in CAR.heads:
            check_head(body["best_guess"][head], CAR.heads[head], review_threshold("car", head))
    if body["status"] != "judged":
        return
    assert set(body["confidence"]) == {"cleanliness", "damage"}
    for head in CAR.heads:
        check_head({"label": body[head], "confidence": body["confidence"][head],
                    "probabilities": body["probabilities"][head], "needs_review": body["head_needs_review"][head]},
                   CAR.heads[head], review_threshold("car", head))
    assert body["needs_review"] is any(body["head_needs_review"].values())


def test_rest_car_default_format(app_url, car_image):
    r = rest_post(app_url, "car", car_image.read_bytes(), car_image.name)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    check_rest_car(r.json())


def test_rest_car_mobile_format(app_url, car_image):
    r = rest_post(app_url, "car", car_image.read_bytes(), car_image.name, params={"format": "mobile"})
    assert r.status_code == 200, r.text
    assert r.json()["in_domain"], "a car example photo must be judged"
    condition = r.json()["car_condition"]
    clean, damage = condition["cleanliness"], condition["damage"]
    plain = rest_post(app_url, "car", car_image.read_bytes(), car_image.name).json()
    assert clean["status"] == plain["cleanliness"] and damage["status"] == plain["damage"]
    assert (clean["needs_review"], damage["needs_review"]) == tuple(plain["head_needs_review"].values())
    # One driver note for the car, damage first, in both heads' display_message.
    assert clean["display_message"] == damage["display_message"]
    assert clean["display_message"].startswith(CAR.messages["damage"][UNSURE if damage["needs_review"] else
                                                                      damage["status"]]) or \
        clean["display_message"].startswith(CAR.all_clear)
    assert 0.0 <= clean["confidence"] <= 1.0
    assert damage["safety_level"] == SAFETY_LEVELS[UNSURE if damage["needs_review"] else damage["status"]]


def test_rest_collectibles(app_url, collectible_image):
    r = rest_post(app_url, "collectibles", collectible_image.read_bytes(), collectible_image.name)
    assert r.status_code == 200, r.text
    check_collectible(r.json())
    assert "text" not in r.json()


def check_text(answer: dict) -> None:
    assert set(answer) == {"lines", "text"}, answer
    for line in answer["lines"]:
        assert set(line) == {"text", "confidence", "box"} and line["text"] and 0 < line["confidence"] <= 1
        assert len(line["box"]) == 4
    assert answer["text"] == " / ".join(line["text"] for line in answer["lines"])


def test_the_text_on_a_collectible_through_rest_client_and_batch(app_url, client, example_images):
    cover = next(p for p, _ in example_images["collectibles"] if p.name == "books_1.jpg")
    body = rest_post(app_url, "collectibles", cover.read_bytes(), cover.name, params={"ocr": "1"}).json()
    check_collectible(body)
    check_text(body["text"])
    assert "ROAD" in body["text"]["text"].upper()
    payload = client.predict(handle_file(str(cover)), True, api_name="/classify_collectible")
    assert payload["text"] == body["text"] and payload["label"] == body["label"]
    assert "text" not in client.predict(handle_file(str(cover)), api_name="/classify_collectible")
    rows = predict_files("collectibles", [(cover.name, cover.read_bytes()),
                                          ("blank.png", blank_png())], read_text=True).rows
    assert "ROAD" in rows[0]["text"].upper() and rows[1]["text"] == ""
    assert "text" in batch_columns(COLLECTIBLES) and "text" not in batch_columns(CAR)
    assert predict_files("collectibles", [(cover.name, cover.read_bytes())]).rows[0]["text"] == ""


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (250, 250, 250)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("task", ["car", "collectibles"])
def test_rest_rejects_every_bad_input_with_4xx_json(app_url, task):
    for name, (data, filename) in BAD.items():
        r = rest_post(app_url, task, data, filename)
        status, message = REJECTIONS[name]
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/json"), name
        assert message in r.json()["error"], f"{name}: {r.json()}"


def test_rest_accepts_odd_images_and_later_predictions_do_not_change(app_url, car_image):
    first = rest_post(app_url, "car", car_image.read_bytes(), car_image.name).json()
    with Image.open(car_image) as im:
        base = im.convert("RGB")
        base.thumbnail((160, 160))
    for name, (data, filename) in odd_inputs(base).items():
        r = rest_post(app_url, "car", data, filename)
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
        check_rest_car(r.json())
    for data, filename in BAD.values():   # bad uploads in between must not disturb anything either
        rest_post(app_url, "car", data, filename)
    again = rest_post(app_url, "car", car_image.read_bytes(), car_image.name).json()
    for head in CAR.heads:
        for label, p in first["probabilities"][head].items():
            assert again["probabilities"][head][label] == pytest.approx(p, abs=1e-6)


def test_rest_missing_field_and_wrong_requests(app_url, car_image):
    url = f"{app_url}/api/v1/car/predict"
    r = httpx.post(url, files={"photo": ("a.jpg", car_image.read_bytes(), "image/jpeg")}, timeout=30)
    assert r.status_code == 422 and "image" in r.json()["error"]
    r = httpx.post(url, data={"image": "not a file"}, files={"other": ("x.txt", b"x", "text/plain")}, timeout=30)
    assert r.status_code == 422 and "error" in r.json()
    r = httpx.post(url, content=car_image.read_bytes(), headers={"content-type": "image/jpeg"}, timeout=30)
    assert r.status_code == 415 and "multipart" in r.json()["error"]
    r = httpx.post(url, timeout=30)
    assert 400 <= r.status_code < 500 and "error" in r.json()
    r = rest_post(app_url, "car", car_image.read_bytes(), params={"format": "xml"})
    assert r.status_code == 400 and "format" in r.json()["error"]
    r = rest_post(app_url, "collectibles", car_image.read_bytes(), params={"format": "mobile"})
    assert r.status_code == 400


def test_rest_oversize_upload_is_413(app_url):
    # Just over the limit: the body fits the multipart allowance, the file does not.
    r = rest_post(app_url, "car", oversize_bytes(MAX_FILE_BYTES), "big.jpg")
    assert r.status_code == 413 and "too large" in r.json()["error"]
    # Far over: refused from Content-Length / while streaming, without buffering it.
    r = rest_post(app_url, "car", oversize_bytes(2 * MAX_FILE_BYTES), "huge.jpg")
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunked():   # no Content-Length: the limit applies while reading
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.jpg"\r\n\r\n'
        for _ in range(MAX_FILE_BYTES // (1 << 20) + 4):
            yield b"\xff" * (1 << 20)
        yield b"\r\n--b--\r\n"
    r = httpx.post(f"{app_url}/api/v1/car/predict", content=chunked(), timeout=60,
                   headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "too large" in r.json()["error"]


# --------------------------------------------------------------------------------------------
# Photos of the wrong kind are not judged, through every door
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def wrong_kind(example_images, tmp_path_factory) -> dict[str, list[Path]]:
    """task -> photos that are not of its kind: the other task's example photos and a generated landscape."""
    landscape = tmp_path_factory.mktemp("ood") / "landscape.png"
    generated_photos()[6].save(landscape)
    return {"car": [example_images["collectibles"][0][0], landscape],
            "collectibles": [example_images["car"][0][0], landscape]}


def best_guess_of(payload: dict, task) -> dict:
    best = payload["best_guess"]
    return {h: best[h] for h in task.heads} if len(task.heads) > 1 else {task.head_names[0]: best}


def test_rest_does_not_judge_a_photo_of_the_wrong_kind(app_url, wrong_kind):
    for path in wrong_kind["car"]:
        body = rest_post(app_url, "car", path.read_bytes(), path.name).json()
        assert set(body) == {"cleanliness", "damage", "confidence", "probabilities", "head_needs_review", "status",
                             "in_domain", "ood_score", "needs_review", "quality", "message", "best_guess"}, path.name
        assert (body["in_domain"], body["message"]) == (False, CAR.ood_message)
        check_rest_car(body)
        mobile = rest_post(app_url, "car", path.read_bytes(), path.name, params={"format": "mobile"}).json()
        not_judged = {"status": "not_judged", "confidence": None,
                      "display_message": f"{CAR.ood_message} Please upload a photo of the whole car."}
        assert mobile["car_condition"] == {"cleanliness": not_judged, "damage": {**not_judged, "safety_level": None}}
        assert mobile["best_guess"] == body["best_guess"] and mobile["in_domain"] is False
        assert not any(m in str(mobile) for messages in CAR.messages.values() for m in messages.values())
        assert CAR.all_clear not in str(mobile)
    for path in wrong_kind["collectibles"]:
        body = rest_post(app_url, "collectibles", path.read_bytes(), path.name).json()
        assert set(body) == {"label", "confidence", "probabilities", "status", "in_domain", "ood_score",
                             "needs_review", "quality", "message", "best_guess"}
        assert body["label"] is body["confidence"] is body["probabilities"] is None
        assert (body["in_domain"], body["message"]) == (False, COLLECTIBLES.ood_message)
        check_head(body["best_guess"], COLLECTIBLES.heads["category"], review_threshold("collectibles", "category"))


def test_client_api_does_not_judge_a_photo_of_the_wrong_kind(client, app_url, wrong_kind):
    for task, endpoint, check in ((CAR, "/assess_car", check_car), (COLLECTIBLES, "/classify_collectible",
                                                                     check_collectible)):
        for path in wrong_kind[task.name]:
            payload = client.predict(handle_file(str(path)), api_name=endpoint)
            assert payload["in_domain"] is False and payload["message"] == task.ood_message, path.name
            check(payload)
            rest = rest_post(app_url, task.name, path.read_bytes(), path.name).json()
            assert best_guess_of(payload, task) == best_guess_of(rest, task)


def test_batch_does_not_judge_a_photo_of_the_wrong_kind(wrong_kind):
    for task in (CAR, COLLECTIBLES):
        rows = predict_files(task.name, [(p.name, p.read_bytes()) for p in wrong_kind[task.name]]).rows
        for row in rows:
            assert row["in_domain"] is False and row["error"] == "", row
            assert all(row[h] == "" and row[f"{h}_confidence"] == "" for h in task.heads), row
            assert all(f"{h} " in row["best_guess"] for h in task.heads), row
        report = batch_summary(task.name, rows)
        assert report["n_not_judged"] == len(rows) and report["n_judged"] == 0
        assert all(not a["photos"] for a in report["actions"].values())
        assert [r["file"] for r in report["review"]] == [p.name for p in wrong_kind[task.name]]


# --------------------------------------------------------------------------------------------
# Batch
# --------------------------------------------------------------------------------------------

def make_zip(paths: list[Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for p in paths:
            zf.write(p, f"photos/{p.name}")
        zf.writestr("photos/notes.txt", "not a photo\n")
        zf.writestr("__MACOSX/photos/._x.jpg", b"\x00\x05\x16\x07")
    return buffer.getvalue()


def test_batch_module_zip_rows_and_csv(example_images):
    paths = [p for p, _ in example_images["car"][:3]]
    progress = []
    result = predict_files("car", [("fleet.zip", make_zip(paths))], on_progress=lambda done, total: progress.append(
        (done, total)))
    rows = result.rows
    assert len(rows) == 4 and progress[-1] == (4, 4)
    good = [r for r in rows if not r["error"]]
    bad = [r for r in rows if r["error"]]
    assert [r["file"] for r in good] == [f"fleet.zip/photos/{p.name}" for p in paths]
    for r in good:   # car example photos are judged
        assert r["in_domain"] is True and r["best_guess"] == ""
        assert r["cleanliness"] in CAR.heads["cleanliness"] and r["damage"] in CAR.heads["damage"]
        assert 0.0 < r["cleanliness_confidence"] <= 1.0
    assert set(result.thumbnails) == {r["file"] for r in good}
    assert all(max(Image.open(io.BytesIO(b)).size) <= 256 for b in result.thumbnails.values())
    assert len(bad) == 1 and bad[0]["file"].endswith("notes.txt") and bad[0]["cleanliness"] == ""
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(rows, batch_columns(CAR)))))
    assert len(parsed) == 4 and list(parsed[0]) == batch_columns(CAR)
    # A bad loose file is a row too, and spreadsheet formulas in names are neutralised.
    rows = predict_files("car", [("=cmd.jpg", BAD["text_as_jpg"][0]), ("ok.jpg", paths[0].read_bytes())]).rows
    assert rows[0]["error"].startswith("The file is not an image") and rows[1]["error"] == ""
    assert "'=cmd.jpg" in rows_to_csv(rows)


def test_batch_report_counts_lists_and_chart(example_images):
    paths = [p for p, _ in example_images["car"]]
    items = [(p.name, p.read_bytes()) for p in paths] + [(example_images["collectibles"][0][0].name,
                                                          example_images["collectibles"][0][0].read_bytes()),
                                                         ("broken.jpg", BAD["truncated_jpeg"][0])]
    rows = predict_files("car", items).rows
    report = batch_summary("car", rows)
    assert report["n_files"] == len(items) == sum(report[f"n_{s}"] for s in ("judged", "not_judged", "retake",
                                                                          "unreadable"))
    assert report["n_unreadable"] == 1 and report["n_not_judged"] >= 1
    judged = [r for r in rows if r["in_domain"] is True and not r["error"]]
    for head, labels in CAR.heads.items():
        counts = report["labels"][head]
        assert sum(c["count"] for c in counts.values()) == report["n_judged"] == len(judged)
        assert all(counts[label]["count"] == sum(r[head] == label for r in judged) for label in labels)
    wash = report["actions"]["needs_a_wash"]["photos"]
    # The action lists hold automatic answers; a head that needs review goes to the "check by hand" list.
    assert {p["file"] for p in wash} == {r["file"] for r in judged if r["cleanliness"] in ("slightly_dirty", "very_dirty")
                                        and not r["cleanliness_needs_review"]}
    damage = report["actions"]["check_for_damage"]["photos"]
    assert {p["file"] for p in damage} == {r["file"] for r in judged if r["damage"] == "damaged"
                                          and not r["damage_needs_review"]}
    assert {(p["file"], p["head"]) for p in report["review"] if p["head"]} == \
        {(r["file"], h) for r in judged for h in CAR.heads if r[f"{h}_needs_review"]}
    assert [p["confidence"] for p in damage] == sorted((p["confidence"] for p in damage), reverse=True)
    chart = label_chart(report)
    assert chart.mode == "RGB" and chart.size[0] > 600
    csv_rows = list(csv.DictReader(io.StringIO(rows_to_csv(summary_rows(report), SUMMARY_COLUMNS))))
    assert {"photos", "labels:cleanliness", "labels:damage", "action:check_for_damage"} <= {r["section"] for r in csv_rows}


def test_batch_endpoint(client, example_images, tmp_path):
    paths = [p for p, _ in example_images["collectibles"][:3]]
    archive = tmp_path / "shelf.zip"
    archive.write_bytes(make_zip(paths))
    loose = tmp_path / "coin.jpg"
    shutil.copy(paths[0], loose)
    table, csv_path, report, report_csv, chart, markdown, cars_csv, actions, _selected = client.predict(
        "collectibles", [handle_file(str(archive)), handle_file(str(loose))], api_name="/batch_predict")
    headers, data = table["headers"], table["data"]
    assert headers == [display_label(c) for c in batch_columns(COLLECTIBLES)]   # headers as words
    assert "### 5 photos" in markdown and cars_csv is None   # no car ids in a collection
    assert len(data) == 5
    errors = [row for row in data if row[-1]]
    assert len(errors) == 1 and errors[0][0].endswith("notes.txt")
    status, category = headers.index("status"), headers.index("category")
    assert all(row[category] == "" for row in data if row[status] != "judged")
    assert all(row[category] in COLLECTIBLES.heads["category"] for row in data if row[status] == "judged")
    with open(csv_path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 5
    assert report["n_files"] == 5 and report["n_unreadable"] == 1
    assert sum(c["count"] for c in report["labels"]["category"].values()) == report["n_judged"]
    with open(report_csv, newline="") as f:
        assert {r["section"] for r in csv.DictReader(f)} >= {"photos", "labels:category"}
    with Image.open(chart) as im:
        assert im.size[0] > 300
    assert actions["headers"] == ["list", "file", "label", "confidence / reason"]


# --------------------------------------------------------------------------------------------
# UI helpers (out-of-domain wording) and one browser run
# --------------------------------------------------------------------------------------------

def test_ui_says_out_of_domain_instead_of_answering():
    import app

    heads = {"cleanliness": HeadPrediction("very_dirty", 0.9, {"clean": 0.05, "slightly_dirty": 0.05, "very_dirty": 0.9}),
             "damage": HeadPrediction("damaged", 0.8, {"intact": 0.2, "damaged": 0.8})}
    outside = Answer("car", quality=Quality(True, ()), prediction=Prediction("car", heads, False, 0.97))
    summary = ui_markdown(outside)
    assert CAR.ood_message in summary and "Safety warning" not in summary and "car wash" not in summary
    assert "best guess" in app.label_component(outside, "damage").label
    inside = Answer("car", quality=Quality(True, ()), prediction=Prediction("car", heads, True, 0.01))
    summary = ui_markdown(inside)
    assert "Time for a car wash" in summary and "Safety warning" in summary
    assert app.label_component(inside, "cleanliness").value["label"] == "very dirty"   # read as words


def test_startup_refuses_a_bad_checkpoint_with_a_clear_message(monkeypatch, capsys):
    import serve
    from inference.model import CheckpointError

    def broken(task):
        raise CheckpointError(f"checkpoints/{task}/model.safetensors: weights do not fit config.json")
    monkeypatch.setattr(serve, "load_model", broken)
    with pytest.raises(SystemExit) as info:
        serve.preload_models()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot load the 'collectibles' model" in err and "model.safetensors" in err and "Traceback" not in err


def test_share_flag_and_env(monkeypatch):
    import serve

    monkeypatch.delenv("SHARE", raising=False)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    args = serve.parse_args([])
    assert (args.share, args.port) == (False, 7999)
    assert serve.parse_args(["--share"]).share
    monkeypatch.setenv("SHARE", "1")
    assert serve.parse_args([]).share


def test_readme_screenshots_show_the_current_interface():
    """scripts/make_screenshots.py records the fingerprint of the files that shape the screens."""
    root = Path(__file__).resolve().parents[1]
    recorded = (root / "docs" / FINGERPRINT).read_text().strip()
    assert recorded == ui_fingerprint(), "the interface changed: python -m scripts.make_screenshots (app running)"
    shown = re.findall(r"\((docs/screenshot_\w+\.png)\)", (root / "README.md").read_text())
    assert len(shown) == 4 and all((root / name).is_file() for name in shown)


@pytest.mark.timeout(300)
def test_the_screenshot_script_runs_on_the_example_photos(app_process, tmp_path):
    """The README's screenshots come from this script on the running app: it must still work."""
    require_chromium()
    assert make_screenshots(["--url", app_process.url, "--out", str(tmp_path)]) == 0
    for name in ("collectibles", "car", "not_judged", "batch"):
        with Image.open(tmp_path / f"screenshot_{name}.png") as shot:
            assert shot.width == 1280 and shot.height > 500
    assert (tmp_path / FINGERPRINT).read_text().strip() == ui_fingerprint()


def require_chromium() -> None:
    require(CHROMIUM.exists(), "Chromium at /usr/bin/chromium (apt-get install chromium; scripts/run_tests.sh does it)")


@pytest.mark.timeout(300)
def test_browser_upload_in_each_tab(app_process, collectible_image, car_image):
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    app_url = app_process.url
    # What the model says for these photos (same model behind the UI): the UI must show it.
    expected_category = rest_post(app_url, "collectibles", collectible_image.read_bytes()).json()["label"]
    car = rest_post(app_url, "car", car_image.read_bytes()).json()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1300})
            page.goto(app_url, wait_until="domcontentloaded")

            page.locator("#collectibles-image input[type=file]").set_input_files(str(collectible_image))
            expect(page.locator("#collectibles-cam-category img")).to_be_visible(timeout=90_000)
            wait_until_idle(page)
            expect(page.locator("#collectibles-category")).to_contain_text(display_label(expected_category))
            page.screenshot(path=str(ARTIFACTS / "ui_collectibles.png"), full_page=True)

            page.get_by_role("tab", name="Car condition").click()
            page.locator("#car-image input[type=file]").set_input_files(str(car_image))
            for head in CAR.head_names:
                expect(page.locator(f"#car-cam-{head} img")).to_be_visible(timeout=90_000)
            wait_until_idle(page)
            for head in CAR.head_names:   # labels as words; "Unsure - please check" where the answer needs review
                expect(page.locator(f"#car-{head}")).to_contain_text(display_label(car[head]))
                if car["head_needs_review"][head]:
                    expect(page.locator(f"#car-{head}")).to_contain_text("Unsure - please check")
            expect(page.locator("#car-summary")).to_contain_text("For the driver")
            page.screenshot(path=str(ARTIFACTS / "ui_car.png"), full_page=True)

            # An example whose answer needs review: one click answers it (run on click, nothing cached at start)
            # and the unsure head says so. The car examples include such photos (slightly dirty is hard).
            answers = [rest_post(app_url, "car", Path(f).read_bytes()).json() for f in example_files("car")]
            unsure = [(i, h) for i, a in enumerate(answers) for h in CAR.head_names
                      if a["in_domain"] and a["head_needs_review"][h]]
            assert unsure, "no car example needs review any more: pick another photo for this check"
            index, head = unsure[0]
            page.locator("#car-examples button.gallery-item").nth(index).click()
            expect(page.locator(f"#car-{head}")).to_contain_text("Unsure - please check", timeout=60_000)
            expect(page.locator(f"#car-{head}")).to_contain_text(display_label(answers[index][head]))
            wait_until_idle(page)
            expect(page.locator("#car-summary")).to_contain_text("For the driver")

            # "Wrong answer?": the correction lands in the flag log with the photo.
            page.locator("#car-flag").get_by_text("Wrong answer?").click()
            page.locator("#car-flag").get_by_label("Right damage").click()
            page.get_by_role("option", name="damaged", exact=True).click()
            page.locator("#car-flag").get_by_role("button", name="Send the correction").click()
            expect(page.locator("#car-flag-status")).to_contain_text("Thank you", timeout=30_000)
            rows = read_flags("car", app_process.flag_dir)
            assert rows and rows[-1]["correction"] == {"damage": "damaged"} and rows[-1]["image"].is_file()

            # A photo of something else is not judged; the page says so instead of a verdict.
            page.locator("#car-image input[type=file]").set_input_files(str(collectible_image))
            expect(page.locator("#car-summary")).to_contain_text("Not judged", timeout=90_000)
            wait_until_idle(page)

            # A bad file: one clear message where the answer goes, no error pills, no broken image.
            bad = ARTIFACTS / "not_a_photo.jpg"
            bad.write_bytes(BAD["text_as_jpg"][0])
            page.locator("#car-image input[type=file]").set_input_files(str(bad))
            expect(page.locator("#car-summary")).to_contain_text(REJECTIONS["text_as_jpg"][1], timeout=60_000)
            wait_until_idle(page)
            assert "Traceback" not in page.content()
            assert page.get_by_text("Error", exact=True).filter(visible=True).count() == 0
            page.screenshot(path=str(ARTIFACTS / "ui_bad_input.png"))

            # The Batch tab: a readable report (no JSON tree), human headers, the lists show a photo on click.
            page.get_by_role("tab", name="Batch").click()
            page.locator("#batch-files input[type=file]").set_input_files([str(car_image), str(collectible_image)])
            page.get_by_role("button", name="Run batch").click()
            expect(page.locator("#batch-chart img")).to_be_visible(timeout=90_000)
            wait_until_idle(page)
            expect(page.locator("#batch-report")).to_contain_text("2 photos")
            assert "Object(" not in page.inner_text("body") and "Array(" not in page.inner_text("body")
            expect(page.locator("#batch-table")).to_contain_text("cleanliness confidence")
            expect(page.locator("#batch-table")).to_contain_text("not judged")   # values as words too
            assert "not_judged" not in page.locator("#batch-table").inner_text()
            # The table's cells are drawn as spans; a hidden sizing copy of the first row also holds the text.
            def cell(text: str):
                return page.locator("#batch-actions").get_by_text(text, exact=True).filter(visible=True).first
            expect(cell(car_image.name)).to_be_visible(timeout=30_000)
            expect(cell(collectible_image.name)).to_be_visible()   # not judged by the car model: on the list
            cell(car_image.name).click()
            expect(page.locator("#batch-photo img")).to_be_visible(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "ui_batch.png"), full_page=True)

            # A phone (390 x 844): after an upload the answer is on screen without scrolling.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.goto(app_url, wait_until="domcontentloaded")
            phone.get_by_role("tab", name="Car condition").click()
            phone.locator("#car-image input[type=file]").set_input_files(str(car_image))
            expect(phone.locator("#car-summary")).to_contain_text("For the driver", timeout=90_000)
            wait_until_idle(phone)
            phone.wait_for_timeout(500)
            box = phone.locator("#car-summary").bounding_box()
            assert box is not None and -5 <= box["y"] < 844 - 40, box   # scrolled into view
            phone.screenshot(path=str(ARTIFACTS / "ui_phone.png"))
        finally:
            browser.close()
