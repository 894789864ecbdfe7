"""One path from a photo to an answer, shaped like a transformers pipeline:

    upload -> load_image (decoded once, at the edge) -> quality check -> predictor (labels, in-domain,
    needs review) -> heat maps and text when asked -> Answer -> a renderer per format (inference.render)

The UI, the client API, REST, the batch, the car inspection and the fleet job all call `analyze` (one
upload) or `analyze_photos` (decoded photos) and only render the Answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image

from inference import ocr
from inference.explain import explainer_for
from inference.images import ImageError, Source, load_image
from inference.predictor import Prediction, Predictor, load_model
from inference.quality import Quality, check_quality
from inference.tasks import TaskSpec, get_task

JUDGED, NOT_JUDGED, RETAKE, UNREADABLE = "judged", "not_judged", "retake", "unreadable"


@dataclass
class Answer:
    """Everything known about one photo: why it was not judged, or the labels, heat maps and text."""
    task: str
    photo: Image.Image | None = None           # the decoded, upright photo; None when unreadable
    error: ImageError | None = None            # why the upload could not be used
    quality: Quality | None = None             # the quality check (a failed one: please retake)
    prediction: Prediction | None = None       # labels and in-domain check (None unless the photo passed)
    overlays: dict[str, Image.Image] = field(default_factory=dict)   # head -> heat map, when asked
    text: dict[str, Any] | None = None         # the text read on the item, when asked (inference.ocr)

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    @property
    def status(self) -> str:
        """unreadable, retake (failed the quality check), not_judged (not of the task's kind) or judged."""
        if self.error is not None:
            return UNREADABLE
        if self.quality is not None and not self.quality.ok:
            return RETAKE
        return JUDGED if self.prediction.in_domain else NOT_JUDGED

    @property
    def judged(self) -> bool:
        return self.status == JUDGED

    @property
    def needs_review(self) -> bool:
        """A judged photo with at least one head a person should check."""
        return self.judged and self.prediction.needs_review


def analyze_photos(task: str, photos: Sequence[Image.Image], *, explain: bool = False, read_text: bool = False,
                   predictor: Predictor | None = None) -> list[Answer]:
    """Decoded photos -> one Answer each. The model runs on the photos that pass the quality check, in one
    batch; `explain` adds every head's heat map, `read_text` the text on the item (tasks that read text)."""
    predictor = predictor or load_model(task)
    answers = [Answer(task, photo=photo, quality=check_quality(photo, task)) for photo in photos]
    usable = [answer for answer in answers if answer.quality.ok]
    for answer, prediction in zip(usable, predictor.predict_photos([answer.photo for answer in usable])):
        answer.prediction = prediction
        if explain:
            answer.overlays = explainer_for(predictor).overlays(
                answer.photo, {head: p.label for head, p in prediction.heads.items()})
        if read_text and predictor.spec.reads_text:
            answer.text = ocr.text_answer(answer.photo)
    return answers


def analyze(task: str, image: Source, *, explain: bool = False, read_text: bool = False,
            predictor: Predictor | None = None) -> Answer:
    """One upload (a path, the file's bytes or a PIL image) -> its Answer; an unusable upload gives an
    Answer whose `error` says why (never an exception)."""
    get_task(task)
    try:
        photo = load_image(image)
    except ImageError as err:
        return Answer(task, error=err)
    return analyze_photos(task, [photo], explain=explain, read_text=read_text, predictor=predictor)[0]
