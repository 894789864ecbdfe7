"""One car from several photos (inference.inspection), through the real model, REST and the client API;
photos to retake; fleet batches grouped by car; a flag sent through the client API becomes a training row."""
from __future__ import annotations

import io
import zipfile
from pathlib import PurePosixPath

import httpx
import pytest
from gradio_client import Client, handle_file

from benchmarks.bad_inputs import bad_inputs
from inference import analyze
from inference.batch import car_ids_from_paths, predict_files
from inference.batch_report import batch_summary, report_markdown
from inference.images import load_image
from inference.inspection import head_verdict, inspect
from inference.tasks import get_task
from training.quality_figures import blur, darken

CAR = get_task("car")
DAMAGE = CAR.heads["damage"]
CLEAN = CAR.heads["cleanliness"]


def row(status: str = "judged", **heads) -> dict:
    """A batch row: heads given as head=(label, confidence, needs_review)."""
    out = {"status": status, "file": "x.jpg"}
    for head, (label, confidence, review) in heads.items():
        out.update({head: label, f"{head}_confidence": confidence, f"{head}_needs_review": review})
    return out


@pytest.mark.parametrize("views, expected", [
    # (label, confidence, needs review) per view -> (verdict, needs review, driving view)
    ([("intact", 0.99, False), ("damaged", 0.95, False), ("intact", 0.9, False)], ("damaged", False, 1)),
    ([("intact", 0.99, False), ("intact", 0.97, False)], ("intact", False, 0)),
    ([("intact", 0.99, False), ("intact", 0.6, True)], ("intact", True, 0)),       # an unsure side: a person looks
    ([("damaged", 0.99, False), ("intact", 0.6, True)], ("damaged", False, 0)),    # already the worst label
    ([("intact", 0.6, True), ("damaged", 0.55, True)], ("damaged", True, 1)),      # nobody sure: worst guess
])
def test_damage_verdict_rules(views, expected):
    verdict = head_verdict([row(damage=v) for v in views], "damage", DAMAGE)
    assert (verdict.label, verdict.needs_review, verdict.view) == expected


def test_cleanliness_is_the_dirtiest_sure_view_and_unjudged_views_do_not_count():
    rows = [row(cleanliness=("clean", 0.99, False)), row(cleanliness=("very_dirty", 0.97, False)),
            row("not_judged"), row("retake"), row(cleanliness=("slightly_dirty", 0.98, False))]
    verdict = head_verdict(rows, "cleanliness", CLEAN)
    assert (verdict.label, verdict.needs_review, verdict.view) == ("very_dirty", False, 1)
    assert head_verdict([row("retake"), row("unreadable")], "cleanliness", CLEAN).label is None


def test_a_car_of_unjudged_photos_says_why(example_images):
    dark = darken(load_image(example_images["car"][0][0]))
    inspection = inspect(analyze_all([dark, dark]))
    assert inspection.car.status == "retake" and all(v.label is None for v in inspection.verdict.values())


def analyze_all(photos):
    from inference import analyze_photos
    return analyze_photos("car", photos)


@pytest.mark.parametrize("degrade, problem", [(darken, "too_dark"), (blur, "blurred")])
def test_a_darkened_or_blurred_example_is_asked_to_be_retaken(app_url, example_images, degrade, problem):
    photo = degrade(load_image(example_images["car"][0][0]))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=92)
    body = httpx.post(f"{app_url}/api/v1/car/predict", files={"image": ("x.jpg", buffer.getvalue())}, timeout=60).json()
    assert body["status"] == "retake" and problem in body["quality"]["problems"], body
    assert body["cleanliness"] is body["damage"] is None and body["message"].startswith("Please retake the photo")
    assert analyze("car", buffer.getvalue()).status == "retake"


def test_three_photo_inspection_through_rest_and_the_client_api(app_url, example_images):
    paths = [p for p, _ in example_images["car"][:3]]
    files = [("image", (p.name, p.read_bytes())) for p in paths]
    views = {"view": ["front", "left", "back"]}
    body = httpx.post(f"{app_url}/api/v1/car/inspect", files=files, data=views, timeout=120).json()
    assert [p["view"] for p in body["photos"]] == ["front", "left", "back"]
    singles = [httpx.post(f"{app_url}/api/v1/car/predict", files={"image": (p.name, p.read_bytes())}, timeout=60).json()
               for p in paths]
    for photo, single in zip(body["photos"], singles):   # each photo's own answer is the single-photo answer
        assert {k: photo[k] for k in ("status", "cleanliness", "damage")} == \
            {k: single[k] for k in ("status", "cleanliness", "damage")}
    judged = [s for s in singles if s["status"] == "judged"]
    assert judged, "the car examples are judged"
    assert body["verdict"]["damage"]["label"] in DAMAGE and body["driver_note"]
    if any(s["damage"] == "damaged" and not s["head_needs_review"]["damage"] for s in judged):
        assert body["verdict"]["damage"]["label"] == "damaged"
    mobile = httpx.post(f"{app_url}/api/v1/car/inspect", params={"format": "mobile"}, files=files, timeout=120).json()
    assert mobile["car_condition"]["damage"]["display_message"] == mobile["driver_note"] == body["driver_note"]

    client = Client(app_url, verbose=False)
    payload = client.predict([handle_file(str(p)) for p in paths], "front, left, back", api_name="/inspect_car")
    assert payload["verdict"] == body["verdict"] and payload["driver_note"] == body["driver_note"]
    assert [p["cleanliness"]["label"] for p in payload["photos"]] == [p["cleanliness"] for p in body["photos"]]


def test_a_bad_photo_in_an_inspection_gets_its_own_error(app_url, example_images):
    good = [p for p, _ in example_images["car"][:2]]
    files = [("image", (good[0].name, good[0].read_bytes())), ("image", ("note.jpg", bad_inputs()["text_as_jpg"][0])),
             ("image", (good[1].name, good[1].read_bytes()))]
    r = httpx.post(f"{app_url}/api/v1/car/inspect", files=files, timeout=120)
    assert r.status_code == 200
    photos = r.json()["photos"]
    assert [p["status"] for p in photos][1] == "unreadable" and "not an image" in photos[1]["error"]
    assert photos[0]["status"] != "unreadable" and photos[2]["status"] != "unreadable"
    too_many = [("image", (good[0].name, good[0].read_bytes()))] * 9
    r = httpx.post(f"{app_url}/api/v1/car/inspect", files=too_many, timeout=120)
    assert r.status_code == 400 and "error" in r.json()


def test_a_zip_with_two_car_folders_gives_two_cars(example_images):
    paths = [p for p, _ in example_images["car"][:4]]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, p in enumerate(paths):
            archive.write(p, f"fleet/car_{'AB'[i % 2]}/{p.name}")
    result = predict_files("car", [("fleet.zip", buffer.getvalue())])
    assert sorted(c["car_id"] for c in result.cars) == ["car_A", "car_B"]
    assert all(c["photos"] == 2 and c["driver_note"] for c in result.cars)
    assert {r["car_id"] for r in result.rows} == {"car_A", "car_B"}
    report = report_markdown(batch_summary("car", result.rows), result.cars)
    assert "### 2 cars" in report and "Needs review" in report
    # A CSV image,car_id groups loose photos the same way.
    manifest = "image,car_id\n" + "".join(f"{p.name},{'xy'[i % 2]}\n" for i, p in enumerate(paths))
    result = predict_files("car", [(p.name, p.read_bytes()) for p in paths] + [("cars.csv", manifest.encode())])
    assert sorted(c["car_id"] for c in result.cars) == ["x", "y"] and len(result.rows) == 4


def test_a_flag_sent_through_the_client_api_becomes_a_training_row(app_process, example_images, tmp_path):
    from training.collect import run

    photo = example_images["car"][-1][0]   # not the photo the browser test flags (a near-duplicate is dropped)
    client = Client(app_process.url, verbose=False)
    flag_id = client.predict("car", handle_file(str(photo)), "damage=damaged", "scratch on the door",
                             api_name="/flag_answer")["flag_id"]
    out = tmp_path / "car_flags"
    summary = run(["flags", "--task", "car", "--out", str(out), "--flag-dir", str(app_process.flag_dir),
                   "--no-progress"])
    rows = (out / "labels.csv").read_text().splitlines()
    assert summary["added"] >= 1 and any(f"flag:{flag_id}" in line and ",damaged," in line for line in rows), rows
    with pytest.raises(Exception, match="label"):
        client.predict("car", handle_file(str(photo)), "damage=scratched", "", api_name="/flag_answer")


def test_car_ids_come_from_car_folders_else_name_prefixes():
    ids = car_ids_from_paths
    two_folders = [PurePosixPath(p) for p in ("fleet/car_1/front.jpg", "fleet/car_2/x__rear.jpg", "loose.jpg")]
    assert ids(two_folders) == ["car_1", "car_2", ""]   # a folder per car wins over a name prefix
    one_container = [PurePosixPath(p) for p in ("fleet/car_1__front.jpg", "fleet/car_2__rear.jpg", "fleet/a.jpg")]
    assert ids(one_container) == ["car_1", "car_2", ""]
    assert ids([PurePosixPath("front.jpg"), PurePosixPath("rear.jpg")]) == ["", ""]
