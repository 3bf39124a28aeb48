"""Atomic file writes (temp file in the same folder + rename): a crash never leaves a torn file.

Kept free of torch so the build's parent process can use it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write via ``write(tmp_path)`` then rename, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON file written atomically (temp file + rename)."""
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1, allow_nan=True)))
