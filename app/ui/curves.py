"""The measured per-epoch curves of a genome, for the inspector: ``POST /evaluations`` keeps
each record's ``curve`` (the pipeline's metrics.csv rows) in the new version's
``evaluations.jsonl`` with the record's canonical hash; this finds them by hash."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: Evaluation files read per inspection (newest first) and curves kept per genome.
MAX_FILES = 200
MAX_CURVES = 3
#: The columns shown, when the curve has them (the evolution's objectives first).
COLUMNS = ("uw_val_epoch_loss", "ciou_loss", "average_precision", "train_epoch_loss",
           "val_epoch_loss", "precision", "recall")


def measured_curves(datasets_dir: Path, hashes: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """canonical hash -> up to ``MAX_CURVES`` curves ``{"dataset_id", "generation", "columns",
    "rows"}`` (newest version first), from the newest ``MAX_FILES`` versions' records."""
    wanted = set(hashes)
    found: dict[str, list[dict[str, Any]]] = {}
    if not wanted or not datasets_dir.is_dir():
        return found
    files = sorted(datasets_dir.glob("*/evaluations.jsonl"),
                   key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_FILES]
    for path in files:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if '"curve"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            key, curve = record.get("canonical_hash"), record.get("curve")
            if key not in wanted or not curve or len(found.get(key, [])) >= MAX_CURVES:
                continue
            columns = [c for c in COLUMNS if any(c in row for row in curve)]
            found.setdefault(key, []).append({
                "dataset_id": path.parent.name, "generation": record.get("generation"),
                "columns": columns,
                "rows": [{"epoch": row.get("epoch_num", i + 1),
                          **{c: row.get(c) for c in columns}} for i, row in enumerate(curve)]})
    return found
