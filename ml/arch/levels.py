"""Per-axis "resolution levels": the spatial sizes a backbone can produce, as floor-affine chains.

Every op in the torchvision backbones maps a spatial size through
``out = ((in + offset) // divisor) * mult + add`` (convolutions, pooling, Swin's patch-merging and
window padding), keeps it, or replaces it by a constant (adaptive pooling). Height and width never
mix. So a backbone's whole shape behaviour at any input size is a short chain of such maps per
axis, built once per variant and evaluated per genome in a few microseconds. That is why the
compiler can stay flat in the number of genomes without re-running any module's forward.
"""
from __future__ import annotations

from dataclasses import dataclass

H_AXIS = 0
W_AXIS = 1
AXIS_NAMES = ("H", "W")


@dataclass(frozen=True)
class Sym:
    """A spatial size that depends on the backbone input: level ``level`` of axis ``axis``."""

    axis: int
    level: int

    def __repr__(self) -> str:
        return f"{AXIS_NAMES[self.axis]}{self.level}"


#: A tensor dimension during symbolic shape propagation: a constant or a level of one axis.
Dim = int | Sym


@dataclass(frozen=True)
class FloorAffine:
    """``((v + offset) // divisor) * mult + add``, canonical: ``add == 0`` when ``mult == 1``."""

    offset: int
    divisor: int = 1
    mult: int = 1
    add: int = 0

    @staticmethod
    def canonical(offset: int, divisor: int = 1, mult: int = 1, add: int = 0) -> FloorAffine:
        """Fold ``add`` into ``offset`` when possible, so equal maps get equal keys (and dedupe)."""
        if mult == 1 and add:
            offset, add = offset + add * divisor, 0
        return FloorAffine(offset, divisor, mult, add)

    @staticmethod
    def window(kernel: int, stride: int, padding: int, dilation: int = 1) -> FloorAffine:
        """Output size of a floor-mode convolution/pooling window (PyTorch's formula)."""
        return FloorAffine.canonical(2 * padding - dilation * (kernel - 1) - 1, stride, 1, 1)

    @property
    def is_identity(self) -> bool:
        return self.offset == 0 and self.divisor == 1 and self.mult == 1 and self.add == 0

    def __call__(self, value: int) -> int:
        return ((value + self.offset) // self.divisor) * self.mult + self.add


class LevelTable:
    """The levels of one axis: level 0 is the backbone input size, every other a map of a parent.

    ``creator[i]`` is the index of the first graph node that produced level ``i`` (used to name
    the op that fails when a level evaluates below 1).
    """

    def __init__(self) -> None:
        self.parents: list[int] = [-1]
        self.maps: list[FloorAffine | None] = [None]
        self.creator: list[int] = [-1]
        self._index: dict[tuple[int, FloorAffine], int] = {}

    def __len__(self) -> int:
        return len(self.parents)

    def apply(self, parent: int, fmap: FloorAffine, node_index: int) -> int:
        """The level reached from ``parent`` through ``fmap`` (deduplicated; identity is free)."""
        if fmap.is_identity:
            return parent
        key = (parent, fmap)
        level = self._index.get(key)
        if level is None:
            level = len(self.parents)
            self._index[key] = level
            self.parents.append(parent)
            self.maps.append(fmap)
            self.creator.append(node_index)
        return level

    def compiled(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """Flat ``(parent, offset, divisor, mult, add)`` rows for the fast evaluator."""
        return tuple((p, m.offset, m.divisor, m.mult, m.add)
                     for p, m in zip(self.parents[1:], self.maps[1:]))


def evaluate_levels(rows: tuple[tuple[int, int, int, int, int], ...], size: int) -> list[int]:
    """All level values of one axis for input ``size`` (level 0 first). Values may be < 1."""
    values = [size]
    append = values.append
    for parent, offset, divisor, mult, add in rows:
        append(((values[parent] + offset) // divisor) * mult + add)
    return values
