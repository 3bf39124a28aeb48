"""``pretrain``: masked-node pre-training of the graph encoder (``ml.train.pretrain``, queue
``gpu``); the embedder file goes under ``pretrained_dir`` and the report (with the file's path)
is the job's ``result``. A train job names this job's id as its ``embedding``
(:func:`worker.handlers.recipes.resolved`)."""
from __future__ import annotations

import socket
from typing import Any

from ml.jsonsafe import json_safe
from service.db import session_scope
from service.errors import JobFailure
from service.store import jobs as job_store
from worker.context import JobContext
from worker.handlers.failures import fitting
from worker.processes import children_allowed


def run(ctx: JobContext, params: dict[str, Any]) -> str:
    from ml.models.hyperparameters import DeviceUnavailable, check_device
    from ml.train.pretrain import PretrainConfig, pretrain

    config = PretrainConfig(**{k: v for k, v in params.items() if v is not None})
    if config.device != "auto":
        try:
            check_device({"device": config.device})
        except DeviceUnavailable as exc:
            raise JobFailure("DEVICE_UNAVAILABLE",
                             f"{exc} (worker {socket.gethostname()})") from exc
    ctx.progress(0.0, f"pre-training on {config.genomes} sampled genomes")
    with fitting(ctx), children_allowed():
        embedder, report = pretrain(config, progress=ctx.progress, stop=ctx.should_stop)
    folder = ctx.settings.pretrained_dir / ctx.job_id / f"attempt-{ctx.attempt}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "embedder.pt"
    embedder.save(path)
    result = {**report, "path": str(path.resolve()), "digest": embedder.digest(),
              "dims": embedder.dims}
    with session_scope() as session:
        ctx.still_owned(session)
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded",
                         f"pre-trained on {report['genomes']} genomes in "
                         f"{report['seconds']:.0f} s ({report['device']})",
                         result=json_safe(result))
    return "succeeded"
