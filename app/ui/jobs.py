"""Jobs in the dashboard: the list with filters, a job's page whose progress, epochs and events
update without a reload (the page polls ``/ui/jobs/{id}/live``, an HTML fragment rendered from
the same job rows the API reads), and cancel."""
from __future__ import annotations

import threading
from typing import Annotated, Any

from cachetools import LRUCache
from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.services.jobs import cancel_job, job_public, visible_job
from app.ui import plots
from app.ui.session import COOKIE_PATH, JobViewer, check_form
from app.ui.templating import page
from service.db import session_scope
from service.store import jobs as job_store

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)
#: Job and dataset ids are UUIDs; anything longer is not one.
Ident = Annotated[str, Path(max_length=64)]

STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
KINDS = ("train", "build_dataset", "append_dataset", "propose", "pretrain")
FINAL = frozenset({"succeeded", "failed", "cancelled"})
#: Epoch rows drawn and listed on a job page (the newest; the API has them all).
EPOCH_ROWS = 2000
EVENT_ROWS = 200
#: Epoch columns listed first (the neural trainer's row: ml.models.neural.predictor).
LEAD_COLUMNS = ("train_loss", "val_tau", "best_val_tau")
#: Epoch charts kept drawn (one per job and epoch count).
CHART_CACHE = 64


_charts: LRUCache[tuple[str, int, str], plots.Chart] = LRUCache(CHART_CACHE)
_charts_lock = threading.Lock()


def epoch_chart(job_id: str, rows: list[dict[str, Any]]) -> plots.Chart:
    """The epoch chart, drawn again only when a new epoch row arrived (the page polls every
    second; drawing costs ~0.1 s of the API's CPU)."""
    key = (job_id, len(rows), repr(rows[-1]))
    with _charts_lock:
        chart = _charts.get(key)
    if chart is None:
        chart = plots.epoch_curves(rows)
        with _charts_lock:
            _charts[key] = chart
    return chart


def recent_jobs(session: Any, viewer: Any, limit: int, status: str | None = None,
                kind: str | None = None, page_token: str | None = None
                ) -> tuple[list[dict[str, Any]], int, str | None]:
    rows, total, token = job_store.list_jobs(
        session, status=status, kind=kind, limit=limit, page_token=page_token,
        principal=None if viewer.is_admin else viewer.principal.ident)
    return [job_public(j) for j in rows], total, token


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, viewer: JobViewer,
              status: Annotated[str | None, Query(max_length=20)] = None,
              kind: Annotated[str | None, Query(max_length=20)] = None,
              page_token: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    status = status if status in STATUSES else None
    kind = kind if kind in KINDS else None
    with session_scope() as session:
        jobs, total, token = recent_jobs(session, viewer, 50, status, kind, page_token)
    return page(request, "jobs.html", viewer, jobs=jobs, total=total, next_token=token,
                status=status, kind=kind, statuses=STATUSES, kinds=KINDS)


def _job_context(job_id: str, viewer: Any) -> dict[str, Any]:
    with session_scope() as session:
        job = visible_job(session, job_id, viewer.principal)
        epochs = job_store.events(session, job_id, kind="epoch", limit=EPOCH_ROWS)
        events = sorted(job_store.events(session, job_id, kind="state", limit=EVENT_ROWS) +
                        job_store.events(session, job_id, kind="log", limit=EVENT_ROWS),
                        key=lambda e: e.id)
        public = job_public(job, epochs)
        public["events"] = [{"at": e.created_at, "kind": e.kind, "message": e.message,
                             "attempt": e.attempt} for e in events]
    rows = public["epochs"] or []
    metric_names: list[str] = []
    for row in rows:
        for name in row["metrics"]:
            if name not in metric_names and name not in ("epoch", "member"):
                metric_names.append(name)
    # A tree model reports one row per fitted member and no curve: a chart of nothing would
    # be drawn (empty axes), so its page counts the members instead.
    chart = epoch_chart(job_id, rows) if metric_names else None
    members = len(rows) if rows and not metric_names else 0
    first = [m for m in LEAD_COLUMNS if m in metric_names]
    columns = first + [m for m in metric_names if m not in first]
    return {"job": public, "final": public["status"] in FINAL, "epoch_chart": chart,
            "epoch_rows": rows[-20:][::-1], "epoch_columns": columns[:8],
            "members_fitted": members}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: Ident, request: Request, viewer: JobViewer) -> HTMLResponse:
    return page(request, "job.html", viewer, **_job_context(job_id, viewer))


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
def job_live(job_id: Ident, request: Request, viewer: JobViewer) -> HTMLResponse:
    """The part of the job page that changes, for the page's poller."""
    response = page(request, "_job_live.html", viewer, **_job_context(job_id, viewer))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: Ident, request: Request, viewer: JobViewer,
           csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """As ``POST /jobs/{id}/cancel``: queued jobs stop at once, running ones between epochs."""
    check_form(request, viewer, csrf)
    cancel_job(request.app.state.dispatcher, job_id, viewer.principal)
    return RedirectResponse(f"{COOKIE_PATH}/jobs/{job_id}", status_code=303)
