"""``nas-surrogate serve``: the embedded service, composed here from the HTTP adapter and the
in-process job executor (the two never import each other).

``serve`` is README command 1: SQLite in ``--data-dir``, jobs on an in-process thread (the same
job functions the Celery tasks wrap), no Redis and no Celery process. On first start it creates
an admin API key (printed once, kept in ``DIR/admin.key`` with mode 600) and, with no active
model, builds the dataset from the seed CSV and trains and activates the default predictor.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli import configure
from service.logs import quiet_third_party
from service.migrate import prepare_database

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.config import Settings


def embedded_app(settings: Settings) -> FastAPI:
    """The HTTP app with jobs on an in-process thread (:class:`worker.thread_executor.
    ThreadDispatcher`): what ``serve`` runs, and what tests of the embedded mode build."""
    from app.main import create_app
    from worker.thread_executor import ThreadDispatcher

    return create_app(settings, ThreadDispatcher(settings))


def cmd_serve(args: argparse.Namespace) -> int:
    quiet_third_party()  # before torch_geometric is imported here or in a child process
    os.environ.setdefault("SURROGATE_EXECUTOR", "thread")
    configure(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    import uvicorn

    logging.getLogger("alembic").setLevel(logging.WARNING)

    from app.main import create_app
    from nas_surrogate.bootstrap import bootstrap_model, ensure_admin_key
    from service.config import get_settings

    settings = get_settings()
    prepare_database(settings)
    key = ensure_admin_key(settings)
    # SURROGATE_EXECUTOR=celery: the same service with jobs on the Celery workers instead.
    application = embedded_app(settings) if settings.executor == "thread" else \
        create_app(settings)
    status = bootstrap_model(settings, application.state.dispatcher.send)
    base = f"http://{args.host}:{args.port}"
    shown = key if key else f"$(cat {settings.admin_key_file})"
    lines = [
        f"nas-surrogate serving on {base} (data in {settings.data_dir.resolve()})",
        f"  docs:   {base}/docs",
        *([f"  dashboard: {base}/ui/ (sign in with an API key)"] if settings.ui_enabled else []),
        f"  model:  {status}",
        ("  admin API key (shown once; also in " + str(settings.admin_key_file) + "):\n    " + key)
        if key else f"  admin API key: in {settings.admin_key_file}",
        "  try:",
        f"    curl -s {base}/predict -H 'X-API-Key: {shown}' "
        "-H 'Content-Type: application/json' \\",
        "      -d '{\"genomes\": [\"" + _example_genome(settings) + "\"], \"top_k\": 1}'",
    ]
    print("\n".join(lines), flush=True)
    # SIGTERM: uvicorn stops accepting, gives in-flight requests the grace period, then the
    # lifespan's shutdown releases a running job (it resumes on the next start).
    uvicorn.run(application, host=args.host, port=args.port, log_level="info",
                access_log=False,  # app.access logs one JSON line per request instead
                # X-Forwarded-For counts only from SURROGATE_TRUSTED_PROXIES (app.main), not
                # from uvicorn's default of any loopback peer.
                proxy_headers=False,
                timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)))
    return 0


def _example_genome(settings: object) -> str:
    from ml.sources import iter_genomes

    seed = getattr(settings, "seed_csv", None)
    if seed is not None and Path(seed).is_file():
        shortest = min((text for _, text in iter_genomes(seed)), key=len, default="GENOME")
        return shortest.replace("'", "").replace('"', "")
    return "GENOME"


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the HTTP service (embedded: SQLite + thread jobs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", default=None,
                       help="database, datasets, models and admin.key (default ./var)")
    serve.add_argument("--seed-csv", default=None,
                       help="CSV of evaluated genomes for the first model "
                            "(default ../shared/data/surrogate_evolution_train.csv)")
    serve.set_defaults(func=cmd_serve)
