"""A short replay of the loop (generations 1 -> 3) with benchmarks/loop_replay.py's own code,
against ``nas-surrogate serve`` as a subprocess and against the Celery stack (real Redis,
PostgreSQL and a worker subprocess): predict the next generation, append it with retrain,
wait for the append and the promote-if-better training."""
from __future__ import annotations

import csv
import importlib.util
import math
import signal
from typing import Any

import pytest

from .conftest import REPO, CeleryWorker, Served, needs_redis

pytestmark = needs_redis


def _replay_module() -> Any:
    spec = importlib.util.spec_from_file_location("loop_replay",
                                                  REPO / "benchmarks" / "loop_replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(rows: list[dict[str, Any]], generations: dict[int, list[dict[str, str]]]) -> None:
    assert [r["generation"] for r in rows] == [2, 3]
    for row in rows:
        assert row["training"] == "succeeded" and row["appended"] == len(
            generations[row["generation"]])
        assert row["new_version"] > row["served_version"] or not row["promoted"]
        assert math.isfinite(row["kendall_tau_b"]["uw_val_epoch_loss"])
    # The model that served generation 3 is the one promoted after generation 2 (if it was).
    if rows[0]["promoted"]:
        assert rows[1]["served_version"] == rows[0]["new_version"]


def test_replay_against_serve(tmp_path):
    from app.client import SurrogateClient
    from ml.datasets.labels import DEFAULT_METRICS

    replay = _replay_module()
    generations = replay.rows_by_generation()
    seed = tmp_path / "generation_1.csv"
    with open(seed, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(generations[1][0]))
        writer.writeheader()
        writer.writerows(generations[1])
    served = Served(tmp_path / "var", seed, tmp_path / "serve.log", env={
        "SURROGATE_DEFAULT_PREDICTOR": "trees", "SURROGATE_PROMOTE_GENERATIONS": "2",
        "SURROGATE_WARM_UP": "false", "SURROGATE_RECONCILE_INTERVAL_S": "2"})
    base = served.base
    try:
        served.wait_ready("serve to train on generation 1")
        key = (tmp_path / "var" / "admin.key").read_text().strip()
        client = SurrogateClient(base, key, timeout=300)
        rows = replay.replay(client, generations, 3, "default", tuple(DEFAULT_METRICS), 600)
        _check(rows, generations)
        lineage = client.dataset(client.dataset_id)["lineage"]
        assert len(lineage) == 2            # generation 1, then the version with generation 2
    finally:
        served.stop(signal.SIGTERM, 40)


def test_replay_against_the_celery_stack(api, service_env, tmp_path):
    from app.client import SurrogateClient
    from ml.datasets.labels import DEFAULT_METRICS

    replay = _replay_module()
    generations = replay.rows_by_generation()
    extra = {"SURROGATE_PROMOTE_GENERATIONS": "2"}
    worker = CeleryWorker(service_env, tmp_path / "worker.log", extra).start()
    try:
        client = SurrogateClient(api_key=api["keys"]["admin"], http=api["client"])
        api["app"].state.settings.promote_generations = 2
        first = replay.start_from_generation_one(client, generations[1], "replay", "trees",
                                                 {"n_estimators": 50}, 300)
        assert first["version"] == 1
        rows = replay.replay(client, generations, 3, "replay", tuple(DEFAULT_METRICS), 600)
        _check(rows, generations)
        versions = client._request("GET", "/models", params={"name": "replay"}).json()
        assert versions["count"] == 3
    except Exception:
        print(worker.log())
        raise
    finally:
        worker.stop()


@pytest.fixture(autouse=True)
def _no_stray_settings(monkeypatch):
    monkeypatch.delenv("SURROGATE_PROMOTE_GENERATIONS", raising=False)
