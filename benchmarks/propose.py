"""What a search costs inside the service (issue 14's targets), measured in one process on the
service's own scoring path (``app.scoring.Scorer``: encoding cache, chunked prediction) with the
default predictor trained on the 238 real genomes and every backbone variant built first (what
``warm_up`` does at API start-up):

* ``ssi`` with ``pool_size`` 2,000 and 5 inner generations (~10,000 new genomes) from the last
  real generation (target <= 15 s on 2 cores with a warm backbone cache); first run on a cold
  encoding cache, then the same request again (warm cache);
* ``POST /predict``'s work for 2,000 never-seen genomes (target <= 2.5 s) on a fresh encoding
  cache: the real genomes plus sampled compiling ones (as ``benchmarks/predict_load.py``), and
  2,000 offspring of a brood (longer: crossover grows genomes);
* the share of each stage: breeding (DEAP variation and printing, with the parser's tree built
  for each new string), evaluate/validate, compile + graph encoding, featurising + predicting,
  selection.

    python benchmarks/propose.py [--pool-size 2000] [--inner-generations 5] [--repeats 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA / "surrogate_evolution_train.csv"

STAGES: dict[str, float] = defaultdict(float)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGES[stage] += time.perf_counter() - started


def instrument() -> None:
    """Wrap the stage functions with timers (a stage nested in another is subtracted)."""
    import ml.genome as genome_pkg
    from app import scoring
    from ml.encoding import encoder as enc
    from ml.search import strategies, variation

    def wrap(owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            with timed(stage):
                return original(*args, **kwargs)
        setattr(owner, name, timed_call)

    wrap(variation, "_breed_pair", "breeding")
    wrap(genome_pkg, "load", "parse/evaluate/validate")
    wrap(enc.GenomeEncoder, "encode_genome", "compile+encode")
    wrap(scoring.Scorer, "_predict", "featurise+predict")
    wrap(strategies, "select_nsga2", "selection")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--inner-generations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from app.scoring import LoadedModel, RequestBudget, Scorer, SearchScorer
    from ml.arch.backbones import warm_up
    from ml.sampling import sample_compiling
    from ml.search.strategies import ProposeSpec, propose
    from ml.train import fit_predictor, load_training_records
    from service.config import Settings

    rows = list(csv.DictReader(open(TRAIN_CSV, newline="")))
    last = max(int(float(r["generation"])) for r in rows)
    population = tuple(r["genome"] for r in rows if int(float(r["generation"])) == last)
    started = time.perf_counter()
    records, _ = load_training_records(csv=str(TRAIN_CSV))
    model, _ = fit_predictor(records, "auto", {})
    hashes = [r.canonical_hash for r in records]
    print(f"model: {model.name} trained in {time.perf_counter() - started:.1f} s; population: "
          f"{len(population)} genomes of generation {last}")
    started = time.perf_counter()
    warm_up()
    print(f"backbone warm-up: {time.perf_counter() - started:.1f} s")
    instrument()
    loaded = LoadedModel("default", 1, model.name, "graph-v2", model)
    spec = ProposeSpec(strategy="ssi", population=population, pool_size=args.pool_size,
                       inner_generations=args.inner_generations, seed=0)

    runs: dict[str, list[float]] = {"ssi cold cache": [], "ssi warm cache": [],
                                    "predict 2000 unseen": [], "predict 2000 bred unseen": []}
    shares: dict[str, float] = defaultdict(float)
    for repeat in range(args.repeats):
        settings = Settings(warm_up=False)
        scorer = Scorer(settings)
        for label in ("ssi cold cache", "ssi warm cache"):
            STAGES.clear()
            t0 = time.perf_counter()
            out = propose(SearchScorer(scorer, loaded, RequestBudget(0, 0)),
                          ProposeSpec(**{**spec.__dict__, "seed": repeat}), hashes)
            seconds = time.perf_counter() - t0
            runs[label].append(seconds)
            if label == "ssi cold cache":
                for stage, value in STAGES.items():
                    shares[stage] += value / seconds / args.repeats
                bred = [it["genome"] for it in out["items"]]
                stats = out["stats"]
            print(f"  run {repeat + 1} {label}: {seconds:.2f} s, {stats['candidates']} "
                  f"candidates, {stats['invalid_offspring']} invalid")
        # 2,000 genomes the scorer has never seen, as benchmarks/predict_load.py builds them:
        # the real genomes plus sampled compiling ones (a new seed per repeat).
        unseen = [r["genome"] for r in rows]
        unseen += sample_compiling(2000 - len(unseen), seed=7919 * (repeat + 1))
        fresh = Scorer(Settings(warm_up=False))
        t0 = time.perf_counter()
        fresh.score(unseen, loaded)
        runs["predict 2000 unseen"].append(time.perf_counter() - t0)
        # ... and 2,000 bred ones (offspring of another seed's brood: longer genomes).
        other = propose(SearchScorer(Scorer(Settings(warm_up=False)), loaded,
                                     RequestBudget(0, 0)),
                        ProposeSpec(strategy="ssi", population=population, pool_size=2000,
                                    inner_generations=1, k=2000, seed=1000 + repeat), hashes)
        bred_unseen = [it["genome"] for it in other["items"]][:2000]
        fresh = Scorer(Settings(warm_up=False))
        t0 = time.perf_counter()
        fresh.score(bred_unseen, loaded)
        runs["predict 2000 bred unseen"].append(time.perf_counter() - t0)
        print(f"  run {repeat + 1} predict {len(unseen)} unseen: "
              f"{runs['predict 2000 unseen'][-1]:.2f} s, {len(bred_unseen)} bred unseen: "
              f"{runs['predict 2000 bred unseen'][-1]:.2f} s")
        del bred

    print("\nmedians (seconds):")
    targets = {"ssi cold cache": 15.0, "ssi warm cache": 15.0, "predict 2000 unseen": 2.5,
               "predict 2000 bred unseen": 2.5}
    for label, values in runs.items():
        median = statistics.median(values)
        print(f"  {label:22s} {median:7.2f}   target {targets[label]:5.1f}   "
              f"ratio {median / targets[label]:.2f}")
    print("\nshare of the cold ssi run per stage (mean over runs):")
    for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:20s} {100 * share:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
