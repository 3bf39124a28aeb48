"""What the loop's update path costs (issue 12's targets), measured in one process:

* appending 30 evaluated genomes to a 100,000-row dataset version (``ml.datasets.versions``):
  total, and the part that is not the new genomes' encoding (target <= 2 s). The large parent
  is the real dataset plus a version whose index lists 100,000 graph rows (distinct keys over the
  real shards): reading the lineage's index is what grows with the parent, and nothing of it is
  re-encoded or copied;
* a promote-if-better training of the default predictor on the 238 real genomes: the
  champion/challenger comparison (a champion trained before the newest generation; each of its
  last generations held out, both sides fitted) plus the fit (target <= 3 min on 2 cores).

    python benchmarks/loop_costs.py [--parent-rows 100000] [--append 30] [--generations 5]
        [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA / "surrogate_evolution_train.csv"


def big_version(base: Path, out: Path, rows: int) -> None:
    """A version of ``base`` whose own index lists ``rows`` graph rows (fresh keys, each the
    graph of a real row): a parent of that size for the lineage reads."""
    from ml.datasets.build import INDEX, MANIFEST
    from ml.datasets.versions import VERSION_COLUMNS, lineage

    with open(base / INDEX, newline="") as handle:
        real = list(csv.DictReader(handle))
    out.mkdir(parents=True)
    with open(out / INDEX, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(VERSION_COLUMNS)
        for i in range(rows):
            r = real[i % len(real)]
            writer.writerow((i, uuid.uuid4().hex * 2, r["individual_hash"], r["status"],
                             r["shard"], r["position"], r["generation"], 0,
                             r["failure_reason"], r["source_individual_hash"], 0, "", "synthetic"))
    manifest = json.loads((base / MANIFEST).read_text())
    manifest.update({"lineage": [str(p) for p in lineage(base)], "shards": [],
                     "parent": str(base.resolve())})
    manifest["counts"] = {**manifest["counts"], "rows": manifest["counts"]["rows"] + rows}
    (out / MANIFEST).write_text(json.dumps(manifest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent-rows", type=int, default=100_000)
    parser.add_argument("--append", type=int, default=30)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-promote", action="store_true")
    args = parser.parse_args()

    from ml.datasets.build import BuildOptions, build_dataset
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.source import iter_labelled_rows
    from ml.datasets.versions import append_dataset

    work = Path(tempfile.mkdtemp(prefix="loop-costs-"))
    with open(TRAIN_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    head, tail = rows[:-args.append], rows[-args.append:]
    base_csv, new_csv = work / "base.csv", work / "new.csv"
    for path, part in ((base_csv, head), (new_csv, tail)):
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(part)
    build_dataset(BuildOptions(source=base_csv, out=work / "base", workers=1, progress=False))
    big_version(work / "base", work / "big", args.parent_rows)
    totals, overheads = [], []
    for repeat in range(args.repeats):
        started = time.perf_counter()
        result = append_dataset(work / "big", iter_labelled_rows(new_csv, DEFAULT_METRICS),
                                work / f"v{repeat}", source="benchmark")
        total = time.perf_counter() - started
        encode_s = sum(json.loads((work / f"v{repeat}" / "shards" / f).read_text())["seconds"]
                       for f in os.listdir(work / f"v{repeat}" / "shards")
                       if f.endswith(".json"))
        totals.append(total)
        overheads.append(total - encode_s)
        print(f"  append {repeat + 1}: {result.added} rows onto "
              f"{args.parent_rows + len(head):,} in {total:.2f} s "
              f"({encode_s:.2f} s encoding the new genomes, {total - encode_s:.2f} s the rest)",
              flush=True)
    print(f"append of {args.append} genomes to a {args.parent_rows + len(head):,}-row version: "
          f"median {statistics.median(totals):.2f} s in all, "
          f"{statistics.median(overheads):.2f} s besides their encoding (target <= 2 s)")
    if args.skip_promote:
        return 0

    from ml.datasets.records import load_csv
    from ml.evaluation.champion import compare_recipes
    from ml.train import fit_predictor

    records, _ = load_csv(TRAIN_CSV, DEFAULT_METRICS)
    recipe = {"predictor": "stack", "hyperparameters": {}}
    newest = max(float(r.generation) for r in records)
    champion_data = [r for r in records if float(r.generation) < newest]
    started = time.perf_counter()
    comparison = compare_recipes(records, DEFAULT_METRICS, recipe, dict(recipe),
                                 args.generations, champion_records=champion_data)
    compared = time.perf_counter() - started
    fit_predictor(records, "auto", {"metrics": DEFAULT_METRICS})
    total = time.perf_counter() - started
    print(f"promote-if-better training of the default on {len(records)} genomes: {total:.0f} s "
          f"({compared:.0f} s comparing on {args.generations} held-out generations, "
          f"{total - compared:.0f} s fitting; target <= 180 s); decision: "
          f"{'promote' if comparison['promoted'] else 'keep'} ({comparison['reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
