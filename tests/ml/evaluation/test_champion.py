"""The champion/challenger rule (ml.evaluation.champion): promotion only on evidence. On crafted
per-generation differences; on the real genomes, the same recipe on the same records is a tie,
and a tie keeps the champion; through the real protocol with scripted predictors, a challenger
measured better on the champion's held-out generations is promoted, and nothing held out
reaches a fit."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ml.evaluation.champion import TAU_FLOOR, TRUST_FLOOR, compare_recipes, decide
from tests.conftest import train_rows


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    """The real genomes of generations 1-3."""
    from ml.datasets.records import load_csv

    rows = [r for r in train_rows() if float(r["generation"]) <= 3]
    path = Path(tmp_path_factory.mktemp("champion")) / "g123.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return load_csv(path)[0]


@pytest.mark.parametrize("d_trust, d_tau, promoted, reason", [
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], False, "a tie"),               # identical: keep
    ([0.01, -0.01, 0.02], [0.005, 0.01, 0.0], False, "a tie"),        # within the floors
    ([0.2, 0.25, 0.2], [0.0, 0.01, 0.0], True, "better on trust"),
    ([0.0, 0.0, 0.0], [0.1, 0.12, 0.09], True, "better on tau"),
    ([0.3, 0.3, 0.3], [-0.2, -0.2, -0.2], False, "worse on tau"),     # never worse on either
    ([-0.3, -0.2, -0.3], [0.2, 0.2, 0.2], False, "worse on trust"),
    ([0.6, -0.5, 0.5, -0.4], [0.0] * 4, False, "a tie"),              # noisy: SE > mean
])
def test_the_rule_on_crafted_differences(d_trust, d_tau, promoted, reason):
    verdict = decide(d_trust, d_tau)
    assert verdict["promoted"] is promoted and verdict["reason"].startswith(reason)
    diff = verdict["differences"]
    assert diff["trust_spea2_top30"]["margin"] >= TRUST_FLOOR
    assert diff["objective_tau"]["margin"] >= TAU_FLOOR
    assert diff["trust_spea2_top30"]["per_generation"] == d_trust


METRICS = ("uw_val_epoch_loss", "ciou_loss", "average_precision", "iou_loss", "giou_loss")


def test_the_same_recipe_on_the_same_records_is_a_tie_and_keeps_the_champion(records):
    trees = {"predictor": "trees", "hyperparameters": {"n_estimators": 20}}
    tie = compare_recipes(records, METRICS, trees, dict(trees), generations=2)
    assert not tie["promoted"] and tie["reason"].startswith("a tie") and tie["same_recipe"]
    assert tie["differences"]["objective_tau"]["per_generation"] == [0.0, 0.0]
    assert tie["held_out"]["data"].startswith("the challenger's records")
    assert tie["held_out"]["generations"] == [2.0, 3.0]


class _Scripted:
    """A predictor the test scripts: ``oracle`` predicts the measured values, ``reversed`` their
    negation; ``fit`` records what it trained on, so no held-out genome may reach it."""

    fits: list[tuple[str, set[str], set[float]]] = []

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, train, val, config, callbacks):
        self.trained = {r.canonical_hash for r in train}
        _Scripted.fits.append((self.kind, self.trained, {float(r.generation) for r in train}))
        return {}

    def predict(self, test):
        import numpy as np

        from ml.datasets.records import failed_flags, targets
        from ml.models.base import Prediction

        assert not ({r.canonical_hash for r in test} & self.trained), "a held-out genome leaked"
        y = np.nan_to_num(targets(test, len(METRICS)))
        return Prediction(y if self.kind == "oracle" else -y, None,
                          failed_flags(test).astype(float))


def test_measured_better_on_the_champions_held_out_data_is_promoted(records, monkeypatch):
    """Crafted sides through the real protocol: a challenger that predicts the held-out
    generation perfectly is promoted over one that ranks it backwards and never the reverse;
    each held-out generation comes from the champion's records and reaches no fit; the
    challenger's own extra records (not the champion's) train only the challenger."""
    from ml.evaluation import protocols

    monkeypatch.setattr(protocols, "make_factory",
                        lambda name, metrics, config=None: (lambda seed: _Scripted(name)))
    champion_data = [r for r in records if float(r.generation) <= 2]
    extra = [r for r in records if float(r.generation) == 3]
    _Scripted.fits = []
    better = compare_recipes(champion_data + extra, METRICS, {"predictor": "oracle"},
                             {"predictor": "reversed"}, generations=2,
                             champion_records=champion_data)
    assert better["promoted"] and better["reason"] == "better on trust"
    assert better["held_out"] == {"generations": [1.0, 2.0], "data": "the champion's records",
                                  "genomes": len(champion_data)}
    extra_hashes = {r.canonical_hash for r in extra} - {r.canonical_hash for r in champion_data}
    for kind, trained, generations in _Scripted.fits:
        assert len(generations & {1.0, 2.0}) == 1          # the other generation only
        assert bool(trained & extra_hashes) == (kind == "oracle")
    worse = compare_recipes(records, METRICS, {"predictor": "reversed"},
                            {"predictor": "oracle"}, generations=2,
                            champion_records=champion_data)
    assert not worse["promoted"] and worse["reason"].startswith("worse")
