"""One verdict for one car from several photos (views), for fleet checks.

Per head, the verdict is the most severe label any view is sure of (the task's labels run from good to
bad: clean < slightly dirty < very dirty, intact < damaged): the dirtiest confident view, damaged if any
view is confidently damaged. It needs review when no view is sure, or when another view is unsure and
the verdict is not already the worst label (an unsure side of an otherwise intact car).

It works on batch rows (inference.render.batch_row), so the app's inspection, the Batch tab and the fleet
job share it. The verdict is itself an Answer (`car_answer`), so the driver note, the mobile payload and
the UI speak for the car with the same code as for one photo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from inference.answer import JUDGED, NOT_JUDGED, RETAKE, UNREADABLE, Answer, analyze
from inference.images import ImageError
from inference.messages import display_label, driver_note, head_title
from inference.predictor import HeadPrediction, Prediction
from inference.quality import Quality
from inference.render import batch_row, md_escape, photo_caption
from inference.tasks import TaskSpec, get_task

MAX_VIEWS = 8


@dataclass
class HeadVerdict:
    label: str | None          # None when no view was judged
    confidence: float | None   # that view's confidence
    needs_review: bool
    view: int | None           # index of the photo that drove the verdict, None if none


def head_verdict(rows: Sequence[dict[str, Any]], head: str, labels: Sequence[str]) -> HeadVerdict:
    severity = {label: i for i, label in enumerate(labels)}
    judged = [(i, r) for i, r in enumerate(rows) if r["status"] == JUDGED]
    sure = [(i, r) for i, r in judged if not r[f"{head}_needs_review"]]
    unsure = [(i, r) for i, r in judged if r[f"{head}_needs_review"]]

    def worst(candidates):
        return max(candidates, key=lambda item: (severity[item[1][head]], item[1][f"{head}_confidence"]))

    if sure:
        view, row = worst(sure)
        doubt = bool(unsure) and severity[row[head]] < len(labels) - 1
        return HeadVerdict(row[head], row[f"{head}_confidence"], doubt, view)
    if unsure:   # no view is sure: the most severe guess, for a person to check
        view, row = worst(unsure)
        return HeadVerdict(row[head], row[f"{head}_confidence"], True, view)
    return HeadVerdict(None, None, True, None)


def car_verdict(spec: TaskSpec, rows: Sequence[dict[str, Any]]) -> dict[str, HeadVerdict]:
    return {head: head_verdict(rows, head, labels) for head, labels in spec.heads.items()}


def car_answer(spec: TaskSpec, rows: Sequence[dict[str, Any]], verdict: dict[str, HeadVerdict]) -> Answer:
    """The verdict as one Answer: judged when a view was; else the answer of the most telling photo (not of
    the task's kind, then to retake, then unreadable), so the car gets the message one such photo gets."""
    if all(v.label is not None for v in verdict.values()):
        heads = {h: HeadPrediction(v.label, v.confidence, {}, v.needs_review) for h, v in verdict.items()}
        return Answer(spec.name, quality=Quality(True, ()), prediction=Prediction(spec.name, heads, True, None))
    by_status = {r["status"]: r for r in reversed(rows)}
    if NOT_JUDGED in by_status:
        return Answer(spec.name, quality=Quality(True, ()), prediction=Prediction(spec.name, {}, False, None))
    if RETAKE in by_status:
        return Answer(spec.name, quality=Quality(False, tuple(by_status[RETAKE]["quality"].split())))
    return Answer(spec.name, error=ImageError(by_status[UNREADABLE]["error"]))


def car_row(spec: TaskSpec, car_id: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row per car: photo counts per status, each head's verdict, needs review, which photo drove it,
    and the driver note for the car."""
    verdict = car_verdict(spec, rows)
    row: dict[str, Any] = {"car_id": car_id, "photos": len(rows),
                           **{s: sum(r["status"] == s for r in rows) for s in (JUDGED, NOT_JUDGED, RETAKE, UNREADABLE)}}
    for head, v in verdict.items():
        row.update({head: v.label or "", f"{head}_needs_review": v.needs_review,
                    f"{head}_photo": "" if v.view is None else rows[v.view]["file"]})
    row["needs_review"] = any(v.needs_review for v in verdict.values())
    row["driver_note"] = driver_note(car_answer(spec, rows, verdict))
    return row


def car_columns(spec: TaskSpec) -> list[str]:
    heads = [c for h in spec.head_names for c in (h, f"{h}_needs_review", f"{h}_photo")]
    return ["car_id", "photos", JUDGED, NOT_JUDGED, RETAKE, UNREADABLE, *heads, "needs_review", "driver_note"]


@dataclass
class Inspection:
    """The photos of one car, their Answers and the car's verdict."""
    answers: list[Answer]
    views: list[str]            # a name per photo ("photo 1" when none was given)
    rows: list[dict[str, Any]]
    verdict: dict[str, HeadVerdict]

    @property
    def car(self) -> Answer:
        return car_answer(self.answers[0].spec, self.rows, self.verdict)


def inspect(answers: Sequence[Answer], views: Sequence[str] = ()) -> Inspection:
    """The car's verdict from the Answers of its photos (at most MAX_VIEWS)."""
    if not 1 <= len(answers) <= MAX_VIEWS:
        raise ValueError(f"a car inspection takes 1 to {MAX_VIEWS} photos")
    names = [(views[i] if i < len(views) and views[i] else f"photo {i + 1}") for i in range(len(answers))]
    rows = [batch_row(name, answer) for name, answer in zip(names, answers)]
    return Inspection(list(answers), names, rows, car_verdict(get_task(answers[0].task), rows))


def inspection_payload(inspection: Inspection, photo_payload) -> dict[str, Any]:
    """The car's verdict (per head: label, needs_review, the view that drove it), the driver note, and each
    photo's own answer rendered by `photo_payload` (a client or REST renderer)."""
    car = inspection.car
    return {"verdict": {h: {"label": v.label, "needs_review": v.needs_review,
                            "view": None if v.view is None else inspection.views[v.view]}
                        for h, v in inspection.verdict.items()},
            "status": car.status, "needs_review": car.status == JUDGED and car.needs_review,
            "driver_note": driver_note(car),
            "photos": [{"view": name, **photo_payload(answer)} for name, answer in zip(inspection.views,
                                                                                       inspection.answers)]}


def inspect_uploads(task: str, uploads: Sequence, views: Sequence[str] = (), explain: bool = False) -> Inspection:
    """1 to MAX_VIEWS uploads of one car (paths or bytes), each decoded once by `analyze`; an unusable one
    gets its own error and the others still count."""
    if not 1 <= len(uploads) <= MAX_VIEWS:
        raise ValueError(f"Upload 1 to {MAX_VIEWS} photos of the same car.")
    return inspect([analyze(task, upload, explain=explain) for upload in uploads], [v.strip() for v in views])


def inspection_markdown(inspection: Inspection) -> str:
    """Each photo's answer in a line, and which photo decided each head of the verdict."""
    lines = [f"- {md_escape(photo_caption(view, answer))}" for view, answer in zip(inspection.views, inspection.answers)]
    lines += [f"- {head_title(h)} decided by **{md_escape(inspection.views[v.view])}**"
              for h, v in inspection.verdict.items() if v.view is not None]
    return "#### Photos\n" + "\n".join(lines)


def overlay_gallery(inspection: Inspection) -> list[tuple[Any, str]]:
    """Every photo's heat maps with a caption "<view> - <head>"."""
    return [(overlay, f"{view} - {display_label(head)}") for view, answer in zip(inspection.views, inspection.answers)
            for head, overlay in answer.overlays.items()]
