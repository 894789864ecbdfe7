"""JSON shapes returned to clients: Gradio client API, REST (seed format) and the mobile payload.

Pure functions of a Prediction. Every payload carries `in_domain` and `ood_score`; when the photo
does not look like the task's photos, `message` says so (the labels are then only a best guess).
"""
from __future__ import annotations

from typing import Any

from inference.predictor import HeadPrediction, Prediction
from inference.tasks import SAFETY_LEVELS, get_task


def round_probs(probs: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in probs.items()}


def head_payload(head: HeadPrediction) -> dict[str, Any]:
    return {"label": head.label, "confidence": round(head.confidence, 6),
            "probabilities": round_probs(head.probabilities)}


def domain_fields(prediction: Prediction) -> dict[str, Any]:
    fields: dict[str, Any] = {"in_domain": prediction.in_domain,
                              "ood_score": None if prediction.ood_score is None else round(prediction.ood_score, 4)}
    if not prediction.in_domain:
        fields["message"] = get_task(prediction.task).ood_message
    return fields


def client_payload(prediction: Prediction) -> dict[str, Any]:
    """Gradio client API: a single-head task is flat, a multi-head task is keyed by head."""
    heads = prediction.heads
    body = head_payload(next(iter(heads.values()))) if len(heads) == 1 else \
        {h: head_payload(p) for h, p in heads.items()}
    return {**body, **domain_fields(prediction)}


def rest_payload(prediction: Prediction) -> dict[str, Any]:
    """REST: collectibles as label/confidence/probabilities; car in the earlier system's format."""
    if len(prediction.heads) == 1:
        return client_payload(prediction)
    return {**{h: p.label for h, p in prediction.heads.items()},
            "confidence": {h: round(p.confidence, 6) for h, p in prediction.heads.items()},
            "probabilities": {h: round_probs(p.probabilities) for h, p in prediction.heads.items()},
            **domain_fields(prediction)}


def mobile_payload(prediction: Prediction) -> dict[str, Any]:
    """The mobile app's `car_condition` payload, with display message and safety level."""
    spec = get_task(prediction.task)
    clean, damage = prediction.heads["cleanliness"], prediction.heads["damage"]
    return {"car_condition": {
        "cleanliness": {"status": clean.label, "confidence": round(clean.confidence, 6),
                        "display_message": spec.messages["cleanliness"][clean.label]},
        "damage": {"status": damage.label, "confidence": round(damage.confidence, 6),
                   "safety_level": SAFETY_LEVELS[damage.label],
                   "display_message": spec.messages["damage"][damage.label]}},
        **domain_fields(prediction)}


def driver_summary(prediction: Prediction) -> str:
    """Plain-language summary for a driver or fleet operator."""
    spec = get_task(prediction.task)
    if not prediction.in_domain:
        return spec.ood_message + " Please upload a photo of the whole car."
    lines = [f"{spec.messages[h][p.label]} ({h.replace('_', ' ')}: {p.label.replace('_', ' ')}, "
             f"{p.confidence:.0%} confident)" for h, p in prediction.heads.items()]
    return "\n".join(lines)
