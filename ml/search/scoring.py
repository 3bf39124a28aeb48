"""What a search needs from a model: scores for a batch of genome strings.

The search never encodes or predicts itself; it asks a :class:`CandidateScorer`. The service
passes one backed by its encoding cache and the served model; the CLI and the ``propose`` job
use :class:`BundleScorer` over a model bundle. Either way a genome that does not parse, validate
or compile comes back with its error and no prediction: it fails alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from ml.errors import GenomeError
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


class BundleScorer:
    """Encode with :class:`ml.encoding.encoder.GenomeEncoder` and predict with a loaded model,
    item by item safe (a prediction that raises fails its genome only). Predictions are kept
    by canonical hash, so a genome met again under another spelling is not encoded twice."""

    def __init__(self, model: Any, max_length: int | None = None) -> None:
        from ml.encoding.encoder import GenomeEncoder

        self.model = model
        self.metrics = list(model.metrics)
        self.encoder = GenomeEncoder(max_length=max_length) if max_length else GenomeEncoder()
        self._known: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = {}

    def score(self, genomes: Sequence[str],
              trees: Sequence[Call | None] | None = None) -> Scores:
        from ml.genome import canonical_hash, load
        from ml.inference import predict_chunk

        n, m = len(genomes), len(self.metrics)
        hashes: list[str | None] = [None] * n
        errors: list[dict[str, Any] | None] = [None] * n
        mean, p_fail = np.full((n, m), np.nan), np.ones(n)
        std = np.full((n, m), np.nan)
        has_std = True
        records, positions, digests = [], [], []
        for i, text in enumerate(genomes):
            try:
                genome = load(text, max_length=self.encoder.max_length,
                              tree=trees[i] if trees is not None else None)
                digest = canonical_hash(genome)
                known = self._known.get(digest)
                if known is not None:
                    hashes[i] = digest
                    mean[i], p_fail[i] = known[0], known[2]
                    if known[1] is None:
                        has_std = False
                    else:
                        std[i] = known[1]
                    continue
                try:
                    encoded = self.encoder.encode_genome(genome, text)
                    data = encoded.to_data("combined", layer_segments=encoded.layer_segments)
                except GenomeError as exc:
                    raise exc.with_text(text) from None
            except GenomeError as exc:
                errors[i] = exc.to_dict()
                continue
            records.append(data)
            positions.append(i)
            digests.append(digest)
        if records:
            result = predict_chunk(self.model, records, rows=False)
            for j, error in result.failed.items():
                errors[positions[j]] = error
            has_std &= result.std is not None or not result.kept
            for r, j in enumerate(result.kept):
                i = positions[j]
                hashes[i] = digests[j]
                mean[i], p_fail[i] = result.mean[r], result.p_fail[r]
                row_std = None if result.std is None else result.std[r]
                if row_std is not None:
                    std[i] = row_std
                self._known[digests[j]] = (mean[i].copy(), None if row_std is None
                                           else std[i].copy(), float(p_fail[i]))
        return Scores(hashes, errors, mean, std if has_std else None, p_fail)
