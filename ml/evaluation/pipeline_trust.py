"""``cls_trust`` and ``reg_trust`` measured as the evolution measures them,
so the drop-in ``ServiceSurrogate`` hands the pipeline the figures its downselect expects.

The evolution splits its data by generation each time it prepares its surrogate: with the
generations 1..n evaluated, it trains on all but the last 5 and validates on the last 5 (n >= 6:
"gen >= 7"), trains on generation 1 and validates on 2..n (n = 2..5: "gens 3-6"), or splits
generation 1 80/20 (n = 1: "gen 2"). On the validation individuals (deduplicated by genome):

* ``cls_trust`` = the accuracy of the failure classification (predicted P(fail) >= 0.5 vs the
  record's failure);
* ``reg_trust`` = |SPEA2(true) ∩ SPEA2(predicted)| / |SPEA2(true)| with k = 0.3·n on the
  non-failed individuals' three objectives (``ml.evaluation.selection``).

One difference, said where the figures are shown: the evolution's regression rows are
(individual, epoch) pairs deduplicated by hash; a dataset record is one individual's kept epoch.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch_geometric.data import Data

from ml.datasets.splits import groups
from ml.evaluation.protocols import generations_of, score_split
from ml.jsonsafe import json_safe
from ml.ranking import FAIL_THRESHOLD

#: The evolution validates on this many most recent generations.
VALIDATION_GENERATIONS = 5


def pipeline_split(records: Sequence[Data], seed: int = 0
                   ) -> tuple[list[Data], list[Data], dict[str, Any]]:
    """(train, validation, description) as the evolution splits its data (module docstring).
    Records without a generation take part in no split."""
    gens = generations_of(records)
    if not gens:
        raise ValueError("no record has a generation: the pipeline's protocol splits by them")
    if len(gens) == 1:
        key_of = groups(records)
        keys = sorted(set(key_of))
        random.Random(seed).shuffle(keys)
        val_keys = set(keys[:max(1, round(0.2 * len(keys)))])
        train = [r for r, k in zip(records, key_of) if k not in val_keys]
        val = [r for r, k in zip(records, key_of) if k in val_keys]
        return train, val, {"rule": "one generation: 80/20 by genome",
                            "train_generations": gens, "validation_generations": gens}
    cut = gens[max(1, len(gens) - VALIDATION_GENERATIONS)]
    train = [r for r in records if float(r.generation) < cut]
    val = [r for r in records if math.isfinite(float(r.generation))
           and float(r.generation) >= cut]
    rule = "all but the last 5 generations / the last 5" if len(gens) > 5 else \
        "the first generation / the later ones"
    return train, val, {"rule": rule, "train_generations": [g for g in gens if g < cut],
                        "validation_generations": [g for g in gens if g >= cut]}


def pipeline_trust(records: Sequence[Data], model: str, metrics: Sequence[str],
                   config: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    """Fit ``model`` (a catalog name with ``config``) on the pipeline's training split and
    measure ``cls_trust`` / ``reg_trust`` on its validation split; both in [0, 1] (0 where the
    validation split cannot define one: the evolution then trusts nothing)."""
    train, val, split = pipeline_split(records, seed)
    if not train or not val:
        raise ValueError("the pipeline's split leaves an empty side")
    scores = score_split(train, val, model, tuple(metrics), config, seed)
    failed = np.asarray(scores["failed"]).reshape(-1)
    p_fail = np.asarray(scores["prediction"].p_fail, np.float64).reshape(-1)
    first: dict[str, int] = {}
    for i, key in enumerate(groups(val)):
        first.setdefault(key, i)
    rows = np.asarray(sorted(first.values()), dtype=np.int64)
    predicted = np.nan_to_num(p_fail[rows], nan=0.0) >= FAIL_THRESHOLD
    cls_trust = float((predicted == (failed[rows] == 1)).mean())
    reg = scores["trust_spea2_top30"]
    reg_trust = float(reg) if reg is not None and math.isfinite(reg) else 0.0
    return json_safe({"cls_trust": cls_trust, "reg_trust": reg_trust,
                      "reg_trust_defined": reg is not None and math.isfinite(reg),
                      "protocol": "surrogate-usage §3-4 (pipeline.prepare_surrogate)", **split,
                      "n_train": len(train), "n_validation": len(rows),
                      "n_validation_failed": int((failed[rows] == 1).sum()),
                      "fit_seconds": round(float(scores["fit_seconds"]), 3)})
