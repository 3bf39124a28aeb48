"""``serve``'s bootstrap after an upgrade: an active model this code can no longer load (an older
predictor or encoder version) is replaced by training the default again, once; a loadable one is
left alone. Against the real PostgreSQL test database, with the session's real bundle."""
from __future__ import annotations

import json
import shutil

from tests.conftest import TRAIN_CSV

from .conftest import needs_pg, seed_registry

pytestmark = needs_pg


def _bootstrap(settings) -> tuple[str, list[tuple[str, str]]]:
    from nas_surrogate.bootstrap import bootstrap_model

    sent: list[tuple[str, str]] = []

    def send(job_id: str, kind: str) -> str:
        sent.append((job_id, kind))
        return f"task-{len(sent)}"

    return bootstrap_model(settings, send), sent


def test_bootstrap_keeps_a_loadable_model_and_retrains_a_stale_one(db, built_dataset,
                                                                    trained_bundle, tmp_path):
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.train import bundle_problem, load_bundle, read_bundle_info
    from service.config import get_settings
    from service.db import session_scope
    from service.store import jobs as job_store
    from service.store import model_registry as registry

    settings = get_settings().model_copy(update={"seed_csv": TRAIN_CSV})
    seed_registry(built_dataset, trained_bundle)
    status, sent = _bootstrap(settings)
    assert status == "a model is active" and sent == []

    # The same bundle as an older trees version: what an upgrade leaves in the registry.
    stale = tmp_path / "stale"
    shutil.copytree(trained_bundle, stale)
    info = read_bundle_info(stale)
    info["model_version"] -= 1
    (stale / "bundle.json").write_text(json.dumps(info))
    problem = bundle_problem(stale)
    assert problem is not None and "version" in problem
    try:
        load_bundle(stale)
    except ValueError as exc:
        assert str(exc) == problem
    else:
        raise AssertionError("a stale bundle loaded")
    with session_scope() as session:
        version = registry.register_version(
            session, name=settings.model_name, predictor=info["model"],
            source_path=str(stale), encoder_version=ENCODER_VERSION,
            metrics=list(info["metrics"]), training_metrics={}).version
        registry.set_alias(session, settings.model_name, version)

    status, sent = _bootstrap(settings)
    assert f"model v{version} cannot be served" in status, status
    assert [kind for _, kind in sent] == ["build_dataset", "train"]
    with session_scope() as session:
        build, train = (job_store.get_job(session, job_id) for job_id, _ in sent)
        assert train.params["dataset_id"] == build.params["dataset_id"]
        assert train.params["activate"] is True
        assert train.params["predictor"] == settings.default_predictor
    # Idempotent: a restart before the new model is active creates no further jobs (the
    # reconciler may re-send the queued two, as it does for any job a dead process left).
    status, sent_again = _bootstrap(settings)
    assert "cannot be served" in status
    assert {job_id for job_id, _ in sent_again} <= {job_id for job_id, _ in sent}
    with session_scope() as session:
        assert job_store.list_jobs(session)[1] == 2
