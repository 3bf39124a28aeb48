"""Genome identities: the evolution's ``individual_hash`` and our portable canonical hash."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ml.errors import isolated
from ml.genome.model import EvaluatedGenome


@isolated("hashing")
def individual_hash(genome: EvaluatedGenome) -> str:
    """``shake_256(str(layer_list)).hexdigest(5)`` exactly as the evolution computed it.

    It depends on the platform's ``math.exp`` in the last ulp (CosineAnnealingLR's
    ``eta_min``), so a few genomes hash differently across libm implementations.
    """
    return hashlib.shake_256(str(genome.codec_layer_list).encode()).hexdigest(5)


def canonical_form(genome: EvaluatedGenome) -> dict[str, Any]:
    """The evaluated genome as plain JSON data: equal architectures+training genes, equal form."""
    return {
        "layers": [[layer.name, *layer.args] for layer in genome.layers],
        "head": genome.head,
        "optimizer": genome.optimizer,
        "scheduler": genome.scheduler,
        "loss_weights": list(genome.loss_weights),
    }


@isolated("hashing")
def canonical_json(genome: EvaluatedGenome) -> str:
    """Deterministic JSON (floats as Python's shortest round-trip repr, portable across hosts)."""
    return json.dumps(canonical_form(genome), separators=(",", ":"), allow_nan=False)


def canonical_hash(genome: EvaluatedGenome) -> str:
    """SHA-256 of :func:`canonical_json`, hex; the dataset and cache key of a genome."""
    return hashlib.sha256(canonical_json(genome).encode()).hexdigest()
