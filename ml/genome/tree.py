"""The typed syntax tree of a genome (what the parser produces and the printer prints)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(slots=True)
class Literal:
    """A number or boolean constant. ``value`` keeps Python's int/float/bool distinction."""

    value: int | float | bool
    offset: int
    #: Structural slot class (see ml.genome.parser): constants fill scalar slots.
    klass: ClassVar[str] = "scalar"

    @property
    def type(self) -> str:
        return type(self.value).__name__


@dataclass(slots=True)
class Terminal:
    """A named terminal other than a boolean: only ``IN0`` (the image tensor) exists."""

    name: str
    offset: int
    klass: ClassVar[str] = "Tensor3D"

    @property
    def type(self) -> str:
        return "Tensor3D"


@dataclass(slots=True)
class Call:
    """``name(args...)``. ``type`` is the catalogue's return type, set by the parser."""

    name: str
    offset: int
    args: list[Node] = field(default_factory=list)
    type: str = ""
    #: Structural slot class: the return type for primitives, "scalar" for helpers.
    klass: str = "scalar"


Node = Literal | Terminal | Call
