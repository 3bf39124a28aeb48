"""Whether a training's new version becomes active: the job's ``promote`` (``always`` |
``never`` | ``if_better``), the champion/challenger comparison ``if_better`` runs
(``ml.evaluation.champion.compare_recipes`` on the champion's data) and the promotion policy
(``auto`` | ``approve``). The comparison is recorded on the version."""
from __future__ import annotations

import logging
from typing import Any

from ml.jsonsafe import json_safe
from service.db import session_scope
from service.store import model_registry as registry
from service.tables import Dataset
from worker.context import JobContext
from worker.handlers.recipes import active_recipe, resolved

log = logging.getLogger(__name__)


def promotion_mode(params: dict[str, Any], has_champion: bool) -> str:
    """``promote`` as asked; unset: ``always`` with ``activate`` or for a name's first version,
    else ``never``."""
    asked = params.get("promote")
    if asked:
        return asked
    return "always" if params.get("activate") or not has_champion else "never"


def decide(ctx: JobContext, params: dict[str, Any], records: list[Any], name: str,
           source: dict[str, Any], model_name: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether the new version becomes active, and (``if_better``) the champion/challenger
    comparison that decided it, recorded on the version."""
    from ml.evaluation.champion import compare_recipes

    settings = ctx.settings
    with session_scope() as session:
        champion = active_recipe(session, model_name, settings) \
            if registry.alias_version(session, model_name) is not None else None
    mode = promotion_mode(params, champion is not None)
    if mode != "if_better":
        return mode == "always", None
    ctx.progress(None, "comparing with the champion on its held-out generations")
    recipes = {"challenger": {"predictor": name,
                              "hyperparameters": dict(params.get("hyperparameters") or {})},
               "champion": champion}
    # Fitted with the embedder files; recorded as asked (a pretrain job id, never a path).
    run_as = {side: None if r is None else {**r, "hyperparameters": resolved(r["hyperparameters"])}
              for side, r in recipes.items()}
    champion_records = None if champion is None else \
        _champion_records(model_name, champion.get("version"), tuple(source["metrics"]))
    comparison = compare_recipes(records, tuple(source["metrics"]), run_as["challenger"],
                                 run_as["champion"], settings.promote_generations,
                                 champion_records=champion_records)
    for side, recipe in recipes.items():
        if recipe is not None and isinstance(comparison.get(side), dict):
            comparison[side]["recipe"] = json_safe(recipe)
    if champion is None:  # the first version of a name serves: nothing else could
        return bool(comparison["promoted"]), comparison
    comparison["champion"]["version"] = champion.get("version")
    return apply_policy(comparison, settings.promotion_policy), comparison


def apply_policy(comparison: dict[str, Any], policy: str) -> bool:
    """The promotion policy on the measured rule's decision, recorded on the comparison:
    ``auto`` follows it; ``approve`` turns a promotion into a recommendation that waits for an
    admin (``awaiting_approval``; the dashboard's approve form activates it). Returns whether
    the version becomes active now."""
    recommended = bool(comparison["promoted"])
    waiting = recommended and policy == "approve"
    comparison.update(policy=policy, recommended=recommended, awaiting_approval=waiting,
                      promoted=recommended and not waiting)
    return bool(comparison["promoted"])


def _champion_records(model_name: str, version: int | None, metrics: tuple[str, ...]
                      ) -> list[Any] | None:
    """The records the champion was trained on (its version's dataset), the data its held-out
    generations come from; ``None`` when that dataset is not known, not ready, no longer
    readable or measures other metrics (then the challenger's records stand in)."""
    from ml.train import load_training_records

    if version is None:
        return None
    with session_scope() as session:
        row = registry.get_version(session, model_name, version)
        ds = session.get(Dataset, row.dataset_id) if row.dataset_id else None
        path = ds.path if ds is not None and ds.status == "ready" else None
    if path is None:
        return None
    try:
        records, source = load_training_records(dataset=path)
    except (OSError, ValueError):
        log.warning("the champion %s v%s: its dataset could not be read", model_name, version)
        return None
    return list(records) if tuple(source["metrics"]) == metrics else None
