"""Predictor names -> classes (single predictors and composites), and the ``auto`` choice (the
best measured on the real data)."""
from __future__ import annotations

from typing import Any

from ml.models.base import Predictor
from ml.train.blend import BlendPredictor
from ml.train.members import MEMBERS

#: What ``auto`` means. Grouped 5-fold CV on the 238 real genomes (tau-b uw_val / ciou / AP,
#: failure AUC): trees .525/.441/.357 .981 in 13 s per CV; blend .525/~.47/.457 .981 (weights
#: tuned on the same folds) but ~10x slower to train; combined_gcn .41/.445/.457 .847;
#: bigcn .466/.393/.481 .841; simple_gcn (20 ep) .402/.429/.49 .836; frnas (20 ep)
#: .397/.393/.455 .859; gbt .437/.42/-.04 .961. Trees meet the speed target and are the default.
#: With the path block in their features (trees v2): .572/.475/.404 .968 (5 seeds x 5 folds;
#: v1 on the same run .565/.467/.381 .969), nas-bench-graph/arxiv tau .587 at N = 100 (was .408).
#: trees v3 (mean-path counts, fit on train + validation): .579/.473/.424 .969, arxiv .596.
#: trees v4 (winsorised targets): .581/.479/.450 .969, arxiv .595. stack (trees + an RBF SVR,
#: blended per metric with weights chosen on inner folds; ml.models.stack): .573/.505/.470
#: .972, arxiv .601, 5-fold CV ~25 s. stack v2 (each metric's target kind, robust or rank, and
#: the blend weight chosen together on inner folds): .587/.512/.555 .972, arxiv .595-.602.
AUTO_MODEL = "stack"


def _classes() -> dict[str, type[Predictor]]:
    return {**MEMBERS, "blend": BlendPredictor}


def model_class(name: str) -> type[Predictor] | None:
    """The class behind a model name (``auto`` resolved), or None for an unknown name."""
    return _classes().get(resolve_name(name))


def available_models() -> tuple[str, ...]:
    return ("auto", *_classes())


def resolve_name(name: str) -> str:
    return AUTO_MODEL if name == "auto" else name


def create(name: str, config: dict[str, Any] | None = None) -> Predictor:
    """A fresh, untrained predictor; ``name`` is one of :func:`available_models`."""
    classes = _classes()
    resolved = resolve_name(name)
    if resolved not in classes:
        raise ValueError(f"unknown model {name!r}; choose from {available_models()}")
    return classes[resolved](config)
