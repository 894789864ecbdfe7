"""Renderers: one Answer (inference.answer) -> the shape of each format. Pure functions, wording from
inference.messages.

    RENDERERS["client"]   Gradio client API: a one-head task flat, a multi-head task keyed by head
    RENDERERS["rest"]     REST: collectibles as the client; car in the earlier system's format
    RENDERERS["mobile"]   the mobile app's `car_condition` payload (seed format)
    batch_row             one CSV row of a batch (inference.batch)
    ui_markdown           the headline / driver note above the UI's confidence bars
    markdown_table        a GitHub markdown table (batch report, model cards, benchmarks)

Every JSON answer carries `status` (judged, not_judged, retake), `in_domain`, `ood_score`, `needs_review`
and `quality`. A photo that is not judged (not of the task's kind, or to be retaken) has null label
fields and a `message` saying why; the model's labels of a not-judged photo are only a `best_guess`.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Sequence

from inference.answer import JUDGED, NOT_JUDGED, UNREADABLE, Answer
from inference.messages import BEST_GUESS, best_guess_text, display_label, driver_note, headline, note_lines, \
    safety_warning
from inference.predictor import HeadPrediction
from inference.tasks import SAFETY_LEVELS, UNSURE, TaskSpec

NOT_JUDGED_STATUS = "not_judged"   # the mobile payload's status of a head that was not judged


def round_probs(probs: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in probs.items()}


def head_payload(head: HeadPrediction) -> dict[str, Any]:
    return {"label": head.label, "confidence": round(head.confidence, 6),
            "probabilities": round_probs(head.probabilities), "needs_review": head.needs_review}


def _heads_payload(answer: Answer) -> dict[str, Any]:
    """A single-head task flat ({label, confidence, probabilities}), a multi-head task keyed by head."""
    heads = answer.prediction.heads
    if len(heads) == 1:
        return head_payload(next(iter(heads.values())))
    return {h: head_payload(p) for h, p in heads.items()}


def state_fields(answer: Answer) -> dict[str, Any]:
    """status, in_domain, ood_score, needs_review, quality; when not judged also the message and, for a
    photo of another kind, the labels as a best guess only."""
    if answer.status == UNREADABLE:
        return {"status": UNREADABLE, "error": answer.error.message}
    prediction = answer.prediction
    fields: dict[str, Any] = {
        "status": answer.status,
        "in_domain": None if prediction is None else prediction.in_domain,
        "ood_score": None if prediction is None or prediction.ood_score is None else round(prediction.ood_score, 4),
        "needs_review": answer.needs_review,
        "quality": answer.quality.to_dict() if answer.quality else None}
    if answer.status != JUDGED:
        fields["message"] = headline(answer)
    if answer.status == NOT_JUDGED:
        fields["best_guess"] = _heads_payload(answer)
    return fields


def client_payload(answer: Answer) -> dict[str, Any]:
    if answer.status == UNREADABLE:
        return state_fields(answer)
    body = dict.fromkeys(answer.spec.heads if len(answer.spec.heads) > 1 else ("label", "confidence",
                                                                                "probabilities"))
    if answer.judged:
        body = _heads_payload(answer)
    if answer.text is not None:
        body["text"] = answer.text
    return {**body, **state_fields(answer)}


def rest_payload(answer: Answer) -> dict[str, Any]:
    """Collectibles as the client API; car in the earlier system's format (labels, then confidences)."""
    if len(answer.spec.heads) == 1 or answer.status == UNREADABLE:
        return client_payload(answer)
    heads = answer.prediction.heads if answer.judged else {}
    return {**{h: heads[h].label if heads else None for h in answer.spec.heads},
            "confidence": {h: round(p.confidence, 6) for h, p in heads.items()} or None,
            "probabilities": {h: round_probs(p.probabilities) for h, p in heads.items()} or None,
            "head_needs_review": {h: p.needs_review for h, p in heads.items()} or None,
            **state_fields(answer)}


def mobile_payload(answer: Answer) -> dict[str, Any]:
    """The mobile app's `car_condition` payload plus needs_review; every display_message is the one
    driver note for the car (inference.messages)."""
    note = driver_note(answer)
    if not answer.judged:
        not_judged = {"status": NOT_JUDGED_STATUS, "confidence": None, "display_message": note}
        condition = {"cleanliness": not_judged, "damage": {**not_judged, "safety_level": None}}
    else:
        clean, damage = answer.prediction.heads["cleanliness"], answer.prediction.heads["damage"]
        condition = {
            "cleanliness": {"status": clean.label, "confidence": round(clean.confidence, 6),
                            "needs_review": clean.needs_review, "display_message": note},
            "damage": {"status": damage.label, "confidence": round(damage.confidence, 6),
                       "needs_review": damage.needs_review,
                       "safety_level": SAFETY_LEVELS[UNSURE if damage.needs_review else damage.label],
                       "display_message": note}}
    return {"car_condition": condition, **state_fields(answer)}


RENDERERS: dict[str, Callable[[Answer], dict[str, Any]]] = {
    "client": client_payload, "rest": rest_payload, "mobile": mobile_payload}


def batch_columns(spec: TaskSpec) -> list[str]:
    """The batch CSV's columns: labels are empty unless the photo was judged; a photo of another kind has
    a `best_guess`, one to retake its `quality` problems, an unusable file its `error`."""
    cols = ["file", "status"]
    for head in spec.head_names:
        cols += [head, f"{head}_confidence", f"{head}_needs_review"]
    return cols + ["needs_review", "in_domain", "ood_score", "best_guess", "quality",
                   *(["text"] if spec.reads_text else []), "error"]


def batch_row(name: str, answer: Answer) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(batch_columns(answer.spec), "")
    row.update(file=name, status=answer.status)
    if answer.status == UNREADABLE:
        row["error"] = answer.error.message
        return row
    prediction = answer.prediction
    if answer.judged:
        for head, p in prediction.heads.items():
            row.update({head: p.label, f"{head}_confidence": round(p.confidence, 4),
                        f"{head}_needs_review": p.needs_review})
        row["needs_review"] = answer.needs_review
    if prediction is not None:
        row.update(in_domain=prediction.in_domain, best_guess=best_guess_text(prediction),
                   ood_score="" if prediction.ood_score is None else round(prediction.ood_score, 4))
    row["quality"] = " ".join(answer.quality.problems) if answer.quality else ""
    if answer.text is not None:
        row["text"] = answer.text["text"] or (f"({answer.text['error']})" if "error" in answer.text else "")
    return row


def readable_rows(spec: TaskSpec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch rows as people read them on screen: labels and statuses as words, yes/no (the CSV keeps identifiers)."""
    words = {"status", *spec.head_names}
    flags = {c for c in batch_columns(spec) if c.endswith("needs_review") or c == "in_domain"}

    def readable(column: str, value: Any) -> Any:
        if column in words and isinstance(value, str):
            return display_label(value)
        return {True: "yes", False: "no"}.get(value, value) if column in flags else value

    return [{c: readable(c, v) for c, v in row.items()} for row in rows]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Sequence[str] | None = None) -> str:
    """A GitHub markdown table; cells are str()-ed and `|` escaped. align: 'l' or 'r' per column."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    align = align or ["l"] + ["r"] * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError("one alignment per column")
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row {row!r} has {len(row)} cells, expected {len(headers)}")
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_escape(text: str) -> str:
    text = html.escape(str(text), quote=False)
    for ch in "\\`*_[]#|":
        text = text.replace(ch, "\\" + ch)
    return text


def ui_markdown(answer: Answer) -> str:
    """Above the confidence bars: why a photo was not judged (with the best guess), the driver note of a
    task that has one (a safety warning only for damage the model is sure of), or "unsure - please check"."""
    if answer.status == NOT_JUDGED:
        return (f"### ⚠️ {md_escape(headline(answer))}\n"
                f"{BEST_GUESS}: {md_escape(best_guess_text(answer.prediction))}. Please upload a photo of the right kind.")
    if not answer.judged:
        return f"### 📷 {md_escape(headline(answer))}"
    if answer.spec.note_order:
        damaged = answer.spec.messages["damage"]["damaged"]
        lines = [f"⚠️ **Safety warning.** {md_escape(line)}" if line == damaged and safety_warning(answer)
                 else md_escape(line) for line in note_lines(answer)]
        return "### For the driver\n" + "\n".join(f"- {line}" for line in lines)
    if answer.needs_review:
        return f"### {md_escape(headline(answer))}\nA person should check this photo."
    return ""


def text_markdown(answer: Answer) -> str:
    """The text read on the item: the likely title (the longest line read with confidence), then the rest."""
    if answer.text is None:
        return ""
    if answer.text.get("error"):
        return f"#### Text on the item\n*{md_escape(answer.text['error'])}*"
    lines = answer.text["lines"]
    if not lines:
        return "#### Text on the item\n*No text found.*"
    title = max(lines, key=lambda line: len(line["text"]) * line["confidence"])
    others = [f"- {md_escape(line['text'])} ({line['confidence']:.0%})" for line in lines if line is not title]
    return "\n".join([f"#### Text on the item\n**Likely title:** {md_escape(title['text'])}", *others])


def photo_caption(view: str, answer: Answer) -> str:
    """One line per photo of an inspection: its view and labels, or why it was not judged."""
    if not answer.judged:
        return f"{view}: {headline(answer)}"
    return f"{view}: " + ", ".join(f"{display_label(p.label)} ({p.confidence:.0%}{', unsure' if p.needs_review else ''})"
                                   for p in answer.prediction.heads.values())
