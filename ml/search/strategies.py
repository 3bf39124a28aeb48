"""Proposals: the search loop's inner work done next to the model, so that a search scores
thousands of candidates without a round trip each. The strategies (named in
:mod:`ml.search.spec`), all seeded and deterministic for a given model:

* ``neural_predictor`` (the Neural-Predictor recipe: sample, predict, keep the best): draw
  ``pool_size`` compiling genomes as the evolution does (DEAP's ``genHalfAndHalf(min_=4,
  max_=8)`` on its typed set), predict, drop predicted failures, return the top ``k`` by NSGA-II
  + crowding on the acquired objectives (``population`` takes part in the ranking, never in the
  answer);
* ``ssi`` (the evolution's simulated surrogate injection): from
  ``population``, for each of ``inner_generations`` rounds take NSGA-II(``parents_k``) parents on
  predicted fitness and breed a brood of ``pool_size`` with the evolution's operators; the final
  NSGA-II picks ``k`` (default ⌈0.8·len(population)⌉) of the last brood for real training;
* ``mutate`` (NPENAS-style): the best ``parents_k`` of ``population`` by predicted fitness are
  mutated (``mutNodeReplacement`` / ``type_fixed_mut``, 0.2 : 0.3) into ``pool_size`` children,
  ranked by the acquisition.

Fitness follows the evolution's ``set_fitnesses``: predicted objectives clamped to ±300,
predicted failures ``(300, 300, -300)``. The acquisition shifts each objective by the model's
std in its better direction (``ucb``, ``UCB_BETA`` std) or replaces it by one normal draw
(``thompson``), before the clamp. A proposal is never a genome of ``exclude``, of
``population`` or of the model's training data (by canonical hash), nor twice the same.

Differences from the evolution, on purpose: its last SSI round breeds a brood it then throws away
(it selects from the previous one); here every round's brood is used, so ``inner_generations=5``
means five broods. Its brood is deduplicated against the evaluated history only; here also against
every genome this search has already bred.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deap import gp

from ml.errors import GenomeError
from ml.evaluation.selection import OBJECTIVE_NAMES, OBJECTIVE_WEIGHTS, select_nsga2
from ml.ranking import FAIL_THRESHOLD
from ml.search.pset import primitive_set, print_tree, seeded, to_genome, to_tree
from ml.search.scoring import CandidateScorer, Scores
from ml.search.spec import ACQUISITIONS, STRATEGIES, ProposeSpec, planned_candidates
from ml.search.variation import MUTATIONS, Offspring, _mutation, overpopulate

#: The evolution's fitness bound (its ``set_fitnesses``); the light client states it too, as it
#: imports nothing of this library (``tests/ml/search/test_search.py`` holds the two equal).
FITNESS_CLAMP = 300.0
UCB_BETA = 1.0
#: Candidates scored per model call while breeding.
SCORE_BATCH = 512
#: ``gp.genHalfAndHalf(min_=4, max_=8)``: how the evolution draws new genomes.
GEN_MIN, GEN_MAX = 4, 8


class SearchCancelled(Exception):
    """``stop()`` asked the search to end (a cancelled or timed-out job)."""


class SearchError(ValueError):
    """A request the search cannot run (stable ``code`` for the service)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.details = code, details


@dataclass
class _Candidate:
    genome: str
    canonical_hash: str
    mean: np.ndarray
    std: np.ndarray | None
    p_fail: float
    origin: dict[str, Any]


@dataclass
class _Search:
    """State shared by one proposal run: the scorer, the excluded hashes, counters."""

    scorer: CandidateScorer
    excluded: set[str]
    spec: ProposeSpec
    np_rng: np.random.Generator
    candidates: int = 0
    invalid: int = 0
    duplicates: int = 0
    known: dict[str, _Candidate] = field(default_factory=dict)
    budget: int = 1
    progress: Callable[[float, str], None] | None = None
    stop: Callable[[], bool] | None = None

    def score(self, genomes: Sequence[str], origins: Sequence[dict[str, Any]],
              allow_excluded: bool = False,
              trees: Sequence[Any] | None = None) -> list[_Candidate | None]:
        """Score genomes in batches; one entry per genome, None when it failed or is excluded
        (or, unless ``allow_excluded``, already proposed)."""
        out: list[_Candidate | None] = []
        for start in range(0, len(genomes), SCORE_BATCH):
            chunk = list(genomes[start:start + SCORE_BATCH])
            if self.stop is not None and self.stop():
                raise SearchCancelled()
            scores: Scores = self.scorer.score(
                chunk, None if trees is None else list(trees[start:start + SCORE_BATCH]))
            self.candidates += len(chunk)
            if self.progress is not None:
                self.progress(min(0.99, self.candidates / self.budget),
                              f"scored {self.candidates} of ~{self.budget} candidates")
            for j, text in enumerate(chunk):
                digest = scores.hashes[j]
                if digest is None:
                    self.invalid += 1
                    out.append(None)
                    continue
                if not allow_excluded and (digest in self.excluded or digest in self.known):
                    self.duplicates += 1
                    out.append(None)
                    continue
                cand = _Candidate(text, digest, scores.mean[j],
                                  None if scores.std is None else scores.std[j],
                                  float(scores.p_fail[j]), origins[start + j])
                if not allow_excluded:
                    self.known[digest] = cand
                out.append(cand)
        return out


def fitness(cands: Sequence[_Candidate], metrics: Sequence[str], acquisition: str = "mean",
            rng: np.random.Generator | None = None) -> np.ndarray:
    """The evolution's fitness rows [n, 3] (clamped, failures worst) under an acquisition."""
    cols = [list(metrics).index(m) for m in OBJECTIVE_NAMES]
    weights = np.asarray(OBJECTIVE_WEIGHTS)
    out = np.empty((len(cands), len(cols)))
    for i, c in enumerate(cands):
        mean = c.mean[cols].astype(np.float64)
        std = None if c.std is None else np.nan_to_num(c.std[cols].astype(np.float64), nan=0.0)
        if acquisition == "ucb" and std is not None:
            mean = mean + weights * UCB_BETA * std
        elif acquisition == "thompson" and std is not None:
            assert rng is not None
            mean = rng.normal(mean, np.maximum(std, 0.0))
        mean = np.clip(np.nan_to_num(mean, nan=FITNESS_CLAMP * -weights), -FITNESS_CLAMP,
                       FITNESS_CLAMP)
        out[i] = -weights * FITNESS_CLAMP if c.p_fail >= FAIL_THRESHOLD else mean
    return out


def _nsga2(cands: Sequence[_Candidate], k: int, metrics: Sequence[str],
           acquisition: str = "mean", rng: np.random.Generator | None = None
           ) -> list[_Candidate]:
    """DEAP ``selNSGA2`` order on the (acquired) fitness: whole fronts, then crowding."""
    if not cands or k <= 0:
        return []
    chosen = select_nsga2(fitness(cands, metrics, acquisition, rng), min(k, len(cands)))
    return [cands[i] for i in chosen]


def _parents(search: _Search, cands: list[_Candidate]) -> list[_Candidate]:
    k = search.spec.parents_k
    return cands if len(cands) == k else _nsga2(cands, k, search.scorer.metrics)


def _pool_of(cands: Sequence[_Candidate]) -> list[tuple[Any, str]]:
    return [(to_tree(c.genome), c.canonical_hash) for c in cands]


def _brood(search: _Search, parents: list[_Candidate], rng: random.Random,
           seen: set[str]) -> list[_Candidate]:
    """One SSI brood of ``pool_size`` scored, new, valid children of ``parents``."""
    kept: list[_Candidate] = []

    def admit(batch: list[Offspring]) -> list[bool]:
        # No trees: the scorer parses a string only when it is not cached (ml.genome.load).
        scored = search.score([o.genome for o in batch],
                              [{"op": o.op, "parents": list(o.parents)} for o in batch])
        kept.extend(c for c in scored if c is not None)
        return [c is not None for c in scored]

    overpopulate(_pool_of(parents), search.spec.pool_size, rng, seen, admit,
                 batch=SCORE_BATCH)
    return kept[:search.spec.pool_size]


def _population(search: _Search) -> list[_Candidate]:
    """The population, scored (excluded from proposals, but the parents' source)."""
    origins = [{"op": "population", "parents": []}] * len(search.spec.population)
    scored = search.score(search.spec.population, origins, allow_excluded=True)
    return [c for c in scored if c is not None]


def _ssi(search: _Search, population: list[_Candidate], rng: random.Random,
         seen: set[str]) -> list[_Candidate]:
    current = population
    if len(current) < 2:
        raise SearchError("POPULATION_TOO_SMALL", "ssi needs at least 2 valid genomes in "
                          "population", valid=len(current))
    for _ in range(search.spec.inner_generations):
        current = _brood(search, _parents(search, current), rng, seen)
        if len(current) < 2:        # nothing new left to breed from these parents
            break
    return _nsga2(current, search.spec.resolved_k(), search.scorer.metrics,
                  search.spec.acquisition, search.np_rng)


def _neural_predictor(search: _Search, population: list[_Candidate], rng: random.Random,
                      seen: set[str]) -> list[_Candidate]:
    spec = search.spec
    pset = primitive_set()
    pool: list[_Candidate] = []
    draws = 0
    max_draws = 50 * spec.pool_size + 1000
    while len(pool) < spec.pool_size and draws < max_draws:
        need = min(SCORE_BATCH, spec.pool_size - len(pool))
        batch: list[tuple[str, Any]] = []
        with seeded(rng):
            while len(batch) < need and draws < max_draws:
                draws += 1
                # The evolution's generator: DEAP's ramped half-and-half on its typed set.
                tree = gp.PrimitiveTree(gp.genHalfAndHalf(pset, min_=GEN_MIN, max_=GEN_MAX))
                text, parsed = to_genome(tree)
                if text in seen:
                    search.duplicates += 1
                    continue
                seen.add(text)
                batch.append((text, parsed))
        scored = search.score([t for t, _ in batch],
                              [{"op": "genHalfAndHalf", "parents": []}] * len(batch),
                              trees=[p for _, p in batch])
        pool.extend(c for c in scored if c is not None)
    # The population joins the selection (its members shape the fronts and the crowding the
    # new genomes are chosen by) but is never proposed.
    population = [c for c in population if c.p_fail < FAIL_THRESHOLD]
    alive = [c for c in pool if c.p_fail < FAIL_THRESHOLD] + population
    ranked = _nsga2(alive, spec.resolved_k() + len(population), search.scorer.metrics,
                    spec.acquisition, search.np_rng)
    return [c for c in ranked if c.canonical_hash not in search.excluded][:spec.resolved_k()]


def _mutate(search: _Search, population: list[_Candidate], rng: random.Random,
            seen: set[str]) -> list[_Candidate]:
    spec = search.spec
    current = population
    if not current:
        raise SearchError("POPULATION_TOO_SMALL", "mutate needs at least 1 valid genome in "
                          "population", valid=0)
    best = _nsga2(current, spec.parents_k, search.scorer.metrics)
    trees = _pool_of(best)
    names = [name for name, _ in MUTATIONS]
    odds = [p for _, p in MUTATIONS]
    children: list[_Candidate] = []
    attempts, max_attempts = 0, 50 * spec.pool_size + 1000
    while len(children) < spec.pool_size and attempts < max_attempts:
        batch: list[Offspring] = []
        with seeded(rng):
            while len(batch) < SCORE_BATCH and attempts < max_attempts:
                attempts += 1
                tree, parent = trees[rng.randrange(len(trees))]
                mutant = tree.__class__(list(tree))
                name = rng.choices(names, weights=odds)[0]
                try:
                    _mutation(name, mutant)
                except Exception:
                    continue
                text = print_tree(mutant)
                if text in seen:
                    search.duplicates += 1
                    continue
                seen.add(text)
                batch.append(Offspring(text, name, (parent,), mutant))
        scored = search.score([o.genome for o in batch],
                              [{"op": o.op, "parents": list(o.parents)} for o in batch])
        children.extend(c for c in scored if c is not None)
    children = children[:spec.pool_size]
    alive = [c for c in children if c.p_fail < FAIL_THRESHOLD] or children
    return _nsga2(alive, spec.resolved_k(), search.scorer.metrics, spec.acquisition,
                  search.np_rng)


#: Each strategy of ``ml.search.spec.STRATEGIES`` by its name.
RUNS: dict[str, Callable[[_Search, list[_Candidate], random.Random, set[str]],
                         list[_Candidate]]] = {
    "ssi": _ssi, "neural_predictor": _neural_predictor, "mutate": _mutate}
if set(RUNS) != set(STRATEGIES):  # a strategy named in the contract has no run, or the reverse
    raise ImportError(f"strategies {sorted(RUNS)} != ml.search.spec.STRATEGIES {STRATEGIES}")


def validate_spec(spec: ProposeSpec, metrics: Sequence[str]) -> None:
    """Raise :class:`SearchError` for a request no strategy can run."""
    if spec.strategy not in STRATEGIES:
        raise SearchError("INVALID_REQUEST", f"strategy must be one of {STRATEGIES}",
                          field="strategy")
    if spec.acquisition not in ACQUISITIONS:
        raise SearchError("INVALID_REQUEST", f"acquisition must be one of {ACQUISITIONS}",
                          field="acquisition")
    missing = [m for m in OBJECTIVE_NAMES if m not in metrics]
    if missing:
        raise SearchError("UNKNOWN_METRIC", "proposals rank on the evolution's objectives; the "
                          f"model does not predict {missing}", metrics=list(metrics))
    if spec.strategy in ("ssi", "mutate") and not spec.population:
        raise SearchError("INVALID_REQUEST", f"strategy {spec.strategy!r} starts from "
                          "population; send at least two genomes", field="population")


def propose(scorer: CandidateScorer, spec: ProposeSpec, training_hashes: Sequence[str] = (),
            progress: Callable[[float, str], None] | None = None,
            stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run one proposal. Returns ``{"items": [...], "stats": {...}}``; the items are in rank
    order and carry ``genome, canonical_hash, predictions, std, p_fail, rank, origin``.
    ``progress(fraction, message)`` hears about every scored batch; ``stop()`` returning True
    ends the search with :class:`SearchCancelled`."""
    from ml.genome import canonical_hash, load

    validate_spec(spec, scorer.metrics)
    started = time.perf_counter()
    excluded = set(training_hashes)
    for i, text in enumerate(spec.exclude):
        if stop is not None and i % 256 == 0 and stop():
            raise SearchCancelled()
        try:
            excluded.add(canonical_hash(load(text)))
        except GenomeError:
            continue
    rng = random.Random(spec.seed)
    search = _Search(scorer, excluded, spec, np.random.default_rng(spec.seed),
                     budget=max(1, planned_candidates(spec)), progress=progress, stop=stop)
    # The population is scored once: its predictions rank parents, its hashes are excluded.
    population = _population(search)
    excluded.update(c.canonical_hash for c in population)
    seen = set(spec.population) | set(spec.exclude)
    chosen = RUNS[spec.strategy](search, population, rng, seen)
    metrics = list(scorer.metrics)
    items = []
    for rank, c in enumerate(chosen, start=1):
        items.append({
            "genome": c.genome, "canonical_hash": c.canonical_hash,
            "predictions": {m: _finite(c.mean[j]) for j, m in enumerate(metrics)},
            "std": None if c.std is None else {m: _finite(c.std[j])
                                               for j, m in enumerate(metrics)},
            "p_fail": _finite(c.p_fail), "rank": rank, "origin": c.origin})
    return {"items": items, "stats": {
        "candidates": search.candidates, "invalid_offspring": search.invalid,
        "duplicates": search.duplicates, "seconds": round(time.perf_counter() - started, 3)}}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
