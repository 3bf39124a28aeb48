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
    metrics: Sequence[str]

    def score(self, genomes: Sequence[str]) -> Scores: ...


class BundleScorer:
    """Encode with :class:`ml.encoding.encoder.GenomeEncoder` and predict with a loaded model,
    item by item safe (a prediction that raises fails its genome only)."""

    def __init__(self, model: Any, max_length: int | None = None) -> None:
        from ml.encoding.encoder import GenomeEncoder

        self.model = model
        self.metrics = list(model.metrics)
        self.encoder = GenomeEncoder(max_length=max_length) if max_length else GenomeEncoder()

    def score(self, genomes: Sequence[str]) -> Scores:
        from ml.inference import predict_chunk

        n, m = len(genomes), len(self.metrics)
        hashes: list[str | None] = [None] * n
        errors: list[dict[str, Any] | None] = [None] * n
        records, positions = [], []
        for i, text in enumerate(genomes):
            try:
                data = self.encoder.encode(text).to_data("combined")
            except GenomeError as exc:
                errors[i] = exc.to_dict()
                continue
            records.append(data)
            positions.append(i)
        mean, p_fail = np.full((n, m), np.nan), np.ones(n)
        std: np.ndarray | None = np.full((n, m), np.nan)
        if records:
            result = predict_chunk(self.model, records, rows=False)
            for j, error in result.failed.items():
                errors[positions[j]] = error
            for r, j in enumerate(result.kept):
                i = positions[j]
                hashes[i] = records[j].canonical_hash
                mean[i], p_fail[i] = result.mean[r], result.p_fail[r]
                if result.std is not None and std is not None:
                    std[i] = result.std[r]
            if result.std is None and result.kept:
                std = None
        return Scores(hashes, errors, mean, std, p_fail)
