"""The report of a batch run: what an operator with hundreds of photos wants to know at a glance.

`batch_summary(task, rows)` (rows from `inference.batch.predict_files`) counts the photos judged, not judged
(the in-domain check turned them away) and unreadable; counts and shares per label of each head (of the
judged photos); the task's action lists (`TaskSpec.batch_actions`, e.g. "needs a wash", "check for
damage") of the automatic answers, most confident first; and a "check by hand" list of the photos a
person should look at (not judged, or a head that needs review). `summary_rows` flattens it for a CSV,
`label_chart` draws the label counts. No gradio import.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from PIL import Image

from inference.answer import JUDGED, NOT_JUDGED, RETAKE, UNREADABLE
from inference.batch import rows_to_csv
from inference.explain import explainer_for
from inference.files import output_file
from inference.images import load_image
from inference.messages import display_label, retake_text
from inference.inspection import car_columns
from inference.predictor import load_model
from inference.render import batch_columns
from inference.render import markdown_table
from inference.tasks import get_task


STATUSES = (JUDGED, NOT_JUDGED, RETAKE, UNREADABLE)


def batch_summary(task: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    spec = get_task(task)
    judged = [r for r in rows if r["status"] == JUDGED]
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
    reasons = {NOT_JUDGED: lambda r: f"{spec.ood_message} (best guess: {r['best_guess']})",
               RETAKE: lambda r: retake_text(tuple(r["quality"].split())), UNREADABLE: lambda r: r["error"]}
    review = [{"file": r["file"], "head": "", "label": "", "confidence": "", "reason": reasons[r["status"]](r)}
              for r in rows if r["status"] != JUDGED]
    for r in judged:
        review += [entry(r, h, f"{display_label(h)} unsure") for h in spec.head_names if r[f"{h}_needs_review"]]
    counts = {f"n_{status}": sum(r["status"] == status for r in rows) for status in STATUSES}
    return {"task": task, "n_files": len(rows), **counts, "labels": labels, "actions": actions, "review": review}


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary as CSV rows: section, name, file, label, confidence / count, share, note."""
    rows = [{"section": "photos", "name": name, "count": summary[f"n_{name}"]}
            for name in ("files", *STATUSES)]
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg   # on the first chart: keeps it out of app start
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    heads = list(summary["labels"])
    fig = Figure(figsize=(3.4 * (len(heads) + 1), 3.2), dpi=100)
    axes = fig.subplots(1, len(heads) + 1, squeeze=False)[0]
    for ax, head in zip(axes, heads):
        names = list(summary["labels"][head])
        counts = [summary["labels"][head][n]["count"] for n in names]
        bars = ax.bar([display_label(n) for n in names], counts, color=[f"C{i}" for i in range(len(names))])
        ax.bar_label(bars)
        ax.set_title(display_label(head))
    status = {display_label(name): summary[f"n_{name}"] for name in STATUSES}
    bars = axes[-1].bar(list(status), list(status.values()), color=["C2", "C7", "C1", "C3"])
    axes[-1].bar_label(bars)
    axes[-1].set_title(f"{summary['n_files']} files")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30)
        ax.set_ylabel("photos")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))   # whole photos
        ax.margins(y=0.15)
    fig.tight_layout()
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


ACTION_COLUMNS = ["list", "file", "label", "confidence / reason"]


def action_rows(summary: dict[str, Any]) -> list[list[Any]]:
    """The operator's lists as one table: what to do, which photo, how sure (or why a person should look)."""
    rows = [[action["title"], p["file"], display_label(p["label"]), p["confidence"]]
            for action in summary["actions"].values() for p in action["photos"]]
    return rows + [["Check by hand", p["file"], display_label(p["label"]), p["reason"]] for p in summary["review"]]


def car_lists(task: str, cars: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Per car: the task's action lists (sure verdicts only), needs review, and photos to retake."""
    spec = get_task(task)
    lists = {action.title: [c["car_id"] for c in cars if c[action.head] in action.labels
                            and not c[f"{action.head}_needs_review"]] for action in spec.batch_actions}
    lists["Needs review"] = [c["car_id"] for c in cars if c["needs_review"]]
    lists["Photos to retake"] = [f"{c['car_id']} ({c[RETAKE]})" for c in cars if c[RETAKE]]
    return lists


def report_markdown(summary: dict[str, Any], cars: Sequence[dict[str, Any]] = ()) -> str:
    """The batch report for people: photo counts, label shares, and the lists per car when cars are known."""
    n = summary["n_files"] or 1
    counts = [[display_label(s), summary[f"n_{s}"], f"{summary[f'n_{s}'] / n:.0%}"] for s in STATUSES]
    out = [f"### {summary['n_files']} photos", markdown_table(["photos", "count", "share"], counts)]
    for head, per_label in summary["labels"].items():
        rows = [[display_label(label), c["count"], f"{c['share']:.0%}"] for label, c in per_label.items()]
        out += [f"**{display_label(head).capitalize()}** (judged photos)", markdown_table([head, "count", "share"], rows)]
    if cars:
        out.append(f"### {len(cars)} cars")
        out += [f"- **{title}** ({len(ids)}): {', '.join(ids) or 'none'}"
                for title, ids in car_lists(summary["task"], cars).items()]
    return "\n\n".join(out)


def listed_photo(task: str, thumbnail: bytes, label: str) -> Image.Image:
    """A listed photo with the Grad-CAM heat map of its label (as the list shows it), or the photo alone
    when the label is none of the task's (not judged, unreadable)."""
    photo, label = load_image(thumbnail), label.replace(" ", "_")
    head = next((h for h, labels in get_task(task).heads.items() if label in labels), None)
    return explainer_for(load_model(task)).overlays(photo, {head: label})[head] if head else photo


def report_files(task: str, result, summary: dict[str, Any]) -> dict[str, str | None]:
    """The batch's downloads as temporary files (inference.files.output_file): every photo's row, the summary
    (CSV and JSON), the label chart and, when cars are known, one row per car."""
    spec = get_task(task)
    cols = batch_columns(spec) + (["car_id"] if result.cars else [])
    texts = {"predictions.csv": rows_to_csv(result.rows, cols), "summary.csv": rows_to_csv(summary_rows(summary),
                                                                                          SUMMARY_COLUMNS),
             "summary.json": json.dumps(summary, indent=2),
             "cars.csv": rows_to_csv(result.cars, car_columns(spec)) if result.cars else None}
    files = {name: output_file(name, lambda p, text=text: p.write_text(text, encoding="utf-8")) if text else None
             for name, text in texts.items()}
    files["label-counts.png"] = output_file("label-counts.png", lambda p: label_chart(summary).save(p))
    return files
