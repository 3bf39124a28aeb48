"""Grouped train/validation split: a genome and its duplicates never straddle the split."""
from __future__ import annotations

import numpy as np
from torch_geometric.data import Data


def grouped_split(records: list[Data], fraction: float, seed: int) -> tuple[list[Data], list[Data]]:
    groups = sorted({r.canonical_hash for r in records})
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_val = max(1, int(round(fraction * len(groups))))
    val_groups = set(groups[:n_val])
    train = [r for r in records if r.canonical_hash not in val_groups]
    val = [r for r in records if r.canonical_hash in val_groups]
    return train, val
