"""A one-pass parser for well-formed genome strings, beside the exact one (issue 14 §3).

Why: lexing into ``Token`` tuples and then descending over them cost ~0.6 ms of the ~1.2 ms a
never-seen genome may take in ``POST /predict``. Splitting on punctuation gives pieces that
alternate ``word, punctuation, word, ...``, so one loop over the pairs can build the tree.

It only ever answers for strings it is sure of: plain names and decimal numbers separated by
``(``, ``)``, ``,`` and spaces, every name known, every call's arity and structural slots right,
rooted at a head. Anything else (another whitespace, an exponent, an unknown name, any error)
returns None and the caller runs :func:`ml.genome.parser.parse`, which reports the error with
its code and offset. When it answers, the tree equals ``parse(text)``'s, offsets included
(``tests/test_genome_language.py`` compares the two on real, sampled, bred and damaged strings).
"""
from __future__ import annotations

import math

from ml.genome import catalogue as cat
from ml.genome.lexer import _SPLIT, MAX_INT_DIGITS
from ml.genome.parser import _BOOLS, _SIGNATURES
from ml.genome.tree import Call, Literal, Node, Terminal

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


def parse_fast(text: str) -> Call | None:
    """``parse(text)`` for a well-formed genome, or None (then parse it the exact way)."""
    if not isinstance(text, str) or not text.isascii():
        return None
    pieces = _SPLIT.split(text)
    signatures = _SIGNATURES
    stack: list[Call] = []
    root: Call | None = None
    state = _ARG
    offset = 0
    last = len(pieces) - 1
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
                call = Call(word, word_offset, [], signature[0], signature[1])
                if stack:
                    stack[-1].args.append(call)
                stack.append(call)
                continue
            if not stack:
                return None
            node: Node
            if word.isdigit():  # most literals: inline, no call
                if len(word) > MAX_INT_DIGITS:
                    return None
                node = Literal(int(word), word_offset)
            elif word[0].isdigit() or word[0] == ".":
                value = _number(word)
                if value is None:
                    return None
                node = Literal(value, word_offset)
            elif word in _BOOLS:
                node = Literal(_BOOLS[word], word_offset)
            elif word == "IN0":
                node = Terminal("IN0", word_offset)
            else:
                return None
            stack[-1].args.append(node)
            state = _AFTER
        elif state != _AFTER:
            return None
        if punct == ",":
            state = _ARG
            continue
        if punct != ")":
            return None
        done = stack.pop()
        slots = signatures[done.name][2]
        args = done.args
        if len(args) != len(slots):
            return None
        for arg, slot in zip(args, slots):
            if arg.klass != slot:
                return None
        if not stack:
            root = done
            state = _DONE
            if i + 2 != last:
                return None
        # A closed call is its parent's argument: it was appended when it opened.
    if root is None or state != _DONE or pieces[last].strip(" ") or root.name not in cat.HEADS:
        return None
    return root
