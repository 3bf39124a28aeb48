"""Typed errors with stable codes.

Every failure a genome can cause is a :class:`GenomeError` carrying a stable ``code`` (clients
branch on it), the character ``offset`` it refers to and a short excerpt of the text there.
Nothing else may escape ``load``/``compile_genome``/``GenomeEncoder.encode``/``canonical_hash``:
an unforeseen exception below them becomes ``INTERNAL_ERROR`` for that one genome
(:func:`isolated`), so a batch never loses more than the bad item. The bounds behind the
``*_TOO_LARGE``, ``INTEGER_OUT_OF_RANGE`` and ``*_BUDGET_EXCEEDED`` codes, and why they can never
reject a genome the evolution wrote, are in :mod:`ml.genome.limits`.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

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
    "TYPE_MISMATCH": "a structural slot (tensor, optimizer, scheduler, scalar) given the wrong "
                     "kind",
    # evaluation
    "NUMERIC_OVERFLOW": "a helper result too large to represent (over 4300 digits, or past a "
                        "float), or loss weights whose sum overflows",
    "NON_FINITE_VALUE": "a literal or helper result that is inf or nan",
    "ENUM_OUT_OF_RANGE": "an enum gene outside its member range",
    # validation of evaluated values
    "INVALID_HYPERPARAMETER": "a layer argument a torch constructor would reject",
    "WEIGHTS_UNAVAILABLE": "a weights gene asking for weights torchvision does not have",
    "TOO_MANY_LAYERS": "more generic layers than the codec allows (13)",
    "LOSS_WEIGHTS_ZERO": "all seven loss weights are zero",
    # upper bounds (ml.genome.limits): values no torch module can hold and the evolution never
    # writes
    "INTEGER_OUT_OF_RANGE": "an integer gene, training gene or loss weight outside int64",
    "CHANNELS_TOO_LARGE": "a channel count above 4096",
    "GROUPS_TOO_LARGE": "a group count above 4096",
    "KERNEL_TOO_LARGE": "a kernel size above 256",
    "STRIDE_TOO_LARGE": "a stride above 256",
    "PADDING_TOO_LARGE": "a padding above 256",
    "DILATION_TOO_LARGE": "a dilation above 256",
    "OUTPUT_SIZE_TOO_LARGE": "an adaptive-pool output size above 16384",
    # architecture
    "SHAPE_ERROR": "a layer cannot run on the tensor that reaches it at 2048x2448",
    "INVALID_LAYER": "a layer whose evaluated arguments the compiler cannot use",
    "UNSUPPORTED_LAYER": "a primitive in the layer chain that is not a layer or backbone",
    "PARAMETER_BUDGET_EXCEEDED": "more than 2^34 parameters (chain and head)",
    "ACTIVATION_BUDGET_EXCEEDED": "more than 2^38 activation elements at 1x3x2048x2448 (summed "
                                  "over the graph's nodes)",
    "INTERNAL_ERROR": "an unforeseen failure (a bug): fails its own genome, the batch goes on",
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
        shown = f": {self.excerpt}" if self.excerpt else ""
        super().__init__(f"[{self.code}] {message}{where}{shown}")

    def with_text(self, text: str | None) -> GenomeError:
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
    """Evaluated values the original decoder would reject."""

    code = "VALIDATION_ERROR"


class ArchitectureError(GenomeError):
    """The network cannot be built or cannot run at the evolution's input size."""

    code = "ARCHITECTURE_ERROR"


def internal_error(stage: str, exc: BaseException) -> GenomeError:
    """An unforeseen exception while ``stage`` ("compiling", ...) as one genome's
    ``INTERNAL_ERROR``. The message names the exception type and the start of its text only
    (a torch error can carry a C++ traceback; a number's ``str`` can itself fail)."""
    try:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    except Exception:
        detail = ""
    message = f"internal error while {stage} the genome: {type(exc).__name__}"
    return GenomeError(message + (f": {detail}" if detail else ""), code="INTERNAL_ERROR",
                       exception=type(exc).__name__)


def isolated(stage: str) -> Callable[[F], F]:
    """Decorate a per-genome entry point: a :class:`GenomeError` passes through, anything else
    is logged with its traceback and raised as :func:`internal_error` (so callers that handle
    ``GenomeError`` per item can never lose a batch to a bug)."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except GenomeError:
                raise
            except Exception as exc:
                log.exception("unforeseen failure while %s a genome", stage)
                raise internal_error(stage, exc) from exc
        return guarded  # type: ignore[return-value]
    return wrap
