"""The one task spec: heads, labels, loss weights, default Hub repos, driver messages.

Training, inference, the app and the tests all read this module; a new task needs one
entry in TASKS and nothing else.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CHECKPOINTS = REPO_ROOT / "checkpoints"
EXAMPLES_DIR = REPO_ROOT / "examples"
DEFAULT_ARCHITECTURE = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    heads: dict[str, tuple[str, ...]]
    loss_weights: dict[str, float]
    hub_repo: str
    ood_message: str
    # Optional per-label notes for people (driver reminders, safety levels).
    messages: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(self.heads)

    @property
    def bundled_dir(self) -> Path:
        return BUNDLED_CHECKPOINTS / self.name

    def label_index(self, head: str, label: str) -> int:
        labels = self.heads[head]
        if label not in labels:
            raise ValueError(f"unknown label {label!r} for head {head!r} of task {self.name!r}; "
                             f"expected one of {', '.join(labels)}")
        return labels.index(label)


COLLECTIBLES = TaskSpec(
    name="collectibles",
    title="Collectibles",
    heads={"category": ("books", "coins", "drumsticks", "stamps", "vinyls")},
    loss_weights={"category": 1.0},
    hub_repo="image-understanding-space/collectibles-classifier",
    ood_message="This does not look like a photo of a book, coin, drumstick, stamp or vinyl record.",
)

CAR = TaskSpec(
    name="car",
    title="Car condition",
    heads={
        "cleanliness": ("clean", "slightly_dirty", "very_dirty"),
        "damage": ("intact", "damaged"),
    },
    loss_weights={"cleanliness": 1.0, "damage": 1.2},
    hub_repo="image-understanding-space/car-condition",
    ood_message="This does not look like a car photo.",
    messages={
        "cleanliness": {
            "clean": "The car is in excellent condition!",
            "slightly_dirty": "The car is a little dirty: a wash soon would be good.",
            "very_dirty": "Time for a car wash: the car is very dirty.",
        },
        "damage": {
            "intact": "No visible damage.",
            "damaged": "Visible damage: have the car inspected before the next ride.",
        },
    },
)

# Safety level reported to the mobile app for each damage label (seed format).
SAFETY_LEVELS = {"intact": "high", "damaged": "low"}

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (COLLECTIBLES, CAR)}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def example_manifest(task: str) -> list[dict[str, str]]:
    """Rows of examples/<task>/<manifest>.csv (image file name, expected labels, source); [] if none.

    Only plain file names count (never a path). The images themselves are not in git:
    scripts/fetch_examples.py puts them in place.
    """
    manifests = sorted((EXAMPLES_DIR / task).glob("*.csv"))
    if not manifests:
        return []
    with manifests[0].open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("image") and "/" not in row["image"]]


def present_examples(task: str) -> list[tuple[Path, dict[str, str]]]:
    """(image path, manifest row) for the example images that are actually on disk."""
    folder = EXAMPLES_DIR / task
    return [(folder / row["image"], row) for row in example_manifest(task) if (folder / row["image"]).is_file()]
