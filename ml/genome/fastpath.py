"""One pass that reads and evaluates a well-formed genome string, beside the exact parser and
evaluator.

Why: lexing into ``Token`` tuples, descending over them, then walking the tree again to evaluate
it was most of the cost of loading a never-seen genome, in ``POST /predict`` and in the encoder
processes that score SSI offspring. Splitting on punctuation gives pieces that alternate ``word,
punctuation, word, ...``, so one loop over the pairs can read the genome, and each helper call is
evaluated as it closes: no node is built for the ~100 constants and helpers of a bred genome.

It only ever answers for strings it is sure of: plain names and decimal numbers separated by
``(``, ``)``, ``,`` and spaces, every name known, every call's arity and structural slots right,
rooted at a head, and an evaluation that raises nothing. Anything else (another whitespace, an
exponent, an unknown name, any error) returns None and the caller runs
:func:`ml.genome.parser.parse` and :func:`ml.genome.evaluator.evaluate`, which report the error
with its code and offset. When it answers, the genome equals theirs, offsets and the codec's
layer list included (``tests/ml/test_memo.py`` compares them on real, sampled, bred and damaged
strings).
"""
from __future__ import annotations

import math
from typing import Any

from ml.errors import GenomeError
from ml.genome import catalogue as cat
from ml.genome.evaluator import ChainLayer, HelperRefused, assemble, helper_value, training_dict
from ml.genome.lexer import _SPLIT, MAX_INT_DIGITS
from ml.genome.model import EvaluatedGenome
from ml.genome.parser import _BOOLS, _SIGNATURES

_ARG, _AFTER, _DONE = 0, 1, 2


def _number(word: str) -> int | float | None:
    """The value of a plain decimal literal (as :func:`ml.genome.lexer.number_value`), else
    None (not plain, too long, not finite)."""
    if word.isdigit():
        return int(word) if len(word) <= MAX_INT_DIGITS else None
    whole, dot, part = word.partition(".")
    if not dot or not (whole or part) or (whole and not whole.isdigit()) or (
            part and not part.isdigit()):
        return None
    value = float(word)
    return value if math.isfinite(value) else None


_SCALAR, _TENSOR = "scalar", cat.TENSOR3D


class _Open:
    """A call being read: its arguments' structural classes, values and literal-ness."""

    __slots__ = ("classes", "literal", "name", "offset", "signature", "values")

    def __init__(self, name: str, offset: int, signature: tuple[str, str, tuple[str, ...]]):
        self.name, self.offset, self.signature = name, offset, signature
        self.classes: list[str] = []
        self.values: list[Any] = []
        self.literal: list[bool] = []


def _genome(root: _Open, text: str) -> EvaluatedGenome:
    """:func:`ml.genome.evaluator.evaluate`'s genome from the closed head (its layers,
    optimizer and scheduler are the :class:`_Open` calls they were read as)."""
    chain: list[ChainLayer] = []
    node = root.values[0]
    while node is not None:
        chain.append((node.name, node.offset, node.values[1:], node.literal[1:]))
        node = node.values[0]
    chain.reverse()
    optimizer, scheduler = (training_dict(c.name, c.offset, c.values, text)
                            for c in root.values[1:3])
    return assemble(root.name, root.offset, chain, optimizer, scheduler, root.values[3:],
                    root.literal[3:])


def evaluate_fast(text: str) -> EvaluatedGenome | None:
    """``evaluate(parse(text))`` for a well-formed string whose evaluation raises nothing, else
    None (then the caller parses and evaluates the exact way, which reports the error). Helper
    calls are evaluated as they close (:func:`ml.genome.evaluator.helper_value`); a layer,
    optimizer or scheduler keeps its argument values, and the head builds the genome with the
    evaluator's own :func:`~ml.genome.evaluator.assemble` (``tests/ml/test_memo.py`` compares it
    with ``evaluate(parse(text))``)."""
    if not isinstance(text, str) or not text.isascii():
        return None
    pieces = _SPLIT.split(text)
    signatures = _SIGNATURES
    stack: list[_Open] = []
    root: _Open | None = None
    state = _ARG
    offset = 0
    last = len(pieces) - 1
    try:
        for i in range(0, last, 2):
            word, punct = pieces[i], pieces[i + 1]
            if word:
                word_offset = offset
                if word[0] == " ":
                    stripped = word.lstrip(" ")
                    word_offset += len(word) - len(stripped)
                    word = stripped
                offset += len(pieces[i])
            offset += 1
            if word:
                if state != _ARG:
                    return None
                if punct == "(":
                    signature = signatures.get(word)
                    if signature is None:
                        return None
                    stack.append(_Open(word, word_offset, signature))
                    continue
                if not stack:
                    return None
                top = stack[-1]
                if word.isdigit():  # most literals
                    if len(word) > MAX_INT_DIGITS:
                        return None
                    top.values.append(int(word))
                    top.classes.append(_SCALAR)
                elif word[0].isdigit() or word[0] == ".":
                    value = _number(word)
                    if value is None:
                        return None
                    top.values.append(value)
                    top.classes.append(_SCALAR)
                elif word in _BOOLS:
                    top.values.append(_BOOLS[word])
                    top.classes.append(_SCALAR)
                elif word == "IN0":
                    top.values.append(None)
                    top.classes.append(_TENSOR)
                else:
                    return None
                top.literal.append(True)
                state = _AFTER
            elif state != _AFTER:
                return None
            if punct == ",":
                state = _ARG
                continue
            if punct != ")":
                return None
            done = stack.pop()
            if tuple(done.classes) != done.signature[2]:  # arity and structural slots
                return None
            klass = done.signature[1]
            value: Any = done  # a layer, optimizer or scheduler: read when the head closes
            if klass == _SCALAR:
                value = helper_value(done.name, done.values)
            if not stack:
                if klass != cat.FINAL_TENSOR:
                    return None
                root = done
                state = _DONE
                if i + 2 != last:
                    return None
                continue
            parent = stack[-1]
            parent.values.append(value)
            parent.classes.append(klass)
            parent.literal.append(False)
            state = _AFTER
        if root is None or state != _DONE or pieces[last].strip(" ") or \
                root.name not in cat.HEADS:
            return None
        return _genome(root, text)
    except (HelperRefused, GenomeError):  # the exact path reports the error
        return None
