"""Faults against real PostgreSQL, Redis and a real ``serve`` subprocess: a bundle that does not
load, the reconciler and waiting jobs, bundle directories per attempt, safe checkpoints, CUDA
out of memory, embedded time limits, SIGTERM, and an exhausted connection pool."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import train_rows

from .conftest import REPO, free_port, headers, needs_redis, stop_process, wait_for, write_seed_csv

pytestmark = needs_redis

GENOMES = [r["genome"] for r in train_rows()[:10]]


def _register_broken(tmp_path: Path, dataset_id: str) -> int:
    """A registered version whose bundle this code cannot load (a corrupt weights file)."""
    import shutil

    from service.config import get_settings
    from service.db import session_scope
    from service.store import model_registry as registry

    with session_scope() as s:
        good = registry.get_version(s, get_settings().model_name, 1).source_path
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    (broken / "weights.pt").write_bytes(b"not a torch file")
    with session_scope() as s:
        row = registry.register_version(s, name=get_settings().model_name, predictor="stack",
                                        source_path=str(broken), encoder_version="graph-v2",
                                        metrics=["uw_val_epoch_loss"], training_metrics={},
                                        dataset_id=dataset_id)
        return row.version


def test_activating_a_bundle_that_does_not_load_is_refused(api, tmp_path):
    c, keys = api["client"], api["keys"]
    version = _register_broken(tmp_path, api["dataset_id"])
    r = c.post(f"/models/{version}/activate", headers=headers(keys["admin"]))
    assert r.status_code == 409 and r.json()["error"]["code"] == "MODEL_NOT_LOADABLE"
    assert c.get("/models", headers=headers(keys["predict"])).json()["active_version"] == 1
    r = c.post("/predict", json={"genomes": GENOMES}, headers=headers(keys["predict"]))
    assert r.status_code == 200 and r.json()["model_version"] == 1


def test_a_failed_reload_keeps_the_previous_model_serving(api, tmp_path, caplog):
    """The alias moved to a bad bundle behind the API's back (another process): /predict keeps
    serving v1, and the load is retried with backoff, not under the lock on every request."""
    import logging

    from service.config import get_settings
    from service.db import session_scope
    from service.store import model_registry as registry

    c, key = api["client"], api["keys"]["predict"]
    assert c.post("/predict", json={"genomes": GENOMES}, headers=headers(key)).status_code == 200
    version = _register_broken(tmp_path, api["dataset_id"])
    with session_scope() as s:
        registry.set_alias(s, get_settings().model_name, version)
    with caplog.at_level(logging.ERROR, logger="app.scoring"):
        answers = [c.post("/predict", json={"genomes": GENOMES}, headers=headers(key))
                   for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["model_version"] for a in answers} == {1}
    attempts = [r for r in caplog.records if "cannot be loaded" in r.getMessage()]
    assert len(attempts) == 1, [r.getMessage() for r in caplog.records]
    assert c.get("/readyz").json()["model_loaded"] is False   # honest: not the active one


def test_the_reconciler_never_resends_a_job_that_merely_waits(db):
    from service.config import get_settings
    from service.db import session_scope
    from service.store import jobs as job_store
    from service.tables import Job, utcnow
    from worker.reconciler import reconcile

    settings = get_settings().model_copy(update={"redispatch_after_s": 3600.0})
    with session_scope() as s:
        waiting, _ = job_store.create_job(s, kind="train", params={}, principal="key:1",
                                          request_sha256="a")
        never, _ = job_store.create_job(s, kind="train", params={}, principal="key:1",
                                        request_sha256="b")
        lost, _ = job_store.create_job(s, kind="train", params={}, principal="key:1",
                                       request_sha256="c")
        ids = waiting.id, never.id, lost.id
    with session_scope() as s:
        # dispatched 10 minutes ago (main re-sent after 300 s), and 2 hours ago (past the
        # visibility timeout: its message can really be lost).
        s.get(Job, ids[0]).dispatched_at = utcnow() - timedelta(minutes=10)
        s.get(Job, ids[2]).dispatched_at = utcnow() - timedelta(hours=2)
    sent: list[str] = []
    counts = reconcile(lambda job_id, kind: sent.append(job_id) or "t", settings)
    assert sorted(sent) == sorted([ids[1], ids[2]]) and counts["dispatched"] == 2
    sent.clear()
    reconcile(lambda job_id, kind: sent.append(job_id) or "t", settings)
    assert sent == []   # both were just dispatched


def test_each_attempt_writes_its_own_bundle_directory(api, tmp_path):
    """The bundle lives in models/<name>/<job>/attempt-<n>; nothing can overwrite a directory
    a version points at."""
    from ml.train import load_bundle, save_bundle
    from worker.runner import run_job

    c, key = api["client"], api["keys"]["train"]
    job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees",
                                      "hyperparameters": {"n_estimators": 10}},
                 headers=headers(key)).json()
    assert run_job(job["id"]) == "succeeded"
    version = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()["model_version"]
    model = c.get(f"/models/{version}", headers=headers(api["keys"]["predict"])).json()
    from service.db import session_scope
    from service.store import model_registry as registry
    with session_scope() as s:
        path = Path(registry.get_version(s, model["name"], version).source_path)
    assert path.name == "attempt-1" and path.parent.name == job["id"]
    loaded = load_bundle(path)
    with pytest.raises(FileExistsError):
        save_bundle(loaded, path, replace=False)
    assert load_bundle(path).metrics == loaded.metrics
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_checkpoints_load_without_running_pickled_code(tmp_path):
    import pickle

    import torch

    from ml.models.neural.checkpoint import load_checkpoint, save_checkpoint

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 1, "payload": Exploit()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    save_checkpoint(path, {"epoch": 2, "net": {"w": torch.ones(2)}, "rng": torch.get_rng_state(),
                           "history": [{"loss": 1.0}], "best": {"tau": float("-inf")}})
    assert load_checkpoint(path)["epoch"] == 2


def test_cuda_out_of_memory_is_out_of_memory(api, monkeypatch):
    import torch

    import ml.train
    from worker.runner import run_job

    def oom(*args, **kwargs):  # what CUDA raises mid-training on a full GPU
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(ml.train, "fit_predictor", oom)
    c, key = api["client"], api["keys"]["train"]
    job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees"},
                 headers=headers(key)).json()
    assert run_job(job["id"]) == "failed"
    error = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()["error"]
    assert error["code"] == "OUT_OF_MEMORY" and "CUDA out of memory" in error["message"]


def _thread_dispatcher(**limits: float):  # type: ignore[no-untyped-def]
    from service.config import get_settings
    from worker.thread_executor import ThreadDispatcher

    return ThreadDispatcher(get_settings().model_copy(update={"executor": "thread", **limits}))


def test_embedded_jobs_honour_the_soft_time_limit(api):
    """A neural training slowed per epoch passes its 2 s soft limit: asked to stop at its next
    epoch, it fails with TIME_LIMIT (main let it run for as long as it liked)."""
    from worker.runner import run_job  # noqa: F401 - the dispatcher's own entry point

    c, key = api["client"], api["keys"]["train"]
    dispatcher = _thread_dispatcher(train_soft_limit_s=2, train_hard_limit_s=60,
                                    epoch_delay_s=0.5)
    try:
        job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"],
                                          "predictor": "simple_gcn",
                                          "hyperparameters": {"epochs": 200, "hidden": 8}},
                     headers=headers(key)).json()
        dispatcher.send(job["id"], "train")
        done = wait_for(lambda: (lambda j: j if j["status"] in ("failed", "succeeded") else None)(
            c.get(f"/jobs/{job['id']}", headers=headers(key)).json()), 120, what="time limit")
        assert done["status"] == "failed" and done["error"]["code"] == "TIME_LIMIT", done
        assert len(done["epochs"]) < 200
    finally:
        dispatcher.shutdown(grace_s=30)


def test_embedded_jobs_past_the_hard_limit_are_failed_and_the_queue_moves_on(api, monkeypatch):
    """A training that ignores every stop request: at its hard limit the job is failed in SQL,
    its thread abandoned (its late writes are fenced), and the next queued job runs."""
    import threading

    import ml.train

    release = threading.Event()
    real_fit = ml.train.fit_predictor

    def stuck(records, name, config, callbacks=None, resume_from=None):
        if config.get("seed") == 7:
            release.wait(60)  # never looks at callbacks.should_stop()
        return real_fit(records, name, config, callbacks=callbacks, resume_from=resume_from)

    monkeypatch.setattr(ml.train, "fit_predictor", stuck)
    c, key = api["client"], api["keys"]["train"]
    dispatcher = _thread_dispatcher(train_soft_limit_s=1, train_hard_limit_s=3)
    try:
        jobs = [c.post("/jobs/train", json={"dataset_id": api["dataset_id"],
                                            "predictor": "trees",
                                            "hyperparameters": {"seed": seed,
                                                                "n_estimators": 5,
                                                                "target_transform": "robust"}},
                       headers=headers(key)).json() for seed in (7, 8)]
        for job in jobs:
            dispatcher.send(job["id"], "train")

        def state(i: int) -> dict:
            return c.get(f"/jobs/{jobs[i]['id']}", headers=headers(key)).json()
        stuck_job = wait_for(lambda: (lambda j: j if j["status"] == "failed" else None)(
            state(0)), 60, what="hard limit")
        assert stuck_job["error"]["code"] == "TIME_LIMIT"
        nxt = wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
            state(1)), 120, what="the next job")
        assert nxt["status"] == "succeeded", nxt
        release.set()
        time.sleep(1.0)
        assert state(0)["status"] == "failed" and state(0)["model_version"] is None
    finally:
        release.set()
        dispatcher.shutdown(grace_s=30)


def test_database_pool_exhaustion_is_503(db, built_dataset, trained_bundle, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings, reset_settings
    from service.db import dispose_engines, get_engine

    from .conftest import make_key, seed_registry

    seed_registry(built_dataset, trained_bundle)
    key = make_key(["train"])
    for name, value in (("SURROGATE_DB_POOL_SIZE", "1"), ("SURROGATE_DB_MAX_OVERFLOW", "0"),
                        ("SURROGATE_DB_POOL_TIMEOUT_S", "0.5")):
        monkeypatch.setenv(name, value)
    reset_settings()
    dispose_engines()
    try:
        application = create_app(get_settings())
        application.state.start_reconciler = False
        held = get_engine().connect()   # the only connection of the pool
        try:
            with TestClient(application) as c:
                r = c.get("/jobs", headers=headers(key))
        finally:
            held.close()
        assert r.status_code == 503 and r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert r.headers.get("Retry-After") == "1"
    finally:
        monkeypatch.undo()
        reset_settings()
        dispose_engines()


def test_serve_stops_within_its_grace_period_and_the_job_resumes(tmp_path):
    """SIGTERM during the bootstrap training: serve exits within the grace period (main waited
    for the training to end), the job is released, and the next start resumes it from its
    checkpoint."""
    import httpx

    seed = write_seed_csv(tmp_path / "seed.csv", 60)
    data_dir, port = tmp_path / "var", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
    env.update({"SURROGATE_DEFAULT_PREDICTOR": "simple_gcn", "SURROGATE_EPOCH_DELAY_S": "0.3",
                "SURROGATE_SHUTDOWN_GRACE_S": "10", "SURROGATE_WARM_UP": "false"})
    command = [sys.executable, "-c", "from nas_surrogate.cli import main; raise SystemExit(main())",
               "serve", "--data-dir", str(data_dir), "--port", str(port), "--seed-csv",
               str(seed)]
    base = f"http://127.0.0.1:{port}"

    def start(log_name: str) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=(tmp_path / log_name).open(
            "wb"), stderr=subprocess.STDOUT)

    def train_job(key: str) -> dict | None:
        try:
            jobs = httpx.get(base + "/jobs", params={"kind": "train"},
                             headers={"X-API-Key": key}, timeout=5).json()["data"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return jobs[0] if jobs else None

    proc = start("serve1.log")
    try:
        key_file = data_dir / "admin.key"
        wait_for(lambda: key_file.exists(), 120, what="the admin key")
        key = key_file.read_text().strip()
        running = wait_for(lambda: (lambda j: j if j and j["status"] == "running" and
                                    j["progress"] > 0 else None)(train_job(key)), 300,
                           interval=0.5, what="the bootstrap training to run")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
        assert time.monotonic() - started < 25, "serve did not stop within its grace period"
        log = (tmp_path / "serve1.log").read_text()
        assert "Traceback" not in log, log[-3000:]
        proc = start("serve2.log")
        resumed = wait_for(lambda: (lambda j: j if j and j["attempt"] >= 2 else None)(
            train_job(key)), 120, interval=0.5, what="the job to resume")
        assert resumed["id"] == running["id"]

        def messages() -> list[str]:
            events = httpx.get(base + f"/jobs/{resumed['id']}/events",
                               headers={"X-API-Key": key}, timeout=5).json()
            return [e["message"] for e in events if e["message"]]
        assert any("released at shutdown" in m for m in messages()), messages()
        wait_for(lambda: any("resuming from checkpoint.pt" in m for m in messages()), 60,
                 interval=0.5, what="the resumed attempt to load its checkpoint")
    finally:
        stop_process(proc, signal.SIGTERM, 40)


def test_a_value_the_database_refuses_fails_the_job_at_once(api, monkeypatch):
    """A DataError (PostgreSQL refusing e.g. -Infinity in a JSON column) repeats on every retry:
    the job fails on its first attempt instead of being re-sent until its attempts run out."""
    from sqlalchemy.exc import DataError

    import ml.train
    from worker.runner import run_job

    def refused(*args, **kwargs):
        raise DataError("INSERT INTO model_versions ...", {},
                        Exception('invalid input syntax for type json: "-Infinity"'))

    monkeypatch.setattr(ml.train, "fit_predictor", refused)
    c, key = api["client"], api["keys"]["train"]
    job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees"},
                 headers=headers(key)).json()
    assert run_job(job["id"]) == "failed"
    got = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()
    assert got["attempt"] == 1 and got["error"]["code"] == "INTERNAL_ERROR"
    assert "refused a value" in got["error"]["message"]
