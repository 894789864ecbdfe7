"""Print the README's model-figure tables from the bundled checkpoints' metrics.json.

    .venv/bin/python scripts/model_figures.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.tasks import TASKS  # noqa: E402

EARLIER = {("collectibles", "category"): 0.75, ("car", "cleanliness"): 0.873, ("car", "damage"): 0.912}


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def main() -> int:
    lines = ["| task / head | earlier system | validation (scans) | photo-like validation | macro F1 (val) | weakest class F1 (val) |",
             "|---|---:|---:|---:|---:|---:|"]
    extra = ["", "| task | ECE before → after (per head) | OOD AUROC | in-domain val rejected | "
             "Grad-CAM mass on object | training time |", "|---|---|---:|---:|---:|---:|"]
    for task, spec in TASKS.items():
        m = json.loads((spec.bundled_dir / "metrics.json").read_text())
        val, photo = m["splits"]["val"]["heads"], m["splits"]["val_photo"]["heads"]
        for head in spec.heads:
            weakest = min(val[head]["per_class"].items(), key=lambda kv: kv[1]["f1"])
            lines.append(f"| {task} / {head} | {pct(EARLIER.get((task, head)))} | {pct(val[head]['accuracy'])} | "
                         f"{pct(photo[head]['accuracy'])} | {val[head]['macro_f1']:.3f} | "
                         f"{weakest[0]} {weakest[1]['f1']:.2f} |")
        cal = ", ".join(f"{h} {c['ece_before']:.3f} → {c['ece_after']:.3f}" for h, c in m.get("calibration", {}).items())
        ood, cam, tr = m.get("ood", {}), m.get("gradcam"), m.get("training", {})
        extra.append(f"| {task} | {cal} | {ood.get('auroc', '–')} | {pct(ood.get('in_domain_rejection_rate'))} | "
                     f"{pct(cam['object_mass_mean']) + ' (area ' + pct(cam['object_area_mean']) + ')' if cam else '–'} | "
                     f"{tr.get('seconds', 0) / 60:.1f} min ({tr.get('epochs_run', '–')} epochs) |")
    print("\n".join(lines + extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
