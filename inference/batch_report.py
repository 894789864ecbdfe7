"""The report of a batch run: what an operator with hundreds of photos wants to know at a glance.

`summarize(task, rows)` (rows from `inference.batch.predict_files`) counts the photos judged, not judged
(the in-domain check turned them away) and unreadable; counts and shares per label of each head (of the
judged photos); the task's action lists (`TaskSpec.batch_actions`, e.g. "needs a wash", "check for
damage") of the automatic answers, most confident first; and a "check by hand" list of the photos a
person should look at (not judged, or a head that needs review). `summary_rows` flattens it for a CSV,
`label_chart` draws the label counts. No gradio import.
"""
from __future__ import annotations

from typing import Any, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from inference.messages import display_label
from inference.tasks import get_task


def _status(row: dict[str, Any]) -> str:
    if row["error"]:
        return "unreadable"
    return "judged" if row["in_domain"] else "not_judged"


def summarize(task: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    spec = get_task(task)
    status = [_status(r) for r in rows]
    judged = [r for r, s in zip(rows, status) if s == "judged"]
    labels = {head: {label: {"count": sum(r[head] == label for r in judged),
                             "share": round(sum(r[head] == label for r in judged) / len(judged), 4) if judged else 0.0}
                     for label in spec.heads[head]} for head in spec.head_names}

    def entry(row: dict[str, Any], head: str, reason: str = "") -> dict[str, Any]:
        return {"file": row["file"], "head": head, "label": row[head], "confidence": row[f"{head}_confidence"],
                **({"reason": reason} if reason else {})}

    actions = {}
    for action in spec.batch_actions:
        hits = [entry(r, action.head) for r in judged
                if r[action.head] in action.labels and not r[f"{action.head}_needs_review"]]
        actions[action.name] = {"title": action.title, "photos": sorted(hits, key=lambda e: -e["confidence"])}
    review = [{"file": r["file"], "head": "", "label": "", "confidence": "",
               "reason": f"{spec.ood_message} (best guess: {r['best_guess']})"}
              for r, s in zip(rows, status) if s == "not_judged"]
    for r in judged:
        review += [entry(r, h, f"{display_label(h)} unsure") for h in spec.head_names if r[f"{h}_needs_review"]]
    return {"task": task, "n_files": len(rows), "n_judged": len(judged),
            "n_not_judged": status.count("not_judged"), "n_unreadable": status.count("unreadable"),
            "labels": labels, "actions": actions, "review": review}


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as CSV rows: section, name, file, label, confidence / count, share, note."""
    rows = [{"section": "photos", "name": name, "count": summary[f"n_{name}"]}
            for name in ("files", "judged", "not_judged", "unreadable")]
    for head, per_label in summary["labels"].items():
        rows += [{"section": f"labels:{head}", "name": label, "count": c["count"], "share": c["share"]}
                 for label, c in per_label.items()]
    for name, action in summary["actions"].items():
        rows += [{"section": f"action:{name}", "name": action["title"], "file": p["file"], "label": p["label"],
                  "confidence": p["confidence"]} for p in action["photos"]]
    rows += [{"section": "review", "name": "look at", "file": p["file"], "label": p["label"],
              "confidence": p["confidence"], "note": p["reason"]} for p in summary["review"]]
    return rows


SUMMARY_COLUMNS = ["section", "name", "file", "label", "confidence", "count", "share", "note"]


def label_chart(summary: dict[str, Any]) -> Image.Image:
    """Bar charts of the label counts (one panel per head), plus not judged and unreadable photos."""
    heads = list(summary["labels"])
    fig = Figure(figsize=(3.4 * (len(heads) + 1), 3.2), dpi=100)
    axes = fig.subplots(1, len(heads) + 1, squeeze=False)[0]
    for ax, head in zip(axes, heads):
        names = list(summary["labels"][head])
        counts = [summary["labels"][head][n]["count"] for n in names]
        bars = ax.bar([display_label(n) for n in names], counts, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars)
        ax.set_title(display_label(head))
        ax.tick_params(axis="x", labelrotation=30)
    status = {"judged": summary["n_judged"], "not judged": summary["n_not_judged"],
              "unreadable": summary["n_unreadable"]}
    bars = axes[-1].bar(list(status), list(status.values()), color=["C2", "C7", "C3"])
    axes[-1].bar_label(bars)
    axes[-1].set_title(f"{summary['n_files']} files")
    for ax in axes:
        ax.set_ylabel("photos")
        ax.margins(y=0.15)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")
