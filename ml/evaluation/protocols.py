"""Evaluation protocols run end to end for a named predictor, shared by ``nas-surrogate evaluate``
and the service (trust reports, champion/challenger), so the CLI and the registry can never
disagree on what a figure means:

* grouped k-fold cross-validation (:func:`grouped_cv_report`);
* generation-forward (:func:`generation_forward`): train on the generations before g, score g,
  as the evolution judges a surrogate, plus the evolution's own split.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch_geometric.data import Data

from ml.datasets.labels import DIRECTIONS
from ml.datasets.records import failed_flags, mean_repeats, targets
from ml.datasets.splits import groups
from ml.evaluation.cv import cross_validate, score_predictions, summarize
from ml.evaluation.predictors import make_factory
from ml.evaluation.report import write_report
from ml.jsonsafe import json_safe
from ml.models.base import Prediction
from ml.ranking import FAIL_THRESHOLD


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


# -- generation-forward: how the evolution judges a surrogate ---------------------------------

def generations_of(records: Sequence[Data]) -> list[float]:
    """The distinct finite generation numbers of ``records``, ascending."""
    gens = {float(r.generation) for r in records if math.isfinite(float(r.generation))}
    return sorted(gens)


def failure_filter_precision(failed: np.ndarray, p_fail: np.ndarray) -> float:
    """Of the rows the model would filter out (P(fail) >= 0.5), the fraction that did fail
    (NaN when it filters none)."""
    flagged = np.asarray(p_fail) >= FAIL_THRESHOLD
    if not flagged.any():
        return math.nan
    return float((np.asarray(failed)[flagged] == 1).mean())


def score_split(train: list[Data], test: list[Data], model: str,
                 metrics: tuple[str, ...], config: dict[str, Any] | None,
                 seed: int) -> dict[str, Any]:
    """Fit ``model`` on ``train`` and score it on ``test``: the one split every protocol, the
    champion/challenger comparison and the pipeline's trusts are made of."""
    directions = tuple(DIRECTIONS.get(m, -1) for m in metrics)
    predictor = make_factory(model, metrics, config)(seed)
    started = time.perf_counter()
    predictor.fit(mean_repeats(train), None, None, None)
    fit_s = time.perf_counter() - started
    pred = predictor.predict(test)
    pred = Prediction(np.asarray(pred.mean, np.float64),
                      None if pred.std is None else np.asarray(pred.std, np.float64),
                      np.asarray(pred.p_fail, np.float64).reshape(-1))
    y, failed = targets(test, len(metrics)), failed_flags(test)
    per_metric, auc, spea2, nsga2 = score_predictions(y, failed, pred, groups(test), metrics,
                                                      directions)
    return {"n_train": len(train), "n_test": len(test), "per_metric": per_metric,
            "validity_auc": auc, "trust_spea2_top30": spea2, "trust_nsga2_top30": nsga2,
            "failure_filter_precision": failure_filter_precision(failed, pred.p_fail),
            "fit_seconds": fit_s, "prediction": pred, "y": y, "failed": failed}


def generation_forward(records: Sequence[Data], model: str, metrics: Sequence[str], *,
                       config: dict[str, Any] | None = None, generations: int = 5,
                       evolution_split: bool = True, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """For each of the last ``generations`` generations g (never the first: something must be
    older), fit on every record of a generation < g (repeats averaged) and score generation g:
    tau-b per metric, validity AUC, SPEA2 / NSGA-II top-30 % overlap as the evolution computes
    ``reg_trust``, and the precision of the predicted-failure filter. ``evolution_split`` adds
    the evolution's own split: train on all but the last 5 generations, score the last 5
    together. Records without a generation take part in no split."""
    metrics = tuple(metrics)
    gens = generations_of(records)
    targets_g = gens[1:][-generations:] if generations > 0 else []
    if not targets_g:
        raise ValueError(f"the records span {len(gens)} generation(s); the generation-forward "
                         "protocol needs at least two")
    rows: list[dict[str, Any]] = []
    for g in targets_g:
        train = [r for r in records if float(r.generation) < g]
        test = [r for r in records if float(r.generation) == g]
        scores = score_split(train, test, model, metrics, config, seed)
        rows.append({"generation": g, **scores})
        if log is not None:
            log(f"generation {g:g}: trained on {len(train)}, scored {len(test)}: "
                f"spea2 {scores['trust_spea2_top30']:.3f}, tau "
                + ", ".join(f"{m}={scores['per_metric'][m]['kendall_tau_b']:.3f}"
                            for m in metrics))
    result: dict[str, Any] = {"model": model, "metrics": list(metrics),
                              "generations": rows, "summary": generation_summary(rows, metrics)}
    if evolution_split and len(gens) > 5:
        cut = gens[-5]
        train = [r for r in records if float(r.generation) < cut]
        test = [r for r in records if float(r.generation) >= cut]
        result["evolution_split"] = {"train_generations": [g for g in gens if g < cut],
                                     "test_generations": [g for g in gens if g >= cut],
                                     **score_split(train, test, model, metrics,
                                                    config, seed)}
    return result


def generation_summary(rows: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Mean, std and count over the scored generations of every headline figure."""
    def stats(values: list[float]) -> dict[str, float]:
        v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
        if not v.size:
            return {"mean": math.nan, "std": math.nan, "count": 0}
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                "count": int(v.size)}
    out = {f"kendall_tau_b_{m}": stats([r["per_metric"][m]["kendall_tau_b"] for r in rows])
           for m in metrics}
    for key in ("validity_auc", "trust_spea2_top30", "trust_nsga2_top30",
                "failure_filter_precision"):
        out[key] = stats([r[key] for r in rows])
    return out


def generation_headline(result: dict[str, Any]) -> dict[str, Any]:
    """The means a model version carries from a generation-forward run."""
    return json_safe({key: value["mean"] for key, value in result["summary"].items()}
                     | {"generations": [r["generation"] for r in result["generations"]]})


def generation_report(result: dict[str, Any], out_dir: str | Path,
                      source: dict[str, Any] | None = None) -> Path:
    """``report.json`` (per-generation rows, summary, the evolution's split) and plots: the
    per-generation trust curve and, per scored generation, predicted vs true objectives."""
    from ml.evaluation.report import plot_generation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_generation(result, out)
    strip = ("prediction", "y", "failed")
    report = {"protocol": "generation_forward", "model": result["model"],
              "metrics": result["metrics"], "dataset": source or {},
              "summary": result["summary"],
              "generations": [{k: v for k, v in r.items() if k not in strip}
                              for r in result["generations"]],
              "evolution_split": {k: v for k, v in result.get("evolution_split", {}).items()
                                  if k not in strip} or None,
              "plots": plots}
    path = out / "report.json"
    path.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    return path
