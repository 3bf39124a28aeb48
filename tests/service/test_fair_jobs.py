"""Fair jobs (issue 28): one key cannot fill the job queue (``max_jobs_per_key``, 429
TOO_MANY_JOBS), one proposal cannot score without bound (``max_propose_candidates``, 413), and on
the embedded executor a long proposal does not hold up another key's dataset build (lanes)."""
from __future__ import annotations

import threading
from typing import Any

from tests.conftest import real_genomes

from .conftest import headers, needs_redis, wait_for, write_seed_csv

pytestmark = needs_redis

POPULATION = list(real_genomes()[-20:])
PROPOSE = {"population": POPULATION, "strategy": "neural_predictor", "pool_size": 80, "k": 4,
           "seed": 3}


def test_a_key_at_its_job_cap_is_refused(api: dict[str, Any], monkeypatch, tmp_path) -> None:
    c, settings = api["client"], api["app"].state.settings
    monkeypatch.setattr(settings, "max_jobs_per_key", 2)
    train = {"dataset_id": api["dataset_id"], "predictor": "trees"}
    key = api["keys"]["train"]
    first = c.post("/jobs/train", json={**train, "hyperparameters": {"seed": 1}},
                   headers=headers(key, **{"Idempotency-Key": "first"}))
    second = c.post("/jobs/train", json={**train, "hyperparameters": {"seed": 2}},
                    headers=headers(key))
    assert (first.status_code, second.status_code) == (202, 202)
    r = c.post("/jobs/train", json={**train, "hyperparameters": {"seed": 3}}, headers=headers(key))
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "TOO_MANY_JOBS" and error["details"]["limit"] == 2
    assert sorted(error["details"]["open_jobs"]) == sorted([first.json()["id"],
                                                            second.json()["id"]])
    assert "Retry-After" in r.headers
    # Other routes that queue jobs share the cap; a replay is never refused; another key is
    # not limited by this one.
    with open(write_seed_csv(tmp_path / "s.csv", 5), "rb") as handle:
        assert c.post("/datasets", files={"file": ("s.csv", handle, "text/csv")},
                      headers=headers(key)).json()["error"]["code"] == "TOO_MANY_JOBS"
    again = c.post("/jobs/train", json={**train, "hyperparameters": {"seed": 1}},
                   headers=headers(key, **{"Idempotency-Key": "first"}))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert c.post("/jobs/train", json=train,
                  headers=headers(api["keys"]["admin"])).status_code == 202
    # A finished job frees its place.
    assert c.post(f"/jobs/{first.json()['id']}/cancel", headers=headers(key)).status_code == 200
    assert c.post("/jobs/train", json={**train, "hyperparameters": {"seed": 3}},
                  headers=headers(key)).status_code == 202


def test_a_proposal_past_the_candidate_cap_is_refused(api: dict[str, Any], monkeypatch) -> None:
    c, settings = api["client"], api["app"].state.settings
    monkeypatch.setattr(settings, "max_propose_candidates", 1000)
    body = {**PROPOSE, "strategy": "ssi", "pool_size": 500, "inner_generations": 2}
    r = c.post("/propose", json=body, headers=headers(api["keys"]["predict"]))
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "REQUEST_TOO_LARGE"
    assert error["details"]["candidates"] == 500 * 2 + len(POPULATION)
    assert error["details"]["max_propose_candidates"] == 1000


def test_a_long_proposal_does_not_delay_a_dataset_build(api: dict[str, Any], monkeypatch,
                                                        tmp_path) -> None:
    """The proposal's search is held (as a 2.5 h one would be) until the build has finished;
    with one job thread the build waited behind it."""
    import ml.search.strategies as strategies
    from service.config import get_settings
    from worker.thread_executor import ThreadDispatcher

    release, searching = threading.Event(), threading.Event()
    real_propose = strategies.propose

    def long_propose(*args: Any, **kwargs: Any) -> Any:
        searching.set()
        release.wait(120)
        return real_propose(*args, **kwargs)

    monkeypatch.setattr(strategies, "propose", long_propose)
    c, settings = api["client"], api["app"].state.settings
    monkeypatch.setattr(settings, "propose_sync_max_candidates", 50)
    dispatcher = ThreadDispatcher(get_settings().model_copy(update={"executor": "thread"}))
    try:
        proposal = c.post("/propose", json=PROPOSE, headers=headers(api["keys"]["predict"]))
        assert proposal.status_code == 202, proposal.text
        dispatcher.send(proposal.json()["id"], "propose")
        assert searching.wait(60), "the proposal did not start"
        key = api["keys"]["train"]
        with open(write_seed_csv(tmp_path / "small.csv", 12), "rb") as handle:
            build = c.post("/datasets", files={"file": ("small.csv", handle, "text/csv")},
                           headers=headers(key))
        assert build.status_code == 202, build.text
        dispatcher.send(build.json()["job"]["id"], "build_dataset")

        def dataset() -> dict[str, Any] | None:
            out = c.get(f"/datasets/{build.json()['id']}", headers=headers(key)).json()
            return out if out["status"] in ("ready", "failed") else None
        done = wait_for(dataset, 100, what="the dataset build beside the proposal")
        assert done["status"] == "ready", done
        assert not release.is_set()  # the proposal was still searching all along
        release.set()

        def job() -> dict[str, Any] | None:
            out = c.get(f"/jobs/{proposal.json()['id']}",
                        headers=headers(api["keys"]["predict"])).json()
            return out if out["status"] in ("succeeded", "failed") else None
        assert wait_for(job, 120, what="the proposal")["status"] == "succeeded"
    finally:
        release.set()
        dispatcher.shutdown(grace_s=30)
