"""What a proposal request is: the strategies and acquisitions by name, and every field's
default. The HTTP body (``app.schemas.ProposeRequest``), the ``nas-surrogate propose`` flags and
a ``propose`` job's params all take their choices and defaults from here, so a new strategy or
a changed default is written once.

Kept free of numpy and DEAP: the service's schemas import it when the app starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The search strategies (``ml.search.strategies`` runs each by this name).
STRATEGIES: tuple[str, ...] = ("ssi", "neural_predictor", "mutate")
#: How a candidate's predicted objectives become the fitness it is ranked by.
ACQUISITIONS: tuple[str, ...] = ("mean", "ucb", "thompson")
#: Proposals when ``k`` is not given: this fraction of the population for ``ssi`` (the
#: evolution injects that share of a generation), else ``DEFAULT_K``.
SSI_K_FRACTION = 0.8
DEFAULT_K = 10


@dataclass(frozen=True)
class ProposeSpec:
    """One proposal request, as the HTTP body and the CLI give it."""

    strategy: str = "ssi"
    population: tuple[str, ...] = ()
    k: int | None = None
    pool_size: int = 2000
    inner_generations: int = 5
    parents_k: int = 20
    acquisition: str = "mean"
    exclude: tuple[str, ...] = ()
    seed: int = 0

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ProposeSpec:
        """The spec of a request body or a job's params (other keys, e.g. ``model``, are
        ignored; genome lists become tuples)."""
        return cls(**{k: tuple(v) if k in ("population", "exclude") else v
                      for k, v in values.items() if k in cls.__dataclass_fields__})

    def resolved_k(self) -> int:
        if self.k is not None:
            return self.k
        if self.strategy == "ssi":
            return max(1, math.ceil(SSI_K_FRACTION * len(self.population)))
        return DEFAULT_K


#: The defaults every front end states (``ProposeSpec()``'s fields).
DEFAULTS = ProposeSpec()
#: The default of ``k``, in words, for help texts and the schema's description.
K_DEFAULT_TEXT = f"ceil({SSI_K_FRACTION} * population) for ssi, else {DEFAULT_K}"


def planned_candidates(spec: ProposeSpec) -> int:
    """How many genomes ``spec`` scores when nothing is rejected (progress's denominator)."""
    rounds = spec.inner_generations if spec.strategy == "ssi" else 1
    return spec.pool_size * rounds + len(spec.population)
