"""Every predictor by name: the one place a predictor is registered.

A predictor class states everything the registry lists about it (``name``, ``defaults``,
``hyperparameters``, ``feature_key``), so a registry entry is the class alone and nothing is
stated twice. Training, bundles, the service's job validation, ``evaluate`` and the benchmarks
all look predictors up here.

Adding a predictor: write its module in :mod:`ml.models` (a :class:`~ml.models.base.Predictor`
subclass; a row model also adds its ``feature_key``'s featuriser to
:data:`ml.features.featurizers.ROW_FEATURIZERS`), then add its class to :data:`_SINGLE` below.
Building the registry checks every class (a unique name, a featuriser for its feature key), so a
mistake fails at import, and ``tests/ml/models/test_predictor_registry.py`` trains and predicts it.

Composites (``blend``) are given the single predictors they may combine
(:meth:`~ml.models.blend.BlendPredictor.over`) rather than looking them up here, so this
module and theirs do not import each other.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ml.features.featurizers import featurizer
from ml.models.base import Predictor
from ml.models.blend import BlendPredictor
from ml.models.hyperparameters import Param
from ml.models.neural.frnas import FRNASPredictor
from ml.models.neural.gcn import BiGCNPredictor, CombinedGCNPredictor, SimpleGCNPredictor
from ml.models.neural.hierarchical import HierarchicalGNNPredictor
from ml.models.neural.predictor import NeuralPredictor
from ml.models.stack import StackedPredictor
from ml.models.trees import ExtraTreesPredictor, GBTPredictor

#: What ``auto`` means: the predictor that measured best on the real genomes under grouped
#: cross-validation while meeting the training-time target (the measurements:
#: docs/results.md, "How `auto` was chosen").
AUTO_MODEL = "stack"


@dataclass(frozen=True)
class PredictorSpec:
    """One registered predictor: its class and what a caller may configure."""

    name: str
    cls: type[Predictor]
    #: The class's default config (a caller's keys override them).
    defaults: Mapping[str, Any]
    #: What a caller may set, with types and bounds.
    hyperparameters: Mapping[str, Param]
    #: The rows it predicts from (a key of ROW_FEATURIZERS), or None for a graph predictor.
    feature_key: str | None


def build_registry(classes: Iterable[type[Predictor]]) -> dict[str, PredictorSpec]:
    """name -> spec of ``classes`` in order. Raises ``ValueError`` for a name used twice or
    reserved, and :class:`~ml.features.featurizers.UnknownFeatureKey` for a feature key with
    no featuriser (rows nobody can compute must not reach the service)."""
    registry: dict[str, PredictorSpec] = {}
    for cls in classes:
        name = cls.name
        if name in registry or name in ("auto", Predictor.name):
            raise ValueError(f"predictor name {name!r} ({cls.__qualname__}) is "
                             f"{'reserved' if name not in registry else 'registered twice'}")
        if cls.feature_key is not None:
            featurizer(cls.feature_key)
        registry[name] = PredictorSpec(name, cls, MappingProxyType(dict(cls.defaults)),
                                       MappingProxyType(dict(cls.hyperparameters)),
                                       cls.feature_key)
    return registry


#: The single predictors (built on feature rows or graphs, not on other predictors), in the
#: order they are listed. One line per predictor.
_SINGLE: tuple[type[Predictor], ...] = (
    StackedPredictor,
    ExtraTreesPredictor,
    GBTPredictor,
    SimpleGCNPredictor,
    CombinedGCNPredictor,
    BiGCNPredictor,
    FRNASPredictor,
    HierarchicalGNNPredictor,
)

#: Every predictor: the single ones, then the composites over them.
REGISTRY: Mapping[str, PredictorSpec] = MappingProxyType(build_registry(
    (*_SINGLE, BlendPredictor.over({cls.name: cls for cls in _SINGLE}))))

#: The graph-network predictors (they early-stop on validation records).
GNN_MODELS: Mapping[str, type[NeuralPredictor]] = MappingProxyType({
    name: spec.cls for name, spec in REGISTRY.items()
    if issubclass(spec.cls, NeuralPredictor)})


def resolve_name(name: str) -> str:
    """``auto`` -> :data:`AUTO_MODEL`; any other name unchanged."""
    return AUTO_MODEL if name == "auto" else name


def available_models() -> tuple[str, ...]:
    """Every name ``create`` accepts: ``auto``, then the registered predictors."""
    return ("auto", *REGISTRY)


def model_class(name: str) -> type[Predictor] | None:
    """The class behind a model name (``auto`` resolved), or None for an unknown name."""
    spec = REGISTRY.get(resolve_name(name))
    return spec.cls if spec is not None else None


def spec(name: str) -> PredictorSpec:
    """The registered predictor ``name`` (``auto`` resolved); ``ValueError`` when unknown."""
    found = REGISTRY.get(resolve_name(name))
    if found is None:
        raise ValueError(f"unknown model {name!r}; choose from {available_models()}")
    return found


def create(name: str, config: dict[str, Any] | None = None) -> Predictor:
    """A fresh, untrained predictor; ``name`` is one of :func:`available_models`."""
    return spec(name).cls(config)
