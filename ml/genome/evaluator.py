"""Evaluate a parsed genome with the original codec's exact value semantics.

The original evaluated helper calls with Python and pushed ``str(result)`` back on its stack, so a
hyper-parameter keeps Python's int/float/bool distinction (``protectedDiv(7, 2)`` is ``3``), and a
layer argument becomes ``int(s)``, else ``float(s)``, else the string itself. We reproduce the
values without strings or ``eval``; ``codec_layer_list`` rebuilds the original's layer list for
hashing.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ml.errors import GenomeEvaluationError
from ml.genome import catalogue as cat
from ml.genome.limits import MAX_INTEGER_DIGITS, show
from ml.genome.model import EvaluatedGenome, Layer
from ml.genome.tree import Call, Literal, Node, Terminal

Number = int | float | bool

#: The smallest integer magnitude the codec's ``str(result)`` refuses (MAX_INTEGER_DIGITS + 1
#: digits). Real genomes' helper products reach ~500 digits, so the bound is on digits, not int64.
_TOO_MANY_DIGITS = 10 ** MAX_INTEGER_DIGITS


def _protected_div(a: Number, b: Number) -> Number:
    if b == 0:
        return 1
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return a / b




_CONVERSIONS: dict[str, Callable[[Number], Number]] = {
    "toChannel": lambda a: 1 if a == 0 else (a % 64 + 1 if a > 64 else a),
    "toKernel": lambda a: 3 if a < 3 else (a % 9 + 3 if a > 9 else a),
    "toStride": lambda a: 1 if a == 0 else (a % 9 + 1 if a > 9 else a),
    "toPadding": lambda a: a % 9 if a > 9 else a,
    "toOutput": lambda a: 7 if a < 7 else (a % 3000 + 7 if a > 3000 else a),
    "toDilation": lambda a: 1 if a == 0 else (a % 10 + 1 if a > 10 else a),
    "toGroup": lambda a: 1 if a == 0 else (a % 1 + 1 if a > 1 else a),
    "toSkip": lambda a: 1 if a == 0 else (a % 5 + 1 if a > 5 else a),
    # The low branch returns the int 2; the others go through the float PNorm wrapper. Hashes of
    # real genomes such as toProbFloat(toPNorm(toPNorm(0.86))) show the difference (0.0, not 0).
    "toPNorm": lambda a: 2 if a < 2 else float(a % 3 + 2 if a > 3 else a),
    "toProbFloat": lambda a: a % 1,
    "toBoundedFloat": lambda a: a % 100,
    "dummyOp": lambda a: a,
}
_BINARY: dict[str, Callable[[Number, Number], Number]] = {
    "add": lambda a, b: a + b,
    "protectedSub": lambda a, b: abs(a - b),
    "mul": lambda a, b: a * b,
    "protectedDiv": _protected_div,
}


def transform_value(v: Number, lo: float, hi: float) -> float:
    """The optimizer/scheduler squashing function of the original primitives."""
    return lo + (hi - lo) * math.exp(-(v + 1))


class HelperRefused(Exception):
    """A helper result the codec could not have produced (``code``, ``message``); the caller
    places it in the genome (:func:`_apply`) or declines the string (the one-pass reader)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def helper_value(name: str, values: list[Number]) -> Number:
    """The value of helper ``name`` on evaluated arguments, with the codec's semantics; raises
    :class:`HelperRefused` where the codec overflowed or could not print the result."""
    try:
        if len(values) == 2:
            result = _BINARY[name](values[0], values[1])
        else:
            result = _CONVERSIONS[name](values[0])
    except OverflowError as exc:
        raise HelperRefused("NUMERIC_OVERFLOW", f"{name} overflows: {exc}") from None
    if isinstance(result, float):
        if not math.isfinite(result):
            raise HelperRefused("NON_FINITE_VALUE", f"{name} gives a non-finite value ({result})")
    elif not -_TOO_MANY_DIGITS < result < _TOO_MANY_DIGITS:
        raise HelperRefused("NUMERIC_OVERFLOW", f"{name} gives {show(result)}, more than "
                            f"{MAX_INTEGER_DIGITS} digits (the codec's str() refuses it)")
    return result


def _apply(call: Call, values: list[Number], text: str) -> Number:
    try:
        return helper_value(call.name, values)
    except HelperRefused as exc:
        raise GenomeEvaluationError(exc.message, offset=call.offset, text=text,
                                    code=exc.code) from None


def eval_scalar(node: Node, text: str = "") -> Number:
    """Value of a hyper-parameter expression (helpers over constants), iteratively."""
    if isinstance(node, Literal):
        return node.value
    values: list[Number] = []
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        item, expanded = stack.pop()
        if isinstance(item, Literal):
            values.append(item.value)
        elif expanded:
            n = len(item.args)
            args = values[-n:]
            del values[-n:]
            values.append(_apply(item, args, text))
        else:
            stack.append((item, True))
            for arg in reversed(item.args):
                stack.append((arg, False))
    return values[0]


def codec_arg(value: Number, literal: bool) -> Any:
    """What the original's ``__parse_arg`` made of an argument: int(), float(), else the string.

    A helper result was pushed as ``str(result)`` (no leading space); a literal token kept the
    leading space DEAP prints after a comma. Booleans therefore survive only as strings.
    """
    if isinstance(value, bool):
        return (" " if literal else "") + repr(value)
    return value


def _field_value(field: cat.Field, value: Number, call: str, offset: int, text: str,
                 lo_override: float | None = None) -> Any:
    if field.bounds is not None:
        lo, hi = field.bounds
        if lo_override is not None:
            lo = lo_override
        try:
            out = transform_value(value, lo, hi)
        except (OverflowError, TypeError) as exc:
            raise GenomeEvaluationError(f"{call}.{field.name}: cannot transform "
                                        f"{show(value)}: {exc}", offset=offset, text=text,
                                        code="NUMERIC_OVERFLOW") from None
        return int(out) if field.integer else out
    if field.type in cat.ENUMS:
        members = cat.ENUMS[field.type]
        if not isinstance(value, int) or not -len(members) <= value < len(members):
            raise GenomeEvaluationError(f"{call}.{field.name}: {show(value)} is not an "
                                        f"index of {field.type}", offset=offset, text=text,
                                        code="ENUM_OUT_OF_RANGE")
        return members[value]
    return value  # bool passthrough


def training_dict(name: str, offset: int, values: Iterable[Number],
                  text: str) -> dict[str, Any]:
    """Optimizer or scheduler primitive ``name`` on its evaluated arguments -> the dict the
    original primitive returned (``values`` is read one field at a time, so a lazy sequence
    reports the first error in argument order)."""
    prim = cat.PRIMITIVES[name]
    key = "optimizer" if prim.kind is cat.Kind.OPTIMIZER else "lr_scheduler"
    out: dict[str, Any] = {key: name}
    for field, value in zip(prim.fields, values):
        lo = out["base_lr"] if (name == "CyclicLR" and field.name == "max_lr") else None
        out[field.name] = _field_value(field, value, name, offset, text, lo)
    return out


def _training_dict(call: Call, text: str) -> dict[str, Any]:
    return training_dict(call.name, call.offset, (eval_scalar(a, text) for a in call.args), text)


#: One layer of the chain for :func:`assemble`: name, offset, evaluated arguments after the
#: tensor, and which of them were literals in the text.
ChainLayer = tuple[str, int, Sequence[Number], Sequence[bool]]


def assemble(head: str, head_offset: int, chain: list[ChainLayer], optimizer: dict[str, Any],
             scheduler: dict[str, Any], weights: Sequence[Number],
             weight_literals: Sequence[bool]) -> EvaluatedGenome:
    """The genome from its evaluated parts (``chain`` innermost first), with the codec's layer
    list: shared by :func:`evaluate` and the one-pass reader."""
    layers: list[Layer] = []
    codec: list[list[Any]] = []
    for i, (name, offset, values, literal) in enumerate(chain):
        layers.append(Layer(name, tuple(values), offset))
        codec.append([name] + (["IN0"] if i == 0 else [])
                     + [codec_arg(v, lit) for v, lit in zip(values, literal)])
    codec.append([head, str(optimizer), str(scheduler)]
                 + [codec_arg(v, lit) for v, lit in zip(weights, weight_literals)])
    return EvaluatedGenome(layers=tuple(layers), head=head, optimizer=optimizer,
                           scheduler=scheduler, loss_weights_raw=tuple(weights),
                           head_offset=head_offset, codec_layer_list=codec)


def evaluate(root: Call, text: str = "") -> EvaluatedGenome:
    """Evaluate a parsed genome (see :func:`ml.genome.parser.parse`)."""
    calls: list[Call] = []
    node: Node = root.args[0]
    while isinstance(node, Call):
        calls.append(node)
        node = node.args[0]
    assert isinstance(node, Terminal)  # the parser guarantees the chain ends at IN0
    calls.reverse()

    chain: list[ChainLayer] = []
    for call in calls:
        nodes = call.args[1:]
        chain.append((call.name, call.offset, [eval_scalar(a, text) for a in nodes],
                      [isinstance(a, Literal) for a in nodes]))
    optimizer = _training_dict(root.args[1], text)
    scheduler = _training_dict(root.args[2], text)
    weight_nodes = root.args[3:]
    weights = [eval_scalar(a, text) for a in weight_nodes]
    return assemble(root.name, root.offset, chain, optimizer, scheduler, weights,
                    [isinstance(a, Literal) for a in weight_nodes])
