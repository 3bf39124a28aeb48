"""Training checkpoints: one torch file written atomically (tmp + rename) so a crash mid-write
never leaves a corrupt resume point."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Checkpoints hold tensors, optimiser/scheduler state dicts, RNG state tensors and plain
    lists/dicts/numbers: ``weights_only=True`` loads all of it and runs no pickled code, so a
    tampered checkpoint file cannot execute anything."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
