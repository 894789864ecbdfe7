"""The photo quality check on real photos through the real code (inference/quality.py): the example photos pass,
darkened, blurred, over-exposed and tiny copies are asked to be retaken with the right code, and a sample of
the shared in-class photos is accepted. The degradations are the ones training/quality_figures.py measures."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from inference.images import load_image
from inference.messages import RETAKE_ADVICE, retake_text
from inference.quality import MIN_SIDE, THRESHOLDS, check_quality
from support import shared
from training.quality_figures import PHOTO_FOLDERS, blur, darken, downscale, overexpose, read_rows

TASKS = ("collectibles", "car")
SAMPLE_EVERY = 5   # every 5th shared photo: 90 car and 181 collectibles photos


@pytest.fixture(scope="module")
def photos(example_images) -> dict[str, list[tuple[str, Image.Image]]]:
    """task -> [(file name, decoded example photo)]."""
    return {task: [(path.name, load_image(path)) for path, _ in found] for task, found in example_images.items()}


def assert_retake(photo: Image.Image, task: str, code: str) -> None:
    quality = check_quality(photo, task)
    assert not quality.ok and code in quality.problems, (code, quality)
    message = retake_text(quality.problems)
    assert message.startswith("Please retake the photo: ") and RETAKE_ADVICE[code] in message, message


@pytest.mark.parametrize("task", TASKS)
def test_example_photos_pass(photos, task):
    failed = {name: quality.problems for name, photo in photos[task]
              if not (quality := check_quality(photo, task)).ok}
    assert not failed, f"example photos asked to be retaken: {failed}"


@pytest.mark.parametrize("task", TASKS)
def test_darkened_examples_are_retaken_as_too_dark_only(photos, task):
    for _, photo in photos[task]:
        assert_retake(darken(photo), task, "too_dark")
        # the sharpness measure ignores exposure: a dark photo is not also called blurred
        assert check_quality(darken(photo), task).problems == ("too_dark",)


@pytest.mark.parametrize("task", TASKS)
def test_blurred_examples_are_retaken(photos, task):
    for _, photo in photos[task]:
        assert_retake(blur(photo), task, "blurred")


def test_over_exposed_car_examples_are_retaken(photos):
    for _, photo in photos["car"]:
        assert_retake(overexpose(photo), "car", "too_bright")


@pytest.mark.parametrize("task", TASKS)
def test_tiny_copy_is_too_small(photos, task):
    _, photo = photos[task][0]
    tiny = downscale(photo, MIN_SIDE - 16)
    assert_retake(tiny, task, "too_small")
    assert "too_small" not in check_quality(downscale(photo, MIN_SIDE), task).problems


@pytest.mark.parametrize("task", TASKS)
def test_figures_do_not_depend_on_resolution(photos, task):
    """The same picture at 2x and at 16x (a 12 MP-sized photo) is measured at the same working size: the same
    figures and verdict, and blurring it by the same share of its side is caught at both sizes."""
    for name, photo in photos[task]:
        double, huge = (photo.resize((photo.width * k, photo.height * k), Image.NEAREST) for k in (2, 16))
        at_2x, at_16x = check_quality(double, task), check_quality(huge, task)
        assert at_2x.ok and at_16x.ok, (name, at_2x, at_16x)
        assert at_16x.metrics["sharpness"] == pytest.approx(at_2x.metrics["sharpness"], rel=0.05), name
        assert at_16x.metrics["luminance_p95"] == pytest.approx(at_2x.metrics["luminance_p95"], abs=2), name
    assert "blurred" in check_quality(blur(huge), task).problems, name   # sigma 41 px: slow, so once


def test_quality_field_is_json(photos):
    _, photo = photos["car"][0]
    field = json.loads(json.dumps(check_quality(darken(photo), "car").to_dict()))
    assert set(field) == {"ok", "problems", "metrics"}
    assert field["ok"] is False and field["problems"] == ["too_dark"]
    assert {"min_side", "brightness", "luminance_p95", "luminance_p5", "centre_clipped", "sharpness"} <= set(
        field["metrics"])
    assert check_quality(photo, "car").ok


def test_unknown_task_is_refused(photos):
    with pytest.raises(ValueError, match="no quality thresholds"):
        check_quality(photos["car"][0][1], "boats")


@pytest.mark.parametrize("task", sorted(THRESHOLDS))
def test_shared_photos_are_mostly_accepted(task):
    """docs/quality.md reports 0% (car) and 0.9% (collectibles) of all shared photos turned away; the issue's
    budget is 2%."""
    folder, csv_name = PHOTO_FOLDERS[task]
    shared(folder, csv_name)
    sample = read_rows(folder, csv_name, shared())[::SAMPLE_EVERY]
    turned_away = {path.name: quality.problems for path, _ in sample
                   if not (quality := check_quality(load_image(path), task)).ok}
    assert len(turned_away) <= 0.02 * len(sample), turned_away
