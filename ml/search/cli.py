"""``nas-surrogate propose``: the search against a model bundle, one JSON object per proposal
on stdout (in rank order, the items of ``POST /propose``), the run's stats as one JSON object on
stderr. Exit status 0 when it proposed at least one genome, 1 otherwise, 2 for a request it
cannot run."""
from __future__ import annotations

import argparse
import json
import sys

from ml.jsonsafe import emit


def _genomes(path: str | None) -> tuple[str, ...]:
    if not path:
        return ()
    from ml.sources import iter_genomes

    return tuple(text for _, text in iter_genomes(path))


def cmd_propose(args: argparse.Namespace) -> int:
    from ml.search.scoring import BundleScorer
    from ml.search.spec import ProposeSpec
    from ml.search.strategies import SearchError, propose
    from ml.train.bundle import load_bundle, read_bundle_info, read_training_hashes

    spec = ProposeSpec(strategy=args.strategy, population=_genomes(args.population),
                       k=args.k, pool_size=args.pool_size,
                       inner_generations=args.inner_generations, parents_k=args.parents_k,
                       acquisition=args.acquisition, exclude=_genomes(args.exclude),
                       seed=args.seed)
    model = load_bundle(args.model)
    try:
        result = propose(BundleScorer(model), spec, read_training_hashes(args.model))
    except SearchError as exc:
        print(json.dumps({"error": {"code": exc.code, "message": str(exc),
                                    "details": exc.details}}), file=sys.stderr)
        return 2
    for item in result["items"]:
        emit(item)
    info = read_bundle_info(args.model)
    print(json.dumps({"stats": result["stats"], "model": info.get("model"),
                      "encoder_version": info.get("encoder_version")}), file=sys.stderr)
    return 0 if result["items"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    from ml.search.spec import ACQUISITIONS, DEFAULTS, K_DEFAULT_TEXT, STRATEGIES

    p = sub.add_parser("propose", help="propose genomes to train next (SSI, Neural-Predictor "
                                       "or mutation search) with a model bundle")
    p.add_argument("--model", required=True, help="model bundle directory")
    p.add_argument("--population", help="genomes to start from (one per line, or a CSV with "
                                        "a 'genome' column)")
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULTS.strategy)
    p.add_argument("--k", type=int, default=DEFAULTS.k,
                   help=f"proposals (default: {K_DEFAULT_TEXT})")
    p.add_argument("--pool-size", type=int, default=DEFAULTS.pool_size)
    p.add_argument("--inner-generations", type=int, default=DEFAULTS.inner_generations)
    p.add_argument("--parents-k", type=int, default=DEFAULTS.parents_k)
    p.add_argument("--acquisition", choices=ACQUISITIONS, default=DEFAULTS.acquisition)
    p.add_argument("--exclude", help="genomes never to propose (same formats)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.set_defaults(func=cmd_propose)
