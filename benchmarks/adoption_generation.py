"""One generation of the evolution's loop through ``ServiceSurrogate`` against a running
service, with each call timed (issue 31's proof): what the pipeline does per generation once
``self.surrogate`` is the drop-in.

1. ``update(run_dir, generation)``: the run directory (written here in the pipeline's layout
   from the real CSV's rows of the generations up to ``--generation``) ingested, one
   promote-if-better training waited for, the trusts refreshed;
2. the downselect: ``set_fitnesses`` on the unsustainable population (``--unsustainable`` real
   genomes), then the pipeline's counts ``num_tw = int(reg_trust * cls_trust * P)`` by NSGA-II,
   ``num_utw`` random among the predicted-valid, the rest random;
3. SSI in one call: ``simulated_surrogate_injection_new`` on the new population (5 x 2,000).

    python3 benchmarks/adoption_generation.py --url URL --key-file KEY [--generation 7]

Needs only the light client (``pip install ./client[pandas,deap]``).
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

from deap import base, creator, tools

from nas_surrogate_client import ServiceSurrogate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
METRICS = ["train_epoch_loss", "uw_val_epoch_loss", "val_epoch_loss", "iou_loss", "giou_loss",
           "diou_loss", "ciou_loss", "center_loss", "size_loss", "obj_loss", "precision",
           "recall", "f1_score", "average_precision", "true_positives", "false_positives",
           "false_negatives"]


def write_run(folder: Path, rows: list[dict[str, str]]) -> None:
    """eval_inputs/eval_input_gen{g}.csv and generation_{g}/{hash}/metrics.csv (the kept
    epoch's row; the pipeline's ±1e6 file for a failed one)."""
    (folder / "eval_inputs").mkdir(parents=True, exist_ok=True)
    gens: dict[int, list[dict[str, str]]] = {}
    for r in rows:
        gens.setdefault(int(float(r["generation"])), []).append(r)
    for g, members in gens.items():
        with open(folder / "eval_inputs" / f"eval_input_gen{g}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["gen", "hash", "genome"])
            w.writerows([g, r["individual_hash"], r["genome"]] for r in members)
        for r in members:
            d = folder / f"generation_{g}" / r["individual_hash"]
            d.mkdir(parents=True, exist_ok=True)
            with open(d / "metrics.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                if float(r["uw_val_epoch_loss"]) >= 1e5:
                    w.writerow(["uw_val_epoch_loss", "ciou_loss", "average_precision"])
                    w.writerow([1000000, 1000000, -1000000])
                else:
                    w.writerow(["epoch_num", *METRICS])
                    w.writerow([r["epoch_num"], *(r[m] for m in METRICS)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--generation", type=int, default=7)
    parser.add_argument("--population", type=int, default=30)
    parser.add_argument("--unsustainable", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--inner-generations", type=int, default=5)
    args = parser.parse_args()
    creator.create("FitnessMulti", base.Fitness, weights=(-1.0, -1.0, 1.0))
    creator.create("Individual", str, fitness=creator.FitnessMulti)
    with open(DATA / "surrogate_evolution_train.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = Path(args.key_file).read_text().strip()
    timings: dict[str, float] = {}

    def timed(label, fn, *a, **k):
        started = time.perf_counter()
        out = fn(*a, **k)
        timings[label] = round(time.perf_counter() - started, 3)
        return out

    surrogate = timed("connect", ServiceSurrogate, args.url, api_key=key)
    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), [r for r in rows if float(r["generation"]) <= args.generation])
        update = timed("update (ingest + retrain + trusts)", surrogate.update, tmp)
    rng = random.Random(0)
    P = args.population
    unsustainable = {r["individual_hash"]: creator.Individual(r["genome"])
                     for r in rng.sample(rows, min(args.unsustainable, len(rows)))}
    invalid, valid = timed("set_fitnesses (downselect)", surrogate.set_fitnesses,
                           None, None, None, list(unsustainable.values()))
    num_tw = int(surrogate.reg_trust * surrogate.cls_trust * P)
    num_utw = int((1 - surrogate.reg_trust) * surrogate.cls_trust * P)
    pool = invalid + valid if len(valid) < P * surrogate.cls_trust else valid
    trusted = tools.selNSGA2(list(pool), num_tw)
    left = [i for i in valid if i not in trusted]
    chosen = trusted + rng.sample(left, min(num_utw, len(left)))
    rest = [i for i in unsustainable.values() if str(i) not in {str(c) for c in chosen}]
    chosen += rng.sample(rest, P - len(chosen))
    ssi = timed("SSI (one /propose)", surrogate.simulated_surrogate_injection_new, chosen,
                population_size=P, pool_size=args.pool_size,
                inner_generations=args.inner_generations)
    print(json.dumps({
        "timings_s": timings, "model": surrogate.models[0]["name"],
        "cls_trust": surrogate.cls_trust, "reg_trust": surrogate.reg_trust,
        "pipeline_trust": surrogate.trust,
        "ingest": {k: update.get(k) for k in ("added", "duplicates", "individuals")},
        "training": None if update.get("training") is None else
        {k: update["training"].get(k) for k in ("status", "message")},
        "downselect": {"unsustainable": len(unsustainable), "valid": len(valid),
                       "invalid": len(invalid), "num_tw": num_tw, "num_utw": num_utw,
                       "random": P - num_tw - num_utw},
        "ssi": {"returned": len(ssi), "expected": int(0.8 * P)}}, indent=2, default=str))


if __name__ == "__main__":
    main()
