"""Every sentence a person reads about an answer, built from the task spec (inference.tasks): display
names of labels, upload problems, "not judged", "please retake", "unsure - please check" and the car
task's driver note. Renderers (inference.render) take their wording from here only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from inference.quality import MIN_SIDE
from inference.tasks import UNSURE, TaskSpec, get_task

if TYPE_CHECKING:
    from inference.answer import Answer
    from inference.predictor import HeadPrediction, Prediction

APP_TITLE = "Image understanding: collectibles and car condition"
APP_ABOUT = """Photos unlike what a model knows are not judged, dark or blurred ones are to be retaken, unsure answers
say so. Photos are deleted within an hour, except with **Wrong answer?**: that photo, the answer and your correction
stay on this server to improve the models (no name or address; the operator can turn it off with FLAGGING=0)."""
PLEASE_UPLOAD = "Please upload a photo (JPEG, PNG or WebP)."
UNSURE_TITLE = "Unsure - please check"
BEST_GUESS = "Best guess only (not an answer)"
# What a photo that fails the quality check (inference.quality) is told, per problem.
RETAKE_ADVICE = {
    "too_small": f"too small: send the photo itself, at least {MIN_SIDE} pixels on the shorter side, not a thumbnail "
                 "or a cut-out",
    "too_dark": "too dark: turn on a light or move into daylight",
    "too_bright": "too bright: avoid direct sun, flash glare or a bright lamp behind the subject",
    "washed_out": "washed out: wipe the lens and do not shoot against the light",
    "blurred": "blurred: hold the phone still and tap the subject to focus",
}


def megabytes(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.3g} MB" if n_bytes >= 2**20 else f"{max(1, round(n_bytes / 1024))} KB"


def too_large(max_bytes: int, what: str = "file") -> str:
    return f"The {what} is too large (over {megabytes(max_bytes)}). Please upload a smaller image."


def display_label(label: str) -> str:
    """A label as people read it: `slightly_dirty` -> "slightly dirty"."""
    return label.replace("_", " ")


def head_title(head: str) -> str:
    return display_label(head).capitalize()


def review_text(head: HeadPrediction) -> str:
    """What a head that needs review says: the title and its two most likely labels."""
    return f"{UNSURE_TITLE}: {' or '.join(display_label(label) for label in head.top_two)}?"


def best_guess_text(prediction: Prediction) -> str:
    """The model's labels for a photo that was not judged, one line ("" when it was judged)."""
    if prediction.in_domain:
        return ""
    return "; ".join(f"{h} {display_label(p.label)} ({p.confidence:.0%})" for h, p in prediction.heads.items())


def retake_text(problems: tuple[str, ...]) -> str:
    """"Please retake the photo: <advice>; <advice>." for the quality check's problems."""
    return "Please retake the photo: " + "; ".join(RETAKE_ADVICE[p] for p in problems) + "."


def headline(answer: Answer) -> str:
    """Why an answer is not an automatic one, in one sentence ("" for an automatic answer)."""
    spec = get_task(answer.task)
    if answer.status == "unreadable":
        return answer.error.message
    if answer.status == "retake":
        return retake_text(answer.quality.problems)
    if answer.status == "not_judged":
        return spec.ood_message
    unsure = [p for p in answer.prediction.heads.values() if p.needs_review]
    if len(spec.heads) == 1 and unsure:
        return review_text(unsure[0])
    return ""


def note_lines(answer: Answer) -> list[str]:
    """The driver note, a line each: the most serious head first, an unsure head as "a person should
    look", and the all-clear sentence only when every head is sure it is in the good state."""
    spec = get_task(answer.task)
    if answer.status != "judged":
        return [headline(answer) + ("" if answer.status == "retake" else " Please upload a photo of the whole car.")]
    heads = answer.prediction.heads
    lines = [spec.messages[h][UNSURE if heads[h].needs_review else heads[h].label] for h in spec.note_order]
    if all(not heads[h].needs_review and heads[h].label == good for h, good in spec.all_clear_labels.items()):
        lines.insert(0, spec.all_clear)
    return lines


def driver_note(answer: Answer) -> str:
    """The driver note as one paragraph (the mobile payload's display_message)."""
    return " ".join(note_lines(answer))


def safety_warning(answer: Answer) -> bool:
    """Whether the answer warns about safety: a judged photo whose damage head is sure it is damaged."""
    damage = answer.prediction.heads.get("damage") if answer.status == "judged" else None
    return bool(damage and not damage.needs_review and damage.label == "damaged")


def bars_title(answer: Answer, head: str) -> str:
    """The title over a head's confidence bars: a best guess for a photo not judged, "unsure" with the two
    likeliest labels for a head that needs review, else the head's name."""
    p = answer.prediction.heads[head]
    if answer.status == "not_judged":
        return f"{head_title(head)}: best guess only, not judged"
    return f"{head_title(head)}: {review_text(p)}" if p.needs_review else head_title(head)


def endpoint_description(spec: TaskSpec, explain: bool) -> str:
    """What a photo endpoint of the client API returns (its api_description)."""
    return (f"{spec.title} of one photo: the client JSON (inference/render.py)"
            + (", and one Grad-CAM overlay per head" if explain else "")
            + ("; read_text=True adds the text on the item" if spec.reads_text else ""))
