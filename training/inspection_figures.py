"""What judging a car from several photos gains over one photo, on photos of sources the model never saw.

    python -m training.inspection_figures [--views 3] [--json PATH]

The shared car photos have no real multi-view cars, so pseudo-cars are made: per head, the held-out
sources' photos with a known label are grouped by (source, label) into cars of `--views` photos (seeded).
Each photo goes through the served model (`inference.analyze_photos`), each car through
`inference.inspection` (the same verdict as the app). Figures per head: single photos and cars alike,
how often the label is right, how often the answer is automatic (judged, no review) and how often an
automatic answer is right. A pseudo-car's photos show different cars of the same label from one place,
so this measures the voting, not views of one car.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from inference import analyze_photos
from inference.images import load_image
from inference.inspection import head_verdict
from inference.render import batch_row
from inference.tasks import REPO_ROOT, get_task

CAR = get_task("car")
PHOTOS = REPO_ROOT.parent / "shared" / "data" / "car_photos"


def held_out_sources() -> list[str]:
    metrics = json.loads((CAR.bundled_dir / "metrics.json").read_text())
    return metrics["split"]["held_out_sources"]["photo"]


def rates(rows: list, truths: list[str], label_of, review_of) -> dict[str, float]:
    judged = [(r, t) for r, t in zip(rows, truths) if label_of(r)]
    auto = [(r, t) for r, t in judged if not review_of(r)]
    return {"n": len(rows), "right": round(sum(label_of(r) == t for r, t in judged) / len(rows), 3),
            "automatic": round(len(auto) / len(rows), 3),
            "right_when_automatic": round(sum(label_of(r) == t for r, t in auto) / len(auto), 3) if auto else None}


def figures(views: int, seed: int) -> dict:
    sources = set(held_out_sources())
    with (PHOTOS / "labels.csv").open(newline="") as f:
        labelled = [r for r in csv.DictReader(f) if r["source"] in sources]
    answers = analyze_photos(CAR.name, [load_image(PHOTOS / r["image"]) for r in labelled])
    rows = [batch_row(r["image"], a) for r, a in zip(labelled, answers)]
    result = {"sources": sorted(sources), "views": views, "seed": seed, "heads": {}}
    for head in CAR.head_names:
        known = [(row, truth[head], truth["source"]) for row, truth in zip(rows, labelled) if truth[head]]
        single = rates([r for r, _, _ in known], [t for _, t, _ in known],
                       lambda r: r[head] if r["status"] == "judged" else "", lambda r: r[f"{head}_needs_review"])
        groups: dict[tuple[str, str], list[dict]] = {}
        for row, truth, source in known:
            groups.setdefault((source, truth), []).append(row)
        cars, truths = [], []
        rng = random.Random(seed)
        for (_, truth), members in sorted(groups.items()):
            rng.shuffle(members)
            for i in range(0, len(members) - views + 1, views):
                cars.append(head_verdict(members[i:i + views], head, CAR.heads[head]))
                truths.append(truth)
        car = rates(cars, truths, lambda v: v.label or "", lambda v: v.needs_review)
        result["heads"][head] = {"single_photos": single, "cars": car}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", type=int, default=3, help="photos per pseudo-car")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    result = figures(args.views, args.seed)
    print(f"held-out sources: {', '.join(result['sources'])}; {args.views} photos per pseudo-car")
    print("| head | unit | n | right | automatic | right when automatic |\n|---|---|---:|---:|---:|---:|")
    for head, by_unit in result["heads"].items():
        for unit, r in by_unit.items():
            print(f"| {head} | {unit.replace('_', ' ')} | {r['n']} | {r['right']:.1%} | {r['automatic']:.1%} | "
                  f"{'-' if r['right_when_automatic'] is None else format(r['right_when_automatic'], '.1%')} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
