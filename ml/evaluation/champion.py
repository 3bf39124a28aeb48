"""Champion / challenger: is a new training recipe not worse than the serving one, judged the way
the evolution judges a surrogate (the generation-forward protocol, same records, same splits)?

The rule, in order:

1. **Trust first.** ``d_trust`` = per scored generation, the challenger's SPEA2 top-30 % overlap
   minus the champion's. The challenger is worse when the mean of ``d_trust`` is below
   ``-margin_trust``.
2. **Then tau on the objectives.** ``d_tau`` = per generation, the mean over the three objectives
   of the challenger's Kendall tau-b minus the champion's; worse when its mean is below
   ``-margin_tau``.

It is promoted when it is worse on neither. An undefined tau (constant predictions) counts as 0,
an undefined overlap (too few non-failed genomes in a generation) is left out of the mean.

The margins come from the spread of the paired differences: one standard error of their mean
(``std / sqrt(generations)``), so a difference the generations themselves cannot tell from noise
never blocks or forces a promotion. With a single scored generation there is no spread, and the
floors apply. The floors are the measurement's resolution: on ~20 genomes a generation, SPEA2
keeps ~5 of them and the overlap moves in steps of ~0.2 (floor 0.05, a quarter step), and one
swapped pair moves tau by ~0.01 (floor 0.02).

Identical recipes (same predictor and hyper-parameters) score identically on the same splits, so
they are evaluated once and the challenger (more data, same recipe) is promoted: a tie is not
worse.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from torch_geometric.data import Data

from ml.evaluation.protocols import generation_forward, generations_of
from ml.evaluation.selection import OBJECTIVE_NAMES
from ml.jsonsafe import json_safe

TRUST_FLOOR = 0.05
TAU_FLOOR = 0.02


def _margin(differences: Sequence[float], floor: float) -> float:
    d = np.asarray([x for x in differences if math.isfinite(x)], dtype=np.float64)
    if d.size < 2:
        return floor
    return max(floor, float(d.std(ddof=1) / math.sqrt(d.size)))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else 0.0


def _objective_tau(row: dict[str, Any], metrics: Sequence[str]) -> float:
    """Mean tau-b over the objectives; an undefined tau (constant predictions: no ranking at
    all) counts as 0, so a model that cannot rank is worse, not unjudged."""
    taus = [row["per_metric"][m]["kendall_tau_b"] for m in OBJECTIVE_NAMES if m in metrics]
    taus = [t if t is not None and math.isfinite(t) else 0.0 for t in taus]
    return float(np.mean(taus)) if taus else 0.0


def _side(result: dict[str, Any], recipe: dict[str, Any], metrics: Sequence[str]
          ) -> dict[str, Any]:
    return {"recipe": recipe,
            "per_generation": [{"generation": r["generation"],
                                "trust_spea2_top30": r["trust_spea2_top30"],
                                "trust_nsga2_top30": r["trust_nsga2_top30"],
                                "objective_tau": _objective_tau(r, metrics)}
                               for r in result["generations"]],
            "summary": {k: v["mean"] for k, v in result["summary"].items()}}


def compare_recipes(records: Sequence[Data], metrics: Sequence[str],
                    challenger: dict[str, Any], champion: dict[str, Any] | None,
                    generations: int = 5) -> dict[str, Any]:
    """Both recipes (``{"predictor", "hyperparameters"}``) through the generation-forward
    protocol on ``records``; returns both sides, the rule with its margins and the decision
    (``promoted``). No champion: promoted. Fewer than two generations: not promoted over a
    champion (nothing to judge on)."""
    metrics = tuple(metrics)
    base = {"rule": __doc__.split("The rule, in order:")[1].strip().split("\n\n")[0],
            "generations_requested": generations}
    if champion is None:
        return json_safe({**base, "promoted": True, "reason": "no champion: the first version "
                          "of this name", "challenger": {"recipe": challenger}})
    if len(generations_of(records)) < 2:
        return json_safe({**base, "promoted": False, "reason": "the dataset has fewer than two "
                          "generations: nothing to judge the challenger on",
                          "challenger": {"recipe": challenger}, "champion": {"recipe": champion}})

    def run(recipe: dict[str, Any]) -> dict[str, Any]:
        return generation_forward(records, recipe["predictor"], metrics,
                                  config=recipe.get("hyperparameters") or {},
                                  generations=generations, evolution_split=False)

    same = (challenger["predictor"], challenger.get("hyperparameters") or {}) == \
        (champion["predictor"], champion.get("hyperparameters") or {})
    ch_result = run(challenger)
    champ_result = ch_result if same else run(champion)
    ch, champ = _side(ch_result, challenger, metrics), _side(champ_result, champion, metrics)
    pairs = list(zip(ch["per_generation"], champ["per_generation"]))
    d_trust = [a["trust_spea2_top30"] - b["trust_spea2_top30"] for a, b in pairs]
    d_tau = [a["objective_tau"] - b["objective_tau"] for a, b in pairs]
    m_trust, m_tau = _margin(d_trust, TRUST_FLOOR), _margin(d_tau, TAU_FLOOR)
    mean_trust = _mean(d_trust)
    mean_tau = _mean(d_tau)
    worse_trust = mean_trust < -m_trust
    worse_tau = mean_tau < -m_tau
    promoted = not worse_trust and not worse_tau
    reason = ("same recipe: a tie is not worse" if same else
              "worse on trust" if worse_trust else "worse on tau" if worse_tau else
              "not worse on trust or tau")
    return json_safe({**base, "promoted": promoted, "reason": reason, "same_recipe": same,
                      "challenger": ch, "champion": champ,
                      "differences": {"trust_spea2_top30": {"per_generation": d_trust,
                                                            "mean": mean_trust,
                                                            "margin": m_trust},
                                      "objective_tau": {"per_generation": d_tau,
                                                        "mean": mean_tau, "margin": m_tau}}})
