"""``nas-surrogate evaluate``: grouped k-fold CV of a named predictor, written as a report.

    nas-surrogate evaluate --csv CSV | --dataset DIR [--model NAME] --out REPORT_DIR
                           [--folds 5] [--seeds 5] [--metrics m1,m2,...]

Writes ``REPORT_DIR/report.json`` and PNG plots, prints a one-line JSON summary on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS


def _load(args: argparse.Namespace, metrics: tuple[str, ...]) -> tuple[list[Any], dict[str, Any]]:
    """Records plus a description of where they came from."""
    if args.csv:
        from ml.evaluation.records import load_csv_records

        records, build = load_csv_records(args.csv, metrics)
        return records, {"source": str(args.csv), "kind": "csv", "build": build}
    from ml.datasets.reader import GraphDataset

    dataset = GraphDataset(args.dataset)
    # pool (unlabelled) genomes carry failed = NaN; only labelled rows can be scored
    records = [r for r in dataset.records() if math.isfinite(float(r.failed.reshape(-1)[0]))]
    stored = tuple(dataset.manifest.get("metrics", metrics))
    if tuple(stored[:len(metrics)]) != metrics:
        raise ValueError(f"{args.dataset}: dataset metrics {stored} do not start with {metrics}; "
                         "pass --metrics in the dataset's order")
    return records, {"source": str(args.dataset), "kind": "dataset",
                     "manifest_metrics": list(stored)}


def _describe(records: list[Any], base: dict[str, Any]) -> dict[str, Any]:
    from ml.evaluation.records import failed_flags, groups

    failed = failed_flags(records)
    return {**base, "records": len(records), "failed": int((failed == 1).sum()),
            "groups": len(set(groups(records)))}


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ml.evaluation.cv import cross_validate, summarize
    from ml.evaluation.predictors import make_factory
    from ml.evaluation.report import json_safe, write_report

    metrics = tuple(args.metrics.split(",")) if args.metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if m not in DIRECTIONS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}")
    directions = tuple(DIRECTIONS[m] for m in metrics)
    factory = make_factory(args.model, metrics)
    start = time.perf_counter()
    records, source = _load(args, metrics)
    load_s = time.perf_counter() - start
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    start = time.perf_counter()
    result = cross_validate(records, factory, metrics, directions, args.folds,
                            range(args.seeds), args.val_fraction, k=args.top_k, log=log)
    cv_s = time.perf_counter() - start
    summary = summarize(result, k=args.top_k)
    config = {"model": args.model, "folds": args.folds, "seeds": list(range(args.seeds)),
              "val_fraction": args.val_fraction, "top_k": args.top_k, "metrics": list(metrics),
              "grouping": "canonical_hash", "load_s": load_s}
    path = write_report(args.out, config, _describe(records, source), result, summary, cv_s)
    taus = {m: summary["per_fold"][m]["kendall_tau_b"]["mean"] for m in metrics}
    line = {"report": str(path), "model": args.model, "kendall_tau_b": taus,
            "validity_auc": summary["validity_auc"]["per_fold"]["mean"],
            "trust_spea2_top30": summary["trust_spea2_top30"]["per_fold"]["mean"]}
    sys.stdout.write(json.dumps(json_safe(line), allow_nan=False) + "\n")
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    """Add ``evaluate`` to the ``nas-surrogate`` parser."""
    parser = sub.add_parser("evaluate", help="grouped k-fold CV of a predictor -> report.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="evaluated-genome CSV (metrics + genome columns)")
    source.add_argument("--dataset", help="dataset directory built by 'dataset build'")
    parser.add_argument("--model", default="auto",
                        help="predictor name (the models registry, or rf_counts / ridge_onehot)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5, help="number of fold reshuffles (0..n-1)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated metric columns (default: "
                             f"{','.join(DEFAULT_METRICS)})")
    parser.add_argument("--val-fraction", type=float, default=0.15,
                        help="grouped share of each training fold given to the model as val")
    parser.add_argument("--top-k", type=int, default=10, help="K of N@K")
    parser.add_argument("--verbose", action="store_true", help="log each fold on stderr")
    parser.set_defaults(func=cmd_evaluate)
