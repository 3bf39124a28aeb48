"""The evolution's strongly typed DEAP primitive set, built from the catalogue, and the bridge
between genome strings and ``deap.gp.PrimitiveTree``.

Why DEAP: the evolution's variation operators (``cxOnePoint``, ``cxOnePointLeafBiased``,
``mutNodeReplacement``) are DEAP's; running DEAP's own code on the same typed trees is how the
proposals stay faithful. Two details make that reproducible:

* every GP type is a class of :class:`_StableType`, whose hash is its fixed index, so the sets
  DEAP builds of node types iterate in the same order in every process (builtin ``int`` and
  ``float`` hash by address, which would make ``random.choice(list(common_types))`` differ
  between runs with the same seed);
* ``int``/``float``/``bool`` slots are modelled by our own classes with DEAP's subtype rule
  (an ``int`` slot accepts GenericInt, the *Size types and bool; a ``float`` slot the float
  wrappers), so :func:`ml.genome.catalogue.is_subtype` and ``issubclass`` agree.

Overloaded helpers (``add`` on ints and on floats, 20 ``dummyOp`` identities) are registered once
per signature under the same name, as the evolution does; a string is turned into a tree by
resolving each helper's overload from the slot it fills (the evolution's ``from_string`` resolves
names only, so its types inside rebuilt individuals are unreliable). Literals become
terminals typed by their slot. The default Optimizer/Scheduler dict terminals are left out: they
never occur in the data and print as dicts that the grammar cannot read back.
"""
from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from deap import gp

from ml.genome import catalogue as cat
from ml.genome.parser import call_signature, parse
from ml.genome.tree import Call, Literal, Node, Terminal

_ARITH = ("add", "protectedSub", "mul", "protectedDiv")
_DUMMY_TYPES = (*cat.ENUMS, "bool")


class _StableType(type):
    """Metaclass of the GP types: hash and order by a fixed index, not by address."""

    _index: int

    def __hash__(cls) -> int:
        return cls._index

    def __eq__(cls, other: object) -> bool:
        return cls is other

    def __repr__(cls) -> str:
        return cls.__name__


def _make_types() -> dict[str, type]:
    """One class per GP type name, with the subclass relations of DEAP's subtype rule."""
    types: dict[str, type] = {}

    def make(name: str, *bases: type) -> None:
        types[name] = _StableType(name, bases, {"_index": len(types) + 1})

    make("int")
    make("float")
    for name in cat.INT_WRAPPERS:
        make(name, types["int"])
    make("bool", types["int"])
    for name in cat.FLOAT_WRAPPERS:
        make(name, types["float"])
    for name in (*cat.ENUMS, cat.TENSOR3D, cat.FINAL_TENSOR, cat.OPTIMIZER, cat.SCHEDULER):
        make(name)
    return types


TYPES = _make_types()

# -------------------------------------------------------------------------------- randomness
_lock = threading.RLock()
_active: list[random.Random] = []


@contextmanager
def seeded(rng: random.Random) -> Iterator[random.Random]:
    """Run DEAP's operators (and the ephemerals) on ``rng`` instead of the global ``random``.

    DEAP's gp module calls ``random.choice`` and friends through its module global; it is
    pointed at ``rng`` for the duration, under a lock, so concurrent searches in one process
    never draw from each other's stream."""
    with _lock:
        saved = gp.random
        gp.random = rng  # type: ignore[assignment]
        _active.append(rng)
        try:
            yield rng
        finally:
            _active.pop()
            gp.random = saved  # type: ignore[assignment]


def _rng() -> Any:
    """The stream of the innermost ``seeded`` block, else the module ``random`` (as DEAP)."""
    return _active[-1] if _active else random


def _draw_uniform(lo: float, hi: float) -> float:
    return _rng().uniform(lo, hi)


def _draw_int(lo: int, hi: int) -> int:
    return _rng().randint(lo, hi)


def _draw_bool() -> bool:
    return bool(_rng().getrandbits(1))


def _ephemeral(type_name: str) -> Callable[[], Any]:
    """The generator of one ephemeral type; a partial so DEAP can pickle trees."""
    kind, lo, hi = cat.EPHEMERALS[type_name]
    if kind == "uniform":
        return functools.partial(_draw_uniform, lo, hi)
    if kind == "bool":
        return _draw_bool
    return functools.partial(_draw_int, int(lo), int(hi))


def _placeholder(name: str) -> Callable[..., Any]:
    """The callable DEAP stores for a primitive. Never called: genomes are compiled by
    ``ml.arch``, not by ``gp.compile``."""
    def primitive(*args: Any) -> Any:
        raise RuntimeError(f"{name} is not meant to be evaluated through DEAP")
    primitive.__name__ = name
    return primitive


def helper_overloads(name: str) -> list[tuple[tuple[str, ...], str]]:
    """The registered signatures ``(arg types, return type)`` of a helper."""
    if name in _ARITH:
        return [(("GenericInt", "GenericInt"), "GenericInt"), (("float", "float"), "float")]
    if name == "dummyOp":
        return [((t,), t) for t in _DUMMY_TYPES]
    return [((cat.CONVERSION_ARG[name],), cat.CONVERSION_RETURN[name])]


@functools.lru_cache(maxsize=1)
def primitive_set() -> gp.PrimitiveSetTyped:
    """The evolution's typed primitive set (built once per process: DEAP keeps ephemeral
    classes by name globally)."""
    pset = gp.PrimitiveSetTyped("MAIN", [TYPES[cat.TENSOR3D]], TYPES[cat.FINAL_TENSOR])
    pset.renameArguments(ARG0="IN0")
    for name, prim in cat.PRIMITIVES.items():
        if name in cat.DISABLED_PRIMITIVES:
            continue
        pset.addPrimitive(_placeholder(name), [TYPES[t] for t in prim.arg_types],
                          TYPES[prim.return_type], name=name)
    for name in cat.HELPERS:
        function = _placeholder(name)
        for args, ret in helper_overloads(name):
            pset.addPrimitive(function, [TYPES[t] for t in args], TYPES[ret], name=name)
    for type_name in cat.EPHEMERALS:
        pset.addEphemeralConstant(f"nas_surrogate_rand_{type_name}", _EPHEMERALS[type_name],
                                  TYPES[type_name])
    return pset


_EPHEMERALS = {type_name: _ephemeral(type_name) for type_name in cat.EPHEMERALS}


@functools.cache
def _primitive(name: str, args: tuple[str, ...], ret: str) -> gp.Primitive:
    pset = primitive_set()
    want_args, want_ret = [TYPES[t] for t in args], TYPES[ret]
    for prim in pset.primitives[want_ret]:
        if prim.name == name and prim.args == want_args and prim.ret is want_ret:
            return prim
    raise KeyError(f"no primitive {name}{args} -> {ret}")


def _overload_for(name: str, slot: str) -> tuple[tuple[str, ...], str]:
    """The overload of helper ``name`` that fills ``slot``: one whose return type fits it,
    else (a seed's lenient typing, e.g. a float helper in a ProbFloat slot) the one of the same
    numeric family."""
    overloads = helper_overloads(name)
    for args, ret in overloads:
        if cat.is_subtype(ret, slot):
            return args, ret
    if name == "dummyOp":
        return ("bool",), "bool"
    floaty = slot == "float" or slot in cat.FLOAT_WRAPPERS
    return overloads[1] if floaty and len(overloads) > 1 else overloads[0]


def _convert(node: Node, slot: str, out: list[Any]) -> None:
    if isinstance(node, Terminal):
        out.append(primitive_set().mapping["IN0"])
        return
    if isinstance(node, Literal):
        out.append(gp.Terminal(node.value, False, TYPES[slot]))
        return
    assert isinstance(node, Call)
    if node.name in cat.PRIMITIVES:
        prim = cat.PRIMITIVES[node.name]
        args, ret = prim.arg_types, prim.return_type
    else:
        args, ret = _overload_for(node.name, slot)
    out.append(_primitive(node.name, tuple(args), ret))
    for child, child_slot in zip(node.args, args):
        _convert(child, child_slot, out)


def to_tree(text: str) -> gp.PrimitiveTree:
    """The typed DEAP tree of a genome string (raises :class:`ml.errors.GenomeError` when the
    string does not parse)."""
    out: list[Any] = []
    _convert(parse(text), cat.FINAL_TENSOR, out)
    return gp.PrimitiveTree(out)


_SIGNATURES_OF = {name: call_signature(name) for name in (*cat.PRIMITIVES, *cat.HELPERS)}


def print_tree(tree: Sequence[Any]) -> str:
    """``str(tree)`` of a DEAP ``PrimitiveTree`` (the evolution's syntax), in one pass over the
    prefix list: DEAP's ``__str__`` re-formats every subtree's text into its parent's, so its
    cost grows with the depth times the length, and the ~130-node genomes crossover breeds made
    printing the largest share of a warm-cache SSI search (tests compare with ``str``)."""
    pieces: list[str] = []
    put = pieces.append
    left: list[int] = []                  # arguments each open call still expects
    for node in tree:
        arity = node.arity
        if arity:
            put(node.name)
            put("(")
            left.append(arity)
            continue
        put(node.format())                # a terminal, or a primitive of no argument
        while left:
            rest = left[-1] - 1
            if rest:
                left[-1] = rest
                put(", ")
                break
            left.pop()
            put(")")
    return "".join(pieces)


def to_genome(tree: gp.PrimitiveTree) -> tuple[str, Call | None]:
    """The genome string of a tree and, built in the same pass, the tree
    :func:`ml.genome.parser.parse` would make of that string (equal to it, offsets included),
    so a bred genome is not lexed and parsed again: parsing is most of the cost of loading the
    long genomes crossover breeds. ``None`` for the tree when a constant prints in a form the
    grammar does not read (an exponent, ``inf``, ``nan``): the caller parses the string, which
    reports the error.

    The parser's structural checks (arity, tensor/optimizer/scheduler/scalar slots) hold by
    construction: DEAP's typed operators only exchange subtrees of one return type and replace a
    node by one of the same signature (tests/ml/search/test_search.py compares with ``parse`` on
    bred genomes)."""
    signatures = _SIGNATURES_OF
    tensor = TYPES[cat.TENSOR3D]
    pieces: list[str] = []
    put = pieces.append
    pos = 0
    calls: list[Call] = []                # the open calls, innermost last
    left: list[int] = []                  # arguments each open call still expects
    root: Call | None = None
    readable = True
    for node in tree:
        arity = node.arity
        if arity:
            name = node.name
            kind, klass = signatures[name]
            call = Call(name, pos, [], kind, klass)
            put(name)
            put("(")
            pos += len(name) + 1
            if calls:
                calls[-1].args.append(call)
            calls.append(call)
            left.append(arity)
            continue
        if node.ret is tensor:            # the argument terminal IN0
            item: Node = Terminal("IN0", pos)
            printed = "IN0"
        else:
            value = node.value
            printed = repr(value)
            if value.__class__ is float and ("e" in printed or "n" in printed):
                readable = False          # 1e-05, inf, nan: not in the grammar
            item = Literal(value, pos)
        put(printed)
        pos += len(printed)
        calls[-1].args.append(item)
        left[-1] -= 1
        while left and left[-1] == 0:
            left.pop()
            call = calls.pop()
            put(")")
            pos += 1
            if left:
                left[-1] -= 1
            else:
                root = call
        if left:
            put(", ")
            pos += 2
    text = "".join(pieces)
    if not readable or root is None or root.name not in cat.HEADS:
        return text, None
    return text, root


def is_structural(node: Any) -> bool:
    """True for architecture, head, optimizer and scheduler nodes (``type_fixed_mut``'s
    0.9 branch); False for helpers, constants and ``IN0``."""
    return isinstance(node, gp.Primitive) and node.name in cat.PRIMITIVES
