"""Print the README's figures table from the bundled checkpoints' metrics.json.

    python -m scripts.model_figures

Every figure is measured on validation data that fitted nothing it reports on: photos from held-out
sources (and, for the in-domain check, with the threshold fitted on the other half of validation).
A checkpoint trained on all the data reports the held-out run of its recipe (its card says which).
"""
from __future__ import annotations

import json
import sys

from inference.tasks import TASKS
from training.model_card import CARD_TEXT


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def figures_table() -> str:
    lines = ["| task / head | earlier system | validation photos, held-out sources | weakest class recall (photos) | "
             "validation scans |", "|---|---:|---:|---:|---:|"]
    gate = ["", "| task | in-class photos rejected | held-out negatives accepted | other task's photos accepted | "
            "ECE after temperature (other half) |", "|---|---:|---:|---:|---|"]
    for task, spec in TASKS.items():
        figures = held_out_figures(spec)
        photos, scans = figures["splits"]["val_photos"]["heads"], figures["splits"]["val_scans"]["heads"]
        for head in spec.heads:
            recall = min((c["recall"], label) for label, c in photos[head]["per_class"].items() if c["support"])
            lines.append(f"| {task} / {head} | {pct(CARD_TEXT[task].earlier_accuracy.get(head))} | "
                         f"{pct(photos[head]['accuracy'])} (n={photos[head]['n']}) | {recall[1]} {recall[0]:.2f} | "
                         f"{pct(scans[head]['accuracy'])} |")
        ood = figures["ood"]
        cal = ", ".join(f"{h} {c['ece_after']:.3f}" for h, c in figures["calibration"].items())
        gate.append(f"| {task} | {pct(ood['in_domain_rejected']['photo'])} | {pct(ood['outliers_accepted']['negative'])} "
                    f"| {pct(ood['outliers_accepted']['other_task'])} | {cal} |")
    return "\n".join(lines + gate + review_table())


def held_out_figures(spec) -> dict:
    """The figures of a bundled checkpoint's held-out run (its own, or its recipe's for an all-data run)."""
    metrics = json.loads((spec.bundled_dir / "metrics.json").read_text())
    return metrics.get("held_out_run") or metrics


def review_table() -> list[str]:
    """Needs review, per head: answers left automatic and their accuracy (held-out photos, cross-fit)."""
    out = ["", "| task / head | answered automatically (photos) | right when automatic (photos) | "
               "answered automatically (scans) | right when automatic (scans) |", "|---|---:|---:|---:|---:|"]
    for task, spec in TASKS.items():
        for head, r in held_out_figures(spec).get("review", {}).items():
            p, s = r.get("val_photos") or {}, r.get("val_scans") or {}
            out.append(f"| {task} / {head} | {pct(p.get('coverage'))} | {pct(p.get('automatic_accuracy'))} | "
                       f"{pct(s.get('coverage'))} | {pct(s.get('automatic_accuracy'))} |")
    return out


def main() -> int:
    print(figures_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
