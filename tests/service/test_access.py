"""Least privilege against real PostgreSQL and Redis: dataset paths, messages that leak nothing,
admin-only decisions, hyper-parameter validation, job ownership, key management, rate limits,
and the /metrics and /docs settings."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TRAIN_CSV, train_rows

from .conftest import headers, make_key, needs_redis

pytestmark = needs_redis

GENOMES = [r["genome"] for r in train_rows()]


def test_admin_key_and_data_dir_are_unreachable(api, monkeypatch):
    c, key, settings = api["client"], api["keys"]["train"], api["app"].state.settings
    settings.admin_key_file.write_text("nas_secret-admin-key\n")
    # Even a root that contains the data directory does not reach it.
    monkeypatch.setattr(settings, "dataset_roots", [settings.data_dir.parent, TRAIN_CSV.parent])
    for path in (settings.admin_key_file, settings.data_dir / "surrogate.db",
                 settings.data_dir / ".." / settings.data_dir.name / "admin.key"):
        r = c.post("/datasets", data={"path": str(path)}, headers=headers(key))
        assert r.status_code == 403 and r.json()["error"]["code"] == "PATH_NOT_ALLOWED"
        assert "secret" not in r.text and str(settings.data_dir) not in r.text
        assert r.json()["error"]["details"] is None   # the roots are not listed
    r = c.post("/datasets", data={"path": "/etc/passwd"}, headers=headers(key))
    assert r.status_code == 403 and "/etc" not in r.json()["error"]["message"]
    r = c.post("/datasets", data={"path": str(TRAIN_CSV.parent / "missing.csv")},
               headers=headers(key))
    assert r.status_code == 422 and str(TRAIN_CSV.parent) not in r.text


def test_a_csv_without_the_metrics_is_refused_without_echoing_it(api, tmp_path, monkeypatch):
    c, key, settings = api["client"], api["keys"]["train"], api["app"].state.settings
    secret = tmp_path / "secret.csv"
    secret.write_text("genome,nas_topsecretvalue\nA,1\n")
    monkeypatch.setattr(settings, "dataset_roots", [tmp_path])
    r = c.post("/datasets", data={"path": str(secret)}, headers=headers(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST"
    assert "topsecret" not in r.text and str(tmp_path) not in r.text
    assert "uw_val_epoch_loss" in r.json()["error"]["details"]["missing"]


def test_activation_and_foreign_model_names_need_admin(api):
    c, keys = api["client"], api["keys"]
    body = {"dataset_id": api["dataset_id"], "predictor": "trees"}
    r = c.post("/jobs/train", json={**body, "activate": True}, headers=headers(keys["train"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "PERMISSION_DENIED"
    r = c.post("/jobs/train", json={**body, "model_name": "other"},
               headers=headers(keys["train"]))
    assert r.status_code == 403
    for name in ("..", "../x", "a..b", ".hidden", "a/b"):
        r = c.post("/jobs/train", json={**body, "model_name": name},
                   headers=headers(keys["admin"]))
        assert r.status_code == 422, name
    r = c.post("/jobs/train", json={**body, "activate": True, "model_name": "other"},
               headers=headers(keys["admin"]))
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("predictor, hyperparameters, field", [
    ("combined_gcn", {"epochs": "x"}, "epochs"),
    ("trees", {"ensemble": 1_000_000}, "ensemble"),
    ("stack", {"n_estimators": -1}, "n_estimators"),
    ("stack", {"tree_weights": [0.5, 2.0]}, "tree_weights[1]"),
    ("bigcn", {"device": "tpu"}, "device"),
    ("bigcn", {"lr": float("inf")}, "lr"),
    ("trees", {"n_estimators": True}, "n_estimators"),
    ("trees", {"checkpoint_dir": "/etc"}, "checkpoint_dir"),
    ("blend", {"member_configs": {"combined_gcn": {"epochs": 0}}},
     "member_configs.combined_gcn.epochs"),
])
def test_hyperparameters_are_validated_per_predictor(api, predictor, hyperparameters, field):
    c, key = api["client"], api["keys"]["train"]
    r = c.post("/jobs/train", content=json.dumps(
        {"dataset_id": api["dataset_id"], "predictor": predictor,
         "hyperparameters": hyperparameters}, allow_nan=True).replace("Infinity", "1e999"),
        headers=headers(key, **{"Content-Type": "application/json"}))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["details"]["field"] == field, error


def test_cuda_on_a_cpu_host_is_refused_when_jobs_run_here(db, built_dataset, trained_bundle):
    import torch
    from fastapi.testclient import TestClient

    from nas_surrogate.serve import embedded_app
    from service.config import get_settings

    from .conftest import seed_registry

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    seeded = seed_registry(built_dataset, trained_bundle)
    application = embedded_app(get_settings().model_copy(update={"executor": "thread"}))
    application.state.start_reconciler = False
    with TestClient(application) as c:
        r = c.post("/jobs/train", json={"dataset_id": seeded["dataset_id"],
                                        "predictor": "bigcn",
                                        "hyperparameters": {"device": "cuda"}},
                   headers=headers(make_key(["train"])))
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "device"


def test_celery_workers_refuse_cuda_they_lack_at_once(api):
    """Through the queue the API cannot see the worker's device: the job fails at its start
    with DEVICE_UNAVAILABLE, before any data is read."""
    import torch

    from worker.runner import run_job

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    c, key = api["client"], api["keys"]["train"]
    job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "bigcn",
                                      "hyperparameters": {"device": "cuda"}},
                 headers=headers(key)).json()
    assert run_job(job["id"]) == "failed"
    got = c.get(f"/jobs/{job['id']}", headers=headers(key)).json()
    assert got["error"]["code"] == "DEVICE_UNAVAILABLE"


def test_jobs_are_visible_and_cancellable_by_their_owner_and_admin(api):
    c, keys = api["client"], api["keys"]
    other = make_key(["train"])
    job = c.post("/jobs/train", json={"dataset_id": api["dataset_id"], "predictor": "trees"},
                 headers=headers(keys["train"])).json()
    for route in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/events"):
        assert c.get(route, headers=headers(other)).status_code == 404
        assert c.get(route, headers=headers(keys["train"])).status_code == 200
        assert c.get(route, headers=headers(keys["admin"])).status_code == 200
    assert c.get("/jobs", headers=headers(other)).json()["count"] == 0
    assert c.get("/jobs", headers=headers(keys["train"])).json()["count"] == 1
    assert c.get("/jobs", headers=headers(keys["admin"])).json()["count"] == 1
    r = c.post(f"/jobs/{job['id']}/cancel", headers=headers(other))
    assert r.status_code == 404 and r.json()["error"]["code"] == "JOB_NOT_FOUND"
    r = c.post(f"/jobs/{job['id']}/cancel", headers=headers(keys["admin"]))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_keys_listed_created_and_revoked_over_http(api):
    c, admin = api["client"], api["keys"]["admin"]
    assert c.get("/keys", headers=headers(api["keys"]["train"])).status_code == 403
    r = c.post("/keys", json={"name": "loop", "scopes": ["predict"]}, headers=headers(admin))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("nas_") and created["prefix"] == created["key"][:12]
    new = created["key"]
    assert c.post("/predict", json={"genomes": GENOMES[:1]},
                  headers=headers(new)).status_code == 200
    listed = c.get("/keys", headers=headers(admin)).json()
    assert created["id"] in [k["id"] for k in listed["data"]]
    assert all("key" not in k and "key_hash" not in k for k in listed["data"])
    r = c.post(f"/keys/{created['id']}/revoke", headers=headers(admin))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    # Refused at once in this process, although it was cached a moment ago.
    assert c.post("/predict", json={"genomes": GENOMES[:1]},
                  headers=headers(new)).status_code == 401
    assert c.post("/keys/999999/revoke", headers=headers(admin)).status_code == 404
    admin_id = next(k["id"] for k in listed["data"] if k["scopes"] == ["admin"])
    assert c.post(f"/keys/{admin_id}/revoke", headers=headers(admin)).status_code == 422


def test_keys_list_and_revoke_from_the_cli(api, capsys):
    from nas_surrogate.cli import main

    c = api["client"]
    created = c.post("/keys", json={"name": "cli-made", "scopes": ["train"]},
                     headers=headers(api["keys"]["admin"])).json()
    assert main(["keys", "list"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"cli-made"} <= {r["name"] for r in rows}
    assert all(set(r) == {"id", "name", "prefix", "scopes", "created_at", "revoked_at"}
               for r in rows)
    assert main(["keys", "revoke", str(created["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["revoked"] is True
    api["app"].state.key_cache.clear()  # another process: within the cache TTL
    assert c.get("/jobs", headers=headers(created["key"])).status_code == 401
    assert main(["keys", "revoke", "999999"]) == 2
    assert main(["keys", "list", "--active"]) == 0
    active = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert created["id"] not in [r["id"] for r in active]


def test_unknown_keys_are_not_cached_and_cannot_evict_real_ones(api):
    cache = api["app"].state.key_cache
    c, key = api["client"], api["keys"]["predict"]
    assert c.post("/predict", json={"genomes": GENOMES[:1]}, headers=headers(key)).status_code \
        == 200
    before = len(cache._fresh)
    for i in range(50):
        assert cache.lookup(f"nas_random-{i}") is None
    assert len(cache._fresh) == before and before >= 1


def test_failed_authentications_are_rate_limited_per_address(api, monkeypatch):
    c, settings = api["client"], api["app"].state.settings
    monkeypatch.setattr(settings, "auth_failures_per_minute", 3)
    for _ in range(3):
        assert c.get("/jobs", headers=headers("nas_guess")).status_code == 401
    r = c.get("/jobs", headers=headers("nas_guess"))
    assert r.status_code == 429 and r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    # Failures from the address stay refused for the window; a valid key is never locked out.
    assert c.get("/jobs", headers=headers("nas_other")).status_code == 429
    assert c.get("/jobs", headers=headers(api["keys"]["train"])).status_code == 200


def test_per_key_request_rate(api, monkeypatch):
    c, settings, key = api["client"], api["app"].state.settings, api["keys"]["train"]
    monkeypatch.setattr(settings, "rate_limit_per_key", 2)
    assert [c.get("/jobs", headers=headers(key)).status_code for _ in range(3)] == \
        [200, 200, 429]
    assert c.get("/jobs", headers=headers(api["keys"]["admin"])).status_code == 200


@pytest.mark.parametrize("access", ["public", "admin", "off"])
def test_metrics_access_setting(db, built_dataset, trained_bundle, access):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings

    from .conftest import seed_registry

    seed_registry(built_dataset, trained_bundle)
    application = create_app(get_settings().model_copy(update={"metrics_access": access}))
    application.state.start_reconciler = False
    admin, predict = make_key(["admin"]), make_key(["predict"])
    with TestClient(application) as c:
        anonymous = c.get("/metrics").status_code
        as_predict = c.get("/metrics", headers=headers(predict)).status_code
        bearer = c.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code
    assert (anonymous, as_predict, bearer) == {"public": (200, 200, 200),
                                                "admin": (401, 403, 200),
                                                "off": (404, 404, 404)}[access]


def test_docs_off_in_production_settings(db):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import Settings

    settings = Settings(environment="production", database_url=db, warm_up=False,
                        visibility_timeout_s=100_000)
    assert settings.docs_enabled is False and settings.metrics_access == "admin"
    application = create_app(settings)
    application.state.start_reconciler = False
    with TestClient(application) as c:
        assert c.get("/docs").status_code == 404 and c.get("/openapi.json").status_code == 404
