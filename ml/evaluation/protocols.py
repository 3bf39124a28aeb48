"""Evaluation protocols run end to end for a named predictor: one function per protocol, shared
by ``nas-surrogate evaluate`` and the service's trust report on a trained model (so the CLI and
the registry can never disagree on what a figure means)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from torch_geometric.data import Data

from ml.datasets.labels import DIRECTIONS
from ml.datasets.records import failed_flags
from ml.datasets.splits import groups
from ml.evaluation.cv import cross_validate, summarize
from ml.evaluation.predictors import make_factory
from ml.evaluation.report import write_report
from ml.jsonsafe import json_safe


def describe(records: Sequence[Data], source: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a report says about its data: rows, failed rows, distinct genomes."""
    failed = failed_flags(records)
    return {**(source or {}), "records": len(records), "failed": int((failed == 1).sum()),
            "groups": len(set(groups(records)))}


def headline(summary: dict[str, Any], metrics: Sequence[str]) -> dict[str, Any]:
    """The figures a model version carries: per-fold means of tau-b per metric, validity AUC
    and the SPEA2 / NSGA-II top-30 % trust overlaps."""
    out = {f"kendall_tau_b_{m}": summary["per_fold"][m]["kendall_tau_b"]["mean"] for m in metrics}
    out.update({"validity_auc": summary["validity_auc"]["per_fold"]["mean"],
                "trust_spea2_top30": summary["trust_spea2_top30"]["per_fold"]["mean"],
                "trust_nsga2_top30": summary["trust_nsga2_top30"]["per_fold"]["mean"]})
    return json_safe(out)


def grouped_cv_report(records: Sequence[Data], model: str, metrics: Sequence[str],
                      out_dir: str | Path, *, config: dict[str, Any] | None = None,
                      folds: int = 5, seeds: Sequence[int] = range(5),
                      val_fraction: float = 0.15, top_k: int = 10,
                      source: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                      log: Callable[[str], None] | None = None
                      ) -> tuple[Path, dict[str, Any]]:
    """Grouped k-fold CV of ``model`` (repeated over ``seeds``) on ``records``: writes
    ``report.json`` and the plots into ``out_dir``; returns the report path and the summary."""
    metrics = tuple(metrics)
    directions = tuple(DIRECTIONS.get(m, -1) for m in metrics)
    factory = make_factory(model, metrics, config)
    started = time.perf_counter()
    result = cross_validate(records, factory, metrics, directions, folds, seeds, val_fraction,
                            k=top_k, log=log)
    seconds = time.perf_counter() - started
    summary = summarize(result, k=top_k)
    report_config = {"model": model, "folds": folds, "seeds": list(seeds),
                     "val_fraction": val_fraction, "top_k": top_k, "metrics": list(metrics),
                     "grouping": "canonical_hash", **(extra or {})}
    path = write_report(out_dir, report_config, describe(records, source), result, summary,
                        seconds)
    return path, summary
