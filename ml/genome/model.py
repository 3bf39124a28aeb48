"""Value objects shared by the genome language, the compiler and the encoders.

An :class:`EvaluatedGenome` is what every downstream component consumes: features and networks are
built from evaluated values, never from raw string tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Scalar = int | float | bool | str


@dataclass(frozen=True)
class Layer:
    """One architecture primitive of the chain, with its evaluated hyper-parameters.

    ``args`` are the evaluated arguments *after* the tensor argument, in the primitive's order,
    with Python int/float/bool semantics preserved (``protectedDiv(7, 2)`` is ``3``, not ``3.5``).
    ``offset`` is the character offset of the call in the genome string (for error messages).
    """

    name: str
    args: tuple[Scalar, ...]
    offset: int = 0


@dataclass(frozen=True)
class EvaluatedGenome:
    """A genome after evaluation: the layer chain innermost-first, the head and training genes."""

    layers: tuple[Layer, ...]
    head: str
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    loss_weights_raw: tuple[float, ...]
    head_offset: int = 0
    #: The original codec's layer list (``[name, *parsed args]`` innermost-first, head last); its
    #: ``str()`` is what ``individual_hash`` digests.
    codec_layer_list: list[list[Any]] = field(default_factory=list, compare=False, repr=False)

    @property
    def loss_weights(self) -> tuple[float, ...]:
        """Loss weights normalised to sum 1 (validation guarantees a non-zero sum)."""
        total = sum(self.loss_weights_raw)
        return tuple(w / total for w in self.loss_weights_raw)

    @property
    def backbones(self) -> tuple[Layer, ...]:
        from ml.genome.catalogue import BACKBONES

        return tuple(layer for layer in self.layers if layer.name in BACKBONES)
