"""``POST /predict`` (score and rank a batch) and ``POST /genomes/encode`` (validate + summary).

Neither goes through Celery: the API process holds the active model and the encoding cache.
"""
from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.deps import PredictPrincipal, SettingsDep
from app.api.routes import errors
from app.schemas import EncodeRequest, EncodeResponse, PredictRequest, PredictResponse
from app.scoring import predict_json
from app.services.models import loaded_model
from service.config import Settings
from service.errors import ServiceError

router = APIRouter(tags=["predict"])


def check_batch(genomes: list[str], settings: Settings) -> None:
    """The request limits, before any encoding."""
    if not genomes:
        raise ServiceError("INVALID_REQUEST", "send at least one genome")
    if len(genomes) > settings.max_batch:
        raise ServiceError("BATCH_TOO_LARGE", f"{len(genomes)} genomes > the limit of "
                           f"{settings.max_batch}", details={"max_batch": settings.max_batch})
    long = [i for i, g in enumerate(genomes) if len(g) > settings.max_genome_length]
    if long:
        raise ServiceError("GENOME_TOO_LONG", f"{len(long)} genomes exceed "
                           f"{settings.max_genome_length} characters",
                           details={"indices": long[:100],
                                    "max_genome_length": settings.max_genome_length})


@router.post("/predict", response_model=PredictResponse, responses=errors(404, 413, 503))
def predict(body: PredictRequest, request: Request, _: PredictPrincipal,
            settings: SettingsDep) -> Response:
    """Score and rank genomes with the active model (or ``model``: ``NAME``, ``NAME@VERSION``,
    ``NAME@ALIAS``). A bad genome fails only its own item (``ok: false`` with ``error.code``
    and ``error.offset``); ``ranking`` lists the ok items, best first (predicted failures last).
    One request's work is bounded (``SURROGATE_MAX_REQUEST_NODES``,
    ``SURROGATE_REQUEST_DEADLINE_S``): past either it answers 413 ``REQUEST_TOO_LARGE`` or 503
    ``DEADLINE_EXCEEDED``, and a retry reuses what was cached."""
    check_batch(body.genomes, settings)
    scorer = request.app.state.scorer
    loaded = loaded_model(scorer, body.model, settings)
    result = scorer.score(body.genomes, loaded, body.rank_by, body.direction, body.top_k)
    metrics = request.app.state.metrics
    metrics.batch_size.observe(len(body.genomes))
    metrics.cache.labels("hit").inc(result["cache_hits"])
    metrics.cache.labels("miss").inc(len(body.genomes) - result["cache_hits"])
    # Already in PredictResponse's shape (app.scoring.predict_json): serialised as is.
    return Response(predict_json(result), media_type="application/json")


@router.post("/genomes/encode", response_model=EncodeResponse, responses=errors(413, 503))
def encode(body: EncodeRequest, request: Request, _: PredictPrincipal,
           settings: SettingsDep) -> dict:
    """Validate genomes and summarise their graphs (nodes, edges, parameters, FLOPs, the
    per-genome features); ``full`` adds node ops, module types, edges and shapes (for at most
    ``SURROGATE_MAX_ENCODE_FULL`` genomes). Each genome is encoded, summarised and dropped in
    turn, under the same per-request budget as ``/predict``."""
    from ml.errors import GenomeError

    check_batch(body.genomes, settings)
    if body.full and len(body.genomes) > settings.max_encode_full:
        raise ServiceError("BATCH_TOO_LARGE", f"full=true answers at most "
                           f"{settings.max_encode_full} genomes per request",
                           details={"max_encode_full": settings.max_encode_full})
    scorer = request.app.state.scorer
    encoder, budget = scorer.cache.encoder, scorer.budget()
    items = []
    for i, text in enumerate(body.genomes):
        budget.check_time(i)
        try:
            encoded = encoder.encode(text)
            budget.spend(encoded.num_nodes, i)
            glob = encoded.global_summary()
            item = {"index": i, "ok": True, "error": None,
                    "canonical_hash": encoded.canonical_hash,
                    "num_nodes": encoded.num_nodes, "num_edges": encoded.num_edges,
                    "params": glob["total_params"], "flops": glob["flops"],
                    "global_features": glob}
            if body.full:
                summary = encoded.summary()
                item["graph"] = {"node_ops": summary["node_ops"],
                                 "node_module_types": summary["node_module_types"],
                                 "edges": summary["edges"],
                                 "node_shapes": summary["global"]["node_shapes"],
                                 "model_info": summary["model_info"]}
        except GenomeError as exc:
            item = {"index": i, "ok": False, "error": exc.to_dict(), "canonical_hash": None}
        items.append(item)
        encoded = None  # drop the graph before the next genome
    return {"items": items, "encoder_version": scorer.cache.version}
