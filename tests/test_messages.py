"""The driver note for every combination of the car heads' labels, review states and not-judged
(inference.messages), and what the UI, client JSON and mobile payload make of it."""
from __future__ import annotations

import itertools

import pytest

from inference.answer import Answer
from inference.messages import driver_note, note_lines, review_text, safety_warning
from inference.predictor import HeadPrediction, Prediction
from inference.quality import Quality
from inference.render import batch_row, client_payload, mobile_payload, readable_rows, rest_payload, ui_markdown
from inference.tasks import SAFETY_LEVELS, UNSURE, get_task

CAR = get_task("car")
ALL_CLEAR = CAR.all_clear


def head(labels: tuple[str, ...], label: str, needs_review: bool) -> HeadPrediction:
    rest = (1 - 0.7) / (len(labels) - 1)
    probs = {lab: 0.7 if lab == label else rest for lab in labels}
    return HeadPrediction(label, 0.7, probs, needs_review)


def car_answer(clean: str, clean_review: bool, damage: str, damage_review: bool, in_domain: bool = True) -> Answer:
    heads = {"cleanliness": head(CAR.heads["cleanliness"], clean, clean_review),
             "damage": head(CAR.heads["damage"], damage, damage_review)}
    return Answer("car", quality=Quality(True, ()), prediction=Prediction("car", heads, in_domain,
                                                                          0.01 if in_domain else 0.99))


CASES = list(itertools.product(CAR.heads["cleanliness"], (False, True), CAR.heads["damage"], (False, True)))


@pytest.mark.parametrize("clean,clean_review,damage,damage_review", CASES)
def test_driver_note_table(clean, clean_review, damage, damage_review):
    prediction = car_answer(clean, clean_review, damage, damage_review)
    lines = note_lines(prediction)
    expected_damage = CAR.messages["damage"][UNSURE if damage_review else damage]
    expected_clean = CAR.messages["cleanliness"][UNSURE if clean_review else clean]
    all_clear = clean == "clean" and damage == "intact" and not clean_review and not damage_review
    # Damage (safety) first, then cleanliness; the all-clear sentence only when both heads are sure and good.
    assert lines == ([ALL_CLEAR] if all_clear else []) + [expected_damage, expected_clean]
    assert (ALL_CLEAR in driver_note(prediction)) is all_clear
    assert safety_warning(prediction) is (damage == "damaged" and not damage_review)
    assert prediction.needs_review is (clean_review or damage_review)

    mobile = mobile_payload(prediction)["car_condition"]
    assert mobile["cleanliness"]["display_message"] == mobile["damage"]["display_message"] == driver_note(prediction)
    assert mobile["cleanliness"]["needs_review"] is clean_review and mobile["damage"]["needs_review"] is damage_review
    level = "low" if damage == "damaged" and not damage_review else SAFETY_LEVELS[UNSURE if damage_review else damage]
    assert mobile["damage"]["safety_level"] == level
    client = client_payload(prediction)
    assert (client["cleanliness"]["needs_review"], client["damage"]["needs_review"]) == (clean_review, damage_review)
    assert client["needs_review"] is prediction.needs_review
    assert rest_payload(prediction)["head_needs_review"] == {"cleanliness": clean_review, "damage": damage_review}


@pytest.mark.parametrize("clean,clean_review,damage,damage_review", CASES)
def test_ui_car_summary_table(clean, clean_review, damage, damage_review):
    import app

    prediction = car_answer(clean, clean_review, damage, damage_review)
    summary = ui_markdown(prediction)
    assert ("Safety warning" in summary) is (damage == "damaged" and not damage_review)
    assert ("excellent condition" in summary) is (clean == "clean" and damage == "intact"
                                                  and not clean_review and not damage_review)
    for h, review in (("cleanliness", clean_review), ("damage", damage_review)):
        component = app.label_component(prediction, h)
        assert component.show_heading is (not review)   # no bold label for an answer that needs review
        assert ("Unsure - please check" in component.label) is review


@pytest.mark.parametrize("clean,damage", itertools.product(CAR.heads["cleanliness"], CAR.heads["damage"]))
def test_not_judged_note_has_no_verdict(clean, damage):
    import app

    prediction = car_answer(clean, False, damage, False, in_domain=False)
    note = driver_note(prediction)
    assert note.startswith(CAR.ood_message)
    assert not any(m in note for messages in CAR.messages.values() for m in messages.values())
    assert ALL_CLEAR not in note and not safety_warning(prediction) and prediction.needs_review is False
    summary = ui_markdown(prediction)
    assert "Safety warning" not in summary and "Best guess only" in summary
    assert all(app.label_component(prediction, h).show_heading is False for h in CAR.head_names)
    mobile = mobile_payload(prediction)["car_condition"]
    assert mobile["damage"]["safety_level"] is None and mobile["cleanliness"]["status"] == "not_judged"


def test_review_text_names_the_two_most_likely_labels():
    h = HeadPrediction("slightly_dirty", 0.5, {"clean": 0.3, "slightly_dirty": 0.5, "very_dirty": 0.2}, True)
    assert review_text(h) == "Unsure - please check: slightly dirty or clean?"


def test_a_photo_to_retake_gets_advice_and_no_verdict():
    answer = Answer("car", quality=Quality(False, ("too_dark", "blurred"), {"brightness": 12.0}))
    note = driver_note(answer)
    assert note.startswith("Please retake the photo: too dark") and "blurred" in note
    assert not any(m in note for messages in CAR.messages.values() for m in messages.values())
    assert not safety_warning(answer) and answer.status == "retake" and answer.needs_review is False
    client = client_payload(answer)
    assert client["status"] == "retake" and client["cleanliness"] is None and client["damage"] is None
    assert client["quality"]["problems"] == ["too_dark", "blurred"] and client["message"] == note
    mobile = mobile_payload(answer)["car_condition"]
    assert mobile["damage"]["safety_level"] is None and mobile["cleanliness"]["status"] == "not_judged"
    row = batch_row("dark.jpg", answer)
    assert row["status"] == "retake" and row["quality"] == "too_dark blurred" and row["cleanliness"] == ""
    assert ui_markdown(answer).startswith("### 📷 Please retake")


def test_batch_rows_on_screen_read_as_words_and_the_csv_keeps_identifiers():
    rows = [batch_row("a.jpg", car_answer("very_dirty", True, "intact", False)),
            batch_row("b.jpg", car_answer("clean", False, "damaged", False, in_domain=False))]
    shown = readable_rows(CAR, rows)
    assert shown[0]["cleanliness"] == "very dirty" and shown[0]["cleanliness_needs_review"] == "yes"
    assert shown[0]["damage_needs_review"] == "no" and shown[0]["cleanliness_confidence"] == rows[0]["cleanliness_confidence"]
    assert shown[1]["status"] == "not judged" and shown[1]["in_domain"] == "no" and shown[1]["cleanliness"] == ""
    assert rows[0]["cleanliness"] == "very_dirty" and rows[1]["status"] == "not_judged"   # the CSV rows: unchanged
