"""cls_trust / reg_trust with the evolution's own protocol (ml.evaluation.pipeline_trust)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from ml.evaluation import pipeline_trust as pt
from ml.evaluation import protocols
from ml.models.base import Prediction

METRICS = ("uw_val_epoch_loss", "ciou_loss", "average_precision")


def _records(generations: int, per_generation: int = 12, seed: int = 0) -> list[Data]:
    rng = np.random.default_rng(seed)
    out = []
    for g in range(1, generations + 1):
        for i in range(per_generation):
            y = rng.normal(size=3)
            out.append(Data(y=torch.tensor([y.tolist()], dtype=torch.float32),
                            failed=torch.tensor([1.0 if i % 5 == 0 else 0.0]),
                            generation=torch.tensor(float(g)), canonical_hash=f"{g}-{i}"))
    return out


class _Oracle:
    """Predicts the truth (``flip``: the failure flag inverted, objectives negated)."""

    def __init__(self, flip: bool) -> None:
        self.flip = flip

    def fit(self, *args, **kwargs):
        return {}

    def predict(self, records):
        y = np.concatenate([r.y.numpy() for r in records]).astype(np.float64)
        failed = np.array([float(r.failed) for r in records])
        if self.flip:
            return Prediction(-y, None, 1.0 - failed)
        return Prediction(y, None, failed)


@pytest.mark.parametrize("n, train_gens, val_gens", [
    (9, [1, 2, 3, 4], [5, 6, 7, 8, 9]),   # "gen >= 7": all but the last 5 / the last 5
    (6, [1], [2, 3, 4, 5, 6]),
    (3, [1], [2, 3]),                      # "gens 3-6": gen 1 / 2..g-1
])
def test_split_is_the_pipelines(n, train_gens, val_gens) -> None:
    train, val, split = pt.pipeline_split(_records(n))
    assert split["train_generations"] == train_gens
    assert split["validation_generations"] == val_gens
    assert {float(r.generation) for r in train} == set(map(float, train_gens))
    assert {float(r.generation) for r in val} == set(map(float, val_gens))


def test_one_generation_splits_80_20_by_genome() -> None:
    train, val, _ = pt.pipeline_split(_records(1, per_generation=20))
    assert len(val) == 4 and len(train) == 16
    assert not {r.canonical_hash for r in train} & {r.canonical_hash for r in val}


def test_trusts_of_a_perfect_and_an_inverted_model(monkeypatch) -> None:
    records = _records(8)
    for flip, expected in ((False, 1.0), (True, 0.0)):
        monkeypatch.setattr(protocols, "make_factory",
                            lambda *a, flip=flip, **k: (lambda seed: _Oracle(flip)))
        out = pt.pipeline_trust(records, "any", METRICS)
        assert out["cls_trust"] == expected
        assert out["n_validation"] == 5 * 12 and out["validation_generations"] == [4, 5, 6, 7, 8]
        if not flip:
            assert out["reg_trust"] == 1.0
        else:
            assert 0.0 <= out["reg_trust"] < 1.0
