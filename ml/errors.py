"""Typed errors with stable codes.

Every failure a genome can cause is a :class:`GenomeError` carrying a stable ``code`` (clients
branch on it), the character ``offset`` it refers to and a short excerpt of the text there.
Nothing else may escape ``parse``/``evaluate``/``validate``/``compile``.
"""
from __future__ import annotations

from typing import Any

EXCERPT_RADIUS = 24


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
