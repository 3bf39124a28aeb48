"""The ``nas-surrogate`` entry point: the core's commands (:mod:`ml.cli`) plus the service's
(``keys``: :mod:`service.cli`; ``serve``: :mod:`nas_surrogate.serve`; ``bootstrap``:
:mod:`nas_surrogate.cluster`), in one parser."""
from __future__ import annotations

import argparse

from ml.cli import build_parser as build_core_parser
from ml.cli import run
from nas_surrogate import cluster, serve
from service import cli as service_cli


def build_parser() -> argparse.ArgumentParser:
    return build_core_parser(extra=(serve.register, cluster.register, service_cli.register))


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
