"""A corrupt active bundle (issue 28): the service serves the newest older version that loads
and says so in /readyz (200), /predict answers from that version, and start-up does not call
the corrupt model active."""
from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import real_genomes

from .conftest import headers, make_key, seed_registry


def _corrupt_v2(built_dataset: Path, trained_bundle: Path, tmp_path: Path) -> Path:
    """v1 and v2 registered, v2 active, v2's weights file truncated on disk."""
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.train import read_bundle_info
    from ml.train.bundle import WEIGHTS
    from service.config import get_settings
    from service.db import session_scope
    from service.store import model_registry as registry

    seeded = seed_registry(built_dataset, trained_bundle)
    copy = shutil.copytree(trained_bundle, tmp_path / "v2")
    info = read_bundle_info(copy)
    name = get_settings().model_name
    with session_scope() as session:
        registry.register_version(
            session, name=name, predictor=info["model"], source_path=str(copy),
            encoder_version=ENCODER_VERSION, metrics=list(info["metrics"]),
            training_metrics={}, dataset_id=seeded["dataset_id"])
        registry.set_alias(session, name, 2)
    weights = copy / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    return copy


def test_a_corrupt_active_bundle_falls_back_to_the_previous_version(db, built_dataset,
                                                                     trained_bundle, tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings

    _corrupt_v2(built_dataset, trained_bundle, tmp_path)
    application = create_app(get_settings())
    application.state.start_reconciler = False
    key = make_key(["predict"])
    with TestClient(application) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == {"active": 2, "serving": 1, "fallback": True,
                                 "reason": "MODEL_NOT_LOADABLE"}
        assert body["active_model"] == 2 and body["model_loaded"] is False
        r = c.post("/predict", json={"genomes": list(real_genomes()[:3])}, headers=headers(key))
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == 1


def test_start_up_does_not_call_a_corrupt_model_active(db, built_dataset, trained_bundle,
                                                       tmp_path):
    from nas_surrogate.bootstrap import bootstrap_model
    from service.config import get_settings

    _corrupt_v2(built_dataset, trained_bundle, tmp_path)
    sent: list[tuple[str, str]] = []
    status = bootstrap_model(get_settings(), lambda job_id, kind: sent.append((job_id, kind)))
    assert status != "a model is active" and "v2" in status and "cannot be loaded" in status
    assert not sent  # v1 serves: nothing is retrained over the admin's models
