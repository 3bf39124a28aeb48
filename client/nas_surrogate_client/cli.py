"""``nas-surrogate-client``: the light client's command line (prints answers as JSON)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nas_surrogate_client.client import SurrogateClient, SurrogateError


def _client(args: argparse.Namespace) -> SurrogateClient:
    if args.url:
        key = Path(args.key_file).read_text().strip() if args.key_file \
            else os.environ.get("SURROGATE_API_KEY", "")
        return SurrogateClient(args.url, api_key=key)
    return SurrogateClient.from_env(args.data_dir, key_file=args.key_file)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nas-surrogate-client")
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="every individual of an evolution run directory "
                            "into the service (POST /evaluations)")
    ingest.add_argument("run_dir")
    ingest.add_argument("--url", help="the service (default: SURROGATE_DATA_DIR/service.env)")
    ingest.add_argument("--key-file", help="a file holding the API key (default: "
                        "$SURROGATE_API_KEY, or the data dir's admin.key)")
    ingest.add_argument("--data-dir", help="where service.env lies (default "
                        "$SURROGATE_DATA_DIR)")
    ingest.add_argument("--retrain", action="store_true",
                        help="queue one promote-if-better training on the new version")
    ingest.add_argument("--generation", type=int, action="append",
                        help="only this generation (repeatable)")
    ingest.add_argument("--best-epoch", nargs=2, default=("average_precision", "max"),
                        metavar=("METRIC", "max|min"))
    args = parser.parse_args(argv)
    try:
        client = _client(args)
        answer = client.ingest_run(args.run_dir, generations=args.generation,
                                   best_epoch=tuple(args.best_epoch), retrain=args.retrain)
    except SurrogateError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": exc.message}}))
        return 1
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": {"code": "CLIENT_ERROR", "message": str(exc)}}))
        return 2
    print(json.dumps(answer, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
