"""Every sentence a person reads about an answer, built from the task spec (inference.tasks): display
names of labels, "not judged", "unsure - please check", and the driver note of the car task.

Renderers (UI markdown, client JSON, REST, mobile, batch rows) take their wording from here only.
"""
from __future__ import annotations

from inference.predictor import HeadPrediction, Prediction
from inference.tasks import UNSURE, get_task

UNSURE_TITLE = "Unsure - please check"


def display_label(label: str) -> str:
    """A label as people read it: `slightly_dirty` -> "slightly dirty"."""
    return label.replace("_", " ")


def head_title(head: str) -> str:
    return display_label(head).capitalize()


def review_text(head: HeadPrediction) -> str:
    """What a head that needs review says: the title and its two most likely labels."""
    return f"{UNSURE_TITLE}: {' or '.join(display_label(label) for label in head.top_two)}?"


def best_guess_text(prediction: Prediction) -> str:
    """One line naming the model's labels for a photo that was not judged ("" when it was judged)."""
    if prediction.in_domain:
        return ""
    return "; ".join(f"{h} {display_label(p.label)} ({p.confidence:.0%})" for h, p in prediction.heads.items())


def note_lines(prediction: Prediction) -> list[str]:
    """The driver note, a line each: the most serious head first, an unsure head as "a person should
    look", and the all-clear sentence only when every head is sure it is in the good state."""
    spec = get_task(prediction.task)
    if not prediction.in_domain:
        return [f"{spec.ood_message} Please upload a photo of the whole car."]
    heads = prediction.heads
    lines = [spec.messages[h][UNSURE if heads[h].needs_review else heads[h].label] for h in spec.note_order]
    if all(not heads[h].needs_review and heads[h].label == good for h, good in spec.all_clear_labels.items()):
        lines.insert(0, spec.all_clear)
    return lines


def driver_note(prediction: Prediction) -> str:
    """The driver note as one paragraph (the mobile payload's display_message)."""
    return " ".join(note_lines(prediction))


def safety_warning(prediction: Prediction) -> bool:
    """Whether the answer warns about safety: a judged photo whose damage head is sure it is damaged."""
    damage = prediction.heads.get("damage")
    return bool(prediction.in_domain and damage and not damage.needs_review and damage.label == "damaged")
