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
import multiprocessing
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    from ml.encoding import encoder as enc
    from ml.inference.engine import Engine
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
    wrap(Engine, "_predict", "featurise+predict")
    wrap(strategies, "select_nsga2", "selection")


def _unseen_sampled(real: list[str], seed: int) -> list[str]:
    """The real genomes plus sampled compiling ones, 2,000 in all (as
    ``benchmarks/predict_load.py`` builds them)."""
    from ml.sampling import sample_compiling

    return real + sample_compiling(2000 - len(real), seed=seed)


def _unseen_bred(population: tuple[str, ...], n: int, seed: int) -> list[str]:
    """``n`` compiling offspring of ``population`` bred by the evolution's operators (longer
    than sampled genomes: crossover grows them)."""
    import random

    from ml.genome import canonical_hash, load
    from ml.sampling import compiles
    from ml.search.pset import to_tree
    from ml.search.variation import overpopulate

    pool = [(to_tree(g), canonical_hash(load(g))) for g in population]
    bred = overpopulate(pool, n, random.Random(seed), set(population),
                        lambda batch: [compiles(o.genome) for o in batch])
    return [o.genome for o in bred.kept]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--inner-generations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoder-processes", type=int, nargs="+", default=[0, 2],
                        help="encoder pool sizes to measure (0: encode in the scoring process)")
    args = parser.parse_args()

    from app.scoring import LoadedModel, RequestBudget, Scorer, SearchScorer
    from ml.arch.backbones import warm_up
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
    warm_up(freeze_heap=True)  # as the service and its encoder processes do
    print(f"backbone warm-up: {time.perf_counter() - started:.1f} s")
    instrument()
    loaded = LoadedModel("default", 1, model.name, "graph-v2", model)
    spec = ProposeSpec(strategy="ssi", population=population, pool_size=args.pool_size,
                       inner_generations=args.inner_generations, seed=0)

    # Never-seen genomes come from another process: sampling (which compiles) and breeding
    # here would warm this process's per-layer and path memos with exactly those genomes.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as side:
        unseen_sets = [side.submit(_unseen_sampled, [r["genome"] for r in rows],
                                   7919 * (repeat + 1)) for repeat in range(args.repeats)]
        bred_sets = [side.submit(_unseen_bred, population, 2000, 1000 + repeat)
                     for repeat in range(args.repeats)]
        unseen_sets = [f.result() for f in unseen_sets]
        bred_sets = [f.result() for f in bred_sets]

    runs: dict[str, list[float]] = {}
    shares: dict[str, float] = defaultdict(float)
    for processes in args.encoder_processes:
        # warm_up: the encoder processes build every backbone first, as the API's do.
        settings = Settings(warm_up=True, encoder_processes=processes)
        pool = Scorer(settings).pool
        if pool is not None:
            started = time.perf_counter()
            pool.wait_ready(300)
            # PSS, not RSS: the forked workers share the fork server's warm heap, which RSS
            # would count once per worker (and the server itself would be missed).
            from pool_start import children_pss_mb  # benchmarks/, this script's own folder

            print(f"encoder pool of {processes}: ready in {time.perf_counter() - started:.1f} s"
                  f", {children_pss_mb():.0f} MB proportional memory (PSS) in its processes"
                  " and the fork server")
        tag = f" [{processes} encoder proc]" if processes else " [in process]"
        for repeat in range(args.repeats):
            scorer = Scorer(settings)
            for label in ("ssi cold cache", "ssi warm cache"):
                STAGES.clear()
                t0 = time.perf_counter()
                out = propose(SearchScorer(scorer, loaded, RequestBudget(0, 0)),
                              ProposeSpec(**{**spec.__dict__, "seed": repeat}), hashes)
                seconds = time.perf_counter() - t0
                runs.setdefault(label + tag, []).append(seconds)
                if label == "ssi cold cache":
                    for stage, value in STAGES.items():
                        shares[stage + tag] += value / seconds / args.repeats
                    stats = out["stats"]
                print(f"  run {repeat + 1}{tag} {label}: {seconds:.2f} s, "
                      f"{stats['candidates']} candidates, {stats['invalid_offspring']} invalid")
            for label, genomes in (("predict 2000 unseen", unseen_sets[repeat]),
                                   ("predict 2000 bred unseen", bred_sets[repeat])):
                fresh = Scorer(settings)
                t0 = time.perf_counter()
                fresh.score(genomes, loaded)
                runs.setdefault(label + tag, []).append(time.perf_counter() - t0)
                print(f"  run {repeat + 1}{tag} {label} ({len(genomes)}): "
                      f"{runs[label + tag][-1]:.2f} s")

    print("\nmedians (seconds):")
    targets = {"ssi cold cache": 15.0, "ssi warm cache": 15.0, "predict 2000 unseen": 2.5,
               "predict 2000 bred unseen": 2.5}
    for label, values in runs.items():
        median = statistics.median(values)
        target = targets[label.split(" [")[0]]
        print(f"  {label:46s} {median:7.2f}   target {target:5.1f}   "
              f"ratio {median / target:.2f}")
    print("\nshare of the cold ssi run per stage in this process (mean over runs; with encoder "
          "processes, parse/compile/featurise of misses run there):")
    for stage, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:46s} {100 * share:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
