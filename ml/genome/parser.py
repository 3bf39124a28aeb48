"""Recursive-descent parser for genome strings, run on an explicit stack.

The grammar is ``call := NAME "(" arg ("," arg)* ")"`` with ``arg := call | NUMBER | NAME``. The
descent keeps its own stack instead of Python's, so nesting depth is limited by memory only and
deep input never hits the interpreter's recursion limit. Names, arities and the *structural* slot
types (tensor chain, optimizer, scheduler, scalar) are checked here; scalar types stay lenient as
in the original codec and are checked on evaluated values (``validate``).
"""
from __future__ import annotations

from ml.errors import GenomeSyntaxError, GenomeTypeError
from ml.genome import catalogue as cat
from ml.genome.lexer import COMMA, END, LPAREN, NAME, NUMBER, RPAREN, Token, number_value, tokenize
from ml.genome.tree import Call, Literal, Node, Terminal

SCALAR = "scalar"
_BOOLS = {"True": True, "False": False}


def _slot_class(slot_type: str) -> str:
    return slot_type if slot_type in (cat.TENSOR3D, cat.FINAL_TENSOR, cat.OPTIMIZER,
                                      cat.SCHEDULER) else SCALAR


#: name -> (return type, structural class, slot classes of its arguments).
_SIGNATURES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    **{name: (p.return_type, p.return_type, tuple(_slot_class(t) for t in p.arg_types))
       for name, p in cat.PRIMITIVES.items()},
    **{name: (cat.CONVERSION_RETURN.get(name, SCALAR), SCALAR, (SCALAR,) * arity)
       for name, arity in cat.HELPERS.items()},
}


def _new_call(token: Token, text: str) -> Call:
    signature = _SIGNATURES.get(token.text)
    if signature is not None:
        return Call(token.text, token.offset, [], signature[0], signature[1])
    if token.text in cat.DISABLED_PRIMITIVES:
        raise GenomeTypeError(f"primitive {token.text} is disabled in the evolution's grammar",
                              offset=token.offset, text=text, code="DISABLED_PRIMITIVE")
    raise GenomeTypeError(f"unknown primitive {token.text!r}", offset=token.offset, text=text,
                          code="UNKNOWN_PRIMITIVE")


def call_signature(name: str) -> tuple[str, str]:
    """(type, structural class) the parser gives a call of ``name`` (KeyError if unknown): for
    code that builds a genome's tree while printing it (the search's offspring) instead of
    parsing the text again."""
    signature = _SIGNATURES[name]
    return signature[0], signature[1]


def _check_call(call: Call, text: str) -> None:
    """Arity and structural slot types of a completed call."""
    slots = _SIGNATURES[call.name][2]
    args = call.args
    if len(args) == len(slots) and all(a.klass == s for a, s in zip(args, slots)):
        return
    if len(args) != len(slots):
        raise GenomeTypeError(f"{call.name} takes {len(slots)} arguments, got {len(args)}",
                              offset=call.offset, text=text, code="ARITY_MISMATCH",
                              expected=len(slots), got=len(args))
    for arg, want in zip(args, slots):
        if arg.klass != want:
            raise GenomeTypeError(f"argument of {call.name} needs a {want} expression, "
                                  f"got {arg.klass}", offset=arg.offset, text=text,
                                  code="TYPE_MISMATCH", expected=want, got=arg.klass)


def _atom(token: Token, text: str) -> Node:
    if token.kind == NUMBER:
        return Literal(number_value(token, text), token.offset)
    if token.text in _BOOLS:
        return Literal(_BOOLS[token.text], token.offset)
    if token.text == "IN0":
        return Terminal("IN0", token.offset)
    raise GenomeTypeError(f"unknown terminal {token.text!r}", offset=token.offset, text=text,
                          code="UNKNOWN_TERMINAL")


def parse(text: str, *, max_length: int | None = None) -> Call:
    """Parse a genome into its typed tree; the root must be a detection head."""
    if not isinstance(text, str):
        raise GenomeSyntaxError("a genome must be a string", code="NOT_A_STRING")
    if max_length is not None and len(text) > max_length:
        raise GenomeSyntaxError(f"genome is {len(text)} characters (max {max_length})",
                                offset=max_length, text=text, code="GENOME_TOO_LONG")
    if not text.strip():
        raise GenomeSyntaxError("empty genome", offset=0, text=text, code="EMPTY_GENOME")
    tokens = iter(tokenize(text))
    stack: list[Call] = []
    root: Call | None = None

    def expect(kinds: tuple[str, ...], what: str) -> Token:
        tok = next(tokens)
        if tok.kind not in kinds:
            code = "UNEXPECTED_END" if tok.kind == END else "UNEXPECTED_TOKEN"
            found = "end of input" if tok.kind == END else repr(tok.text)
            raise GenomeSyntaxError(f"expected {what}, found {found}", offset=tok.offset,
                                    text=text, code=code)
        return tok

    tok = expect((NAME,), "a primitive name")
    expect((LPAREN,), "'('")
    stack.append(_new_call(tok, text))
    while stack:
        # At the start of an argument.
        tok = expect((NAME, NUMBER), "an argument")
        if tok.kind == NAME:
            nxt = next(tokens)
            if nxt.kind == LPAREN:
                stack.append(_new_call(tok, text))
                continue
            stack[-1].args.append(_atom(tok, text))
        else:
            stack[-1].args.append(_atom(tok, text))
            nxt = next(tokens)
        # After an argument: ',' continues the call, ')' closes one or more calls.
        while True:
            if nxt.kind == COMMA:
                break
            if nxt.kind != RPAREN:
                code = "UNEXPECTED_END" if nxt.kind == END else "UNEXPECTED_TOKEN"
                found = "end of input" if nxt.kind == END else repr(nxt.text)
                raise GenomeSyntaxError(f"expected ',' or ')', found {found}", offset=nxt.offset,
                                        text=text, code=code)
            done = stack.pop()
            _check_call(done, text)
            if not stack:
                root = done
                break
            stack[-1].args.append(done)
            nxt = next(tokens)
        if root is not None:
            break
    trailing = next(tokens)
    if trailing.kind != END:
        raise GenomeSyntaxError("unexpected input after the genome", offset=trailing.offset,
                                text=text, code="TRAILING_INPUT")
    assert root is not None
    if root.name not in cat.HEADS:
        raise GenomeTypeError(f"a genome must be rooted at a detection head, not {root.name}",
                              offset=root.offset, text=text, code="TYPE_MISMATCH")
    return root
