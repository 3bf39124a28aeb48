"""The encoder processes started from a warmed fork server against spawned ones that each build
their own backbones (``ml.inference.pool``): seconds until the pool is ready (with the API
process's own warm-up thread beside it, as ``nas-surrogate serve`` starts them, and without),
300 never-seen genomes encoded, the same again right after a worker was killed (the pool is
replaced), and the proportional memory (PSS) of the workers and the fork server. Rounds
alternate the two ways in fresh processes; prints medians and ratios.

    python benchmarks/pool_start.py [--rounds 3] [--processes 2]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WAYS = ("spawn", "forkserver")


def children_pss_mb() -> float:
    """Proportional memory of this process's descendants: the workers (the fork server's
    children, where there is one), the server, and multiprocessing's resource tracker (~9 MB,
    either way)."""
    import psutil

    return sum(child.memory_full_info().pss
               for child in psutil.Process().children(recursive=True)) / 2 ** 20


def one_round(way: str, processes: int, api_warm_up: bool, seed: int) -> dict[str, float]:
    """One fresh pool (run in its own process: the fork server is one per process)."""
    from ml.genome.sampler import GenomeSampler
    from ml.inference.pool import EncodingPool, warm_process
    from ml.models.trees import TreePredictor

    key = TreePredictor.feature_key
    texts = list(GenomeSampler(seed=seed).sample(300))
    more = list(GenomeSampler(seed=seed + 1000).sample(300))
    started = time.perf_counter()
    api = threading.Thread(target=warm_process if api_warm_up else (lambda: None))
    api.start()
    pool = EncodingPool(processes, 20_000, warm=True, start_method=way)
    pool.start()
    pool.wait_ready(600)
    ready = time.perf_counter() - started
    api.join()
    t0 = time.perf_counter()
    pool.encode(texts, key)
    encode = time.perf_counter() - t0
    memory = children_pss_mb()
    os.kill(pool.pids()[0], signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.perf_counter()
    pool.encode(more, key)
    after_kill = time.perf_counter() - t0
    pool.close()
    return {"ready_s": ready, "encode_300_s": encode, "after_kill_300_s": after_kill,
            "pss_mb": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--one", nargs=3, metavar=("WAY", "API", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        way, api, seed = args.one
        print(json.dumps(one_round(way, args.processes, api == "1", int(seed))))
        return 0
    results: dict[tuple[str, bool], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for api in (True, False):
            for way in WAYS:
                out = subprocess.run(
                    [sys.executable, __file__, "--processes", str(args.processes), "--one", way,
                     "1" if api else "0", str(round_)],
                    capture_output=True, text=True, check=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                results.setdefault((way, api), []).append(row)
                print(f"round {round_ + 1} {way:10s} api warm-up {api!s:5s} "
                      + " ".join(f"{k} {v:.2f}" for k, v in row.items()), file=sys.stderr)
    print(f"| start | API warm-up beside it | ready s | 300 never-seen s | 300 after a kill s "
          f"| workers + server PSS MB |  (medians of {args.rounds}, {args.processes} workers)")
    print("|---|---|---|---|---|---|")
    for api in (True, False):
        medians = {way: {k: statistics.median(r[k] for r in results[(way, api)])
                         for k in results[(way, api)][0]} for way in WAYS}
        for way in WAYS:
            m = medians[way]
            print(f"| {way} | {'yes' if api else 'no'} | {m['ready_s']:.2f} | "
                  f"{m['encode_300_s']:.2f} | {m['after_kill_300_s']:.2f} | {m['pss_mb']:.0f} |")
        ratio = {k: medians["spawn"][k] / medians["forkserver"][k]
                 for k in medians["spawn"] if medians["forkserver"][k] > 0}
        print(f"| spawn / forkserver | {'yes' if api else 'no'} | {ratio['ready_s']:.2f}x | "
              f"{ratio['encode_300_s']:.2f}x | {ratio['after_kill_300_s']:.1f}x | "
              f"{ratio['pss_mb']:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
