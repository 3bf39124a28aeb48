"""``nas-surrogate evaluate``: grouped k-fold CV of a named predictor, written as a report.

    nas-surrogate evaluate --csv CSV | --dataset DIR [--model NAME] --out REPORT_DIR
                           [--folds 5] [--seeds 5] [--metrics m1,m2,...]

Writes ``REPORT_DIR/report.json`` and PNG plots, prints a one-line JSON summary on stdout.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS
from ml.jsonsafe import emit


def _load(args: argparse.Namespace, metrics: tuple[str, ...]) -> tuple[list[Any], dict[str, Any]]:
    """Records plus a description of where they came from."""
    if args.csv:
        from ml.datasets.records import load_csv_records

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ml.evaluation.predictors import make_factory
    from ml.evaluation.protocols import grouped_cv_report, headline

    metrics = tuple(args.metrics.split(",")) if args.metrics else DEFAULT_METRICS
    unknown = [m for m in metrics if m not in DIRECTIONS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}")
    make_factory(args.model, metrics)  # an unknown model fails before the data is loaded
    start = time.perf_counter()
    records, source = _load(args, metrics)
    load_s = time.perf_counter() - start
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else None
    if args.split == "generation":
        return _evaluate_by_generation(args, records, metrics, source, log)
    path, summary = grouped_cv_report(
        records, args.model, metrics, args.out, folds=args.folds, seeds=range(args.seeds),
        val_fraction=args.val_fraction, top_k=args.top_k, source=source,
        extra={"load_s": load_s}, log=log)
    figures = headline(summary, metrics)
    emit({"report": str(path), "model": args.model,
          "kendall_tau_b": {m: figures[f"kendall_tau_b_{m}"] for m in metrics},
          "validity_auc": figures["validity_auc"],
          "trust_spea2_top30": figures["trust_spea2_top30"]})
    return 0


def _evaluate_by_generation(args: argparse.Namespace, records: list[Any],
                            metrics: tuple[str, ...], source: dict[str, Any],
                            log: Any) -> int:
    from ml.evaluation.protocols import generation_forward, generation_headline, generation_report

    result = generation_forward(records, args.model, metrics, generations=args.generations,
                                log=log)
    path = generation_report(result, args.out, source)
    figures = generation_headline(result)
    emit({"report": str(path), "model": args.model, "split": "generation",
          "generations": figures["generations"],
          "kendall_tau_b": {m: figures[f"kendall_tau_b_{m}"] for m in metrics},
          "validity_auc": figures["validity_auc"],
          "trust_spea2_top30": figures["trust_spea2_top30"],
          "trust_nsga2_top30": figures["trust_nsga2_top30"],
          "failure_filter_precision": figures["failure_filter_precision"]})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``nas-surrogate`` parser."""
    parser = sub.add_parser("evaluate", help="grouped k-fold CV of a predictor -> report.json")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="evaluated-genome CSV (metrics + genome columns)")
    source.add_argument("--dataset", help="dataset directory built by 'dataset build'")
    parser.add_argument("--model", default="auto",
                        help="predictor name (the models registry, or rf_counts / ridge_onehot)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--split", choices=("grouped", "generation"), default="grouped",
                        help="grouped: k-fold CV grouped by genome; generation: train on the "
                             "generations before g, score g (how the evolution judges it)")
    parser.add_argument("--generations", type=int, default=5,
                        help="--split generation: how many of the last generations to score")
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
