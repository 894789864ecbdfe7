"""JSON shapes returned to clients: Gradio client API, REST (the earlier systems' formats) and the mobile
payload. Pure functions of a Prediction.

Every payload carries `in_domain` and `ood_score`. A photo the in-domain check turns away is not judged:
its label fields are null, `message` says why, and the model's labels are only offered under
`best_guess` (never a driver message or a safety level for it).
"""
from __future__ import annotations

from typing import Any

from inference.predictor import HeadPrediction, Prediction
from inference.tasks import SAFETY_LEVELS, get_task

NOT_JUDGED = "not_judged"   # the mobile payload's status for a photo that was not judged


def round_probs(probs: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in probs.items()}


def head_payload(head: HeadPrediction) -> dict[str, Any]:
    return {"label": head.label, "confidence": round(head.confidence, 6),
            "probabilities": round_probs(head.probabilities)}


def _heads_payload(prediction: Prediction) -> dict[str, Any]:
    """A single-head task flat ({label, confidence, probabilities}), a multi-head task keyed by head."""
    heads = prediction.heads
    if len(heads) == 1:
        return head_payload(next(iter(heads.values())))
    return {h: head_payload(p) for h, p in heads.items()}


def domain_fields(prediction: Prediction) -> dict[str, Any]:
    """in_domain and ood_score; out of domain also the message and the labels as a best guess only."""
    fields: dict[str, Any] = {"in_domain": prediction.in_domain,
                              "ood_score": None if prediction.ood_score is None else round(prediction.ood_score, 4)}
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
            **domain_fields(prediction)}


def mobile_payload(prediction: Prediction) -> dict[str, Any]:
    """The mobile app's `car_condition` payload, with display message and safety level."""
    spec = get_task(prediction.task)
    clean, damage = prediction.heads["cleanliness"], prediction.heads["damage"]
    if not prediction.in_domain:
        not_judged = {"status": NOT_JUDGED, "confidence": None, "display_message": spec.ood_message}
        condition = {"cleanliness": not_judged, "damage": {**not_judged, "safety_level": None}}
    else:
        condition = {
            "cleanliness": {"status": clean.label, "confidence": round(clean.confidence, 6),
                            "display_message": spec.messages["cleanliness"][clean.label]},
            "damage": {"status": damage.label, "confidence": round(damage.confidence, 6),
                       "safety_level": SAFETY_LEVELS[damage.label],
                       "display_message": spec.messages["damage"][damage.label]}}
    return {"car_condition": condition, **domain_fields(prediction)}


def best_guess_text(prediction: Prediction) -> str:
    """One line naming the model's labels for a photo that was not judged ("" when it was judged)."""
    if prediction.in_domain:
        return ""
    return "; ".join(f"{h} {p.label} ({p.confidence:.0%})" for h, p in prediction.heads.items())


def driver_summary(prediction: Prediction) -> str:
    """Plain-language summary for a driver or fleet operator, one line per head."""
    spec = get_task(prediction.task)
    if not prediction.in_domain:
        return f"{spec.ood_message} Please upload a photo of the whole car."
    return "\n".join(f"{spec.messages[h][p.label]} ({h.replace('_', ' ')}: {p.label.replace('_', ' ')}, "
                     f"{p.confidence:.0%} confident)" for h, p in prediction.heads.items())
