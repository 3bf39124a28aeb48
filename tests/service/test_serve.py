"""README command 1, for real: ``nas-surrogate serve`` in a subprocess (SQLite, in-process job
thread, no Redis, no Celery) builds the dataset from the seed CSV, trains and activates the
default model, and then answers /predict with the admin key it created (mode 600)."""
from __future__ import annotations

import signal
import stat

import httpx

from tests.conftest import train_rows

from .conftest import Served, wait_for, write_seed_csv


def test_serve_bootstraps_and_predicts(tmp_path):
    seed = write_seed_csv(tmp_path / "seed.csv", 90)
    data_dir = tmp_path / "var"
    served = Served(data_dir, seed, tmp_path / "serve.log")
    base = served.base
    try:
        served.wait_ready()
        key_file = data_dir / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        output = (tmp_path / "serve.log").read_text()
        assert key in output and f"{base}/docs" in output and "curl" in output
        assert f"dashboard: {base}/ui/" in output
        genomes = [r["genome"] for r in train_rows()[:25]] + ["broken("]
        r = httpx.post(base + "/predict", json={"genomes": genomes, "top_k": 5},
                       headers={"X-API-Key": key}, timeout=120)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model_version"] == 1 and len(out["ranking"]) == 5
        assert out["items"][-1]["ok"] is False
        # The encoder processes (2 by default) encode a batch of never-seen genomes once they
        # have built their backbones, and answer as the API process does: 30 genomes (fewer
        # misses than encoder_pool_min_misses) are encoded in process, then new spellings of
        # them in a batch of 213 misses by the workers ("broken(" is cached since the first batch).
        wait_for(lambda: httpx.get(base + "/readyz").json()["encoder_pool"]["ready"], 300,
                 interval=1.0, what="the encoder processes to start")
        rest = [r["genome"] for r in train_rows()[25:]]
        in_process = httpx.post(base + "/predict", json={"genomes": rest[:30]},
                                headers={"X-API-Key": key}, timeout=120).json()["items"]
        assert httpx.get(base + "/readyz").json()["encoder_pool"]["encoded"] == 0
        batch = rest[30:] + [g + " " for g in rest[:30]] + ["broken("]
        r = httpx.post(base + "/predict", json={"genomes": batch}, headers={"X-API-Key": key},
                       timeout=120)
        assert r.status_code == 200, r.text
        pool = httpx.get(base + "/readyz").json()["encoder_pool"]
        assert pool["processes"] == 2 and pool["encoded"] == len(batch) - 1 and not pool["restarts"]
        assert pool["warm_start"] is True  # forked from the fork server that built the backbones
        pooled = r.json()["items"]
        assert sum(i["ok"] for i in pooled) == len(batch) - 1 and not pooled[-1]["ok"]
        assert [i["predictions"] for i in pooled[-31:-1]] == \
            [i["predictions"] for i in in_process]
        jobs = httpx.get(base + "/jobs", headers={"X-API-Key": key}).json()["data"]
        assert sorted(j["kind"] for j in jobs) == ["build_dataset", "train"]
        assert all(j["status"] == "succeeded" for j in jobs)
        assert (data_dir / "surrogate.db").is_file()
        # The bootstrap model carries a 5-fold trust report with plots.
        model = httpx.get(base + "/models/1", headers={"X-API-Key": key}).json()
        cv = model["training_metrics"]["cv"]
        assert cv["folds"] == 5 and 0.0 <= cv["validity_auc"] <= 1.0
        assert "kendall_tau_b_ciou_loss" in cv and model["report_plots"]
        plot = httpx.get(base + f"/models/1/plots/{model['report_plots'][0]}",
                         headers={"X-API-Key": key})
        assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
        assert httpx.get(base + "/models/1/plots/..%2F..%2Fadmin.key",
                         headers={"X-API-Key": key}).status_code == 404
    finally:
        served.stop(signal.SIGINT, 30)
