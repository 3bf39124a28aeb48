"""POST /predict's warm and never-seen paths on a freshly started service, with the model's own
share separated from the rest (issue 30's bar: 2,000 already-seen genomes <= 0.25 s, 2,000
never-seen <= 1.5 s).

Each start (``--starts``): run ``nas-surrogate serve`` from ``--repo`` (default: this checkout;
pass another checkout, e.g. main, to compare old and new code, interleaved with ``--repo``
given twice) on a data directory that already holds a model, wait until ``/readyz`` is 200 and
the encoder processes are ready (as ``benchmarks/first_contact.py --wait-pool``), then send

* the batch once: 2,000 genomes the fresh process has never seen (the real genomes plus
  compiling ones sampled with ``--seed``, made once and kept in ``DIR/bench_unseen_2000_SEED.txt``);
* the same batch ``--seen`` more times: every genome already seen (the warm path).

Model time: this process loads the served bundle, computes the batch's feature rows once, and
after each start's requests times ``predict_features`` on them (``--model-repeats``): what the
predictor alone costs for the batch, measured in the same minutes as the requests; "rest" = the
seen request's median minus the model's (HTTP, JSON, caches, ranking, the answer). Prints
the medians per repo and, with two repos, the ratios.

    python benchmarks/predict_warm.py --data-dir DIR [--repo PATH [--repo PATH]] [--starts 3]
        [--seen 5] [--port 8767] [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
N = 2000


def batch(data_dir: Path, seed: int) -> list[str]:
    """The 2,000 genomes: the real ones, then sampled compiling ones (kept for reuse: sampling
    costs ~0.1 s a genome)."""
    kept = data_dir / f"bench_unseen_{N}_{seed}.txt"
    if kept.exists():
        return kept.read_text().splitlines()
    from ml.sampling import sample_compiling

    with open(DATA / "surrogate_evolution_train.csv", newline="") as handle:
        real = list(dict.fromkeys(row["genome"] for row in csv.DictReader(handle)))
    genomes = real + sample_compiling(N - len(real), seed=seed)
    kept.write_text("\n".join(genomes) + "\n")
    return genomes


class ModelTimer:
    """The served bundle's ``predict_features`` on the batch's rows."""

    def __init__(self, data_dir: Path, genomes: list[str]) -> None:
        import sqlite3

        import numpy as np

        from ml.inference import Engine
        from ml.train import load_bundle

        with sqlite3.connect(data_dir / "surrogate.db") as db:
            path = db.execute("SELECT source_path FROM model_versions ORDER BY version DESC "
                              "LIMIT 1").fetchone()[0]
        self.model = load_bundle(path)
        self.predictor = type(self.model).__name__
        self.features = None
        key = getattr(self.model, "feature_key", None)
        if key is not None:
            engine = Engine()
            scored = engine.evaluate(genomes, self.model)
            self.features = np.stack([
                engine.cache.rows.get(engine.cache.row_key(o.canonical_hash, key))
                for o in scored.outcomes if o.error is None])

    def seconds(self, repeats: int) -> list[float]:
        """``repeats`` timings (none when the model reads graphs, not rows)."""
        times = []
        for _ in range(repeats if self.features is not None else 0):
            started = time.perf_counter()
            self.model.predict_features(self.features)
            times.append(time.perf_counter() - started)
        return times


def one_start(repo: Path, data_dir: Path, port: int, genomes: list[str], seen: int
              ) -> dict[str, Any]:
    """A fresh serve from ``repo``: the never-seen request, then ``seen`` warm ones."""
    base = f"http://127.0.0.1:{port}"
    key = (data_dir / "admin.key").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
    env["PYTHONPATH"] = f"{repo}:{repo / 'client'}"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nas_surrogate.cli", "serve", "--data-dir",
                             str(data_dir), "--port", str(port)], cwd=repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                ready = httpx.get(base + "/readyz", timeout=2)
                pool = ready.json().get("encoder_pool") if ready.status_code == 200 else None
                if ready.status_code == 200 and (pool is None or pool.get("ready")):
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("serve exited; does the data directory hold a model?")
            time.sleep(0.5)
        ready_s = time.perf_counter() - started
        headers = {"X-API-Key": key}
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            times = []
            for _ in range(1 + seen):
                t = time.perf_counter()
                answer = client.post("/predict", json={"genomes": genomes})
                times.append(time.perf_counter() - t)
                answer.raise_for_status()
        body = answer.json()
        return {"ready_s": ready_s, "never_seen_s": times[0], "seen_s": times[1:],
                "ok": sum(item["ok"] for item in body["items"])}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--repo", action="append", type=Path,
                        help="checkout to serve from (twice: old and new, interleaved)")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--seen", type=int, default=5)
    parser.add_argument("--model-repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    repos = [r.resolve() for r in (args.repo or [REPO])]
    data_dir = args.data_dir.resolve()
    genomes = batch(data_dir, args.seed)
    timer = ModelTimer(data_dir, genomes)
    runs: dict[str, list[dict[str, Any]]] = {str(r): [] for r in repos}
    model_times: list[float] = []
    for start in range(args.starts):
        for repo in repos:  # interleaved: the machine's speed drifts
            run = one_start(repo, data_dir, args.port, genomes, args.seen)
            run["model_s"] = timer.seconds(args.model_repeats)
            model_times += run["model_s"]
            runs[str(repo)].append(run)
            print(f"start {start + 1} {repo}: ready {run['ready_s']:.1f} s, never-seen "
                  f"{run['never_seen_s']:.3f} s, seen "
                  + " ".join(f"{s:.3f}" for s in run["seen_s"]) + f" ({run['ok']} ok); "
                  f"model alone " + " ".join(f"{s:.3f}" for s in run["model_s"]))
    model_s = statistics.median(model_times) if model_times else None
    print(f"model alone ({timer.predictor}): "
          + ("reads graphs, not timed" if model_s is None else f"median {model_s:.3f} s"))
    summary = {}
    for repo, done in runs.items():
        never = statistics.median(r["never_seen_s"] for r in done)
        seen = statistics.median(s for r in done for s in r["seen_s"])
        mine = [s for r in done for s in r["model_s"]]
        model = statistics.median(mine) if mine else None
        summary[repo] = {"never_seen_s": never, "seen_s": seen, "model_s": model}
        rest = "" if model is None else f" (model {model:.3f} + rest {seen - model:.3f})"
        print(f"{repo}: median never-seen {never:.3f} s (bar 1.5), seen {seen:.3f} s "
              f"(bar 0.25){rest}")
    if len(repos) == 2:
        old, new = (summary[str(r)] for r in repos)
        print(f"ratios new/old: never-seen {new['never_seen_s'] / old['never_seen_s']:.2f}, "
              f"seen {new['seen_s'] / old['seen_s']:.2f}")
    if args.json:
        print(json.dumps({"predictor": timer.predictor, "runs": runs, "summary": summary}))


if __name__ == "__main__":
    main()
