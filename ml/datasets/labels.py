"""Label hygiene for evaluated-genome CSVs.

A row is a *failed evaluation* when a selected metric is NaN/inf, carries the ±1e6
failed-evaluation convention, or any loss column carries the 1e12 zero-prediction sentinel
(``float32(1e12)`` in every loss, ``7e12`` in ``uw_val_epoch_loss``). Failed rows train the validity
head and are never regression targets (the seed's 1e24 losses came from including them).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: The evolution's objectives (and their directions) plus the seed's extra regression targets.
OBJECTIVES: dict[str, int] = {"uw_val_epoch_loss": -1, "ciou_loss": -1, "average_precision": +1}
DEFAULT_METRICS: tuple[str, ...] = ("uw_val_epoch_loss", "ciou_loss", "average_precision",
                                    "iou_loss", "giou_loss")
#: Direction of every known metric column: -1 lower is better, +1 higher is better.
DIRECTIONS: dict[str, int] = {
    "train_epoch_loss": -1, "uw_val_epoch_loss": -1, "val_epoch_loss": -1, "iou_loss": -1,
    "giou_loss": -1, "diou_loss": -1, "ciou_loss": -1, "center_loss": -1, "size_loss": -1,
    "obj_loss": -1, "precision": +1, "recall": +1, "f1_score": +1, "average_precision": +1,
    "true_positives": +1, "false_positives": -1, "false_negatives": -1,
}
LOSS_COLUMNS = tuple(k for k in DIRECTIONS if k.endswith("_loss"))
#: |value| at or above this is the ±1e6 failed-evaluation convention (or the 1e12 sentinel).
FAILED_MAGNITUDE = 1e6
#: Any loss at or above this is the zero-prediction sentinel (float32(1e12) = 999999995904.0).
ZERO_PREDICTION_SENTINEL = 1e11
#: Columns of the evaluated-genome CSV that are provenance, not metrics.
NON_METRIC_COLUMNS = frozenset({"generation", "individual_hash", "genome"})


def parse_number(raw: str | None) -> float:
    """A CSV cell as float; empty or unparsable cells are NaN."""
    if raw is None:
        return math.nan
    try:
        return float(raw)
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class Labels:
    """The selected metrics of one row and why (if at all) the row is a failed evaluation."""

    values: tuple[float, ...]
    failed: bool
    reason: str | None  # "zero_predictions", "failed_sentinel", "non_finite" or None


def classify(row: Mapping[str, str], metrics: tuple[str, ...]) -> Labels:
    """Read ``metrics`` from a CSV row and decide whether the evaluation failed."""
    values = tuple(parse_number(row.get(m)) for m in metrics)
    for column in LOSS_COLUMNS:
        v = parse_number(row.get(column))
        if math.isfinite(v) and abs(v) >= ZERO_PREDICTION_SENTINEL:
            return Labels(values, True, "zero_predictions")
    if any(not math.isfinite(v) for v in values):
        return Labels(values, True, "non_finite")
    if any(abs(v) >= FAILED_MAGNITUDE for v in values):
        return Labels(values, True, "failed_sentinel")
    return Labels(values, False, None)


def classify_record(metrics: Mapping[str, Any] | None, selected: tuple[str, ...],
                    failed: bool | None = None) -> Labels:
    """:func:`classify` for an evaluation sent as JSON (``{metric: number | null}``, every key
    the evaluation has, so the loss columns' sentinels are seen), with the sender's own
    ``failed`` flag: a reported failure is failed whatever its numbers say."""
    labels = classify(metrics or {}, selected)
    if failed:
        return Labels(labels.values, True, labels.reason or "reported_failed")
    return labels


def metric_columns(fieldnames: list[str]) -> list[str]:
    """Numeric metric columns a CSV offers (everything but provenance)."""
    return [f for f in fieldnames if f not in NON_METRIC_COLUMNS]


@dataclass
class BuildReport:
    """Counts per status while encoding a source (they land in the manifest)."""

    rows: int = 0
    ok: int = 0
    failed_evaluation: int = 0
    unlabelled: int = 0
    invalid_genome: int = 0
    duplicates: int = 0
    #: rows whose CSV individual_hash differs from the recomputed one (libm ulp, see identity.py)
    individual_hash_mismatches: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)

    def count_error(self, code: str) -> None:
        self.invalid_genome += 1
        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def count_reason(self, reason: str) -> None:
        self.failure_reasons[reason] = self.failure_reasons.get(reason, 0) + 1

    def count_labels(self, labels: Labels | None) -> None:
        if labels is not None and labels.failed:
            self.failed_evaluation += 1
            self.count_reason(labels.reason or "unknown")
        else:
            self.ok += 1
