"""Dataset build at scale: throughput and peak memory for 1,000 and 100,000 sampled genomes.

Genomes come from ``GenomeSampler(seed).sample(n)`` without a compile filter (generated in a
process pool and written to a temp file first); the build's own compile step rejects the ones
that do not build, and they are counted as ``invalid_genome``. Each build runs in a fresh
subprocess (what ``nas-surrogate dataset build --pool`` runs), which measures RSS/PSS summed over
its process tree; numbers are read back from the manifest.

    python benchmarks/dataset_build.py [--sizes 1000 100000] [--workers 1] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _sample(job: tuple[int, int, str]) -> str:
    from ml.genome.sampler import GenomeSampler

    seed, n, path = job
    with open(path, "w") as handle:
        for genome in GenomeSampler(seed=seed).sample(n):
            handle.write(genome + "\n")
    return path


def write_genomes(n: int, path: Path, workers: int, seed: int = 0) -> float:
    """``n`` sampled genomes into ``path`` (parts generated in parallel); returns seconds."""
    started = time.perf_counter()
    parts = max(1, min(workers * 4, n // 500))
    sizes = [n // parts + (i < n % parts) for i in range(parts)]
    jobs = [(seed * 1000 + i, size, f"{path}.part{i}") for i, size in enumerate(sizes)]
    with mp.get_context("spawn").Pool(workers) as pool:
        written = pool.map(_sample, jobs)
    with open(path, "w") as out:
        for part in written:
            with open(part) as handle:
                shutil.copyfileobj(handle, out)
            Path(part).unlink()
    return time.perf_counter() - started


#: The build alone in a fresh interpreter (the CLI's parser also imports other packages'
#: commands; some load torch eagerly, which would count ~0.75 GB against the build).
_BUILD = ("import sys; from pathlib import Path; from ml.datasets.build import BuildOptions, "
          "build_dataset; build_dataset(BuildOptions(Path(sys.argv[1]), Path(sys.argv[2]), "
          "pool=True, workers=int(sys.argv[3]), progress=False))")


def build(pool_file: Path, out: Path, workers: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(pool_file), str(out), str(workers)],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads((out / "manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--workers", type=int, default=1,
                        help="build workers (default 1, the build's default: 2 workers need "
                             "~1.9 GB summed RSS, over the 1.5 GB budget)")
    parser.add_argument("--keep", type=Path, default=None, help="keep datasets under this dir")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="dataset_build_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        for n in args.sizes:
            pool_file = root / f"genomes_{n}.txt"
            sample_s = write_genomes(n, pool_file, args.workers)
            manifest = build(pool_file, root / f"ds_{n}", args.workers)
            counts, timings, memory = manifest["counts"], manifest["timings"], manifest["memory"]
            size_mb = sum(p.stat().st_size for p in (root / f"ds_{n}" / "shards").iterdir()) / 2**20
            print(f"n={n}: sampled in {sample_s:.1f}s; built {counts['unlabelled']} graphs "
                  f"({counts['invalid_genome']} invalid {counts['error_codes']}, "
                  f"{counts['duplicates']} duplicates) with {args.workers} workers in "
                  f"{timings['total_s']:.1f}s = {counts['rows'] / timings['total_s']:.1f} "
                  f"genomes/s (encode phase {timings['rows_per_s']} rows/s); peak RSS summed "
                  f"over processes {memory['peak_rss_sum_mb']:.0f} MB, PSS summed "
                  f"{memory['peak_pss_sum_mb']:.0f} MB; shards {size_mb:.1f} MB on disk",
                  flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
