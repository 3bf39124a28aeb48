"""The evolution pipeline's run directory read as it is, with the standard
library only: every individual becomes one record of ``POST /evaluations``.

* individuals: ``eval_inputs/eval_input_gen{g}.csv`` (``gen, hash, genome``) and, when present,
  ``out.csv`` (``gen, hash, genome`` + the kept metrics);
* ``generation_{g}/{hash}/metrics.csv``: one row per epoch (``epoch_num`` + metrics); the kept
  epoch is the first row with the best ``best_epoch`` value (pandas ``nlargest(1)`` /
  ``nsmallest(1)`` as the pipeline does), its metrics without ``epoch_num`` are the record's, and
  every epoch row is its ``curve``;
* a failed genome: no ``metrics.csv`` (and no kept row in ``out.csv``), or the file the pipeline
  writes for one (the objectives alone at ±1e6, no ``epoch_num``): a failed record;
* a malformed file (unreadable, no rows, ragged, non-numeric, no finite ``best_epoch`` value)
  fails its own individual with a code and loses nothing else.
"""
from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IDENTITY = ("gen", "hash", "genome")
#: Error codes of an individual the reader could not use.
MALFORMED = "METRICS_FILE_MALFORMED"
NO_BEST_EPOCH = "METRICS_NO_BEST_EPOCH"


class Malformed(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Run:
    """What a run directory holds: records for ``/evaluations`` (each with ``generation`` and
    the pipeline's ``hash`` under ``source``) and the individuals that could not be read."""
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    value = float(text)  # raises ValueError on a non-number
    return value if math.isfinite(value) else None


def _rows(path: Path) -> list[dict[str, float | None]]:
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise Malformed(MALFORMED, f"{path.name} is empty")
            rows = []
            for line, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(cells) != len(header):
                    raise Malformed(MALFORMED, f"{path.name} line {line}: {len(cells)} cells "
                                    f"for {len(header)} columns")
                try:
                    rows.append({k.strip(): _number(v) for k, v in zip(header, cells)})
                except ValueError as exc:
                    raise Malformed(MALFORMED, f"{path.name} line {line}: {exc}") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Malformed(MALFORMED, f"{path.name} cannot be read: {exc}") from exc
    if not rows:
        raise Malformed(MALFORMED, f"{path.name} has a header and no rows")
    return rows


def best_row(rows: list[dict[str, float | None]], best_epoch: tuple[str, str]
             ) -> dict[str, float | None]:
    """The first row with the best finite ``best_epoch[0]`` (``"max"`` or ``"min"``)."""
    column, direction = best_epoch[0], best_epoch[1].lower()
    scored = [(row[column], i) for i, row in enumerate(rows) if row.get(column) is not None]
    if not scored:
        raise Malformed(NO_BEST_EPOCH, f"no epoch has a finite {column}")
    if direction == "max":
        best = max(scored, key=lambda t: (t[0], -t[1]))
    else:
        best = min(scored, key=lambda t: (t[0], t[1]))
    return rows[best[1]]


def _individual(folder: Path, gen: int, ident: str, genome: str, kept: dict[str, Any] | None,
                best_epoch: tuple[str, str]) -> dict[str, Any]:
    path = folder / f"generation_{gen}" / ident / "metrics.csv"
    record: dict[str, Any] = {"genome": genome, "generation": gen}
    if not path.is_file():
        if kept:  # out.csv kept a row (the generation folder was cleaned)
            return {**record, "metrics": kept, "failed": None}
        return {**record, "metrics": {}, "failed": True}
    rows = _rows(path)
    if "epoch_num" not in rows[0]:  # the pipeline's own failure file: objectives at ±1e6
        return {**record, "metrics": rows[0], "failed": True}
    best = best_row(rows, best_epoch)
    metrics = {k: v for k, v in best.items() if k != "epoch_num" and k not in IDENTITY}
    curve = [{k: v for k, v in row.items() if k not in IDENTITY} for row in rows]
    return {**record, "metrics": metrics, "failed": None, "curve": curve}


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_run(run_dir: str | os.PathLike[str], generations: Iterable[int] | None = None,
             best_epoch: tuple[str, str] = ("average_precision", "max")) -> Run:
    """Every individual of ``run_dir`` (of ``generations``, default all) as a record."""
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory")
    wanted = None if generations is None else {int(g) for g in generations}
    individuals: dict[tuple[int, str], dict[str, Any]] = {}
    inputs = sorted((folder / "eval_inputs").glob("eval_input_gen*.csv"))
    for path in inputs:
        for row in _table(path):
            key = (int(float(row["gen"])), row["hash"])
            individuals.setdefault(key, {"genome": row["genome"], "kept": None})
    if (folder / "out.csv").is_file():
        for row in _table(folder / "out.csv"):
            key = (int(float(row["gen"])), row["hash"])
            kept: dict[str, Any] = {}
            for name, text in row.items():
                if name in IDENTITY or name is None:
                    continue
                try:
                    kept[name] = _number(text)
                except ValueError:
                    kept = {}
                    break
            entry = individuals.setdefault(key, {"genome": row["genome"], "kept": None})
            entry["kept"] = kept or None
    run = Run()
    for (gen, ident), entry in sorted(individuals.items()):
        if wanted is not None and gen not in wanted:
            continue
        try:
            record = _individual(folder, gen, ident, entry["genome"], entry["kept"],
                                 best_epoch)
        except Malformed as exc:
            run.rejected.append({"index": None, "generation": gen, "hash": ident,
                                 "error": {"code": exc.code, "message": str(exc)}})
            continue
        run.records.append(record)
        run.sources.append({"generation": gen, "hash": ident})
    return run
