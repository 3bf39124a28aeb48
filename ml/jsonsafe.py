"""Strict JSON for reports, bundles and CLI output: numpy values become Python values, tuples
become lists, and non-finite floats become null (JSON has no NaN); :func:`emit` prints one such
object per line (every command's output)."""
from __future__ import annotations

import json
import math
import sys
from typing import Any


def json_safe(value: Any) -> Any:
    """Recursively convert ``value`` into something ``json.dumps(allow_nan=False)`` accepts."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())  # numpy arrays and scalars, torch tensors
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def emit(obj: Any) -> None:
    """Print one strict JSON object per line on stdout (the CLI's per-genome output)."""
    sys.stdout.write(json.dumps(json_safe(obj), separators=(", ", ": "), allow_nan=False) + "\n")
