"""Seeded random genomes over the evolution's typed grammar (ramped half-and-half, depth 4-8).

Mirrors ``gp.genHalfAndHalf(min_=4, max_=8)`` over the strongly typed set: each slot is filled by
a primitive whose return type is a subtype of the slot's type, or by a terminal/ephemeral of such
a type. Output is the DEAP string form. An optional ``accept`` predicate (e.g. "it compiles")
rejects and redraws, so callers can ask for genomes that always build.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from ml.genome import catalogue as cat
from ml.genome.printer import format_literal

_ARITH = ("add", "protectedSub", "mul", "protectedDiv")
_INT_CONVERSIONS = {ret: name for name, ret in cat.CONVERSION_RETURN.items()
                    if ret in cat.INT_WRAPPERS}
_FLOAT_CONVERSIONS = {ret: name for name, ret in cat.CONVERSION_RETURN.items()
                      if ret in cat.FLOAT_WRAPPERS}
#: dummyOp has an identity overload for these types.
_DUMMY_TYPES = frozenset(cat.ENUMS) | {"bool"}
_TENSOR_PRIMS = sorted(cat.LAYERS | cat.BACKBONES)


def _scalar_primitives(slot: str) -> list[tuple[str, tuple[str, ...]]]:
    """Helper primitives (name, arg types) whose return type fits ``slot``."""
    out: list[tuple[str, tuple[str, ...]]] = []
    if slot in ("GenericInt", "int"):
        out += [(name, ("GenericInt", "GenericInt")) for name in _ARITH]
    if slot == "float":
        out += [(name, ("float", "float")) for name in _ARITH]
    if slot == "int":
        out += [(name, ("GenericInt",)) for name in _INT_CONVERSIONS.values()]
        out.append(("dummyOp", ("bool",)))
    if slot == "float":
        out += [(name, ("float",)) for name in _FLOAT_CONVERSIONS.values()]
    if slot in _INT_CONVERSIONS:
        out.append((_INT_CONVERSIONS[slot], ("GenericInt",)))
    if slot in _FLOAT_CONVERSIONS:
        out.append((_FLOAT_CONVERSIONS[slot], ("float",)))
    if slot in _DUMMY_TYPES:
        out.append(("dummyOp", (slot,)))
    return out


def _terminal_types(slot: str) -> list[str]:
    """Ephemeral types that fit ``slot`` under the subtype rule."""
    if slot == "int":
        return list(cat.INT_WRAPPERS) + ["bool"]
    if slot == "float":
        return ["float", *cat.FLOAT_WRAPPERS]
    return [slot]


class GenomeSampler:
    """Draw genome strings; deterministic for a given seed."""

    def __init__(self, seed: int = 0, min_depth: int = 4, max_depth: int = 8,
                 max_layers: int = 7) -> None:
        self.rng = random.Random(seed)
        self.min_depth, self.max_depth, self.max_layers = min_depth, max_depth, max_layers

    # -- terminals -------------------------------------------------------------------------
    def _ephemeral(self, type_: str) -> str:
        kind, lo, hi = cat.EPHEMERALS[type_]
        if kind == "uniform":
            return format_literal(self.rng.uniform(lo, hi))
        if kind == "bool":
            return format_literal(bool(self.rng.getrandbits(1)))
        return format_literal(self.rng.randint(int(lo), int(hi)))

    # -- expressions -----------------------------------------------------------------------
    def _scalar(self, slot: str, depth: int, height: int, full: bool) -> str:
        prims = _scalar_primitives(slot)
        terms = _terminal_types(slot)
        stop = depth >= height or not prims or (
            not full and depth >= self.min_depth - 2 and
            self.rng.random() < len(terms) / (len(terms) + len(prims)))
        if stop:
            return self._ephemeral(self.rng.choice(terms))
        name, arg_types = self.rng.choice(prims)
        args = [self._scalar(t, depth + 1, height, full) for t in arg_types]
        return f"{name}({', '.join(args)})"

    def _training(self, names: frozenset[str], depth: int, height: int, full: bool) -> str:
        prim = cat.PRIMITIVES[self.rng.choice(sorted(names))]
        args = [self._scalar(f.type, depth + 1, height, full) for f in prim.fields]
        return f"{prim.name}({', '.join(args)})"

    def _chain(self, depth: int, height: int, full: bool, layers: int) -> str:
        grow_stop = not full and self.rng.random() < 0.3
        if layers >= self.max_layers or depth >= height or (layers > 0 and grow_stop):
            return "IN0"
        prim = cat.PRIMITIVES[self.rng.choice(_TENSOR_PRIMS)]
        inner = self._chain(depth + 1, height, full, layers + 1)
        args = [inner] + [self._scalar(f.type, depth + 1, height, full) for f in prim.fields]
        return f"{prim.name}({', '.join(args)})"

    def draw(self) -> str:
        """One genome string (ramped half-and-half: full or grow, height in [min, max])."""
        height = self.rng.randint(self.min_depth, self.max_depth)
        full = self.rng.random() < 0.5
        head = self.rng.choice(sorted(cat.HEADS))
        parts = [
            self._chain(1, height, full, 0),
            self._training(cat.OPTIMIZERS, 1, height, full),
            self._training(cat.SCHEDULERS, 1, height, full),
            *(self._scalar("ProbFloat", 1, height, full) for _ in range(cat.NUM_LOSS_COMPONENTS)),
        ]
        return f"{head}({', '.join(parts)})"

    def sample(self, n: int, accept: Callable[[str], bool] | None = None,
               max_tries_per_genome: int = 1000) -> Iterator[str]:
        """``n`` genomes, each passing ``accept`` when given (redrawn until it does)."""
        for _ in range(n):
            for _attempt in range(max_tries_per_genome):
                genome = self.draw()
                if accept is None or accept(genome):
                    yield genome
                    break
            else:
                raise RuntimeError(f"no acceptable genome in {max_tries_per_genome} draws")
