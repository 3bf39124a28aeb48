"""Champion / challenger: is a new version measured better than the serving one, judged on
generations held out of the champion's own data?

The protocol: for each of the last ``generations`` generations g of the **champion's data** (the
records the serving version was trained on; the challenger's own when that is not known), that
generation is held out: the challenger's recipe is fitted on the challenger's records of every
other generation, the champion's recipe on the champion's records of every other generation
(both without any genome of g), and both are scored on the champion's records of g. The test
set is therefore data the champion was trusted on, never only the records that came with the
challenger: records invented to look good have to improve predictions of measured genomes.
Leaving a generation out (rather than the generation-forward split) is what lets a new
generation's records count at all: nothing later exists yet to score them against.

The rule, in order:

1. **Never worse.** ``d_trust`` = per scored generation, the challenger's SPEA2 top-30 % overlap
   minus the champion's; ``d_tau`` = the mean over the three objectives of the challenger's
   Kendall tau-b minus the champion's. Either mean below minus its margin: kept the champion.
2. **Measured better.** Promoted only when the mean of ``d_trust`` or of ``d_tau`` is above its
   margin. Otherwise it is a tie, and a tie keeps the champion.

An undefined tau (constant predictions) counts as 0, an undefined overlap (too few non-failed
genomes in a generation) is left out of the mean.

The margins come from the spread of the paired differences: one standard error of their mean
(``std / sqrt(generations)``), so a difference the generations themselves cannot tell from noise
never blocks or forces a promotion. With a single scored generation there is no spread, and the
floors apply. The floors are the measurement's resolution: on ~20 genomes a generation, SPEA2
keeps ~5 of them and the overlap moves in steps of ~0.2 (floor 0.05, a quarter step), and one
swapped pair moves tau by ~0.01 (floor 0.02).

The same recipe on the same records scores identically: that is evaluated once, and is a tie.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch_geometric.data import Data

from ml.evaluation.protocols import generation_summary, generations_of, score_split
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


def decide(d_trust: Sequence[float], d_tau: Sequence[float]) -> dict[str, Any]:
    """The rule on paired per-generation differences (challenger − champion): ``promoted`` only
    when measured better on trust or tau and worse on neither; a tie keeps the champion."""
    m_trust, m_tau = _margin(d_trust, TRUST_FLOOR), _margin(d_tau, TAU_FLOOR)
    mean_trust, mean_tau = _mean(d_trust), _mean(d_tau)
    worse_trust, worse_tau = mean_trust < -m_trust, mean_tau < -m_tau
    better_trust, better_tau = mean_trust > m_trust, mean_tau > m_tau
    if worse_trust or worse_tau:
        reason = "worse on trust" if worse_trust else "worse on tau"
    elif better_trust or better_tau:
        reason = "better on trust" if better_trust else "better on tau"
    else:
        reason = "a tie: not measured better on trust or tau, the champion stays"
    promoted = (better_trust or better_tau) and not (worse_trust or worse_tau)
    return {"promoted": bool(promoted), "reason": reason,
            "differences": {"trust_spea2_top30": {"per_generation": list(d_trust),
                                                  "mean": mean_trust, "margin": m_trust},
                            "objective_tau": {"per_generation": list(d_tau),
                                              "mean": mean_tau, "margin": m_tau}}}


def _held_out(records: Sequence[Data], champion_records: Sequence[Data], scored: list[float],
              recipe: dict[str, Any], champion_side: bool, metrics: tuple[str, ...]
              ) -> dict[str, Any]:
    """One side through the held-out generations: fitted on its own records of every other
    generation (no genome of the held-out one), scored on the champion's records of it."""
    rows = []
    for g in scored:
        test = [r for r in champion_records if float(r.generation) == g]
        held = {r.canonical_hash for r in test}
        pool = champion_records if champion_side else records
        train = [r for r in pool if float(r.generation) != g and r.canonical_hash not in held]
        rows.append({"generation": g, **score_split(
            train, test, recipe["predictor"], metrics, recipe.get("hyperparameters") or {}, 0)})
    return {"generations": rows, "summary": generation_summary(rows, metrics)}


def compare_recipes(records: Sequence[Data], metrics: Sequence[str],
                    challenger: dict[str, Any], champion: dict[str, Any] | None,
                    generations: int = 5,
                    champion_records: Sequence[Data] | None = None) -> dict[str, Any]:
    """The challenger (``{"predictor", "hyperparameters"}`` fitted on ``records``) against the
    champion (its recipe fitted on ``champion_records``, the data it was trained on; ``None``:
    ``records``) on held-out generations of the champion's data; returns both sides, the rule
    with its margins and the decision (``promoted``). No champion: promoted. The champion's
    data spanning fewer than two generations: not promoted (nothing to judge on)."""
    metrics = tuple(metrics)
    base = {"rule": __doc__.split("The rule, in order:")[1].strip().split("\n\n")[0],
            "protocol": "held-out generations of the champion's data",
            "generations_requested": generations}
    if champion is None:
        return json_safe({**base, "promoted": True, "reason": "no champion: the first version "
                          "of this name", "challenger": {"recipe": challenger}})
    own_data = champion_records is None
    held = list(records if champion_records is None else champion_records)
    gens = generations_of(held)
    if len(gens) < 2:
        return json_safe({**base, "promoted": False, "reason": "the champion's data has fewer "
                          "than two generations: nothing to judge the challenger on",
                          "challenger": {"recipe": challenger}, "champion": {"recipe": champion}})
    scored = gens[-generations:] if generations > 0 else gens
    same = (challenger["predictor"], challenger.get("hyperparameters") or {}) == \
        (champion["predictor"], champion.get("hyperparameters") or {})
    ch_result = _held_out(records, held, scored, challenger, False, metrics)
    champ_result = ch_result if same and own_data else \
        _held_out(records, held, scored, champion, True, metrics)
    ch, champ = _side(ch_result, challenger, metrics), _side(champ_result, champion, metrics)
    pairs = list(zip(ch["per_generation"], champ["per_generation"]))
    verdict = decide([a["trust_spea2_top30"] - b["trust_spea2_top30"] for a, b in pairs],
                     [a["objective_tau"] - b["objective_tau"] for a, b in pairs])
    return json_safe({**base, **verdict, "same_recipe": same,
                      "held_out": {"generations": scored,
                                   "data": "the challenger's records (the champion's are not "
                                           "known)" if own_data else "the champion's records",
                                   "genomes": sum(1 for r in held
                                                  if float(r.generation) in set(scored))},
                      "challenger": ch, "champion": champ})
