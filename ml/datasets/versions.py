"""Immutable dataset versions with lineage: append evaluations without re-encoding anything old.

A version directory holds only what it added: its own shards, an ``index.csv`` of its own rows,
``errors.jsonl`` and a ``manifest.json`` whose ``lineage`` lists every ancestor directory, oldest
first. Reading a version (:class:`ml.datasets.reader.GraphDataset`) concatenates the ancestors'
rows and its own; nothing is copied, so an append costs the new genomes' encoding plus reading
the ancestors' index files (a few hundred ms for 100,000 rows).

Index rows of a version carry two more columns than a plain build's:

* ``dataset``: the lineage position of the directory whose shard holds the row's graph;
* ``labels``: for a *repeated measurement* (a genome already present, by canonical hash) the row's
  own labels as JSON ``{"y", "failed", "reason"}``, its graph being the first occurrence's (a
  repeat is never encoded again);
* ``source``: where the row came from (the append's label).

Repeats are kept, counted and used: training takes the per-genome mean of the non-failed
measurements (:func:`ml.datasets.records.mean_repeats`), and the manifest's ``label_noise``
reports the pooled within-genome standard deviation of every metric (running sums over all
genomes measured more than once, carried from version to version in ``repeats.json``).
"""
from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.datasets.atomic import atomic_write_bytes, atomic_write_json
from ml.datasets.build import ERRORS, INDEX, INDEX_COLUMNS, MANIFEST, SHARDS
from ml.datasets.labels import DIRECTIONS, BuildReport, Labels
from ml.datasets.source import Chunk, SourceRow

VERSION_COLUMNS = (*INDEX_COLUMNS, "dataset", "labels", "source")
REPEATS = "repeats.json"


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise OSError(f"{root}: not a dataset (no {MANIFEST})")
    return json.loads(path.read_text())


def lineage(root: str | Path) -> list[Path]:
    """Every directory a version reads, oldest first, ending with ``root`` itself."""
    manifest = read_manifest(root)
    return [Path(p) for p in manifest.get("lineage", [])] + [Path(root).resolve()]


@dataclass
class _Known:
    """Where the first measurement of a genome lives: lineage position, shard, position."""

    dataset: int
    shard: str
    position: int


def known_genomes(dirs: Sequence[Path]) -> dict[str, _Known]:
    """canonical hash -> its graph's location, over the index files of ``dirs`` (oldest first).
    A repeat row of a version points at the first occurrence, so only graph rows are kept."""
    known: dict[str, _Known] = {}
    for position, folder in enumerate(dirs):
        with open(folder / INDEX, newline="") as handle:
            for row in csv.DictReader(handle):
                chash = row["canonical_hash"]
                if chash in known or row.get("labels"):
                    continue
                dataset = int(row["dataset"]) if row.get("dataset") else position
                known[chash] = _Known(dataset, row["shard"], int(row["position"]))
    return known


@dataclass
class AppendResult:
    manifest: dict[str, Any]
    added: int
    repeats: int
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _labels_json(labels: Labels | None) -> str:
    if labels is None:
        return ""
    y = [v if math.isfinite(v) else None for v in labels.values]
    return json.dumps({"y": y, "failed": int(labels.failed), "reason": labels.reason},
                      separators=(",", ":"))


def _welford(stats: dict[str, Any], values: Sequence[float]) -> None:
    """Add one measurement to a genome's running mean / sum of squared deviations."""
    stats["n"] += 1
    for j, v in enumerate(values):
        if not math.isfinite(v):
            continue
        stats["count"][j] += 1
        delta = v - stats["mean"][j]
        stats["mean"][j] += delta / stats["count"][j]
        stats["m2"][j] += delta * (v - stats["mean"][j])


def label_noise(repeats: dict[str, dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Pooled within-genome standard deviation per metric over genomes measured twice or more
    (non-failed measurements only), with how much evidence it rests on."""
    per_metric = {}
    for j, metric in enumerate(metrics):
        m2 = sum(s["m2"][j] for s in repeats.values() if s["count"][j] >= 2)
        dof = sum(s["count"][j] - 1 for s in repeats.values() if s["count"][j] >= 2)
        per_metric[metric] = {"pooled_std": math.sqrt(m2 / dof) if dof else None,
                              "degrees_of_freedom": dof}
    multi = [s for s in repeats.values() if s["n"] >= 2]
    return {"genomes_measured_more_than_once": len(multi),
            "measurements_of_those": sum(s["n"] for s in multi), "per_metric": per_metric}


def _first_labels(dirs: Sequence[Path], where: _Known) -> tuple[list[float], bool]:
    """The stored labels of a genome's first measurement (one shard read)."""
    from ml.datasets.storage import load_shard

    shard = load_shard(dirs[where.dataset] / SHARDS / where.shard)
    y = shard["y"][where.position].double().tolist()
    return y, float(shard["failed"][where.position]) == 1.0


def append_dataset(parent: str | Path, rows: Iterable[SourceRow], out: str | Path,
                   source: str, chunk_size: int = 64) -> AppendResult:
    """Write a new version in ``out`` holding ``parent``'s rows plus ``rows``: new genomes are
    encoded into shards of ``out``, repeats of known genomes are index rows only, bad genomes
    are rejected (``errors.jsonl`` and the result), the parent is never modified."""
    from ml.datasets.shard_encoder import describe, encode_chunk, shard_name
    from ml.encoding.encoder import ENCODER_VERSION, GenomeEncoder
    from ml.errors import GenomeError, internal_error
    from ml.genome import canonical_hash, load

    started = time.perf_counter()
    parent, out = Path(parent).resolve(), Path(out).resolve()
    base = read_manifest(parent)
    if base.get("encoder_version") != ENCODER_VERSION:
        raise ValueError(f"{parent}: built with encoder {base.get('encoder_version')}, this code "
                         f"encodes {ENCODER_VERSION}; build the dataset again")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; a version is never overwritten")
    metrics = tuple(base["metrics"])
    dirs = lineage(parent)
    known = known_genomes(dirs)
    repeats = json.loads((parent / REPEATS).read_text()) if (parent / REPEATS).is_file() else {}
    own = len(dirs)

    fresh: list[SourceRow] = []
    plan: list[tuple[SourceRow, str, str]] = []   # (row, canonical hash, "new" | "repeat")
    rejected: list[dict[str, Any]] = []
    new_hashes: set[str] = set()
    for item in rows:
        try:
            digest = canonical_hash(load(item.genome))
        except Exception as exc:
            error = exc if isinstance(exc, GenomeError) else internal_error("reading", exc)
            rejected.append({"row": item.row, **error.to_dict()})
            continue
        if item.labels is not None and len(item.labels.values) != len(metrics):
            raise ValueError(f"row {item.row}: {len(item.labels.values)} metrics, the dataset "
                             f"has {len(metrics)}")
        if digest in known or digest in new_hashes:
            plan.append((item, digest, "repeat"))
        else:
            new_hashes.add(digest)
            fresh.append(item)
            plan.append((item, digest, "new"))

    shards_dir = out / SHARDS
    shards_dir.mkdir(parents=True, exist_ok=True)
    vocab = describe()
    meta = {"key": f"append:{source}", "encoder_version": vocab["encoder_version"],
            "metrics": list(metrics)}
    # source row -> (shard, position, canonical hash, individual hash)
    located: dict[int, tuple[str, int, str, str]] = {}
    shard_names: list[str] = []
    encoder = GenomeEncoder() if fresh else None
    for index, start in enumerate(range(0, len(fresh), chunk_size)):
        chunk_rows = tuple(fresh[start:start + chunk_size])
        sidecar = encode_chunk(Chunk(index, start, start + len(chunk_rows), chunk_rows),
                               str(shards_dir), meta, encoder=encoder)
        shard_names.append(shard_name(index))
        for entry in sidecar["entries"]:
            located[entry[0]] = (sidecar["shard"], entry[4], entry[1], entry[2])
        for error in sidecar["errors"]:
            rejected.append(error)
    # A genome that parsed but did not compile fails every one of its rows alike.
    error_of = {e["row"]: e for e in rejected}
    bad = {digest: error_of[item.row] for item, digest, kind in plan if item.row in error_of}
    for item, digest, _ in plan:
        if digest in bad and item.row not in error_of:
            rejected.append({**bad[digest], "row": item.row})
    failed_rows = {e["row"] for e in rejected}

    counts = BuildReport()
    for item, digest, kind in plan:
        if item.row in failed_rows:
            continue
        stats = repeats.get(digest)
        if kind == "repeat" and stats is None and digest in known:
            y, was_failed = _first_labels(dirs, known[digest])
            stats = repeats[digest] = {"n": 0, "count": [0] * len(metrics),
                                       "mean": [0.0] * len(metrics), "m2": [0.0] * len(metrics)}
            if not was_failed:
                _welford(stats, y)
            else:
                stats["n"] += 1
        if kind == "new":
            repeats.setdefault(digest, {"n": 0, "count": [0] * len(metrics),
                                        "mean": [0.0] * len(metrics),
                                        "m2": [0.0] * len(metrics)})
        stats = repeats[digest]
        if item.labels is not None and not item.labels.failed:
            _welford(stats, item.labels.values)
        else:
            stats["n"] += 1
    # Genomes measured once need no running sums (a later repeat reads the first measurement
    # from its shard): the file keeps the repeated ones only.
    repeats = {k: v for k, v in repeats.items() if v["n"] >= 2}

    def write_index(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(VERSION_COLUMNS)
            for item, digest, kind in plan:
                if item.row in failed_rows:
                    continue
                status = ("unlabelled" if item.labels is None else
                          "failed_evaluation" if item.labels.failed else "ok")
                counts.rows += 1
                setattr(counts, status, getattr(counts, status) + 1)
                if item.labels is not None and item.labels.reason:
                    counts.count_reason(item.labels.reason)
                generation = "" if not math.isfinite(item.generation) else item.generation
                reason = "" if item.labels is None else (item.labels.reason or "")
                if kind == "new":
                    shard, position, _, ihash = located[item.row]
                    writer.writerow((item.row, digest, ihash, status, shard, position, generation,
                                     0, reason, item.individual_hash or "", own, "", source))
                else:
                    counts.duplicates += 1
                    if digest in located_by_hash:
                        where = located_by_hash[digest]
                    else:
                        where = known[digest]
                    writer.writerow((item.row, digest, "", status, where.shard, where.position,
                                     generation, 1, reason, item.individual_hash or "",
                                     where.dataset, _labels_json(item.labels), source))

    located_by_hash = {h: _Known(own, s, p) for s, p, h, _ in located.values()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / INDEX, write_index)
    with open(out / ERRORS, "w") as handle:
        for error in rejected:
            handle.write(json.dumps(error) + "\n")
    for error in rejected:
        counts.count_error(error["code"])
    atomic_write_json(out / REPEATS, repeats)
    total = {k: v for k, v in base.get("counts", {}).items() if isinstance(v, int)}
    for key, value in counts.__dict__.items():
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value
    manifest = {
        "format": base.get("format", "nas-surrogate-dataset-v1"),
        "encoder_version": base["encoder_version"], "encoding": base.get("encoding"),
        "vocabularies": base.get("vocabularies"), "metrics": list(metrics),
        "directions": {m: DIRECTIONS.get(m, 0) for m in metrics},
        "parent": str(parent), "lineage": [str(d) for d in dirs],
        "counts": total, "own_counts": counts.__dict__,
        "source": {"label": source, "mode": "append"},
        "shards": shard_names, "index": INDEX, "errors": ERRORS, "repeats": REPEATS,
        "label_noise": label_noise(repeats, metrics),
        "timings": {"total_s": round(time.perf_counter() - started, 3),
                    "encoded_genomes": len(fresh)},
    }
    atomic_write_json(out / MANIFEST, manifest)
    return AppendResult(manifest, counts.rows, counts.duplicates, rejected)
