"""``POST /jobs/pretrain`` against real PostgreSQL and Redis: the job pre-trains the graph encoder
on genomes really sampled and encoded (run in-process through ``run_job``), and a training that
names it as ``hyperparameters.embedding`` registers a tree model carrying that embedder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import headers, make_key, needs_redis

pytestmark = needs_redis

SMALL = {"genomes": 16, "chunk": 8, "processes": 0, "hidden": 8, "layers": 1, "dims": 2,
         "batch_size": 8, "projection_genomes": 16, "seed": 4}


def test_pretrain_job_then_a_training_with_its_embedding(api: dict[str, Any]) -> None:
    from app.client import SurrogateClient, SurrogateError
    from ml.train import load_bundle
    from worker.runner import run_job

    c, keys, settings = api["client"], api["keys"], api["app"].state.settings
    assert c.post("/jobs/pretrain", json=SMALL,
                  headers=headers(keys["predict"])).status_code == 403
    bad = c.post("/jobs/pretrain", json={**SMALL, "dims": 17}, headers=headers(keys["train"]))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_REQUEST"
    r = c.post("/jobs/pretrain", json=SMALL,
               headers=headers(keys["train"], **{"Idempotency-Key": "pre-1"}))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "pretrain" and job["status"] == "queued"
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    client = SurrogateClient(api_key=keys["train"], http=c)
    assert client.pretrain(idempotency_key="pre-1", **SMALL)["id"] == job["id"]  # a replay
    with pytest.raises(SurrogateError) as err:
        client.pretrain(genomes=1)
    assert err.value.status == 422 and err.value.code == "INVALID_REQUEST"
    # Not usable before it succeeded, nor by a name that is not a pretrain job.
    for ref in (job["id"], api["dataset_id"], "../../etc/passwd"):
        r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees",
                                        "hyperparameters": {"embedding": ref}},
                   headers=headers(keys["train"]))
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "embedding"

    assert run_job(job["id"], settings) == "succeeded"
    done = c.get(f"/jobs/{job['id']}", headers=headers(keys["train"])).json()
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    result = done["result"]
    assert result["genomes"] == 16 and result["dims"] == 2 and len(result["curve"]) == 2
    assert Path(result["path"]).is_file() and str(settings.pretrained_dir) in result["path"]
    listed = c.get("/jobs?kind=pretrain", headers=headers(keys["train"])).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    # Another train key does not see it, so it cannot train with it either.
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees",
                                    "hyperparameters": {"embedding": job["id"]}},
               headers=headers(make_key(["train"])))
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "embedding"

    # A cheap champion first, so that the comparison below costs seconds, not the stack's.
    cheap = {"n_estimators": 10, "target_transform": "robust"}
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees",
                                    "hyperparameters": cheap, "promote": "always"},
               headers=headers(keys["admin"]))
    assert r.status_code == 202 and run_job(r.json()["id"], settings) == "succeeded"
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees",
                                    "hyperparameters": {**cheap, "embedding": job["id"]},
                                    "promote": "if_better"},
               headers=headers(keys["train"]))
    assert r.status_code == 202, r.text
    assert run_job(r.json()["id"], settings) == "succeeded"
    trained = c.get(f"/jobs/{r.json()['id']}", headers=headers(keys["train"])).json()
    version = c.get(f"/models/{trained['model_version']}",
                    headers=headers(keys["predict"])).json()
    from service.db import session_scope
    from service.store import model_registry as registry
    with session_scope() as session:
        path = registry.get_version(session, version["name"], version["version"]).source_path
    model = load_bundle(path)
    assert model.embedder is not None and model.embedder.digest() == result["digest"]
    # The champion comparison fitted the recipe with the embedder and records it as asked.
    recipe = version["comparison"]["challenger"]["recipe"]
    assert recipe["hyperparameters"]["embedding"] == job["id"]
    assert "per_generation" in version["comparison"]["challenger"]
