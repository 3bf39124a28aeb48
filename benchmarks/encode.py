"""Encoding speed and memory: real genomes and sampled ones, in one warm process.

Prints medians/p95 in milliseconds per genome (load + compile + graph + features + Data), the
process start-up cost (imports, and building every backbone variant once), and peak RSS after
each phase so that growth with the number of genomes is visible.

    python benchmarks/encode.py [--sampled 10000] [--encoding combined]
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def time_encoding(encoder, genomes: list[str], encoding: str) -> tuple[list[float], int]:
    from ml.errors import GenomeError

    times, failures = [], 0
    for text in genomes:
        start = time.perf_counter()
        try:
            encoder.encode(text).to_data(encoding)
        except GenomeError:
            failures += 1
        times.append((time.perf_counter() - start) * 1000)
    return times, failures


def report(name: str, times: list[float], failures: int) -> None:
    print(f"{name:<28} n={len(times):>6}  median {statistics.median(times):6.2f} ms  "
          f"p95 {percentile(times, 95):6.2f} ms  max {max(times):8.1f} ms  failed {failures}  "
          f"peak RSS {peak_rss_mb():7.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sampled", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoding", default="combined", choices=("onehot", "combined"))
    args = parser.parse_args()

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ml.encoding.encoder"], cwd=REPO, check=True)
    import_s = time.perf_counter() - start

    start = time.perf_counter()
    from ml.arch.backbones import warm_up
    from ml.encoding.encoder import GenomeEncoder
    warm_up()
    warm_s = time.perf_counter() - start
    print(f"start-up: imports {import_s:.2f} s (fresh process); building, tracing and compiling "
          f"all backbone variants {warm_s:.2f} s (once per process); "
          f"peak RSS {peak_rss_mb():.0f} MB")

    with open(DATA / "surrogate_evolution_train.csv", newline="") as handle:
        real = [row["genome"] for row in csv.DictReader(handle)]
    real += [g for g in (DATA / "seed_genomes.txt").read_text().splitlines() if g.strip()]
    encoder = GenomeEncoder()
    time_encoding(encoder, real, args.encoding)  # warm pass: per-variant encoder tables, allocator
    report(f"real genomes ({args.encoding})", *time_encoding(encoder, real, args.encoding))

    if args.sampled <= 0:
        return
    from ml.sampling import sample_compiling

    start = time.perf_counter()
    sampled = sample_compiling(args.sampled, seed=args.seed)
    print(f"sampled {len(sampled)} compiling genomes in {time.perf_counter() - start:.1f} s")
    fresh = GenomeEncoder()  # no per-variant tables yet: those costs show up in the max
    report(f"sampled genomes ({args.encoding})", *time_encoding(fresh, sampled, args.encoding))
    report("sampled genomes, second pass", *time_encoding(fresh, sampled, args.encoding))
    print("reference (issue 2): original pipeline median 4.19 s/genome (p95 22.6 s), 21.3 GB RSS; "
          "plain meta-device port median 0.30 s (p95 0.72 s), 1.2 GB")


if __name__ == "__main__":
    main()
