"""JSON shapes returned to clients: Gradio client API, REST (the earlier systems' formats) and the mobile
payload. Pure functions of a Prediction.

Every payload carries `in_domain` and `ood_score`. A photo the in-domain check turns away is not judged:
its label fields are null, `message` says why, and the model's labels are only offered under
`best_guess` (never a driver message or a safety level for it).
"""
from __future__ import annotations

from typing import Any

from inference.messages import driver_note
from inference.predictor import HeadPrediction, Prediction
from inference.tasks import SAFETY_LEVELS, UNSURE, get_task

NOT_JUDGED = "not_judged"   # the mobile payload's status for a photo that was not judged


def round_probs(probs: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in probs.items()}


def head_payload(head: HeadPrediction) -> dict[str, Any]:
    return {"label": head.label, "confidence": round(head.confidence, 6),
            "probabilities": round_probs(head.probabilities), "needs_review": head.needs_review}


def _heads_payload(prediction: Prediction) -> dict[str, Any]:
    """A single-head task flat ({label, confidence, probabilities}), a multi-head task keyed by head."""
    heads = prediction.heads
    if len(heads) == 1:
        return head_payload(next(iter(heads.values())))
    return {h: head_payload(p) for h, p in heads.items()}


def domain_fields(prediction: Prediction) -> dict[str, Any]:
    """in_domain and ood_score; out of domain also the message and the labels as a best guess only."""
    fields: dict[str, Any] = {"in_domain": prediction.in_domain,
                              "ood_score": None if prediction.ood_score is None else round(prediction.ood_score, 4),
                              "needs_review": prediction.needs_review}
    if not prediction.in_domain:
        fields["message"] = get_task(prediction.task).ood_message
        fields["best_guess"] = _heads_payload(prediction)
    return fields


def client_payload(prediction: Prediction) -> dict[str, Any]:
    """Gradio client API: a single-head task is flat, a multi-head task is keyed by head."""
    body = _heads_payload(prediction)
    if not prediction.in_domain:
        body = dict.fromkeys(body)
    return {**body, **domain_fields(prediction)}


def rest_payload(prediction: Prediction) -> dict[str, Any]:
    """REST: collectibles as label/confidence/probabilities; car in the earlier system's format."""
    if len(prediction.heads) == 1:
        return client_payload(prediction)
    judged = prediction.in_domain
    return {**{h: p.label if judged else None for h, p in prediction.heads.items()},
            "confidence": {h: round(p.confidence, 6) for h, p in prediction.heads.items()} if judged else None,
            "probabilities": {h: round_probs(p.probabilities) for h, p in prediction.heads.items()} if judged else None,
            "head_needs_review": {h: p.needs_review for h, p in prediction.heads.items()} if judged else None,
            **domain_fields(prediction)}


def mobile_payload(prediction: Prediction) -> dict[str, Any]:
    """The mobile app's `car_condition` payload (seed format) plus needs_review: each head's
    display_message is the one driver note for the car (inference.messages)."""
    spec = get_task(prediction.task)
    clean, damage = prediction.heads["cleanliness"], prediction.heads["damage"]
    if not prediction.in_domain:
        not_judged = {"status": NOT_JUDGED, "confidence": None, "display_message": spec.ood_message}
        condition = {"cleanliness": not_judged, "damage": {**not_judged, "safety_level": None}}
    else:
        note = driver_note(prediction)
        condition = {
            "cleanliness": {"status": clean.label, "confidence": round(clean.confidence, 6),
                            "needs_review": clean.needs_review, "display_message": note},
            "damage": {"status": damage.label, "confidence": round(damage.confidence, 6),
                       "needs_review": damage.needs_review,
                       "safety_level": SAFETY_LEVELS[UNSURE if damage.needs_review else damage.label],
                       "display_message": note}}
    return {"car_condition": condition, **domain_fields(prediction)}
