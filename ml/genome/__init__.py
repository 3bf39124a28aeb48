"""The genome language: parse -> evaluate -> validate, printing and identities.

``load(text)`` is the one call most code needs. Only :class:`ml.errors.GenomeError` escapes it.
"""
from __future__ import annotations

from ml.errors import GenomeError, isolated
from ml.genome.evaluator import evaluate
from ml.genome.fastpath import evaluate_fast
from ml.genome.identity import canonical_form, canonical_hash, canonical_json, individual_hash
from ml.genome.model import EvaluatedGenome, Layer
from ml.genome.parser import parse
from ml.genome.printer import to_string
from ml.genome.tree import Call
from ml.genome.validate import validate

__all__ = ["EvaluatedGenome", "GenomeError", "Layer", "canonical_form", "canonical_hash",
           "canonical_json", "evaluate", "individual_hash", "load", "parse", "to_string",
           "validate"]


@isolated("reading")
def load(text: str, *, max_length: int | None = None,
         tree: Call | None = None) -> EvaluatedGenome:
    """Parse, evaluate and validate a genome string.

    ``tree``, when the caller has it, is what ``parse(text)`` makes of the string (the search
    builds its offspring's trees while printing them): it is evaluated without lexing and
    parsing the text again. A well-formed string is read and evaluated in one pass by
    :func:`ml.genome.fastpath.evaluate_fast` (the same genome); anything else, and every error,
    by :func:`parse` and :func:`evaluate`. Any failure is a :class:`GenomeError` with a stable
    code; an unforeseen exception is wrapped as ``INTERNAL_ERROR`` so a batch never loses more
    than the one bad item.
    """
    fits = isinstance(text, str) and (max_length is None or len(text) <= max_length)
    if tree is None or not fits:
        fast = evaluate_fast(text) if fits else None
        if fast is not None:
            validate(fast, text)
            return fast
        tree = parse(text, max_length=max_length)
    genome = evaluate(tree, text)
    validate(genome, text)
    return genome

