"""``/ui/``: what a researcher checks first: the active model of every name with its trust
figures, the jobs running and the latest ones, and the newest dataset versions."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.services.datasets import dataset_view
from app.ui.jobs import recent_jobs
from app.ui.models import TRUST_KEYS, active_models
from app.ui.session import COOKIE_PATH, AnyViewer
from app.ui.templating import page
from service.db import session_scope
from service.store import datasets as dataset_store

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, viewer: AnyViewer) -> HTMLResponse:
    models = running = recent = datasets = None
    with session_scope() as session:
        if viewer.can("predict"):
            models = active_models(session)
        if viewer.can("train") or viewer.can("predict"):
            running = recent_jobs(session, viewer, 20, status="running")[0]
            recent = recent_jobs(session, viewer, 10)[0]
        if viewer.can("train"):
            rows, _ = dataset_store.list_datasets(session, 10, 0)
            datasets = [dataset_view(session, r, viewer.principal) for r in rows]
    return page(request, "overview.html", viewer, models=models, running=running,
                recent=recent, datasets=datasets, trust_keys=TRUST_KEYS)
