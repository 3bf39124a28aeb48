"""Tokenizer for genome strings. Linear time, no regex backtracking on bad input."""
from __future__ import annotations

import re
from typing import NamedTuple

from ml.errors import GenomeSyntaxError

# Token kinds.
NAME, NUMBER, LPAREN, RPAREN, COMMA, END = "NAME", "NUMBER", "(", ")", ",", "END"

_SPLIT = re.compile(r"([(),])")
_WORD = re.compile(r"[ \t\r\n]*(?:(?P<NAME>[A-Za-z_][A-Za-z0-9_]*)|"
                   r"(?P<NUMBER>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))[ \t\r\n]*")
_BLANK = frozenset(" \t\r\n")
#: int() refuses longer digit strings (CPython's int_max_str_digits); we say so with a code.
MAX_INT_DIGITS = 4300


class Token(NamedTuple):
    kind: str
    text: str
    offset: int


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` followed by an END token; whitespace between tokens is dropped.

    Splitting on punctuation first (as the original codec did) and matching each piece whole is
    several times faster than a character scanner in Python, which matters on the hot path.
    """
    tokens: list[Token] = []
    append = tokens.append
    offset = 0
    for piece in _SPLIT.split(text):
        if piece in ("(", ")", ","):
            append(Token(piece, piece, offset))
        elif piece:
            m = _WORD.fullmatch(piece)
            if m is not None:
                kind = m.lastgroup
                append(Token(kind, m.group(kind), offset + m.start(kind)))
            else:
                tokens.extend(_scan_piece(text, offset, piece))
        offset += len(piece)
    append(Token(END, "", len(text)))
    return tokens


def _scan_piece(text: str, offset: int, piece: str) -> list[Token]:
    """Slow path for a piece that is not exactly one word: several words, or a bad character."""
    out: list[Token] = []
    i = 0
    while i < len(piece):
        if piece[i] in _BLANK:
            i += 1
            continue
        m = _WORD.match(piece, i)
        if m is None or m.end() == i:
            raise GenomeSyntaxError(f"unexpected character {piece[i]!r}", offset=offset + i,
                                    text=text, code="UNEXPECTED_CHARACTER")
        if m.lastgroup:
            out.append(Token(m.lastgroup, m.group(m.lastgroup), offset + m.start(m.lastgroup)))
        i = m.end()
    return out


def number_value(token: Token, text: str) -> int | float:
    """The Python value of a NUMBER token, as ``int()`` then ``float()`` would parse it."""
    t = token.text
    if t.isdigit():
        if len(t) > MAX_INT_DIGITS:
            raise GenomeSyntaxError(f"integer literal has {len(t)} digits (max {MAX_INT_DIGITS})",
                                    offset=token.offset, text=text, code="NUMBER_TOO_LONG")
        return int(t)
    value = float(t)
    if value != value or value in (float("inf"), float("-inf")):
        raise GenomeSyntaxError("float literal is not finite", offset=token.offset, text=text,
                                code="NON_FINITE_VALUE")
    return value
