"""Jobs through a real Celery worker subprocess on real Redis and PostgreSQL: a dataset build
and a training end to end (the new model answers /predict), SIGKILL mid-training (resume from
the checkpoint, exactly one model version), the attempt cap (WORKER_LOST, no loop), and
cancellation of queued and running jobs."""
from __future__ import annotations

from typing import Any

from tests.conftest import TRAIN_CSV, train_rows

from .conftest import CeleryWorker, headers, needs_redis, wait_for

pytestmark = needs_redis

SLOW_GNN = {"epochs": 30, "checkpoint_every": 2, "patience": 1000, "ensemble": 1,
            "hidden": 16, "batch_size": 64}


def _job(api: dict[str, Any], job_id: str) -> dict[str, Any]:
    return api["client"].get(f"/jobs/{job_id}", headers=headers(api["keys"]["admin"])).json()


def _submit(api: dict[str, Any], **body: Any) -> str:
    r = api["client"].post("/jobs/train", json={"dataset_id": api["dataset_id"], **body},
                           headers=headers(api["keys"]["train"]))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _versions_of(job_id: str) -> int:
    from sqlalchemy import func, select

    from service.db import session_scope
    from service.tables import ModelVersion
    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(ModelVersion)
                            .where(ModelVersion.job_id == job_id)))


def _status(api: dict[str, Any], job_id: str, *states: str) -> Any:
    job = _job(api, job_id)
    return job if job["status"] in states else None


def test_dataset_build_and_training_through_the_queue(api, service_env, tmp_path):
    c, train = api["client"], api["keys"]["train"]
    worker = CeleryWorker(service_env, tmp_path / "worker.log").start()
    try:
        r = c.post("/datasets", data={"path": str(TRAIN_CSV), "name": "real"},
                   headers=headers(train))
        assert r.status_code == 202, r.text
        dataset_id = r.json()["id"]
        ready = wait_for(lambda: (lambda d: d if d["status"] != "pending" else None)(
            c.get(f"/datasets/{dataset_id}", headers=headers(train)).json()), 300,
            what="dataset build")
        assert ready["status"] == "ready", (ready, worker.log())
        assert ready["counts"]["rows"] == len(train_rows())
        assert ready["job"]["status"] == "succeeded" and ready["job"]["progress"] == 1.0
        r = c.post("/jobs/train", json={"dataset_id": dataset_id, "predictor": "trees",
                                        "hyperparameters": {"ensemble": 2}, "activate": True},
                   headers=headers(api["keys"]["admin"]))  # activation is an admin decision
        job_id = r.json()["id"]
        done = wait_for(lambda: _status(api, job_id, "succeeded", "failed"), 240,
                        what="training")
        assert done["status"] == "succeeded", (done, worker.log())
        assert done["attempt"] == 1 and done["model_version"] == 2
        assert len(done["epochs"]) == 2   # one row per ensemble member
        model = c.get("/models/2", headers=headers(api["keys"]["predict"])).json()
        assert model["lineage"] == {"job_id": job_id, "dataset_id": dataset_id,
                                    "encoder_version": "graph-v2"} and model["active"]
        genomes = [row["genome"] for row in train_rows()[:20]]
        r = c.post("/predict", json={"genomes": genomes}, headers=headers(api["keys"]["predict"]))
        assert r.status_code == 200 and r.json()["model_version"] == 2
    finally:
        worker.stop()


def test_sigkill_mid_training_resumes_from_checkpoint(api, service_env, tmp_path):
    extra = {"SURROGATE_EPOCH_DELAY_S": "0.4"}
    first = CeleryWorker(service_env, tmp_path / "w1.log", extra).start()
    job_id = _submit(api, predictor="simple_gcn", hyperparameters=SLOW_GNN)
    try:
        wait_for(lambda: len(_job(api, job_id)["epochs"] or []) >= 5, 240,
                 what="five epochs on the first worker")
    finally:
        first.kill()
    killed_at = max(e["epoch"] for e in _job(api, job_id)["epochs"])
    second = CeleryWorker(service_env, tmp_path / "w2.log", extra).start()
    try:
        done = wait_for(lambda: _status(api, job_id, "succeeded", "failed"), 300,
                        what="the redelivered training")
    finally:
        second.stop()
    assert done["status"] == "succeeded", (done, second.log())
    assert done["attempt"] == 2
    assert _versions_of(job_id) == 1
    second_attempt = [e["epoch"] for e in done["epochs"] if e["attempt"] == 2]
    assert second_attempt and min(second_attempt) >= 2          # resumed, not restarted
    assert min(second_attempt) <= killed_at + 1
    events = api["client"].get(f"/jobs/{job_id}/events",
                               headers=headers(api["keys"]["train"])).json()
    assert any("resuming from checkpoint" in e["message"] for e in events)


def test_attempt_cap_fails_with_worker_lost(api, service_env, tmp_path):
    from sqlalchemy import update

    from service.db import session_scope
    from service.tables import Job

    extra = {"SURROGATE_EPOCH_DELAY_S": "0.4"}
    job_id = _submit(api, predictor="simple_gcn", hyperparameters=SLOW_GNN)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(max_attempts=1))
    first = CeleryWorker(service_env, tmp_path / "w1.log", extra).start()
    try:
        wait_for(lambda: len(_job(api, job_id)["epochs"] or []) >= 2, 240, what="two epochs")
    finally:
        first.kill()
    second = CeleryWorker(service_env, tmp_path / "w2.log", extra).start()
    try:
        done = wait_for(lambda: _status(api, job_id, "succeeded", "failed"), 120,
                        what="WORKER_LOST")
        assert done["status"] == "failed" and done["error"]["code"] == "WORKER_LOST"
        # Either the redelivered message's claim (attempt 2 > 1) or the reconciler (stale
        # heartbeat, attempts used up) ends it, whichever comes first.
        assert done["attempt"] in (1, 2)
        import time
        time.sleep(8)  # longer than the visibility timeout: no redelivery loop
        again = _job(api, job_id)
        assert again["status"] == "failed" and again["attempt"] == done["attempt"]
    finally:
        second.stop()
    assert _versions_of(job_id) == 0


def test_cancel_queued_and_running_jobs(api, service_env, tmp_path):
    c, train = api["client"], api["keys"]["train"]
    running = _submit(api, predictor="simple_gcn", hyperparameters=SLOW_GNN)
    queued = _submit(api, predictor="simple_gcn", hyperparameters={**SLOW_GNN, "seed": 1})
    worker = CeleryWorker(service_env, tmp_path / "w.log",
                          {"SURROGATE_EPOCH_DELAY_S": "0.4"}).start()
    try:
        wait_for(lambda: len(_job(api, running)["epochs"] or []) >= 2, 240, what="epochs")
        r = c.post(f"/jobs/{queued}/cancel", headers=headers(train))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = c.post(f"/jobs/{running}/cancel", headers=headers(train))
        assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
        done = wait_for(lambda: _status(api, running, "cancelled", "succeeded", "failed"), 30,
                        what="cooperative cancel")
        assert done["status"] == "cancelled", (done, worker.log())
        assert len(done["epochs"]) < SLOW_GNN["epochs"]
        from service.config import get_settings
        assert (get_settings().jobs_dir / running / "checkpoint" / "checkpoint.pt").is_file()
        assert _versions_of(running) == 0
        # The queued job's message reaches the worker next; the claim refuses it.
        import time
        time.sleep(10)
        assert _job(api, queued)["status"] == "cancelled" and _job(api, queued)["attempt"] == 0
    finally:
        worker.stop()


def test_visibility_timeout_redelivery_is_refused_by_the_claim(api, service_env, tmp_path):
    """The training outlives Redis' visibility timeout (6 s here), so the message is delivered
    again to a second, idle worker while the first still runs it: the claim sees a fresh
    heartbeat and the duplicate exits. One training, attempt 1, one model version."""
    extra = {"SURROGATE_EPOCH_DELAY_S": "0.5"}
    first = CeleryWorker(service_env, tmp_path / "w1.log", extra).start()
    job_id = _submit(api, predictor="simple_gcn", hyperparameters={**SLOW_GNN, "epochs": 40})
    second = None
    try:
        wait_for(lambda: len(_job(api, job_id)["epochs"] or []) >= 1, 240, what="first epoch")
        # Start the idle worker once the visibility timeout (6 s) has passed since delivery:
        # its consumer restores the unacked message on start and receives the duplicate.
        import time
        time.sleep(8)
        assert _job(api, job_id)["status"] == "running"
        second = CeleryWorker(service_env, tmp_path / "w2.log", extra).start()
        done = wait_for(lambda: _status(api, job_id, "succeeded", "failed"), 300,
                        what="the training")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    assert _versions_of(job_id) == 1
    duplicate = [line for line in second.log_path.read_text().splitlines()
                 if "worker.tasks.train[" in line and "succeeded" in line]
    assert duplicate and all("'skipped'" in line for line in duplicate), duplicate


def test_sigterm_releases_the_running_job_to_another_worker(api, service_env, tmp_path):
    """SIGTERM to the worker's process group (SLURM's scancel, or the warning signal before a
    time limit): the pool process releases its job, which is sent again at once and finished
    by another worker from its checkpoint; the stopped worker exits cleanly."""
    import os
    import signal

    extra = {"SURROGATE_EPOCH_DELAY_S": "0.4"}
    job_id = _submit(api, predictor="simple_gcn", hyperparameters=SLOW_GNN)
    first = CeleryWorker(service_env, tmp_path / "w1.log", extra).start()
    try:
        wait_for(lambda: len(_job(api, job_id)["epochs"] or []) >= 4, 240, what="four epochs")
        os.killpg(first.proc.pid, signal.SIGTERM)
        assert first.proc.wait(timeout=60) == 0, first.log()
    finally:
        first.kill()
    job = _job(api, job_id)
    assert job["status"] == "queued" and job["attempt"] == 1, (job, first.log())
    assert "released" in job["message"]
    second = CeleryWorker(service_env, tmp_path / "w2.log", extra).start()
    try:
        done = wait_for(lambda: _status(api, job_id, "succeeded", "failed"), 240,
                        what="the takeover")
        assert done["status"] == "succeeded" and done["attempt"] == 2, (done, second.log())
    finally:
        second.stop()
    assert _versions_of(job_id) == 1
