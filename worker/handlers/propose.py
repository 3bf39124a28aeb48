"""``propose``: a proposal too large for a request (``POST /propose`` past
``propose_sync_max_candidates``), scored with the core's bundle scorer on the version the
request resolved; the answer is the job's ``result``."""
from __future__ import annotations

from typing import Any

from ml.jsonsafe import json_safe
from service.db import session_scope
from service.errors import JobFailure
from service.store import jobs as job_store
from service.store import model_registry as registry
from worker.context import JobContext


def run(ctx: JobContext, params: dict[str, Any]) -> str:
    from ml.search.scoring import BundleScorer
    from ml.search.strategies import ProposeSpec, SearchCancelled, SearchError, propose
    from ml.train import load_bundle
    from ml.train.bundle import read_training_hashes

    name, version = params["model_name"], int(params["model_version"])
    with session_scope() as session:
        row = registry.get_version(session, name, version)
        path, encoder_version = row.source_path, row.encoder_version
    try:
        model = load_bundle(path)
    except Exception as exc:
        raise JobFailure("MODEL_NOT_LOADABLE", f"{name} v{version}: {type(exc).__name__}: "
                         f"{exc}"[:2000]) from exc
    spec = ProposeSpec.from_mapping(params)
    ctx.progress(0.0, f"proposing with {name} v{version} ({spec.strategy})")
    try:
        with ctx.cancellation(SearchCancelled):
            result = propose(BundleScorer(model), spec, read_training_hashes(path),
                             progress=ctx.progress, stop=ctx.should_stop)
    except SearchError as exc:
        raise JobFailure("INVALID_REQUEST", str(exc)) from exc
    result = {**result, "model_name": name, "model_version": version,
              "encoder_version": encoder_version}
    with session_scope() as session:
        ctx.still_owned(session)
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded",
                         f"{len(result['items'])} proposals from "
                         f"{result['stats']['candidates']} candidates", result=json_safe(result))
    return "succeeded"
