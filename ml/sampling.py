"""Sampled genomes that are guaranteed to build: the sampler plus the compiler as its filter."""
from __future__ import annotations

from ml.arch.compiler import compile_genome
from ml.errors import GenomeError
from ml.genome import load
from ml.genome.sampler import GenomeSampler


def compiles(text: str) -> bool:
    """True when the genome loads and its network builds and runs at 2048x2448."""
    try:
        compile_genome(load(text))
    except GenomeError:
        return False
    return True


def sample_compiling(n: int, seed: int = 0) -> list[str]:
    """``n`` genomes from :class:`GenomeSampler` (seeded) that all compile."""
    return list(GenomeSampler(seed=seed).sample(n, accept=compiles))
