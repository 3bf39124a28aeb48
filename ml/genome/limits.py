"""Upper bounds on what a genome may ask for, far beyond anything the evolution can produce.

The evolution's grammar keeps its genes small: channels come from
``randChannel``/``toChannel`` (1..64), kernels, strides, paddings and dilations stay at or below
11, adaptive-pool outputs at or below 3006, groups are always 1. A hand-written or hostile
string can ask for anything, and a value that no torch constructor can hold (``4294967296``
channels, a 20-digit stride) would otherwise surface as a C++ error for the whole batch. These
bounds turn such values into a :class:`~ml.errors.GenomeError` with a code of its own, and they
are wide enough (>= 20x the grammar's maxima) never to reject a genome the evolution wrote.

Two per-genome budgets, at the evolution's input size 1x3x2048x2448 and batch 1:

* ``MAX_PARAMETERS``: every parameter of the chain and the head. The largest genome in the real
  data has 1.12e9; the grammar's genes cannot reach 5e9 (13 of the largest backbones plus a
  FasterRCNN head on 3,712 channels).
* ``MAX_ACTIVATION_ELEMENTS``: the sum over the network graph's nodes of their output elements
  (an upper estimate of what a training forward keeps). The real data's largest is 1.2e10
  (48 GB in float32); 2^38 elements is 1 TiB in float32, more than any accelerator the evolution
  could train on holds, so a genome past it could only have failed.
"""
from __future__ import annotations

#: Every integer that reaches a layer, a training gene or a loss weight must fit int64 (what
#: torch and numpy hold); a larger one is ``INTEGER_OUT_OF_RANGE``.
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

#: Helper results with more decimal digits than this fail: the codec pushed ``str(result)``
#: and Python refuses ``str()`` of a longer integer (``sys.int_max_str_digits``).
MAX_INTEGER_DIGITS = 4300

#: Int-wrapper gene type -> (largest value accepted, its error code).
FIELD_MAXIMUM: dict[str, tuple[int, str]] = {
    "ChannelSize": (4096, "CHANNELS_TOO_LARGE"),
    "GroupSize": (4096, "GROUPS_TOO_LARGE"),
    "KernelSize": (256, "KERNEL_TOO_LARGE"),
    "StrideSize": (256, "STRIDE_TOO_LARGE"),
    "PaddingSize": (256, "PADDING_TOO_LARGE"),
    "DilationSize": (256, "DILATION_TOO_LARGE"),
    "OutputSize": (16384, "OUTPUT_SIZE_TOO_LARGE"),
}

MAX_PARAMETERS = 2 ** 34
MAX_ACTIVATION_ELEMENTS = 2 ** 38


def show(value: object, limit: int = 40) -> str:
    """``repr(value)`` for a message, shortened: a message must never carry a 4,000-digit
    number (nor fail to format one)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if -(10 ** limit) < value < 10 ** limit:
            return repr(value)
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def fits_int64(value: object) -> bool:
    """False only for an int (not a bool) outside int64."""
    return not isinstance(value, int) or isinstance(value, bool) or \
        INT64_MIN <= value <= INT64_MAX
