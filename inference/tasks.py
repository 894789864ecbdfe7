"""The one task spec: heads, labels, loss weights, default Hub repos, driver messages.

Training, inference, the app and the tests all read this module; a new task needs one
entry in TASKS and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CHECKPOINTS = REPO_ROOT / "checkpoints"
DEFAULT_ARCHITECTURE = "tf_efficientnet_lite1"
UNSURE = "unsure"   # the message key of an answer that needs review


@dataclass(frozen=True)
class BatchAction:
    """A list a batch report draws up for an operator: the photos whose `head` got one of `labels`."""
    name: str
    title: str
    head: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    heads: dict[str, tuple[str, ...]]
    loss_weights: dict[str, float]
    hub_repo: str
    ood_message: str
    domain_loss_weight: float = 0.5   # the in-domain head's share of the loss (trained against negatives)
    # Optional notes for people (driver reminders), per head and label, plus UNSURE for an answer that
    # needs review; the note lists the heads in `note_order` (most serious first) and opens with
    # `all_clear` only when every head is sure of its `all_clear_labels` label (inference.messages).
    messages: dict[str, dict[str, str]] = field(default_factory=dict)
    note_order: tuple[str, ...] = ()
    all_clear: str = ""
    all_clear_labels: dict[str, str] = field(default_factory=dict)
    batch_actions: tuple[BatchAction, ...] = ()
    reads_text: bool = False   # answers may carry the text on the item (inference.ocr)
    api_name: str = ""         # the app's client-API endpoint for one photo (and <api_name>_explained)

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
    ood_message="Not judged: this does not look like a photo of a book, coin, drumstick, stamp or vinyl record.",
    reads_text=True,
    api_name="classify_collectible",
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
    ood_message="Not judged: this does not look like a photo of a car.",
    messages={
        "damage": {
            "intact": "No visible damage.",
            "damaged": "Visible damage: have the car inspected before the next ride.",
            UNSURE: "Damage unsure: a person should look at the photo before the next ride.",
        },
        "cleanliness": {
            "clean": "The car looks clean.",
            "slightly_dirty": "The car is a little dirty: a wash soon would be good.",
            "very_dirty": "Time for a car wash: the car is very dirty.",
            UNSURE: "Cleanliness unsure: a person should look at the photo.",
        },
    },
    api_name="assess_car",
    note_order=("damage", "cleanliness"),
    all_clear="The car is in excellent condition!",
    all_clear_labels={"damage": "intact", "cleanliness": "clean"},
    batch_actions=(BatchAction("needs_a_wash", "Needs a wash", "cleanliness", ("slightly_dirty", "very_dirty")),
                   BatchAction("check_for_damage", "Check for damage", "damage", ("damaged",))),
)

# Safety level reported to the mobile app for each damage label (seed format); UNSURE: a person checks.
SAFETY_LEVELS = {"intact": "high", "damaged": "low", UNSURE: "unknown"}

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (COLLECTIBLES, CAR)}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None
