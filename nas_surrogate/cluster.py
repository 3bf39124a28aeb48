"""``nas-surrogate bootstrap``: the first-start steps of a distributed deployment (the SLURM
service job, ``deploy/slurm/service.sbatch``), without running a server: migrate the database,
create the admin key (``admin.key``, mode 600) and, with no loadable active model, queue the
dataset build and the default training to the Celery workers. Idempotent, so every start of
the service job runs it; it prints one JSON object saying what it did.
"""
from __future__ import annotations

import argparse
import json
import logging
import os

from service.cli import configure
from service.migrate import prepare_database


def cmd_bootstrap(args: argparse.Namespace) -> int:
    os.environ["SURROGATE_EXECUTOR"] = "celery"
    configure(args)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from nas_surrogate.bootstrap import bootstrap_model, ensure_admin_key
    from service.config import get_settings
    from service.queue import CeleryDispatcher

    settings = get_settings()
    prepare_database(settings)
    created = ensure_admin_key(settings) is not None
    model = bootstrap_model(settings, CeleryDispatcher(settings).send)
    print(json.dumps({"admin_key_file": str(settings.admin_key_file),
                      "admin_key_created": created, "model": model}), flush=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    boot = sub.add_parser("bootstrap", help="migrate, create the admin key and queue the first "
                          "model to the Celery workers (the service job's first steps)")
    boot.add_argument("--data-dir", default=None, help="datasets, models and admin.key")
    boot.add_argument("--seed-csv", default=None,
                      help="CSV of evaluated genomes for the first model")
    boot.set_defaults(func=cmd_bootstrap)
