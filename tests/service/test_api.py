"""The HTTP API against real PostgreSQL and Redis (no worker consumes here): auth, /predict,
limits, /genomes/encode, the registry, job submission, idempotency, cancel, pagination."""
from __future__ import annotations

import json

import redis

from tests.conftest import train_rows

from .conftest import REDIS_URL, headers, needs_redis

pytestmark = needs_redis

GENOMES = [r["genome"] for r in train_rows()]


def test_auth_missing_invalid_revoked_and_scope(api):
    c, keys = api["client"], api["keys"]
    body = {"genomes": GENOMES[:2]}
    r = c.post("/predict", json=body)
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    r = c.post("/predict", json=body, headers=headers("nas_not-a-key"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"]},
               headers=headers(keys["predict"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
    r = c.post("/models/1/activate", headers=headers(keys["train"]))
    assert r.status_code == 403
    # Revoke the predict key: refused once the cache entry expires (cleared here).
    from sqlalchemy import select

    from service.db import session_scope
    from service.security import hash_key
    from service.store.keys import revoke
    from service.tables import ApiKey
    with session_scope() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(keys["predict"])))
        assert revoke(s, key_id)
    api["app"].state.key_cache.clear()
    r = c.post("/predict", json=body, headers=headers(keys["predict"]))
    assert r.status_code == 401


def test_keys_are_stored_hashed(api):
    from sqlalchemy import select

    from service.db import session_scope
    from service.tables import ApiKey
    with session_scope() as s:
        stored = [(k.key_hash, k.prefix) for k in s.scalars(select(ApiKey))]
    for plaintext in api["keys"].values():
        assert all(plaintext != h and plaintext not in h for h, _ in stored)


def test_predict_ranks_and_fails_only_bad_items(api):
    c, key = api["client"], api["keys"]["predict"]
    batch = GENOMES[:40] + ["RetinaNet_Head(", "Nope(IN0)"] + GENOMES[40:60]
    r = c.post("/predict", json={"genomes": batch}, headers=headers(key))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == 1 and out["encoder_version"] == "graph-v2"
    items = out["items"]
    assert [i["index"] for i in items] == list(range(len(batch)))
    bad = [i for i in items if not i["ok"]]
    assert [i["index"] for i in bad] == [40, 41]
    assert bad[0]["error"]["code"] and bad[0]["error"]["offset"] is not None
    assert bad[1]["error"]["code"] == "UNKNOWN_PRIMITIVE" and bad[1]["rank"] is None
    ok = [i for i in items if i["ok"]]
    assert sorted(out["ranking"]) == [i["index"] for i in ok]
    assert sorted(i["rank"] for i in ok) == list(range(1, len(ok) + 1))
    for position, index in enumerate(out["ranking"]):
        assert items[index]["rank"] == position + 1
    for item in ok:
        assert set(item["predictions"]) >= {"uw_val_epoch_loss", "ciou_loss",
                                            "average_precision"}
        assert 0.0 <= item["p_fail"] <= 1.0
        assert item["std"] is not None  # 3-member ensemble
        # The forest's 95 % interval, built in the model's (log) space: ordered and, for the
        # log-modelled loss, never below zero.
        assert set(item["interval"]) == set(item["predictions"])
        assert all(lo <= hi for lo, hi in item["interval"].values())
        assert item["interval"]["uw_val_epoch_loss"][0] >= 0
    # Failed-predicted genomes come last.
    failing = [items[i]["p_fail"] >= 0.5 for i in out["ranking"]]
    assert failing == sorted(failing)
    # Deterministic: the same input gives byte-identical output for a fixed model version.
    again = c.post("/predict", json={"genomes": batch}, headers=headers(key))
    assert again.content == r.content


def test_predict_by_metric_and_top_k(api):
    c, key = api["client"], api["keys"]["predict"]
    r = c.post("/predict", json={"genomes": GENOMES[:30], "rank_by": "ciou_loss", "top_k": 5},
               headers=headers(key))
    out = r.json()
    assert r.status_code == 200 and len(out["ranking"]) == 5
    ok = [i for i in out["items"] if i["p_fail"] < 0.5]
    best = sorted(ok, key=lambda i: (i["predictions"]["ciou_loss"], i["index"]))[:5]
    assert out["ranking"] == [i["index"] for i in best]
    r = c.post("/predict", json={"genomes": GENOMES[:3], "rank_by": "average_precision"},
               headers=headers(key))
    ranked = [r.json()["items"][i] for i in r.json()["ranking"]]
    ok = [i["predictions"]["average_precision"] for i in ranked if i["p_fail"] < 0.5]
    assert ok == sorted(ok, reverse=True)
    r = c.post("/predict", json={"genomes": GENOMES[:3], "rank_by": "not_a_metric"},
               headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "UNKNOWN_METRIC"


def test_request_limits_before_encoding(api, monkeypatch):
    c, key, settings = api["client"], api["keys"]["predict"], api["app"].state.settings
    monkeypatch.setattr(settings, "max_batch", 10)
    monkeypatch.setattr(settings, "max_genome_length", 5000)
    r = c.post("/predict", json={"genomes": GENOMES[:11]}, headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "BATCH_TOO_LARGE"
    r = c.post("/predict", json={"genomes": ["x" * 5001]}, headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "GENOME_TOO_LONG"
    r = c.post("/predict", json={"genomes": []}, headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    r = c.post("/predict", json={"genomes": "not a list"}, headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    assert "Traceback" not in r.text
    big = json.dumps({"genomes": ["A" * 1000] * (settings.max_body_bytes // 1000 + 10)})
    r = c.post("/predict", content=big, headers=headers(key, **{"Content-Type":
                                                                 "application/json"}))
    assert r.status_code == 413 and r.json()["error"]["code"] == "BODY_TOO_LARGE"

    def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536
    r = c.post("/predict", content=chunks(), headers=headers(key, **{"Content-Type":
                                                                      "application/json"}))
    assert r.status_code == 413


def test_encode_endpoint(api):
    c, key = api["client"], api["keys"]["predict"]
    r = c.post("/genomes/encode", json={"genomes": [GENOMES[0], "bad("], "full": True},
               headers=headers(key))
    assert r.status_code == 200
    good, bad = r.json()["items"]
    assert good["ok"] and good["num_nodes"] > 0 and good["params"] > 0 and good["flops"] > 0
    assert len(good["graph"]["node_ops"]) == good["num_nodes"]
    assert len(good["graph"]["edges"]) == good["num_edges"]
    assert not bad["ok"] and bad["error"]["code"]


def test_registry_list_get_activate(api, trained_bundle):
    from service.db import session_scope
    from service.store import model_registry as registry
    c, keys = api["client"], api["keys"]
    with session_scope() as s:
        registry.register_version(s, name="default", predictor="trees",
                                  source_path=str(trained_bundle), encoder_version="graph-v2",
                                  metrics=["uw_val_epoch_loss", "ciou_loss",
                                           "average_precision", "iou_loss", "giou_loss"],
                                  training_metrics={"note": "second"})
    r = c.get("/models", headers=headers(keys["predict"]))
    assert r.json()["count"] == 2 and r.json()["active_version"] == 1
    r = c.get("/models/2", headers=headers(keys["predict"]))
    assert r.status_code == 200 and r.json()["lineage"]["encoder_version"] == "graph-v2"
    assert c.get("/models/99", headers=headers(keys["predict"])).json()["error"]["code"] \
        == "MODEL_NOT_FOUND"
    r = c.post("/models/2/activate", headers=headers(keys["admin"]))
    assert r.status_code == 200 and r.json()["active"]
    r = c.post("/predict", json={"genomes": GENOMES[:3]}, headers=headers(keys["predict"]))
    assert r.json()["model_version"] == 2   # the API reloads when the alias moves


def _queue_length(name: str) -> int:
    return int(redis.Redis.from_url(REDIS_URL).llen(name))


def test_train_submission_idempotency_and_cancel(api):
    c, key = api["client"], api["keys"]["train"]
    body = {"dataset_id": api["dataset_id"], "predictor": "trees",
            "hyperparameters": {"ensemble": 2}}
    r = c.post("/jobs/train", json=body, headers=headers(key, **{"Idempotency-Key": "k1"}))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["attempt"] == 0
    assert r.headers["Location"] == f"/jobs/{job['id']}"
    assert job["dispatched_at"] is not None
    assert _queue_length("gpu") == 1
    again = c.post("/jobs/train", json=body, headers=headers(key, **{"Idempotency-Key": "k1"}))
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert _queue_length("gpu") == 1
    other = c.post("/jobs/train", json={**body, "predictor": "gbt"},
                   headers=headers(key, **{"Idempotency-Key": "k1"}))
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    got = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()
    assert got["status"] == "queued" and got["epochs"] == []
    cancelled = c.post(f"/jobs/{job['id']}/cancel", headers=headers(key))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = c.post(f"/jobs/{job['id']}/cancel", headers=headers(key))
    assert again.status_code == 409 and again.json()["error"]["code"] == "JOB_NOT_CANCELLABLE"
    # A cancelled job is never claimed, even if its message is delivered later.
    from worker.runner import run_job
    assert run_job(job["id"]) == "skipped"
    assert c.get(f"/jobs/{job['id']}", headers=headers(key)).json()["attempt"] == 0


def test_train_validation_errors(api):
    c, key = api["client"], api["keys"]["train"]
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "nope"},
               headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "UNKNOWN_PREDICTOR"
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"],
                                    "hyperparameters": {"checkpoint_dir": "/etc"}},
               headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    r = c.post("/jobs/train", json={"dataset_id": "missing"}, headers=headers(key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "DATASET_NOT_FOUND"
    assert c.get("/jobs/nope", headers=headers(key)).status_code == 404


def test_jobs_pagination(api):
    c, key = api["client"], api["keys"]["train"]
    ids = {c.post("/jobs/train", json={"dataset_id": api["dataset_id"],
                                       "hyperparameters": {"seed": i}},
                  headers=headers(key)).json()["id"] for i in range(5)}
    seen, token = [], None
    while True:
        params = {"limit": 2, **({"page_token": token} if token else {})}
        page = c.get("/jobs", params=params, headers=headers(key)).json()
        assert page["count"] == 5
        seen += [j["id"] for j in page["data"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == 5 and set(seen) == ids
    assert c.get("/jobs", params={"status": "queued"}, headers=headers(key)).json()["count"] == 5
    r = c.get("/jobs", params={"page_token": "garbage"}, headers=headers(key))
    assert r.status_code == 422


def test_dataset_paths_are_confined(api, tmp_path):
    c, key = api["client"], api["keys"]["train"]
    outside = tmp_path / "x.csv"
    outside.write_text("genome\nA\n")
    r = c.post("/datasets", data={"path": str(outside)}, headers=headers(key))
    assert r.status_code == 403 and r.json()["error"]["code"] == "PATH_NOT_ALLOWED"
    r = c.post("/datasets", data={"path": "/etc/passwd"}, headers=headers(key))
    assert r.status_code == 403
    r = c.post("/datasets", files={"file": ("x.csv", b"no genome column\n1\n")},
               headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    r = c.post("/datasets", headers=headers(key))
    assert r.status_code == 422


def test_health_readiness_and_metrics(api):
    c = api["client"]
    assert c.get("/healthz").json() == {"status": "ok"}
    r = c.get("/readyz")
    assert r.status_code == 200 and r.json()["model_loaded"] and r.json()["broker"] is True
    c.post("/predict", json={"genomes": GENOMES[:5]}, headers=headers(api["keys"]["predict"]))
    text = c.get("/metrics").text
    assert "nas_surrogate_request_seconds_bucket" in text
    assert "nas_surrogate_predict_batch_size_count 1.0" in text
    assert 'nas_surrogate_encoding_cache_total{result="miss"}' in text


def test_readyz_without_active_model(db, built_dataset):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings
    application = create_app(get_settings())
    application.state.start_reconciler = False
    with TestClient(application) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["active_model"] is None
        from .conftest import make_key
        r = c.post("/predict", json={"genomes": GENOMES[:2]},
                   headers=headers(make_key(["predict"])))
        assert r.status_code == 503 and r.json()["error"]["code"] == "NO_ACTIVE_MODEL"


def test_request_ids_and_keys_never_logged(api, caplog):
    import logging
    c, key = api["client"], api["keys"]["predict"]
    with caplog.at_level(logging.DEBUG):
        r = c.post("/predict", json={"genomes": GENOMES[:2]},
                   headers=headers(key, **{"X-Request-ID": "loop-42"}))
        bad = c.post("/predict", json={"genomes": GENOMES[:2]}, headers=headers("nas_wrong"))
    assert r.headers["X-Request-ID"] == "loop-42" and bad.headers["X-Request-ID"]
    access = [json.loads(rec.getMessage()) for rec in caplog.records
              if rec.name == "app.access"]
    assert {"request_id": "loop-42", "method": "POST", "route": "/predict",
            "status": 200}.items() <= access[0].items()
    assert key not in caplog.text and "nas_wrong" not in caplog.text
