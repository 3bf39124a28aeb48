"""Micro-benchmark of the architecture compiler and the graph builder.

Prints the cold per-variant costs (torchvision build on meta, FX trace, shape-program compile),
then warm per-genome latency of ``compile_genome`` + ``build_graph`` over the 238 real genomes and
over freshly sampled genomes (whose custom layers feed backbones unseen input sizes), and the
process's peak RSS. Run: ``python benchmarks/arch_speed.py [--repeats 5] [--samples 500]``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.arch import compile_genome
from ml.arch.backbones import all_builders, cached_variants, get_variant
from ml.encoding.graph import build_graph
from ml.errors import GenomeError
from ml.genome import load
from ml.genome.model import EvaluatedGenome
from ml.genome.sampler import GenomeSampler

DATA_DIR = Path(os.environ.get("NAS_SURROGATE_DATA_DIR",
                               Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def real_genomes() -> list[EvaluatedGenome]:
    with gzip.open(DATA_DIR / "reference_graphs.jsonl.gz", "rt") as handle:
        return [load(json.loads(line)["genome"]) for line in handle]


def sampled_genomes(n: int, seed: int) -> list[EvaluatedGenome]:
    out: list[EvaluatedGenome] = []
    sampler = GenomeSampler(seed=seed)
    while len(out) < n:
        try:
            out.append(load(sampler.draw()))
        except GenomeError:
            continue
    return out


def compile_and_graph(genome: EvaluatedGenome) -> bool:
    """One genome end to end; False when it fails to compile (failures are timed too)."""
    try:
        build_graph(compile_genome(genome))
    except GenomeError:
        return False
    return True


def timed(genomes: list[EvaluatedGenome], repeats: int,
          fn: Callable[[EvaluatedGenome], object]) -> list[float]:
    times = []
    for _ in range(repeats):
        for g in genomes:
            start = time.perf_counter()
            fn(g)
            times.append((time.perf_counter() - start) * 1e3)
    return times


def report(label: str, times: list[float]) -> None:
    ordered = sorted(times)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    print(f"{label:<34} n={len(times):>6}  median {statistics.median(times):6.3f} ms  "
          f"p95 {p95:6.3f} ms  max {ordered[-1]:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    genomes = real_genomes()
    start = time.perf_counter()
    for builder, gene in all_builders().items():
        get_variant(gene, builder)
    print(f"cold: all {len(all_builders())} variants built in {time.perf_counter() - start:.1f} s")
    print(f"{'variant':<20} {'nodes':>5} {'build s':>8} {'trace s':>8} {'program s':>9}")
    for name, v in sorted(cached_variants().items()):
        print(f"{name:<20} {len(v.nodes):>5} {v.timings[0]:>8.3f} {v.timings[1]:>8.3f} "
              f"{v.timings[2]:>9.3f}")

    for g in genomes:  # warm the per-process caches (head parameter counts, graph templates)
        compile_and_graph(g)
    report("real: compile_genome", timed(genomes, args.repeats, compile_genome))
    report("real: compile + build_graph", timed(genomes, args.repeats, compile_and_graph))

    sampled = sampled_genomes(args.samples, args.seed)
    ok = sum(compile_and_graph(g) for g in sampled)
    times = timed(sampled, 1, compile_and_graph)
    report("sampled: compile + build_graph", times)
    print(f"sampled: {ok}/{len(sampled)} compile; first vs last half medians "
          f"{statistics.median(times[:len(times) // 2]):.3f} / "
          f"{statistics.median(times[len(times) // 2:]):.3f} ms (flat = no growth)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
