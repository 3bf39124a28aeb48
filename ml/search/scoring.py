"""What a search needs from a model: scores for a batch of genome strings.

The search never encodes or predicts itself; it asks a :class:`CandidateScorer`. Both scorers
here go through the one engine (:mod:`ml.inference`): the service passes an
:class:`EngineScorer` over its shared engine and the served model; the CLI and the ``propose``
job use :class:`BundleScorer` over a model bundle. Either way a genome that does not parse,
validate or compile comes back with its error and no prediction: it fails alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ml.genome.tree import Call


@dataclass
class Scores:
    """Per genome: canonical hash (None when it failed) and error dict (None when it did not);
    arrays [n, M] / [n] with NaN rows for the failed ones. ``std`` is None when the model gives
    none."""

    hashes: list[str | None]
    errors: list[dict[str, Any] | None]
    mean: np.ndarray
    std: np.ndarray | None
    p_fail: np.ndarray


class CandidateScorer(Protocol):
    """``trees``, when given, holds for each genome the tree ``parse`` would make of it (or
    None): the search builds its offspring's trees while printing them."""

    metrics: Sequence[str]

    def score(self, genomes: Sequence[str],
              trees: Sequence[Call | None] | None = None) -> Scores: ...


class EngineScorer:
    """The search's view of a model behind an :class:`ml.inference.Engine`: candidates go
    through the engine's caches, chunking and ``budget`` (one for the whole search) as any
    other batch. The service's scorer is one over its shared engine."""

    def __init__(self, engine: Any, model: Any, budget: Any = None) -> None:
        self.engine, self.model = engine, model
        self.budget = budget if budget is not None else engine.budget()
        self.metrics = list(model.metrics)

    def score(self, genomes: Sequence[str],
              trees: Sequence[Call | None] | None = None) -> Scores:
        scored = self.engine.evaluate(list(genomes), self.model, self.budget, trees)
        return Scores(scored.hashes, scored.errors, scored.mean,
                      scored.std if scored.has_std else None, scored.p_fail)


class BundleScorer(EngineScorer):
    """A model loaded from a bundle, scored through a private engine (no encoder processes,
    no budget). Predictions are also kept by canonical hash, so a genome met again in any
    spelling is not predicted twice (a search meets the same genomes generation after
    generation)."""

    def __init__(self, model: Any, max_length: int | None = None) -> None:
        from ml.inference import Engine, EngineConfig

        super().__init__(Engine(EngineConfig(max_genome_length=max_length)), model)
        self._known: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = {}

    def score(self, genomes: Sequence[str],
              trees: Sequence[Call | None] | None = None) -> Scores:
        n, m = len(genomes), len(self.metrics)
        hashes: list[str | None] = [None] * n
        errors: list[dict[str, Any] | None] = [None] * n
        mean, p_fail = np.full((n, m), np.nan), np.ones(n)
        std = np.full((n, m), np.nan)
        has_std = True
        todo: list[int] = []
        for i, text in enumerate(genomes):
            seen = self.engine.cache.identify(text)
            known = None if seen is None or seen.error is not None else \
                self._known.get(seen.canonical_hash)
            if seen is not None and seen.error is not None:
                errors[i] = seen.error
            elif known is not None:
                hashes[i] = seen.canonical_hash
                mean[i], p_fail[i] = known[0], known[2]
                if known[1] is None:
                    has_std = False
                else:
                    std[i] = known[1]
            else:
                todo.append(i)
        if todo:
            scored = super().score([genomes[i] for i in todo],
                                   None if trees is None else [trees[i] for i in todo])
            for r, i in enumerate(todo):
                hashes[i], errors[i] = scored.hashes[r], scored.errors[r]
                if errors[i] is not None:
                    continue
                mean[i], p_fail[i] = scored.mean[r], scored.p_fail[r]
                row_std = None if scored.std is None else scored.std[r]
                if row_std is None:
                    has_std = False
                else:
                    std[i] = row_std
                self._known.setdefault(hashes[i], (mean[i].copy(), None if row_std is None
                                                   else std[i].copy(), float(p_fail[i])))
        return Scores(hashes, errors, mean, std if has_std else None, p_fail)
