"""``nas-surrogate serve`` (the embedded service) and ``nas-surrogate keys create``.

``serve`` is README command 1: SQLite in ``--data-dir``, jobs on an in-process thread (the same
job functions the Celery tasks wrap), no Redis and no Celery process. On first start it creates
an admin API key (printed once, kept in ``DIR/admin.key`` with mode 600) and, with no active
model, builds the dataset from the seed CSV and trains and activates the default predictor.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _configure(args: argparse.Namespace) -> None:
    if getattr(args, "data_dir", None):
        os.environ["SURROGATE_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if getattr(args, "seed_csv", None):
        os.environ["SURROGATE_SEED_CSV"] = str(Path(args.seed_csv).resolve())
    from app.core.config import reset_settings
    reset_settings()


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("SURROGATE_EXECUTOR", "thread")
    _configure(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    import uvicorn

    logging.getLogger("alembic").setLevel(logging.WARNING)

    from app.bootstrap import bootstrap_model, ensure_admin_key, migrate
    from app.core.config import get_settings
    from app.main import create_app

    settings = get_settings()
    migrate(settings)
    key = ensure_admin_key(settings)
    application = create_app(settings)
    status = bootstrap_model(settings, application.state.dispatcher.send)
    base = f"http://{args.host}:{args.port}"
    shown = key if key else f"$(cat {settings.admin_key_file})"
    lines = [
        f"nas-surrogate serving on {base} (data in {settings.data_dir.resolve()})",
        f"  docs:   {base}/docs",
        f"  model:  {status}",
        ("  admin API key (shown once; also in " + str(settings.admin_key_file) + "):\n    " + key)
        if key else f"  admin API key: in {settings.admin_key_file}",
        "  try:",
        f"    curl -s {base}/predict -H 'X-API-Key: {shown}' -H 'Content-Type: application/json' \\",
        "      -d '{\"genomes\": [\"" + _example_genome(settings) + "\"], \"top_k\": 1}'",
    ]
    print("\n".join(lines), flush=True)
    # SIGTERM: uvicorn stops accepting, gives in-flight requests the grace period, then the
    # lifespan's shutdown releases a running job (it resumes on the next start).
    uvicorn.run(application, host=args.host, port=args.port, log_level="info",
                access_log=False,  # app.access logs one JSON line per request instead
                timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)))
    return 0


def _example_genome(settings: object) -> str:
    from ml.sources import iter_genomes

    seed = getattr(settings, "seed_csv", None)
    if seed is not None and Path(seed).is_file():
        shortest = min((text for _, text in iter_genomes(seed)), key=len, default="GENOME")
        return shortest.replace("'", "").replace('"', "")
    return "GENOME"


def cmd_keys_create(args: argparse.Namespace) -> int:
    _configure(args)
    from app.bootstrap import migrate
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.store.keys import create_key

    settings = get_settings()
    migrate(settings)
    with session_scope() as session:
        row, plaintext = create_key(session, args.name, args.scopes)
        out = {"id": row.id, "name": row.name, "scopes": row.scopes, "key": plaintext}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """One JSON object per key (id, name, prefix, scopes, created_at, revoked_at)."""
    _configure(args)
    from app.bootstrap import migrate
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.store.keys import key_public, list_keys

    migrate(get_settings())
    with session_scope() as session:
        rows, _ = list_keys(session, include_revoked=not args.active, limit=1_000_000)
        for row in rows:
            item = key_public(row)
            sys.stdout.write(json.dumps({k: v.isoformat() if hasattr(v, "isoformat") else v
                                         for k, v in item.items()}) + "\n")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id; running API processes refuse it within their key cache's TTL."""
    _configure(args)
    from app.bootstrap import migrate
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.store.keys import get_key, revoke

    from app.core.errors import ServiceError

    migrate(get_settings())
    try:
        with session_scope() as session:
            get_key(session, args.id)
            changed = revoke(session, args.id)
    except ServiceError as exc:
        print(f"nas-surrogate: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps({"id": args.id, "revoked": True, "changed": changed}) + "\n")
    return 0


def register(sub: "argparse._SubParsersAction") -> None:
    serve = sub.add_parser("serve", help="run the HTTP service (embedded: SQLite + thread jobs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", default=None,
                       help="database, datasets, models and admin.key (default ./var)")
    serve.add_argument("--seed-csv", default=None,
                       help="CSV of evaluated genomes for the first model "
                            "(default ../shared/data/surrogate_evolution_train.csv)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create an API key (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", nargs="+", default=["predict"],
                        choices=["predict", "train", "admin"])
    create.add_argument("--data-dir", default=None)
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (id, name, prefix, scopes, revoked)")
    listing.add_argument("--active", action="store_true", help="only keys not revoked")
    listing.add_argument("--data-dir", default=None)
    listing.set_defaults(func=cmd_keys_list)
    revoking = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoking.add_argument("id", type=int)
    revoking.add_argument("--data-dir", default=None)
    revoking.set_defaults(func=cmd_keys_revoke)
