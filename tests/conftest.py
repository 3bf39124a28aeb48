"""Shared fixtures: the real data in ../shared/data (or $NAS_SURROGATE_DATA_DIR)."""
from __future__ import annotations

import csv
import gzip
import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

# The bulk of the suite scores in the test process; tests/ml/inference/test_encoding_pool.py and the
# `serve` subprocesses (which start from a clean SURROGATE_* environment) run the encoder pool.
os.environ.setdefault("SURROGATE_ENCODER_PROCESSES", "0")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA_DIR / "surrogate_evolution_train.csv"
SEEDS_TXT = DATA_DIR / "seed_genomes.txt"
REFERENCE = DATA_DIR / "reference_graphs.jsonl.gz"


@lru_cache(maxsize=1)
def train_rows() -> tuple[dict[str, str], ...]:
    with open(TRAIN_CSV, newline="") as handle:
        return tuple(csv.DictReader(handle))


@lru_cache(maxsize=1)
def seed_genomes() -> tuple[str, ...]:
    return tuple(line for line in SEEDS_TXT.read_text().splitlines() if line.strip())


@lru_cache(maxsize=1)
def reference_rows() -> tuple[dict, ...]:
    with gzip.open(REFERENCE, "rt") as handle:
        return tuple(json.loads(line) for line in handle)


def real_genomes() -> tuple[str, ...]:
    return tuple(r["genome"] for r in train_rows()) + seed_genomes()


@pytest.fixture(scope="session")
def rows() -> tuple[dict[str, str], ...]:
    return train_rows()


@pytest.fixture(scope="session")
def seeds() -> tuple[str, ...]:
    return seed_genomes()


@pytest.fixture(scope="session")
def genomes() -> tuple[str, ...]:
    return real_genomes()


@pytest.fixture(scope="session")
def references() -> tuple[dict, ...]:
    return reference_rows()
