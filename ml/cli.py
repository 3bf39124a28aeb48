"""The core's command line (genome, encode, dataset, train, predict, evaluate, propose): the
``nas-surrogate`` entry point (:mod:`nas_surrogate.cli`) composes these with the service's
commands; this module knows nothing of the service. Output names and shapes here are a contract
other tools use.

Every per-genome command prints one JSON object per input genome, in input order, and never
stops at a bad genome: the bad item carries ``{"code", "offset", "message"}`` and the rest go on.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ml.errors import GenomeError
from ml.jsonsafe import emit


def _error_item(index: int, exc: GenomeError) -> dict[str, Any]:
    return {"index": index, "ok": False, "error": exc.to_dict(), "canonical_hash": None}


def cmd_genome_check(args: argparse.Namespace) -> int:
    from ml.genome import canonical_hash, individual_hash, load
    from ml.sources import iter_genomes

    compile_check = None
    if not args.syntax_only:
        from ml.arch.compiler import compile_genome as compile_check
    all_ok = True
    for index, text in iter_genomes(args.file):
        try:
            genome = load(text, max_length=args.max_length)
            if compile_check is not None:
                try:
                    compile_check(genome)
                except GenomeError as exc:
                    raise exc.with_text(text) from None
            emit({"index": index, "ok": True, "error": None,
                   "canonical_hash": canonical_hash(genome),
                   "individual_hash": individual_hash(genome)})
        except GenomeError as exc:
            all_ok = False
            emit({**_error_item(index, exc), "individual_hash": None})
    return 0 if all_ok else 1


def cmd_genome_sample(args: argparse.Namespace) -> int:
    from ml.genome.sampler import GenomeSampler
    from ml.sampling import compiles

    sampler = GenomeSampler(seed=args.seed)
    for genome in sampler.sample(args.n, accept=None if args.no_check else compiles):
        sys.stdout.write(genome + "\n")
    return 0


def _encode_items(path: str, encoding: str, as_data: bool
                  ) -> Iterable[tuple[int, Any, GenomeError | None]]:
    """Per genome: its JSON summary (or its ``Data`` with ``as_data``), or its error. Every
    step runs inside the per-genome guard, so one genome can only fail its own line."""
    from ml.encoding.encoder import GenomeEncoder
    from ml.sources import iter_genomes

    encoder = GenomeEncoder()
    for index, text in iter_genomes(path):
        try:
            encoded = encoder.encode(text, encoding=encoding)
            yield index, (encoded.to_data(encoding, index=index) if as_data
                          else encoded.summary()), None
        except GenomeError as exc:
            yield index, None, exc


def cmd_encode(args: argparse.Namespace) -> int:
    import torch

    all_ok = True
    saved: list[Any] = []
    for index, encoded, exc in _encode_items(args.file, args.encoding, args.out is not None):
        if exc is not None:
            all_ok = False
            if args.out is None:
                emit({**_error_item(index, exc), "num_nodes": None, "num_edges": None})
            else:
                print(json.dumps(_error_item(index, exc)), file=sys.stderr)
            continue
        if args.out is None:
            emit({"index": index, **encoded})
        else:
            saved.append(encoded)
    if args.out is not None:
        torch.save(saved, args.out)
        print(f"wrote {len(saved)} graphs to {args.out}", file=sys.stderr)
    return 0 if all_ok else 1


def build_parser(extra: Iterable[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    """Every core command; each of ``extra`` registers more subcommands (the entry point passes
    the service's), so the core never imports them."""
    parser = argparse.ArgumentParser(prog="nas-surrogate",
                                     description="Surrogate service for evolved detectors.")
    sub = parser.add_subparsers(dest="command", required=True)

    genome = sub.add_parser("genome", help="genome language tools")
    gsub = genome.add_subparsers(dest="genome_command", required=True)
    check = gsub.add_parser("check", help="validate genomes (one per line, or a CSV 'genome' "
                                          "column)")
    check.add_argument("file")
    check.add_argument("--syntax-only", action="store_true",
                       help="parse/evaluate/validate only; skip building the network")
    check.add_argument("--max-length", type=int, default=None)
    check.set_defaults(func=cmd_genome_check)
    sample = gsub.add_parser("sample", help="draw random genomes that compile")
    sample.add_argument("-n", type=int, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-check", action="store_true",
                        help="skip the compile check (faster; some genomes may not build)")
    sample.set_defaults(func=cmd_genome_sample)

    encode = sub.add_parser("encode", help="encode genomes as graphs")
    encode.add_argument("file")
    encode.add_argument("--encoding", choices=("onehot", "combined"), default="combined")
    encode.add_argument("--out", default=None,
                        help="write torch_geometric Data objects here instead of JSON lines")
    encode.set_defaults(func=cmd_encode)

    # Datasets, training and evaluation register their own subcommands (kept in their packages).
    from ml.datasets.cli import register as register_datasets
    from ml.evaluation.cli import register as register_evaluation
    from ml.search.cli import register as register_search
    from ml.train.cli import register as register_training

    register_datasets(sub)
    register_training(sub)
    register_evaluation(sub)
    register_search(sub)
    for register in extra:
        register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; OS and value errors are one clean line."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as exc:
        print(f"nas-surrogate: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """The core's commands alone (``python -m ml.cli``); the ``nas-surrogate`` entry point adds
    the service's (:mod:`nas_surrogate.cli`)."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
