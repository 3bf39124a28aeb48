"""``POST /propose`` against real PostgreSQL and Redis with the real default model: the search
runs in the request through the service's encoding cache, or as a ``propose`` job over the
size threshold (run in-process through ``run_job``), and both give the same proposals."""
from __future__ import annotations

import json
from typing import Any

from tests.conftest import real_genomes

from .conftest import headers, needs_redis

pytestmark = needs_redis

POPULATION = list(real_genomes()[-20:])
BODY = {"population": POPULATION, "strategy": "ssi", "pool_size": 60, "inner_generations": 2,
        "seed": 5, "exclude": list(real_genomes()[:3])}


def _training_hashes(api: dict[str, Any]) -> set[str]:
    return set(api["app"].state.scorer.models.current("default", 1).training_hashes())


def test_propose_in_the_request_is_new_ranked_and_repeatable(api: dict[str, Any]) -> None:
    c, key = api["client"], api["keys"]["predict"]
    r = c.post("/propose", json=BODY, headers=headers(key))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "default" and out["model_version"] == 1
    assert out["encoder_version"]
    items = out["items"]
    assert len(items) == 16 and [it["rank"] for it in items] == list(range(1, 17))
    training = _training_hashes(api)
    assert len(training) > 200
    proposed = {it["canonical_hash"] for it in items}
    assert len(proposed) == 16 and not proposed & training
    assert not {it["genome"] for it in items} & set(POPULATION + BODY["exclude"])
    for it in items:
        assert it["origin"]["op"].startswith("cx") and len(it["origin"]["parents"]) == 2
        assert {"uw_val_epoch_loss", "ciou_loss", "average_precision"} <= set(it["predictions"])
        assert 0.0 <= it["p_fail"] <= 1.0
    stats = out["stats"]
    assert stats["candidates"] >= 20 + 120 and stats["seconds"] > 0
    again = c.post("/propose", json=BODY, headers=headers(key)).json()
    assert json.dumps(again["items"]) == json.dumps(items)       # now from the warm cache
    other = c.post("/propose", json={**BODY, "seed": 6}, headers=headers(key)).json()
    assert [it["genome"] for it in other["items"]] != [it["genome"] for it in items]


def test_propose_refuses_what_it_cannot_run(api: dict[str, Any]) -> None:
    c, key = api["client"], api["keys"]["predict"]
    cases = [
        ({"strategy": "ssi", "population": []}, 422, "INVALID_REQUEST"),
        ({"strategy": "ssi", "population": ["RetinaNet_Head(", POPULATION[0]]}, 422,
         "POPULATION_TOO_SMALL"),
        ({**BODY, "acquisition": "greedy"}, 422, "INVALID_REQUEST"),
        ({**BODY, "pool_size": 10 ** 7}, 422, "INVALID_REQUEST"),
        ({**BODY, "model": "nobody"}, 404, "MODEL_NOT_FOUND"),
        ({**BODY, "population": ["x" * 30_000, POPULATION[0]]}, 422, "GENOME_TOO_LONG"),
    ]
    for body, status, code in cases:
        r = c.post("/propose", json=body, headers=headers(key))
        assert r.status_code == status, (body.get("strategy"), r.text)
        assert r.json()["error"]["code"] == code
    assert c.post("/propose", json=BODY).status_code == 401
    settings = api["app"].state.settings
    settings.propose_deadline_s = 0.5
    try:
        r = c.post("/propose", json={**BODY, "exclude": POPULATION * 50, "pool_size": 500},
                   headers=headers(key))
    finally:
        settings.propose_deadline_s = 120.0
    assert r.status_code == 503 and r.json()["error"]["code"] == "DEADLINE_EXCEEDED"
    assert r.headers["Retry-After"]


def test_a_large_proposal_runs_as_a_job_with_the_same_answer(api: dict[str, Any]) -> None:
    from worker.runner import run_job

    c, key = api["client"], api["keys"]["predict"]
    body = {**BODY, "strategy": "neural_predictor", "pool_size": 80, "k": 6, "seed": 2}
    inline = c.post("/propose", json=body, headers=headers(key))
    assert inline.status_code == 200, inline.text
    settings = api["app"].state.settings
    settings.propose_sync_max_candidates = 50
    try:
        r = c.post("/propose", json=body, headers=headers(key, **{"Idempotency-Key": "np-1"}))
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "propose" and job["status"] == "queued"
        assert r.headers["Location"] == f"/jobs/{job['id']}"
        replay = c.post("/propose", json=body, headers=headers(key, **{"Idempotency-Key": "np-1"}))
        assert replay.status_code == 200 and replay.json()["id"] == job["id"]
        other = c.post("/propose", json={**body, "seed": 3},
                       headers=headers(key, **{"Idempotency-Key": "np-1"}))
        assert other.status_code == 409, other.text
        assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
        documented = c.get("/openapi.json").json()["paths"]["/propose"]["post"]["responses"]
        assert {"200", "202", "409"} <= set(documented)  # the schema fuzz checks every code
    finally:
        settings.propose_sync_max_candidates = 12_000
    assert run_job(job["id"], settings) == "succeeded"
    done = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    result = done["result"]
    assert result["model_version"] == 1 and result["stats"]["candidates"] >= 80
    assert json.dumps(result["items"]) == json.dumps(inline.json()["items"])
    # Another key does not see it; its owner lists it by kind.
    assert c.get(f"/jobs/{job['id']}", headers=headers(api["keys"]["train"])).status_code == 404
    listed = c.get("/jobs?kind=propose", headers=headers(key)).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]


def test_the_client_proposes(api: dict[str, Any]) -> None:
    from app.client import SurrogateClient

    client = SurrogateClient(api_key=api["keys"]["predict"], http=api["client"])
    out = client.propose(POPULATION, strategy="mutate", pool_size=30, k=3, parents_k=4, seed=1,
                         exclude=BODY["exclude"])
    assert [it["rank"] for it in out["items"]] == [1, 2, 3]
    assert all(it["origin"]["op"] in ("mutNodeReplacement", "type_fixed_mut")
               for it in out["items"])
