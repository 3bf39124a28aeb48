"""Replay the evolution's loop on the real data through a running service, generation by
generation (surrogate-usage §3-5): the served model predicts generation g before it is seen
(trust and tau against its true metrics), then g's evaluations are appended with
``POST /evaluations`` and ``retrain: true`` (one promote-if-better training), and the loop
waits for both jobs.

It starts from a model trained on generation 1 only: under its own model name (``--name``,
default ``replay``) it uploads generation 1 as a dataset and trains ``--predictor`` on it. The
floor ``rf_counts`` is replayed offline beside it with the same protocol (trained on every
generation before g, scored on g: ``ml.evaluation.protocols.generation_forward``), since it
reads genome strings, which the service's predictors do not.

Prints the per-generation trust curve (SPEA2 and NSGA-II top-30 % overlap, tau-b of the
objectives) of the served model and of the floor, and how often promotion happened.

    nas-surrogate serve --port 8000 &
    python benchmarks/loop_replay.py [--url http://127.0.0.1:8000] [--key-file var/admin.key]
        [--generations 10] [--predictor auto] [--name replay] [--json]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
CSV_NAME = "surrogate_evolution_train.csv"
NON_METRICS = ("genome", "generation", "individual_hash")


def rows_by_generation(path: Path = DATA / CSV_NAME) -> dict[int, list[dict[str, str]]]:
    out: dict[int, list[dict[str, str]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            out.setdefault(int(float(row["generation"])), []).append(row)
    return dict(sorted(out.items()))


def records_of(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV rows as the loop sends them: every metric column, the generation."""
    out = []
    for row in rows:
        metrics: dict[str, float | None] = {}
        for column, text in row.items():
            if column in NON_METRICS:
                continue
            try:
                value = float(text)
            except (TypeError, ValueError):
                value = math.nan
            metrics[column] = value if math.isfinite(value) else None
        out.append({"genome": row["genome"], "metrics": metrics,
                    "generation": int(float(row["generation"]))})
    return out


def score_items(items: list[dict[str, Any]], rows: list[dict[str, str]],
                metrics: tuple[str, ...]) -> dict[str, Any]:
    """The served predictions of one generation against its true metrics, scored as the
    evolution scores a surrogate (ml.evaluation.cv.score_predictions)."""
    import numpy as np

    from ml.datasets.labels import DIRECTIONS, classify
    from ml.evaluation.cv import score_predictions
    from ml.models.base import Prediction

    y = np.array([classify(r, metrics).values for r in rows], dtype=np.float64)
    failed = np.array([float(classify(r, metrics).failed) for r in rows])
    mean = np.array([[(i.get("predictions") or {}).get(m) if i["ok"] else None
                      for m in metrics] for i in items], dtype=np.float64)
    p_fail = np.array([i["p_fail"] if i["ok"] else 1.0 for i in items], dtype=np.float64)
    keys = [i["canonical_hash"] or f"bad-{n}" for n, i in enumerate(items)]
    per_metric, auc, spea2, nsga2 = score_predictions(
        y, failed, Prediction(np.nan_to_num(mean, nan=np.inf), None, p_fail), keys, metrics,
        tuple(DIRECTIONS.get(m, -1) for m in metrics))
    return {"trust_spea2_top30": spea2, "trust_nsga2_top30": nsga2, "validity_auc": auc,
            "kendall_tau_b": {m: per_metric[m]["kendall_tau_b"] for m in metrics}}


def start_from_generation_one(client: Any, rows: list[dict[str, str]], name: str,
                              predictor: str, hyperparameters: dict[str, Any],
                              timeout_s: float) -> dict[str, Any]:
    """Upload generation 1 as a dataset and train ``predictor`` on it as ``name``'s first
    version (active by rule). Returns the dataset and the model version."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    r = client._request("POST", "/datasets", files={"file": ("generation_1.csv",
                                                             buffer.getvalue().encode())},
                        data={"name": "replay generation 1"})
    dataset = r.json()
    client.wait(dataset["job"]["id"], timeout_s)
    job = client.train(dataset["id"], predictor, hyperparameters, model_name=name)
    done = client.wait(job["id"], timeout_s)
    if done["status"] != "succeeded":
        raise RuntimeError(f"the generation-1 training {done['status']}: {done['error']}")
    client.dataset_id = dataset["id"]
    return {"dataset_id": dataset["id"], "version": done["model_version"]}


def replay(client: Any, generations: dict[int, list[dict[str, str]]], last: int, name: str,
           metrics: tuple[str, ...], timeout_s: float = 3600) -> list[dict[str, Any]]:
    """For g = 2..last: predict g with ``name``'s active model, score it, append g with retrain,
    wait for the append and the training. One row per generation."""
    out = []
    for g in [g for g in generations if 1 < g <= last]:
        rows = generations[g]
        started = time.perf_counter()
        items = client.predict([r["genome"] for r in rows], model=name)
        served = items[0]["model_version"]
        scores = score_items(items, rows, metrics)
        answer = client.add_evaluations(records_of(rows), retrain=True, model=name,
                                        timeout_s=timeout_s)
        dataset = client.dataset(answer["dataset_id"])
        job = client.wait(dataset["retrain_job_id"], timeout_s)
        promoted = job["status"] == "succeeded" and "(promoted" in (job["message"] or "")
        out.append({"generation": g, "served_version": served, **scores,
                    "appended": answer["added"], "duplicates": answer["duplicates"],
                    "rejected": len(answer["rejected"]), "new_version": job["model_version"],
                    "promoted": promoted, "training": job["status"],
                    "seconds": round(time.perf_counter() - started, 1)})
    return out


def floor_curve(last: int, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """rf_counts under the same protocol, offline (trained on every generation before g)."""
    from ml.datasets.records import load_csv_records
    from ml.evaluation.protocols import generation_forward

    records, _ = load_csv_records(DATA / CSV_NAME, metrics)
    records = [r for r in records if r.generation <= last]
    result = generation_forward(records, "rf_counts", metrics, generations=last - 1,
                                evolution_split=False)
    return [{"generation": int(r["generation"]),
             "trust_spea2_top30": r["trust_spea2_top30"],
             "trust_nsga2_top30": r["trust_nsga2_top30"],
             "kendall_tau_b": {m: r["per_metric"][m]["kendall_tau_b"] for m in metrics}}
            for r in result["generations"]]


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None or not math.isfinite(value) else f"{value:5.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=None, help="an admin key (a new model name)")
    parser.add_argument("--key-file", default="var/admin.key")
    parser.add_argument("--generations", type=int, default=10, help="replay up to this one")
    parser.add_argument("--predictor", default="auto")
    parser.add_argument("--hyperparameters", default="{}", help="JSON")
    parser.add_argument("--name", default=f"replay-{int(time.time())}")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import httpx

    from app.client import SurrogateClient
    from ml.datasets.labels import DEFAULT_METRICS

    key = args.key or Path(args.key_file).read_text().strip()
    client = SurrogateClient(args.url, key, timeout=args.timeout,
                             http=httpx.Client(base_url=args.url, timeout=args.timeout))
    generations = rows_by_generation()
    metrics = tuple(DEFAULT_METRICS)
    started = time.perf_counter()
    first = start_from_generation_one(client, generations[1], args.name, args.predictor,
                                      json.loads(args.hyperparameters), args.timeout)
    rows = replay(client, generations, args.generations, args.name, metrics, args.timeout)
    floor = {r["generation"]: r for r in floor_curve(args.generations, metrics)}
    total = time.perf_counter() - started
    print(f"replay of generations 2..{args.generations} through {args.url} as model "
          f"{args.name!r} ({args.predictor}), started from generation 1 "
          f"(v{first['version']}); {total:.0f} s")
    print(f"{'gen':>3} {'served':>6} {'SPEA2':>6} {'NSGA2':>6} {'tau uw':>6} {'tau ciou':>8} "
          f"{'tau AP':>6} | {'floor SPEA2':>11} {'floor tau ciou':>14} | promoted  s")
    for row in rows:
        f = floor.get(row["generation"], {})
        tau, ftau = row["kendall_tau_b"], f.get("kendall_tau_b", {})
        print(f"{row['generation']:>3} {'v' + str(row['served_version']):>6} "
              f"{_fmt(row['trust_spea2_top30']):>6} {_fmt(row['trust_nsga2_top30']):>6} "
              f"{_fmt(tau['uw_val_epoch_loss']):>6} {_fmt(tau['ciou_loss']):>8} "
              f"{_fmt(tau['average_precision']):>6} | {_fmt(f.get('trust_spea2_top30')):>11} "
              f"{_fmt(ftau.get('ciou_loss')):>14} | {row['promoted']!s:>8} "
              f"{row['seconds']:>5}")

    def mean(values: list[float]) -> float:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan
    served = mean([r["trust_spea2_top30"] for r in rows])
    floor_mean = mean([floor[g]["trust_spea2_top30"] for g in floor])
    promotions = sum(r["promoted"] for r in rows)
    print(f"mean SPEA2 trust: served {served:.3f}, floor {floor_mean:.3f} (ratio "
          f"{served / floor_mean if floor_mean else math.nan:.2f}); promoted {promotions} of "
          f"{len(rows)} retrainings")
    if args.json:
        from ml.jsonsafe import json_safe
        print(json.dumps(json_safe({"name": args.name, "predictor": args.predictor, "rows": rows,
                                    "floor": list(floor.values()), "seconds": total}),
                         allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
