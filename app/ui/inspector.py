"""The genome inspector: paste genomes (or open one from a dataset) and see, per genome, its
validation error pointing at the offending character, or its architecture graph, size and the
active model's predictions.

It is a heavy route (``/ui/inspect`` shares ``/predict``'s concurrency slots) and runs under
the same per-request budget; at most ``MAX_GENOMES`` genomes per submission, each within the
service's ``max_genome_length``.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from app.services.models import loaded_model, parse_model
from app.ui.curves import measured_curves
from app.ui.datasets import source_genome
from app.ui.session import COOKIE_PATH, PageForbidden, PredictViewer, check_form
from app.ui.templating import page
from service.errors import ServiceError

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)

MAX_GENOMES = 10
#: Characters shown either side of an error's offset.
CONTEXT = 60
#: Graphs larger than this are summarised, not drawn (the SVG would run to megabytes).
MAX_DRAWN_NODES = 4000


def pointer(text: str, offset: int | None) -> dict[str, str] | None:
    """The text around ``offset``, split so the page can mark the offending character."""
    if offset is None or offset < 0:
        return None
    offset = min(offset, len(text))
    start, end = max(0, offset - CONTEXT), min(len(text), offset + CONTEXT)
    return {"before": ("…" if start else "") + text[start:offset],
            "at": text[offset:offset + 1] or "⟂",
            "after": text[offset + 1:end] + ("…" if end < len(text) else ""),
            "column": str(offset)}


def _drawing(graph: Any) -> dict[str, Any]:
    from ml.render import layout_graph, render_svg

    drawing = layout_graph(graph)
    nodes = len(drawing.categories)
    return {"svg": render_svg(drawing) if nodes <= MAX_DRAWN_NODES else None,
            "legend": drawing.legend, "nodes": nodes}


def inspect(request: Request, genomes: list[str], model_spec: str | None) -> dict[str, Any]:
    from ml.errors import GenomeError

    settings = request.app.state.settings
    scorer = request.app.state.scorer
    parse_model(model_spec, settings)  # a malformed reference is the form's 422, not "no model"
    try:
        loaded = loaded_model(scorer, model_spec, settings)
        scored = scorer.score(genomes, loaded)
        model = {"name": loaded.name, "version": loaded.version,
                 "metrics": list(loaded.model.metrics)}
    except ServiceError as exc:  # no model yet: still validate and draw
        scored, model = None, {"error": exc.message, "code": exc.code}
    encoder, budget = scorer.cache.encoder, scorer.budget()
    results = []
    for i, text in enumerate(genomes):
        budget.check_time(i)
        item: dict[str, Any] = {"genome": text, "index": i}
        try:
            encoded = encoder.encode(text)
            budget.spend(encoded.num_nodes, i)
            summary = encoded.global_summary()
            item.update(ok=True, canonical_hash=encoded.canonical_hash,
                        nodes=encoded.num_nodes, edges=encoded.num_edges,
                        params=summary["total_params"], flops=summary["flops"],
                        drawing=_drawing(encoded.graph))
        except GenomeError as exc:
            item.update(ok=False, error=exc.to_dict(), pointer=pointer(text, exc.offset))
        if scored is not None:
            prediction = scored["items"][i]
            item["prediction"] = prediction if prediction["ok"] else None
        results.append(item)
    curves = measured_curves(settings.datasets_dir,
                             [r["canonical_hash"] for r in results if r.get("ok")])
    for item in results:
        item["curves"] = curves.get(item.get("canonical_hash") or "", [])
    return {"results": results, "model": model}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.get("/inspect", response_class=HTMLResponse)
def inspect_form(request: Request, viewer: PredictViewer,
                 dataset: Annotated[str | None, Query(max_length=64)] = None,
                 row: Annotated[int | None, Query(ge=0, le=10_000_000)] = None
                 ) -> HTMLResponse:
    """The empty form, or (``?dataset=&row=``) one genome of a dataset, inspected at once. A
    dataset's rows are training genomes: they need the scope the dataset pages need (``train``),
    so a predict key reads none of them here either."""
    if (dataset is not None or row is not None) and not viewer.can("train"):
        raise PageForbidden("train")
    if dataset is not None and row is not None:
        genome = source_genome(dataset, row)
        if genome is None:
            raise ServiceError("NOT_FOUND", f"dataset {dataset} has no row {row}")
        return page(request, "inspect.html", viewer, text=genome,
                    **inspect(request, [genome], None))
    return page(request, "inspect.html", viewer, text="", results=None, model=None)


@router.post("/inspect", response_class=HTMLResponse)
def inspect_submit(request: Request, viewer: PredictViewer,
                   genomes: Annotated[str, Form(max_length=MAX_GENOMES * 20_001)] = "",
                   model: Annotated[str, Form(max_length=220)] = "",
                   csrf: Annotated[str, Form(max_length=100)] = "") -> HTMLResponse:
    check_form(request, viewer, csrf)
    settings = request.app.state.settings
    lines = _lines(genomes)
    problem = ("Paste at least one genome (one per line)." if not lines else
               f"At most {MAX_GENOMES} genomes at a time ({len(lines)} pasted)."
               if len(lines) > MAX_GENOMES else
               f"A genome is longer than the limit of {settings.max_genome_length:,} "
               "characters." if any(len(g) > settings.max_genome_length for g in lines)
               else "")
    if problem:
        return page(request, "inspect.html", viewer, status_code=422, text=genomes, results=None,
                    model=None, problem=problem)
    return page(request, "inspect.html", viewer, text=genomes,
                **inspect(request, lines, model.strip() or None))
