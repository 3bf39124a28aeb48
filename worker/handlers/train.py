"""``train``: fit a predictor on a ready dataset (``ml.train.fit_predictor``, resuming from the
attempt's checkpoint), save the bundle in its own attempt directory, measure its trust figures
(the grouped CV report, the pipeline's ``cls_trust`` / ``reg_trust``), decide its promotion
(:mod:`worker.handlers.promotion`) and register the version under a row lock."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from ml.jsonsafe import json_safe
from service.db import session_scope
from service.errors import JobFailure
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.store import model_registry as registry
from worker.context import JobContext
from worker.handlers.failures import fitting
from worker.handlers.promotion import decide
from worker.handlers.recipes import resolved


def run(ctx: JobContext, params: dict[str, Any]) -> str:
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.models.hyperparameters import DeviceUnavailable, check_device
    from ml.models.registry import create, resolve_name
    from ml.train import fit_predictor, load_bundle, load_training_records, save_bundle

    settings = ctx.settings
    try:
        check_device(params.get("hyperparameters") or {})
    except DeviceUnavailable as exc:
        raise JobFailure("DEVICE_UNAVAILABLE", f"{exc} (worker {socket.gethostname()})") from exc
    with session_scope() as session:
        ds = dataset_store.get_dataset(session, params["dataset_id"])
        if ds.status != "ready":
            raise JobFailure("DATASET_NOT_READY", f"dataset {ds.id} is {ds.status}")
        dataset_path, dataset_id = ds.path, ds.id
    try:
        records, source = load_training_records(dataset=dataset_path)
    except (OSError, ValueError) as exc:
        raise JobFailure("DATASET_INVALID", str(exc)) from exc
    name = resolve_name(params.get("predictor") or settings.default_predictor)
    job_dir = settings.jobs_dir / ctx.job_id
    checkpoint_dir = job_dir / "checkpoint"
    config = {**resolved(params.get("hyperparameters")), "metrics": tuple(source["metrics"]),
              "checkpoint_dir": str(checkpoint_dir)}
    probe = create(name, config)
    total = int(probe.config.get("epochs", 0) or 0) * int(probe.config.get("ensemble", 1)) \
        or int(probe.config.get("ensemble", 1))
    resume = checkpoint_dir / "checkpoint.pt"
    resume_from = resume if resume.is_file() else None
    if resume_from is not None:
        ctx.log(f"attempt {ctx.attempt}: resuming from {resume.name}")
    folds = int(params.get("cv_folds") or 0)
    stages = train_stages(folds, params.get("promote") == "if_better",
                          bool(params.get("pipeline_trust", True)))
    ctx.progress(0.0, f"training {name} on {len(records)} genomes")
    callbacks = TrainCallbacks(ctx, total, settings.epoch_delay_s, stages["cv"])
    with fitting(ctx):
        model, info = fit_predictor(records, name, config, callbacks=callbacks,
                                    resume_from=resume_from)
    ctx.progress(stages["cv"], f"fitted {name} in {info['fit_seconds']:.1f} s")
    model_name = params.get("model_name") or settings.model_name
    # One directory per attempt, never overwritten: a stale attempt that finishes late cannot
    # touch the files of the version another attempt registered.
    bundle = save_bundle(model, settings.models_dir / model_name / ctx.job_id /
                         f"attempt-{ctx.attempt}", manifest_hash=source["hash"],
                         metrics={"fit_seconds": info["fit_seconds"],
                                  "history": info["history"], "records": len(records)},
                         replace=False, training_hashes=(r.canonical_hash for r in records))
    summary = _summarise(info["history"])
    if folds >= 2:
        ctx.progress(stages["cv"], f"cross-validating ({folds} folds) for the trust report")
        step = (stages["pipeline"] - stages["cv"]) / folds
        done = iter(range(1, folds + 1))
        summary["cv"] = _trust_report(
            records, name, config, folds, bundle / "report",
            log=lambda _line: ctx.progress(stages["cv"] + step * next(done, folds),
                                           "cross-validating: a fold done"))
    ctx.progress(stages["pipeline"], "trust report done" if folds >= 2 else "bundle saved")
    if params.get("pipeline_trust", True):
        ctx.progress(stages["pipeline"],
                     "measuring cls_trust / reg_trust with the pipeline's protocol")
        summary["pipeline_trust"] = _pipeline_trust(records, name, config)
    ctx.progress(stages["compare"], "trust figures done")
    promote, comparison = decide(ctx, params, records, name, source, model_name)
    if promote:
        try:  # activation loads the bundle first, as POST /models/{v}/activate does
            load_bundle(bundle)
        except Exception as exc:
            raise JobFailure("MODEL_INCOMPATIBLE", f"the new bundle does not load: "
                             f"{type(exc).__name__}: {exc}") from exc
    with session_scope() as session:
        ctx.still_owned(session)
        version = registry.register_version(
            session, name=model_name, predictor=name, source_path=str(bundle.resolve()),
            encoder_version=ENCODER_VERSION, metrics=list(model.metrics),
            training_metrics=json_safe({"fit_seconds": round(info["fit_seconds"], 3),
                                        "records": len(records), **summary}),
            job_id=ctx.job_id, dataset_id=dataset_id, comparison=json_safe(comparison))
        # The first version of a name serves whatever was asked (nothing else could).
        if promote or registry.alias_version(session, model_name) is None:
            registry.set_alias(session, model_name, version.version)
        verdict = "" if comparison is None else \
            (" (promoted: " if comparison["promoted"] else " (awaiting approval: "
             if comparison.get("awaiting_approval") else " (kept the champion: ") + \
            f"{comparison['reason']})"
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded",
                         f"registered {model_name} v{version.version}{verdict}",
                         model_name=model_name, model_version=version.version)
    return "succeeded"


def train_stages(folds: int, compare: bool, pipeline: bool = False) -> dict[str, float]:
    """Where each stage of a training job starts on its 0..1 progress bar (fit, trust report,
    the pipeline's trust, champion comparison, register): a job whose model reports no epochs
    (the stack) still moves as its stages end, instead of sitting at 0 % until it succeeds."""
    shares = {"fit": 0.5, "cv": 0.25 if folds >= 2 else 0.0,
              "pipeline": 0.15 if pipeline else 0.0, "compare": 0.2 if compare else 0.0}
    scale = 0.99 / sum(shares.values())
    out, at = {}, 0.0
    for stage, share in shares.items():
        out[stage] = at
        at += share * scale
    out["register"] = at
    return out


class TrainCallbacks:
    """The fit's callbacks: each epoch (or ensemble member) is an epoch row and moves the
    progress bar across the fit's share ``span``; ``should_stop`` is the job's."""

    def __init__(self, ctx: JobContext, total_epochs: int, delay_s: float,
                 span: float = 0.99) -> None:
        self.ctx, self.total, self.delay = ctx, max(1, total_epochs), delay_s
        self.calls, self.span = 0, span

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.calls += 1
        self.ctx.epoch(epoch, metrics)
        self.ctx.progress(min(1.0, self.calls / self.total) * self.span,
                          f"member {int(metrics['member']) + 1} of {self.total}"
                          if set(metrics) == {"member"} else f"epoch {epoch + 1}")
        if self.delay:
            time.sleep(self.delay)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def _pipeline_trust(records: list[Any], name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The evolution's ``cls_trust`` / ``reg_trust`` for this recipe on this dataset
    (``ml.evaluation.pipeline_trust``), kept on the version for ``ServiceSurrogate``. A dataset
    the protocol cannot split gives zero trust and says why (the training still succeeds)."""
    from ml.evaluation.pipeline_trust import pipeline_trust

    base = {k: v for k, v in config.items() if k not in ("metrics", "checkpoint_dir", "seed")}
    try:
        return pipeline_trust(records, name, tuple(config["metrics"]), config=base)
    except ValueError as exc:
        return {"cls_trust": 0.0, "reg_trust": 0.0, "error": str(exc)}


def _trust_report(records: list[Any], name: str, config: dict[str, Any], folds: int,
                  out: Path, log: Any = None) -> dict[str, Any]:
    """The grouped k-fold CV report of ``nas-surrogate evaluate`` (one seed) for the same
    predictor and config: report.json and plots under ``out``, and the headline figures."""
    from ml.evaluation.protocols import grouped_cv_report, headline

    metrics = tuple(config["metrics"])
    base = {k: v for k, v in config.items() if k not in ("metrics", "checkpoint_dir", "seed")}
    _, summary = grouped_cv_report(records, name, metrics, out, config=base, folds=folds,
                                   seeds=range(1), log=log)
    return {**headline(summary, metrics), "folds": folds}


def _summarise(history: Any) -> dict[str, Any]:
    """What the registry keeps of a fit history: the number of members; for neural fits the
    epochs run and the mean best validation tau; for the stack its per-metric blend weights
    and spread scales (what each predictor's ``fit`` actually returns)."""
    if not isinstance(history, dict):
        return {}
    out: dict[str, Any] = {}
    members = history.get("members")
    if isinstance(members, list):  # neural: one epoch-row list per member
        out["members"] = len(members)
        out["epochs"] = sum(len(h) for h in members)
    elif isinstance(members, int):
        out["members"] = members
    taus = [t for t in history.get("val_tau") or [] if isinstance(t, (int, float))]
    if taus:
        out["val_tau_mean"] = sum(taus) / len(taus)
    for key in ("tree_weight", "spread_scale"):
        if isinstance(history.get(key), dict):
            out[key] = json_safe(history[key])
    return out
