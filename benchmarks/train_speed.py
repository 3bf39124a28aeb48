"""Training time and prediction throughput of a predictor on the real training CSV.

* fit: one grouped 5-fold CV (5 fits on ~190 genomes each), repeated ``--repeats`` times;
  prints the median seconds per CV (target for the default model: <= 60 s on CPU);
* predict: the model part (encoded graphs in hand, i.e. a warm encoder) for ``--n`` genomes
  (the real genomes tiled), median of ``--repeats`` runs (target: <= 1 s for 2,000); for row
  models also the feature rows alone and ``predict_features`` on rows in hand (a warm
  service's feature cache).

    python benchmarks/train_speed.py [--model auto] [--repeats 3] [--n 2000] [--epochs N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto")
    parser.add_argument("--csv", default=str(DATA / "surrogate_evolution_train.csv"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()

    import numpy as np
    import torch
    from sklearn.model_selection import GroupKFold

    from ml.datasets.records import load_csv
    from ml.models.registry import create

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    records, _ = load_csv(args.csv)
    encode_s = time.perf_counter() - start
    config = {} if args.epochs is None else {"epochs": args.epochs}
    groups = [r.canonical_hash for r in records]
    cv_seconds = []
    model = create(args.model, config)
    for repeat in range(args.repeats):
        folds = GroupKFold(5, shuffle=True, random_state=repeat).split(records, groups=groups)
        start = time.perf_counter()
        for train_idx, _ in folds:
            model = create(args.model, config)
            model.fit([records[i] for i in train_idx])
        cv_seconds.append(time.perf_counter() - start)
    pool = [records[i % len(records)] for i in range(args.n)]
    model.predict(pool[:32])  # warm-up (allocations, first-call costs)
    predict_seconds, feature_seconds = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pred = model.predict(pool)
        predict_seconds.append(time.perf_counter() - start)
    rows_seconds = []
    if args.model in ("auto", "stack", "trees", "gbt", "blend"):  # the design matrix alone
        from ml.features.vectors import tabular_features

        for _ in range(args.repeats):
            start = time.perf_counter()
            tabular_features(pool)
            feature_seconds.append(time.perf_counter() - start)
    if hasattr(model, "predict_features"):  # what a warm service pays: cached rows in hand
        rows = model.featurize(pool)
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.predict_features(rows)
            rows_seconds.append(time.perf_counter() - start)
    assert np.isfinite(pred.mean).all()
    print(json.dumps({
        "model": model.name, "device": "cuda" if torch.cuda.is_available() else "cpu",
        "records": len(records), "encode_csv_s": round(encode_s, 2),
        "cv5_fit_s_median": round(statistics.median(cv_seconds), 2),
        "cv5_fit_s_all": [round(s, 2) for s in cv_seconds],
        "predict_n": args.n,
        "predict_s_median": round(statistics.median(predict_seconds), 3),
        "predict_per_s": round(args.n / statistics.median(predict_seconds), 1),
        "predict_s_all": [round(s, 3) for s in predict_seconds],
        "features_s_median": (round(statistics.median(feature_seconds), 3)
                              if feature_seconds else None),
        "predict_from_rows_s_median": (round(statistics.median(rows_seconds), 3)
                                       if rows_seconds else None)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
