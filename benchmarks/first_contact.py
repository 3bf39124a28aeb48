"""First contact with the search through HTTP: start ``nas-surrogate serve`` on a data directory
that already holds a model (run ``bash scripts/run.sh`` once, or ``serve --data-dir DIR``), then
time, as a client would see it,

* ``POST /propose`` SSI (``pool_size`` 2,000, 5 inner generations) from the 25 genomes of the
  last real generation, on the fresh process, and the same request again;
* ``POST /predict`` with 2,000 never-seen genomes (the 238 real + sampled compiling ones),
  and the same batch again.

With ``--wait-pool`` the first request waits until ``/readyz`` also reports the encoder
processes ready (their backbones built: issue 14's "warm backbone cache"); without it, it goes
as soon as ``/readyz`` is 200, while the processes may still be building theirs (then the API
process encodes the first batches itself).

    python benchmarks/first_contact.py --data-dir var [--port 8766] [--wait-pool]
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--wait-pool", action="store_true",
                        help="start once the encoder processes are ready too")
    args = parser.parse_args()
    from ml.sampling import sample_compiling

    base, key = f"http://127.0.0.1:{args.port}", (args.data_dir / "admin.key").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nas_surrogate.cli", "serve", "--data-dir",
                             str(args.data_dir), "--port", str(args.port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("serve exited; does the data directory hold a model?")
            time.sleep(0.5)
        print(f"ready after {time.perf_counter() - started:.1f} s")
        while args.wait_pool:
            pool = httpx.get(base + "/readyz", timeout=2).json().get("encoder_pool")
            if pool is None or pool["ready"]:
                print(f"encoder processes ready after {time.perf_counter() - started:.1f} s")
                break
            time.sleep(0.5)
        with open(DATA / "surrogate_evolution_train.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        last = max(float(r["generation"]) for r in rows)
        population = [r["genome"] for r in rows if float(r["generation"]) == last]
        unseen = [r["genome"] for r in rows]
        unseen += sample_compiling(2000 - len(unseen), seed=424242)
        headers = {"X-API-Key": key}
        body = {"population": population, "strategy": "ssi", "pool_size": 2000,
                "inner_generations": 5, "seed": 1}
        answers = []
        for attempt in (1, 2):
            t = time.perf_counter()
            r = httpx.post(base + "/propose", json=body, headers=headers, timeout=600)
            r.raise_for_status()
            answers.append(r.json()["items"])
            print(f"POST /propose ssi 2000x5 #{attempt}: {time.perf_counter() - t:.2f} s "
                  f"{r.json()['stats']}")
        print("identical items:", answers[0] == answers[1])
        for attempt in (1, 2):
            t = time.perf_counter()
            r = httpx.post(base + "/predict", json={"genomes": unseen}, headers=headers,
                           timeout=600)
            r.raise_for_status()
            print(f"POST /predict 2,000 never-seen #{attempt}: {time.perf_counter() - t:.2f} s")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


if __name__ == "__main__":
    main()
