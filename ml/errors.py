"""Typed errors with stable codes.

Every failure a genome can cause is a :class:`GenomeError` carrying a stable ``code`` (clients
branch on it), the character ``offset`` it refers to and a short excerpt of the text there.
Nothing else may escape ``parse``/``evaluate``/``validate``/``compile``.
"""
from __future__ import annotations

from typing import Any

EXCERPT_RADIUS = 24

#: Every stable error code, with what it means. The API documents and tests iterate over this.
ERROR_CODES: dict[str, str] = {
    # syntax (tokenizer, parser)
    "NOT_A_STRING": "the genome is not a string",
    "EMPTY_GENOME": "the genome is empty or blank",
    "GENOME_TOO_LONG": "the genome is longer than the configured limit",
    "UNEXPECTED_CHARACTER": "a character that cannot start or continue a token",
    "UNEXPECTED_TOKEN": "a token where the grammar expects another",
    "UNEXPECTED_END": "the text ends inside a call",
    "TRAILING_INPUT": "text after the complete genome",
    "NUMBER_TOO_LONG": "an integer literal with more digits than Python converts",
    # names and types
    "UNKNOWN_PRIMITIVE": "a call to a name the grammar does not have",
    "DISABLED_PRIMITIVE": "a primitive the evolution defined but never registered",
    "UNKNOWN_TERMINAL": "a bare name other than IN0, True, False",
    "ARITY_MISMATCH": "a call with the wrong number of arguments",
    "TYPE_MISMATCH": "a structural slot (tensor, optimizer, scheduler, scalar) given the wrong kind",
    # evaluation
    "NUMERIC_OVERFLOW": "a helper result too large to represent",
    "NON_FINITE_VALUE": "a literal or helper result that is inf or nan",
    "ENUM_OUT_OF_RANGE": "an enum gene outside its member range",
    # validation of evaluated values
    "INVALID_HYPERPARAMETER": "a layer argument a torch constructor would reject",
    "WEIGHTS_UNAVAILABLE": "a weights gene asking for weights torchvision does not have",
    "TOO_MANY_LAYERS": "more generic layers than the codec allows (13)",
    "LOSS_WEIGHTS_ZERO": "all seven loss weights are zero",
    # architecture
    "SHAPE_ERROR": "a layer cannot run on the tensor that reaches it at 2048x2448",
    "INVALID_LAYER": "a layer whose evaluated arguments the compiler cannot use",
    "UNSUPPORTED_LAYER": "a primitive in the layer chain that is not a layer or backbone",
    "INTERNAL_ERROR": "an unforeseen failure (a bug): reported per genome, never raised",
}


def excerpt(text: str | None, offset: int | None, radius: int = EXCERPT_RADIUS) -> str:
    """A short window of ``text`` around ``offset`` (with a caret marker), for error messages."""
    if not text or offset is None:
        return ""
    offset = max(0, min(offset, len(text)))
    start, end = max(0, offset - radius), min(len(text), offset + radius)
    window = text[start:offset] + "⟨here⟩" + text[offset:end]
    return ("…" if start else "") + window + ("…" if end < len(text) else "")


class GenomeError(Exception):
    """Base of every genome failure. ``code`` is stable; ``message`` is for people."""

    code = "GENOME_ERROR"

    def __init__(self, message: str, *, offset: int | None = None, text: str | None = None,
                 code: str | None = None, **context: Any) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.offset = offset
        self.excerpt = excerpt(text, offset)
        self.context = context
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"[{self.code}] {message}{where}" + (f": {self.excerpt}" if self.excerpt else ""))

    def with_text(self, text: str | None) -> "GenomeError":
        """Attach the genome text (for the excerpt) when the raiser did not have it."""
        if text and not self.excerpt:
            self.excerpt = excerpt(text, self.offset)
            self.args = (f"{self.args[0]}: {self.excerpt}",) if self.args else self.args
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by the CLI and the API: ``{code, offset, message}``."""
        return {"code": self.code, "offset": self.offset, "message": self.message}


class GenomeSyntaxError(GenomeError):
    """The text is not a well-formed call expression (tokenizer or parser)."""

    code = "SYNTAX_ERROR"


class GenomeTypeError(GenomeError):
    """Well-formed, but a name, arity or structural slot type is wrong."""

    code = "TYPE_ERROR"


class GenomeEvaluationError(GenomeError):
    """A hyper-parameter expression cannot be evaluated as the original codec would."""

    code = "EVALUATION_ERROR"


class GenomeValidationError(GenomeError):
    """Evaluated values the original decoder would reject (spec §5)."""

    code = "VALIDATION_ERROR"


class ArchitectureError(GenomeError):
    """The network cannot be built or cannot run at the evolution's input size."""

    code = "ARCHITECTURE_ERROR"
