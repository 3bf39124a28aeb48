"""Two checkouts of this repository measured **interleaved** on issue 14's paths.

This machine's speed moves by a third within minutes, so "old at 08:06, new at 07:56" compares
the machine, not the code. Here each round runs one fresh process per checkout, alternating,
on the same genomes (drawn once, in another process, so no memo of a measured process has seen
them): 2,000 never-seen (the real genomes plus sampled compiling ones) and 2,000 offspring of
the last real generation; then SSI (``pool_size`` 2,000, 5 inner generations) on a cold and a
warm encoding cache. Prints every run, the medians and the old/new ratios.

    python benchmarks/propose_ab.py --old PATH --new PATH [--rounds 3] [--model auto]
                                    [--encoder-processes 2] [--skip-ssi]

Make the old checkout with ``git worktree add /tmp/old COMMIT`` (and remove it after).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA / "surrogate_evolution_train.csv"

#: One measured process: run with the checkout first on sys.path; prints one JSON object.
_MEASURE = r"""
import csv, json, sys, time
repo, genomes_file, train_csv, model_name, processes, skip_ssi = sys.argv[1:7]
sys.path.insert(0, repo)
from app.scoring import LoadedModel, RequestBudget, Scorer, SearchScorer
from ml.arch.backbones import warm_up
from ml.search.strategies import ProposeSpec, propose
from ml.train import fit_predictor, load_training_records
from service.config import Settings

if __name__ == "__main__":
    rows = list(csv.DictReader(open(train_csv, newline="")))
    last = max(int(float(r["generation"])) for r in rows)
    population = tuple(r["genome"] for r in rows if int(float(r["generation"])) == last)
    records, _ = load_training_records(csv=train_csv)
    model, _ = fit_predictor(records, model_name, {})
    try:  # as the service warms up
        from ml.inference.pool import warm_process
        warm_process()
    except ImportError:  # a checkout from before warm_process
        try:
            warm_up(freeze_heap=True)
        except TypeError:  # a checkout from before freeze_heap
            warm_up()
    loaded = LoadedModel("default", 1, model.name, "graph-v2", model)
    settings = Settings(warm_up=True, encoder_processes=int(processes))
    pool = Scorer(settings).pool
    if pool is not None:
        pool.wait_ready(300)
    out = {"model": model.name}
    sets = json.load(open(genomes_file))
    for label in ("never-seen", "bred"):
        scorer = Scorer(settings)
        started = time.perf_counter()
        scorer.score(sets[label], loaded)
        out[f"predict 2000 {label}"] = time.perf_counter() - started
    if skip_ssi != "1":
        scorer = Scorer(settings)
        spec = ProposeSpec(strategy="ssi", population=population, pool_size=2000,
                           inner_generations=5, seed=5)
        hashes = [r.canonical_hash for r in records]
        for label in ("ssi cold cache", "ssi warm cache"):
            started = time.perf_counter()
            propose(SearchScorer(scorer, loaded, RequestBudget(0, 0)), spec, hashes)
            out[label] = time.perf_counter() - started
    if pool is not None:
        pool.close()
    print(json.dumps(out))
"""

#: The genomes, drawn once with the new checkout's ``benchmarks/propose.py`` helpers (the
#: same never-seen and bred sets that benchmark times).
_DRAW = r"""
import csv, json, sys
repo, train_csv, out = sys.argv[1:4]
sys.path[:0] = [repo, repo + "/benchmarks"]
from propose import _unseen_bred, _unseen_sampled

rows = list(csv.DictReader(open(train_csv, newline="")))
last = max(int(float(r["generation"])) for r in rows)
population = tuple(r["genome"] for r in rows if int(float(r["generation"])) == last)
json.dump({"never-seen": _unseen_sampled([r["genome"] for r in rows], 4242),
           "bred": _unseen_bred(population, 2000, 4243)}, open(out, "w"))
"""


def _run(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="checkout measured first in each round")
    parser.add_argument("--new", default=str(REPO))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--encoder-processes", type=int, default=2)
    parser.add_argument("--skip-ssi", action="store_true")
    args = parser.parse_args()

    checkouts = {"old": str(Path(args.old).resolve()), "new": str(Path(args.new).resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        genomes = str(Path(tmp) / "genomes.json")
        _run(_DRAW, checkouts["new"], str(TRAIN_CSV), genomes)
        runs: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
        for round_ in range(args.rounds):
            for side, path in checkouts.items():
                out = json.loads(_run(_MEASURE, path, genomes, str(TRAIN_CSV), args.model,
                                      str(args.encoder_processes),
                                      "1" if args.skip_ssi else "0"))
                model = out.pop("model")
                for label, seconds in out.items():
                    runs[side].setdefault(label, []).append(seconds)
                print(f"round {round_ + 1} {side} ({model}): "
                      + ", ".join(f"{k} {v:.2f} s" for k, v in out.items()), flush=True)

    print(f"\nmedians (seconds; {args.encoder_processes} encoder processes)   old     new   "
          "old/new")
    for label, old in runs["old"].items():
        a, b = statistics.median(old), statistics.median(runs["new"][label])
        print(f"  {label:28s} {a:7.2f} {b:7.2f}   {a / b:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
