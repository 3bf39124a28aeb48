"""The service's own commands (``nas-surrogate keys create|list|revoke``), composed into the
``nas-surrogate`` entry point by :mod:`nas_surrogate.cli`. Each prints JSON lines.

``configure`` applies the common ``--data-dir`` / ``--seed-csv`` options to the one settings
object (through its environment variables) before anything reads it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from service.migrate import prepare_database


def configure(args: argparse.Namespace) -> None:
    if getattr(args, "data_dir", None):
        os.environ["SURROGATE_DATA_DIR"] = str(Path(args.data_dir).resolve())
    if getattr(args, "seed_csv", None):
        os.environ["SURROGATE_SEED_CSV"] = str(Path(args.seed_csv).resolve())
    from service.config import reset_settings
    reset_settings()


def cmd_keys_create(args: argparse.Namespace) -> int:
    configure(args)
    from service.config import get_settings
    from service.db import session_scope
    from service.store.keys import create_key

    settings = get_settings()
    prepare_database(settings)
    with session_scope() as session:
        row, plaintext = create_key(session, args.name, args.scopes)
        out = {"id": row.id, "name": row.name, "scopes": row.scopes, "key": plaintext}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    """One JSON object per key (id, name, prefix, scopes, created_at, revoked_at)."""
    configure(args)
    from service.config import get_settings
    from service.db import session_scope
    from service.store.keys import key_public, list_keys

    prepare_database(get_settings())
    with session_scope() as session:
        rows, _ = list_keys(session, include_revoked=not args.active, limit=1_000_000)
        for row in rows:
            item = key_public(row)
            sys.stdout.write(json.dumps({k: v.isoformat() if hasattr(v, "isoformat") else v
                                         for k, v in item.items()}) + "\n")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id; running API processes refuse it within their key cache's TTL."""
    configure(args)
    from service.config import get_settings
    from service.db import session_scope
    from service.errors import ServiceError
    from service.store.keys import get_key, revoke

    prepare_database(get_settings())
    try:
        with session_scope() as session:
            get_key(session, args.id)
            changed = revoke(session, args.id)
    except ServiceError as exc:
        print(f"nas-surrogate: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps({"id": args.id, "revoked": True, "changed": changed}) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
