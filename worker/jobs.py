"""The job functions. Celery tasks (``worker.tasks``) and the embedded thread executor both call
:func:`run_job`, so the same claim, heartbeat, progress, cancellation and registration code runs
in production and in ``nas-surrogate serve``.

Contract with the queue (at-least-once delivery): a delivery first *claims* the SQL row; a
delivery that cannot claim it (another worker holds a fresh lease, or the job is terminal or
cancelled) returns quietly. A claim of a job whose worker died increments ``attempt``; past
``max_attempts`` the job fails with ``WORKER_LOST`` instead of looping. Deterministic errors fail
the job at once with a code; transient ones (database or broker connection) release the claim
and are re-raised for the Celery task's backoff retry.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError

from ml.jsonsafe import json_safe
from service.config import Settings, get_settings
from service.db import is_disk_full, session_scope
from service.errors import JOB_ERROR_CODES, JobFailure, ServiceError
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.store import model_registry as registry
from service.tables import Dataset, Job, utcnow

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, DBAPIError, ConnectionError, TimeoutError)
#: Database errors that a retry repeats (a value the database refuses, a broken statement): the
#: job fails at once instead of being re-sent until its attempts run out.
DETERMINISTIC_DB = (DataError, IntegrityError, ProgrammingError)
#: Service error codes that mean "try again later" (everything else fails the job at once).
TRANSIENT_CODES = {"DATABASE_UNAVAILABLE", "BROKER_UNAVAILABLE"}


class Cancelled(Exception):
    """The job's cancellation flag was seen; the runner marks it cancelled."""


class LeaseLost(Exception):
    """Another worker claimed the job (this one's heartbeat went stale): stop without writing;
    the job belongs to the newer attempt."""


#: Why the executor asked a running job of this process to stop: "time_limit" (past its soft
#: limit: it fails with TIME_LIMIT) or "shutdown" (the process is stopping: the job is released
#: to the queue and resumes from its checkpoint on the next start). Read by JobContext.
_stop_reasons: dict[str, str] = {}
_stop_lock = threading.Lock()


def request_stop(job_id: str, reason: str) -> None:
    with _stop_lock:
        _stop_reasons.setdefault(job_id, reason)


def stop_reason(job_id: str) -> str | None:
    with _stop_lock:
        return _stop_reasons.get(job_id)


def clear_stop(job_id: str) -> None:
    with _stop_lock:
        _stop_reasons.pop(job_id, None)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class JobContext:
    """What a running job reports through: throttled progress and epoch rows, the cancellation
    flag (polled at most every ``progress_interval_s``) and a heartbeat thread that keeps the
    lease while the job computes. Losing the lease (another worker claimed the job) reads as a
    cancellation so the stale attempt stops without writing a result."""

    def __init__(self, job_id: str, attempt: int, settings: Settings) -> None:
        self.job_id, self.attempt, self.settings = job_id, attempt, settings
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._pending: list[dict[str, Any]] = []
        self._progress: tuple[float, str] | None = None
        self._fraction = 0.0
        self._last_flush = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._lock = threading.Lock()
        self._beat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                      name=f"heartbeat-{job_id[:8]}")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "JobContext":
        self._beat.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        try:
            self.flush(force=True)
        except TRANSIENT + (ServiceError,):
            log.warning("job %s: could not flush the last progress rows", self.job_id)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope() as session:
                    if not job_store.heartbeat(session, self.job_id, self.attempt):
                        self.lost.set()
                        return
            except TRANSIENT + (ServiceError,):
                log.warning("job %s: heartbeat failed (database unreachable)", self.job_id)

    # -- reporting -------------------------------------------------------------------------
    def progress(self, fraction: float | None, message: str) -> None:
        """Report ``fraction`` done (``None``: where it stands, a new message)."""
        with self._lock:
            self._fraction = self._fraction if fraction is None else fraction
            self._progress = (self._fraction, message)
        self.flush()

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        with self._lock:
            self._pending.append({"epoch": epoch, "metrics": metrics})
        self.flush()

    def log(self, message: str, **data: Any) -> None:
        with session_scope() as session:
            job_store.add_event(session, self.job_id, "log", message, attempt=self.attempt,
                                data=data or None)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self.settings.progress_interval_s:
            return
        with self._lock:
            pending, self._pending = self._pending, []
            progress, self._progress = self._progress, None
            self._last_flush = now
        if not pending and progress is None:
            return
        with session_scope() as session:
            for row in pending:
                job_store.add_event(session, self.job_id, "epoch", attempt=self.attempt,
                                    epoch=row["epoch"], data=json_safe(row["metrics"]))
            if progress is not None:
                if not job_store.set_progress(session, self.job_id, self.attempt, *progress):
                    self.lost.set()

    def should_stop(self) -> bool:
        if self.lost.is_set() or self._cancelled or stop_reason(self.job_id) is not None:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= min(1.0, self.settings.progress_interval_s):
            self._last_cancel_check = now
            try:
                with session_scope() as session:
                    self._cancelled = job_store.cancel_requested(session, self.job_id)
            except TRANSIENT + (ServiceError,):
                return False
        return self._cancelled


# -- the entry point -----------------------------------------------------------------------

def run_job(job_id: str, settings: Settings | None = None, send: Any = None) -> str:
    """Claim and run one job; returns its final status, or ``"skipped"`` when not claimed.
    ``send(job_id, kind)`` dispatches a job this one queues (an append's retraining); without
    it the reconciler sends that job on its next pass."""
    settings = settings or get_settings()
    with session_scope() as session:
        claimed = job_store.claim(session, job_id, worker_name(), settings.job_lease_s)
        if claimed is None:
            return "skipped"
        attempt, job = claimed
        if attempt > job.max_attempts:
            job_store.finish(session, job_id, attempt, "failed",
                             f"the worker was lost {attempt - 1} times (limit {job.max_attempts})",
                             error_code="WORKER_LOST")
            return "failed"
        kind, params = job.kind, dict(job.params)
    try:
        with JobContext(job_id, attempt, settings) as ctx:
            if kind == "build_dataset":
                return _run_build(ctx, params, settings)
            if kind == "append_dataset":
                return _run_append(ctx, params, settings, send)
            if kind == "train":
                return _run_train(ctx, params, settings)
            if kind == "propose":
                return _run_propose(ctx, params)
            if kind == "pretrain":
                return _run_pretrain(ctx, params, settings)
            raise JobFailure("INTERNAL_ERROR", f"unknown job kind {kind!r}")
    except Cancelled:
        reason = stop_reason(job_id)
        if reason == "time_limit":
            return _end(job_id, attempt, "failed", "soft time limit exceeded", "TIME_LIMIT")
        if reason == "shutdown":
            _release(job_id, attempt, "released at shutdown; resumes on the next start")
            return "released"
        return _end(job_id, attempt, "cancelled", "cancelled on request")
    except LeaseLost:
        log.warning("job %s: attempt %d lost its lease to a newer attempt", job_id, attempt)
        return "lost"
    except JobFailure as exc:
        return _end(job_id, attempt, "failed", exc.message, exc.code)
    except MemoryError:
        return _end(job_id, attempt, "failed", "out of memory", "OUT_OF_MEMORY")
    except ServiceError as exc:
        if exc.code not in TRANSIENT_CODES:
            code = exc.code if exc.code in JOB_ERROR_CODES else "INTERNAL_ERROR"
            return _end(job_id, attempt, "failed", exc.message, code)
        _release(job_id, attempt)
        raise
    except DETERMINISTIC_DB as exc:
        log.exception("job %s failed: the database refused what it wrote", job_id)
        return _end(job_id, attempt, "failed", f"the database refused a value: "
                    f"{type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__}",
                    "INTERNAL_ERROR")
    except TRANSIENT:
        _release(job_id, attempt)
        raise
    except Exception as exc:  # noqa: BLE001 - a deterministic bug: fail now, with the reason
        if _is_time_limit(exc):
            return _end(job_id, attempt, "failed", "soft time limit exceeded", "TIME_LIMIT")
        log.exception("job %s failed", job_id)
        return _end(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}", "INTERNAL_ERROR")
    finally:
        clear_stop(job_id)


def _is_time_limit(exc: BaseException) -> bool:
    return type(exc).__name__ == "SoftTimeLimitExceeded"


def _is_out_of_memory(exc: BaseException) -> bool:
    """Host or CUDA out of memory (``torch.OutOfMemoryError`` is a RuntimeError subclass, so it
    must be recognised before the generic TRAINING_FAILED mapping)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return "out of memory" in str(exc).lower() and isinstance(exc, RuntimeError)


def _end(job_id: str, attempt: int, status: str, message: str, code: str | None = None) -> str:
    with session_scope() as session:
        if status == "failed":
            job = session.get(Job, job_id)
            if job is not None and job.kind == "build_dataset" and job.dataset_id:
                dataset_store.mark(session, job.dataset_id, "failed")
        job_store.finish(session, job_id, attempt, status, message, error_code=code)
    return status


def _release(job_id: str, attempt: int,
             message: str = "retrying after a transient error") -> None:
    """Give a claimed job back to the queue (best effort): after a transient error, or at
    shutdown. ``dispatched_at`` is cleared so the reconciler sends it again."""
    try:
        with session_scope() as session:
            from sqlalchemy import update
            released = session.execute(
                update(Job).where(Job.id == job_id, Job.attempt == attempt,
                                  Job.status == "running")
                .values(status="queued", message=message, dispatched_at=None)).rowcount
            if released:
                job_store.add_event(session, job_id, "state", f"queued: {message}",
                                    attempt=attempt)
    except TRANSIENT + (ServiceError,):
        log.warning("job %s: could not release the claim; the lease will expire", job_id)


def _still_owned(session: Any, ctx: JobContext) -> None:
    """Fence the result: lock the job row and check this attempt still owns it (a newer
    attempt, a cancellation or the embedded hard time limit may have taken it meanwhile)."""
    if not job_store.owns(session, ctx.job_id, ctx.attempt):
        raise LeaseLost()


# -- dataset builds ------------------------------------------------------------------------

@contextmanager
def _children_allowed() -> Iterator[None]:
    """Let the build start its encoder processes from a Celery prefork child.

    Billiard marks pool children as daemons (multiprocessing refuses to start processes from a
    daemon) and gives them its own authkey type (which spawn cannot pickle). The build's pool is
    joined or terminated before ``build_dataset`` returns,
    and its processes share the worker's process group, so nothing outlives the task."""
    import multiprocessing
    from multiprocessing.process import AuthenticationString

    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    saved = {k: config[k] for k in ("daemon", "authkey") if k in config}
    config["daemon"] = False
    config["authkey"] = AuthenticationString(bytes(saved.get("authkey") or os.urandom(32)))
    try:
        yield
    finally:
        for key in ("daemon", "authkey"):
            config.pop(key, None)
        config.update(saved)

def _fail_if_disk_full(exc: BaseException, out: Path) -> None:
    """A build that filled the disk fails as ``DISK_FULL`` (not a torch message as an internal
    error), and its partial shards go at once: they hold the space the disk lacks, and a retry
    starts over."""
    if is_disk_full(exc):
        import shutil
        shutil.rmtree(out, ignore_errors=True)
        raise JobFailure("DISK_FULL", f"the disk filled up while writing the dataset "
                         f"({type(exc).__name__}); its partial output was removed") from exc


def _run_build(ctx: JobContext, params: dict[str, Any], settings: Settings) -> str:
    from ml.datasets.build import BuildCancelled, BuildOptions, build_dataset

    with session_scope() as session:
        ds = dataset_store.get_dataset(session, params["dataset_id"])
        source, out, metrics = Path(ds.source_path), Path(ds.path), tuple(ds.metrics)
    ctx.progress(0.0, f"building {source.name}")
    opts = BuildOptions(source=source, out=out, metrics=metrics,
                        workers=max(1, settings.dataset_workers), progress=False,
                        on_progress=lambda done, total: ctx.progress(
                            done / total if total else 0.0, f"{done}/{total} rows encoded"),
                        should_stop=ctx.should_stop)
    try:
        with _children_allowed():
            manifest = build_dataset(opts)
    except BuildCancelled as exc:
        if ctx.lost.is_set():
            raise LeaseLost() from exc
        raise Cancelled() from exc
    except Exception as exc:
        _fail_if_disk_full(exc, out)
        if isinstance(exc, (OSError, ValueError, KeyError)):
            raise JobFailure("DATASET_INVALID", f"{source.name}: {exc}") from exc
        raise
    with session_scope() as session:
        _still_owned(session, ctx)
        dataset_store.mark(session, params["dataset_id"], "ready", manifest)
        counts = manifest.get("counts", {})
        message = f"built {counts.get('rows', 0)} rows ({counts.get('ok', 0)} ok)"
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded", message)
    return "succeeded"


# -- dataset versions ----------------------------------------------------------------------

def _run_append(ctx: JobContext, params: dict[str, Any], settings: Settings,
                send: Any = None) -> str:
    """Build the new version from the parent and the screened records (only new genomes are
    encoded); with ``retrain``, queue one promote-if-better training on it."""
    import json

    from ml.datasets.labels import classify_record
    from ml.datasets.source import SourceRow
    from ml.datasets.versions import append_dataset

    with session_scope() as session:
        ds = dataset_store.get_dataset(session, params["dataset_id"])
        parent = dataset_store.get_dataset(session, params["parent_id"])
        source, out, parent_path = Path(ds.source_path), Path(ds.path), Path(parent.path)
        metrics = tuple(parent.metrics)

    def rows() -> Any:
        with open(source) as handle:
            for line in handle:
                record = json.loads(line)
                generation = record.get("generation")
                yield SourceRow(int(record["index"]), record["genome"],
                                classify_record(record.get("metrics"), metrics,
                                                record.get("failed")),
                                float("nan") if generation is None else float(generation), None)

    ctx.progress(0.0, f"appending to {params['parent_id'][:8]}")
    if out.exists():  # a retried attempt: the earlier one's partial directory is not a version
        import shutil
        shutil.rmtree(out)
    try:
        result = append_dataset(parent_path, rows(), out, source=f"evaluations:{ds.id}")
    except Exception as exc:
        _fail_if_disk_full(exc, out)
        if isinstance(exc, (OSError, ValueError)):
            raise JobFailure("DATASET_INVALID", f"{type(exc).__name__}: {exc}") from exc
        raise
    with session_scope() as session:
        _still_owned(session, ctx)
        dataset_store.mark(session, params["dataset_id"], "ready", result.manifest)
        message = (f"added {result.added} rows ({result.repeats} repeated measurements, "
                   f"{result.manifest['timings']['encoded_genomes']} genomes encoded)")
        retrain = _queue_retrain(session, ctx, params, settings) if params.get("retrain") \
            else None
        if retrain is not None:
            message += f"; queued training {retrain}"
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded", message)
    if retrain is not None and send is not None:
        try:
            task_id = send(retrain, "train")
            with session_scope() as session:
                job_store.mark_dispatched(session, retrain, task_id)
        except Exception:  # noqa: BLE001 - the reconciler sends it later
            log.warning("job %s: could not dispatch the retraining %s now", ctx.job_id, retrain)
    return "succeeded"


#: The folds of a retraining's trust report when the serving version had none (the bootstrap's):
#: the version the loop is about to trust must carry the figures that say how far.
RETRAIN_CV_FOLDS = 5


def _queue_retrain(session: Any, ctx: JobContext, params: dict[str, Any],
                   settings: Settings) -> str:
    """One promote-if-better training of the serving model's recipe on the new version (the
    reconciler dispatches it: ``dispatched_at`` is NULL). Idempotent per version."""
    name = params.get("model") or settings.model_name
    recipe = _active_recipe(session, name, settings)
    job = session.get(Job, ctx.job_id)
    train_params = {"dataset_id": params["dataset_id"], "predictor": recipe["predictor"],
                    "hyperparameters": recipe["hyperparameters"],
                    "model_name": None if name == settings.model_name else name,
                    "activate": False, "promote": "if_better",
                    "cv_folds": recipe.get("cv_folds") or RETRAIN_CV_FOLDS}
    train, _ = job_store.create_job(
        session, kind="train", params=train_params, principal=job.principal,
        request_sha256="retrain", idempotency_key=f"retrain:{params['dataset_id']}",
        dataset_id=params["dataset_id"], max_attempts=settings.max_attempts)
    dataset_store.set_retrain_job(session, params["dataset_id"], train.id)
    return train.id


def _active_recipe(session: Any, name: str, settings: Settings) -> dict[str, Any]:
    """The predictor and hyper-parameters the active version of ``name`` was trained with (the
    configured default when nothing is active)."""
    version = registry.alias_version(session, name)
    if version is None:
        return {"predictor": settings.default_predictor, "hyperparameters": {}}
    row = registry.get_version(session, name, version)
    job = session.get(Job, row.job_id) if row.job_id else None
    params = dict(job.params or {}) if job is not None else {}
    hyper = dict(params.get("hyperparameters") or {})
    return {"predictor": row.predictor, "hyperparameters": hyper, "version": version,
            "cv_folds": int(params.get("cv_folds") or 0)}


# -- training ------------------------------------------------------------------------------

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


class _TrainCallbacks:
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


def _run_propose(ctx: JobContext, params: dict[str, Any]) -> str:
    """A proposal too large for a request: the registered bundle of the version the request
    resolved, scored with the core's bundle scorer; the answer goes to the job's ``result``."""
    from ml.search.scoring import BundleScorer
    from ml.search.strategies import ProposeSpec, SearchCancelled, SearchError, propose
    from ml.train import load_bundle
    from ml.train.bundle import read_training_hashes

    name, version = params["model_name"], int(params["model_version"])
    with session_scope() as session:
        row = registry.get_version(session, name, version)
        path, encoder_version = row.source_path, row.encoder_version
    try:
        model = load_bundle(path)
    except Exception as exc:  # noqa: BLE001 - a bundle this code cannot load
        raise JobFailure("MODEL_NOT_LOADABLE", f"{name} v{version}: {type(exc).__name__}: "
                         f"{exc}"[:2000]) from exc
    spec = ProposeSpec.from_mapping(params)
    ctx.progress(0.0, f"proposing with {name} v{version} ({spec.strategy})")
    try:
        result = propose(BundleScorer(model), spec, read_training_hashes(path),
                         progress=ctx.progress, stop=ctx.should_stop)
    except SearchCancelled as exc:
        if ctx.lost.is_set():
            raise LeaseLost() from exc
        raise Cancelled() from exc
    except SearchError as exc:
        raise JobFailure("INVALID_REQUEST", str(exc)) from exc
    result = {**result, "model_name": name, "model_version": version,
              "encoder_version": encoder_version}
    with session_scope() as session:
        _still_owned(session, ctx)
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded",
                         f"{len(result['items'])} proposals from "
                         f"{result['stats']['candidates']} candidates", result=json_safe(result))
    return "succeeded"


@contextmanager
def _fitting(ctx: JobContext) -> Iterator[None]:
    """What a fit (training or pre-training) raises, as the job's outcome: a cancel (or a lost
    lease), out of memory, a deterministic ``TRAINING_FAILED``; anything else is a bug and
    propagates. A lease lost during the fit is noticed when it returns."""
    from ml.models.base import TrainingCancelled

    try:
        yield
    except TrainingCancelled as exc:
        if ctx.lost.is_set():
            raise LeaseLost() from exc
        raise Cancelled() from exc
    except Exception as exc:  # noqa: BLE001 - classified below; anything else is a bug
        if _is_out_of_memory(exc):
            raise JobFailure("OUT_OF_MEMORY", f"{type(exc).__name__}: {exc}"[:2000]) from exc
        if isinstance(exc, (ValueError, RuntimeError)):
            raise JobFailure("TRAINING_FAILED", f"{type(exc).__name__}: {exc}") from exc
        raise
    if ctx.lost.is_set():
        raise LeaseLost()


def _run_pretrain(ctx: JobContext, params: dict[str, Any], settings: Settings) -> str:
    """Pre-train the masked graph encoder (``ml.train.pretrain``) and keep the embedder under
    ``pretrained_dir``; the report (and the file's path) is the job's ``result``, and a train
    job names this job's id as its ``embedding``."""
    from ml.models.hyperparameters import DeviceUnavailable, check_device
    from ml.train.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(**{k: v for k, v in params.items() if v is not None})
    if config.device != "auto":
        try:
            check_device({"device": config.device})
        except DeviceUnavailable as exc:
            raise JobFailure("DEVICE_UNAVAILABLE",
                             f"{exc} (worker {socket.gethostname()})") from exc
    ctx.progress(0.0, f"pre-training on {config.genomes} sampled genomes")
    with _fitting(ctx), _children_allowed():
        embedder, report = pretrain(config, progress=ctx.progress, stop=ctx.should_stop)
    folder = settings.pretrained_dir / ctx.job_id / f"attempt-{ctx.attempt}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "embedder.pt"
    embedder.save(path)
    result = {**report, "path": str(path.resolve()), "digest": embedder.digest(),
              "dims": embedder.dims}
    with session_scope() as session:
        _still_owned(session, ctx)
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded",
                         f"pre-trained on {report['genomes']} genomes in "
                         f"{report['seconds']:.0f} s ({report['device']})",
                         result=json_safe(result))
    return "succeeded"


def embedder_path(job_id: str) -> str:
    """The embedder file of a succeeded ``pretrain`` job (``EMBEDDING_NOT_FOUND`` otherwise)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        result = dict(job.result or {}) if job is not None else {}
        ok = job is not None and job.kind == "pretrain" and job.status == "succeeded"
    path = result.get("path")
    if not ok or not path or not Path(path).is_file():
        raise JobFailure("EMBEDDING_NOT_FOUND", f"no embedder from a succeeded pretrain job "
                         f"{job_id!r}")
    return str(path)


def resolved(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe's hyper-parameters as the model reads them: an ``embedding`` (the API names a
    ``pretrain`` job) becomes that job's embedder file."""
    out = dict(hyperparameters or {})
    if out.get("embedding"):
        out["embedding"] = embedder_path(str(out["embedding"]))
    return out


def _run_train(ctx: JobContext, params: dict[str, Any], settings: Settings) -> str:
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.models.hyperparameters import DeviceUnavailable, check_device
    from ml.models.registry import create, resolve_name
    from ml.train import fit_predictor, load_bundle, load_training_records, save_bundle

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
    callbacks = _TrainCallbacks(ctx, total, settings.epoch_delay_s, stages["cv"])
    with _fitting(ctx):
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
    promote, comparison = _promotion(ctx, params, settings, records, name, source, model_name)
    if promote:
        try:  # activation loads the bundle first, as POST /models/{v}/activate does
            load_bundle(bundle)
        except Exception as exc:  # noqa: BLE001
            raise JobFailure("MODEL_INCOMPATIBLE", f"the new bundle does not load: "
                             f"{type(exc).__name__}: {exc}") from exc
    with session_scope() as session:
        _still_owned(session, ctx)
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


def promotion_mode(params: dict[str, Any], has_champion: bool) -> str:
    """``promote`` as asked; unset: ``always`` with ``activate`` or for a name's first version,
    else ``never``."""
    asked = params.get("promote")
    if asked:
        return asked
    return "always" if params.get("activate") or not has_champion else "never"


def _promotion(ctx: JobContext, params: dict[str, Any], settings: Settings, records: list[Any],
               name: str, source: dict[str, Any], model_name: str
               ) -> tuple[bool, dict[str, Any] | None]:
    """Whether the new version becomes active, and (``if_better``) the champion/challenger
    comparison that decided it, recorded on the version."""
    from ml.evaluation.champion import compare_recipes

    with session_scope() as session:
        champion = _active_recipe(session, model_name, settings) \
            if registry.alias_version(session, model_name) is not None else None
    mode = promotion_mode(params, champion is not None)
    if mode != "if_better":
        return mode == "always", None
    ctx.progress(None, "comparing with the champion on its held-out generations")
    recipes = {"challenger": {"predictor": name,
                              "hyperparameters": dict(params.get("hyperparameters") or {})},
               "champion": champion}
    # Fitted with the embedder files; recorded as asked (a pretrain job id, never a path).
    run_as = {side: None if r is None else {**r, "hyperparameters": resolved(r["hyperparameters"])}
              for side, r in recipes.items()}
    champion_records = None if champion is None else \
        _champion_records(model_name, champion.get("version"), tuple(source["metrics"]))
    comparison = compare_recipes(records, tuple(source["metrics"]), run_as["challenger"],
                                 run_as["champion"], settings.promote_generations,
                                 champion_records=champion_records)
    for side, recipe in recipes.items():
        if recipe is not None and isinstance(comparison.get(side), dict):
            comparison[side]["recipe"] = json_safe(recipe)
    if champion is None:  # the first version of a name serves: nothing else could
        return bool(comparison["promoted"]), comparison
    comparison["champion"]["version"] = champion.get("version")
    return apply_policy(comparison, settings.promotion_policy), comparison


def apply_policy(comparison: dict[str, Any], policy: str) -> bool:
    """The promotion policy on the measured rule's decision, recorded on the comparison:
    ``auto`` follows it; ``approve`` turns a promotion into a recommendation that waits for an
    admin (``awaiting_approval``; the dashboard's approve form activates it). Returns whether
    the version becomes active now."""
    recommended = bool(comparison["promoted"])
    waiting = recommended and policy == "approve"
    comparison.update(policy=policy, recommended=recommended, awaiting_approval=waiting,
                      promoted=recommended and not waiting)
    return bool(comparison["promoted"])


def _champion_records(model_name: str, version: int | None, metrics: tuple[str, ...]
                      ) -> list[Any] | None:
    """The records the champion was trained on (its version's dataset), the data its held-out
    generations come from; ``None`` when that dataset is not known, not ready, no longer
    readable or measures other metrics (then the challenger's records stand in)."""
    from ml.train import load_training_records

    if version is None:
        return None
    with session_scope() as session:
        row = registry.get_version(session, model_name, version)
        ds = session.get(Dataset, row.dataset_id) if row.dataset_id else None
        path = ds.path if ds is not None and ds.status == "ready" else None
    if path is None:
        return None
    try:
        records, source = load_training_records(dataset=path)
    except (OSError, ValueError):
        log.warning("the champion %s v%s: its dataset could not be read", model_name, version)
        return None
    return list(records) if tuple(source["metrics"]) == metrics else None


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


# -- the reconciler ------------------------------------------------------------------------

def reconcile(dispatch: Any, settings: Settings | None = None, *,
              redispatch_after_s: float | None = None,
              lease_s: float | None = None) -> dict[str, int]:
    """Re-send queued jobs that were never dispatched (the broker was down after commit) and
    running jobs whose heartbeat is older than the lease; fail those whose attempts are used
    up with ``WORKER_LOST``; finish abandoned cancellations. ``dispatch(job_id, kind)`` sends."""
    settings = settings or get_settings()
    now = utcnow()
    counts = {"dispatched": 0, "worker_lost": 0, "cancelled": 0}
    with session_scope() as session:
        jobs = [(j.id, j.kind, j.status, j.attempt, j.max_attempts)
                for j in job_store.to_redispatch(
                    session, now,
                    settings.redispatch_after_s if redispatch_after_s is None
                    else redispatch_after_s,
                    settings.job_lease_s if lease_s is None else lease_s)]
    for job_id, kind, status, attempt, max_attempts in jobs:
        if status == "cancelling":
            with session_scope() as session:
                if job_store.finish(session, job_id, None, "cancelled",
                                    "cancelled (its worker stopped)"):
                    counts["cancelled"] += 1
            continue
        if status == "running" and attempt >= max_attempts:
            with session_scope() as session:
                if job_store.finish(session, job_id, None, "failed",
                                    f"the worker was lost {attempt} times "
                                    f"(limit {max_attempts})", error_code="WORKER_LOST"):
                    counts["worker_lost"] += 1
            continue
        task_id = dispatch(job_id, kind)
        with session_scope() as session:
            job_store.mark_dispatched(session, job_id, task_id)
        counts["dispatched"] += 1
    return counts
