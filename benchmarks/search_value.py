"""Does the predictor find better architectures? Searches on NAS-Bench-Graph, whose table of
trained accuracies is the oracle (``pip install '.[benchmarks]'``).

For a budget of B queried architectures (each query reads the table: what a real search pays a
training for), over seeds, the best accuracy found and the regret against the space's best:

* ``random``: B architectures drawn uniformly;
* ``regularised_evolution`` (Real et al. 2019): 20 random, then tournaments of 5 over the
  population, the winner mutated, the oldest member dropped;
* ``neural_predictor`` (predictors.md §1.2): B/2 random queried, the predictor (``--model``:
  the service's default ``auto``, i.e. ``stack``, unless told; the runs before 2026-12-04
  21:45 UTC used ``trees``) trained on them, every unqueried
  architecture of the space predicted (as Wen et al. predict the whole NAS-Bench-101 space;
  ``--np-pool N`` predicts N drawn at random instead, 5,000 in the first runs), the top B/2
  queried;
* ``neural_predictor_loop`` (``POST /propose`` with ``strategy: neural_predictor`` as the loop
  calls it, once per generation with the model updated on each generation's results): 20
  random, then per round the predictor is refitted on everything queried, every unqueried
  architecture is predicted, and the predicted top 20 are queried;
* ``predictor_evolution`` (the logic of ``POST /propose`` with ``strategy: mutate``): 20 random,
  then per round the predictor is refitted on everything queried, the best 5 queried by accuracy
  are mutated into 200 new candidates, and the 20 the predictor ranks first are queried.

A mutation changes one of the four operations (p = 0.5) or the link pattern, redrawn until it
lands on an architecture of the space. The table below is written to stdout (markdown).

    python benchmarks/search_value.py [--datasets arxiv cora citeseer] [--budgets 100 200]
        [--seeds 20] [--methods random regularised_evolution neural_predictor
        neural_predictor_loop predictor_evolution] [--np-pool 0] [--model auto]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POPULATION, TOURNAMENT = 20, 5
#: Unqueried architectures the Neural Predictor ranks (0: all of them); ``--np-pool`` sets it.
NP_POOL = 0
#: Share of the budget the Neural Predictor queries at random before it predicts (its N).
NP_INITIAL = 0.5
ROUND_POOL, ROUND_QUERIES, PARENTS = 200, 20, 5


class Space:
    """One dataset's architectures: features for the predictor, accuracies as the oracle."""

    def __init__(self, dataset: str, np_pool: int = NP_POOL,
                 np_initial: float = NP_INITIAL, model: str = "auto") -> None:
        from ml.evaluation import nasbench_graph as nb
        from ml.evaluation.predictors import make_factory

        self.records = nb.load_benchmark(dataset)
        self.perf = np.array([float(r.y.reshape(-1)[0]) for r in self.records])
        self.index = {(tuple(r.link), tuple(r.ops)): i for i, r in enumerate(self.records)}
        self.links = sorted({tuple(r.link) for r in self.records})
        self.factory = make_factory(model, nb.METRICS)
        self.rows = self.factory(0).featurize(self.records)
        self.best = float(self.perf.max())
        self.np_pool, self.np_initial = np_pool, np_initial

    def mutate(self, i: int, rng: np.random.Generator) -> int:
        from ml.evaluation.nasbench_graph import NB_OPS

        link, ops = tuple(self.records[i].link), list(self.records[i].ops)
        for _ in range(100):
            new_link, new_ops = link, list(ops)
            if rng.random() < 0.5:
                pos = int(rng.integers(len(new_ops)))
                new_ops[pos] = rng.choice([o for o in NB_OPS if o != ops[pos]])
            else:
                new_link = self.links[int(rng.integers(len(self.links)))]
            j = self.index.get((new_link, tuple(new_ops)))
            if j is not None and j != i:
                return j
        return int(rng.integers(len(self.records)))

    def predictor(self, queried: list[int], seed: int) -> Callable[[np.ndarray], np.ndarray]:
        model = self.factory(seed)
        model.fit([self.records[i] for i in queried], None, None, None)
        return lambda idx: np.asarray(model.predict_features(self.rows[idx]).mean)[:, 0]


def random_search(space: Space, budget: int, rng: np.random.Generator, seed: int) -> list[int]:
    return list(rng.choice(len(space.records), size=budget, replace=False))


def regularised_evolution(space: Space, budget: int, rng: np.random.Generator,
                          seed: int) -> list[int]:
    queried = list(rng.choice(len(space.records), size=POPULATION, replace=False))
    seen, population = set(queried), list(queried)
    while len(queried) < budget:
        sample = rng.choice(population, size=TOURNAMENT, replace=False)
        parent = int(max(sample, key=lambda i: space.perf[i]))
        child = space.mutate(parent, rng)
        for _ in range(20):
            if child not in seen:
                break
            child = space.mutate(parent, rng)
        seen.add(child)
        queried.append(child)
        population.append(child)
        population.pop(0)
    return queried


def best_predicted(predict: Callable[[np.ndarray], np.ndarray], pool: np.ndarray,
                   take: int) -> list[int]:
    """The ``take`` architectures of ``pool`` predicted best (ties in pool order)."""
    order = np.argsort(-predict(pool), kind="stable")
    return [int(i) for i in pool[order[:take]]]


def neural_predictor(space: Space, budget: int, rng: np.random.Generator,
                     seed: int) -> list[int]:
    initial = max(2, round(budget * space.np_initial))
    queried = list(rng.choice(len(space.records), size=initial, replace=False))
    predict = space.predictor(queried, seed)
    rest = np.setdiff1d(np.arange(len(space.records)), queried)
    size = space.np_pool
    pool = rng.choice(rest, size=min(size, len(rest)), replace=False) if size else rest
    return queried + best_predicted(predict, pool, budget - len(queried))


def neural_predictor_loop(space: Space, budget: int, rng: np.random.Generator,
                          seed: int) -> list[int]:
    queried = list(rng.choice(len(space.records), size=POPULATION, replace=False))
    while len(queried) < budget:
        predict = space.predictor(queried, seed)
        rest = np.setdiff1d(np.arange(len(space.records)), queried)
        queried += best_predicted(predict, rest, min(ROUND_QUERIES, budget - len(queried)))
    return queried


def predictor_evolution(space: Space, budget: int, rng: np.random.Generator,
                        seed: int) -> list[int]:
    queried = list(rng.choice(len(space.records), size=POPULATION, replace=False))
    seen = set(queried)
    while len(queried) < budget:
        predict = space.predictor(queried, seed)
        parents = sorted(queried, key=lambda i: -space.perf[i])[:PARENTS]
        pool: list[int] = []
        for _ in range(ROUND_POOL * 20):
            child = space.mutate(parents[int(rng.integers(len(parents)))], rng)
            if child not in seen and child not in pool:
                pool.append(child)
            if len(pool) >= ROUND_POOL:
                break
        while len(pool) < ROUND_QUERIES:          # the parents' neighbourhood is used up
            other = int(rng.integers(len(space.records)))
            if other not in seen and other not in pool:
                pool.append(other)
        chosen = best_predicted(predict, np.array(pool, dtype=np.int64),
                                min(ROUND_QUERIES, budget - len(queried)))
        queried += chosen
        seen.update(chosen)
    return queried


def lead_in_se(values: list[float], baseline: list[float], name: str) -> str:
    """Mean lead over the baseline's mean in standard errors of the difference (independent
    runs: the methods draw from their seeds differently); "-" for the baselines themselves."""
    if name in ("random", "regularised_evolution"):
        return "-"
    se = (statistics.variance(values) / len(values)
          + statistics.variance(baseline) / len(baseline)) ** 0.5
    lead = statistics.mean(values) - statistics.mean(baseline)
    return f"{lead / se:+.1f}" if se > 0 else f"{lead:+.4f} (no spread)"


METHODS: dict[str, Callable[..., list[int]]] = {
    "random": random_search, "regularised_evolution": regularised_evolution,
    "neural_predictor": neural_predictor, "neural_predictor_loop": neural_predictor_loop,
    "predictor_evolution": predictor_evolution}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["arxiv", "cora", "citeseer"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[100, 200])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--np-pool", type=int, default=NP_POOL,
                        help="architectures the Neural Predictor ranks (0: every unqueried one)")
    parser.add_argument("--np-initial", type=float, default=NP_INITIAL,
                        help="share of the budget the Neural Predictor draws at random first")
    parser.add_argument("--model", default="auto",
                        help="the predictor of the predictor-guided searches (a row model: "
                             "auto, stack, trees, ...)")
    args = parser.parse_args()

    table: list[str] = ["| dataset | budget | method | best accuracy (mean ± sd) | median "
                        "| regret (mean) | beats random | beats RE | lead over RE (SE) |",
                        "|---|---|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        started = time.perf_counter()
        space = Space(dataset, args.np_pool, args.np_initial, args.model)
        print(f"{dataset}: {len(space.records)} archs, best {space.best:.4f} "
              f"({time.perf_counter() - started:.0f} s to load)", file=sys.stderr)
        for budget in args.budgets:
            found: dict[str, list[float]] = {}
            for name, method in METHODS.items():
                if name not in args.methods and name not in ("random",
                                                             "regularised_evolution"):
                    continue
                t0 = time.perf_counter()
                found[name] = []
                for seed in range(args.seeds):
                    rng = np.random.default_rng(1000 * budget + seed)
                    queried = method(space, budget, rng, seed)
                    assert len(queried) == budget and len(set(queried)) == budget, name
                    found[name].append(float(space.perf[queried].max()))
                print(f"  {dataset} B={budget} {name}: mean best "
                      f"{statistics.mean(found[name]):.4f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            for name, values in found.items():
                mean = statistics.mean(values)
                regret = space.best - mean
                beats = ["-" if name in skip else
                         ("yes" if mean > statistics.mean(found[other]) else "no")
                         for other, skip in (("random", ("random",)),
                                             ("regularised_evolution",
                                              ("random", "regularised_evolution")))]
                table.append(f"| {dataset} | {budget} | {name} | {mean:.4f} ± "
                             f"{statistics.stdev(values):.4f} | {statistics.median(values):.4f} "
                             f"| {regret:.4f} | {beats[0]} | {beats[1]} | "
                             f"{lead_in_se(values, found['regularised_evolution'], name)} |")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
