"""CLI subcommands of the dataset tools: ``dataset build|append|export|show`` and ``render``.

Heavy imports happen inside the commands: ``dataset build``'s parent process must not load torch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_build(args: argparse.Namespace) -> int:
    from ml.datasets.build import BuildOptions, build_dataset
    from ml.datasets.labels import DEFAULT_METRICS

    if (args.csv is None) == (args.pool is None):
        raise ValueError("give exactly one input: a CSV of evaluated genomes, or --pool FILE")
    if args.pool is not None and args.metrics:
        raise ValueError("--metrics applies to an evaluated CSV, not to --pool")
    options = BuildOptions(source=Path(args.pool or args.csv), out=Path(args.out),
                           pool=args.pool is not None,
                           metrics=tuple(args.metrics or DEFAULT_METRICS),
                           chunk_size=args.chunk_size, progress=not args.no_progress)
    if args.workers is not None:
        options.workers = args.workers
    try:
        manifest = build_dataset(options)
    except KeyboardInterrupt:
        print(f"nas-surrogate: interrupted; finished shards are kept in {args.out}, run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"wrote {args.out}: {_summary(manifest)}", file=sys.stderr)
    return 0


def _summary(manifest: dict) -> str:
    """One line: counts per status, shard reuse, throughput and peak memory of the build."""
    counts, timings, memory = manifest["counts"], manifest["timings"], manifest["memory"]
    codes = f" {counts['error_codes']}" if counts["error_codes"] else ""
    return (f"rows {counts['rows']}, ok {counts['ok']}, failed_evaluation "
            f"{counts['failed_evaluation']}, unlabelled {counts['unlabelled']}, invalid_genome "
            f"{counts['invalid_genome']}{codes}, duplicates {counts['duplicates']}; shards built "
            f"{timings['shards_built']}, reused {timings['shards_reused']}; "
            f"{timings['rows_per_s']} rows/s; peak RSS summed over processes "
            f"{memory['peak_rss_sum_mb']} MB (PSS {memory['peak_pss_sum_mb']} MB)")


def cmd_append(args: argparse.Namespace) -> int:
    """A new version ``--out``: the parent's rows plus the CSV's (only new genomes encoded)."""
    from ml.datasets.source import iter_labelled_rows
    from ml.datasets.versions import append_dataset, read_manifest

    metrics = tuple(read_manifest(args.dir)["metrics"])
    result = append_dataset(args.dir, iter_labelled_rows(args.csv, metrics), args.out,
                            source=args.source or Path(args.csv).name)
    own = result.manifest["own_counts"]
    print(f"wrote {args.out}: {own['rows']} rows added ({result.repeats} repeated measurements, "
          f"{result.manifest['timings']['encoded_genomes']} genomes encoded), "
          f"{len(result.rejected)} rejected; {result.manifest['counts']['rows']} rows in all",
          file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ml.datasets.export import export_seed

    paths = export_seed(args.dir, args.out, encoding=args.encoding, chunk=args.chunk)
    for path in paths:
        print(path)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ml.datasets.show import show

    print(show(args.dir, rows=args.rows))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from ml.errors import GenomeError
    from ml.render import read_genome, render

    try:
        path = render(read_genome(args.genome), args.out)
    except GenomeError as exc:
        print(f"nas-surrogate: cannot render: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``nas-surrogate`` parser."""
    dataset = sub.add_parser("dataset", help="build, export and inspect graph datasets")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)

    build = dsub.add_parser("build", help="encode a CSV (or a genome pool) into sharded graphs")
    build.add_argument("csv", nargs="?", default=None, help="evaluated-genome CSV")
    build.add_argument("--pool", default=None,
                       help="unlabelled genomes (one per line, or CSV with a 'genome' column)")
    build.add_argument("--out", required=True, help="dataset directory (created; resumable)")
    build.add_argument("--metrics", nargs="+", default=None,
                       help="metric columns (default: labels.DEFAULT_METRICS)")
    build.add_argument("--workers", type=int, default=None,
                       help="encoder processes, ~0.75 GB RSS each just for torch+pyg and "
                            "~0.9 GB while encoding (default: what CPUs and the 1.5 GB budget "
                            "allow, i.e. 1; 2 workers take ~1.9-2.0 GB summed RSS)")
    build.add_argument("--chunk-size", type=int, default=64,
                       help="rows per shard (default 64; each worker holds one chunk's graphs "
                            "and their packed copy, so larger chunks cost RSS)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    build.set_defaults(func=cmd_build)

    append = dsub.add_parser("append", help="a new dataset version: DIR's rows plus a CSV's "
                                            "(only new genomes are encoded)")
    append.add_argument("dir", help="the parent dataset version (never modified)")
    append.add_argument("csv", help="evaluated-genome CSV with the parent's metric columns")
    append.add_argument("--out", required=True, help="the new version's directory")
    append.add_argument("--source", default=None, help="label of the rows' source (default: "
                                                       "the CSV's file name)")
    append.set_defaults(func=cmd_append)

    export = dsub.add_parser("export", help="export a dataset in another layout")
    export.add_argument("dir")
    export.add_argument("--format", choices=("seed",), required=True)
    export.add_argument("--out", required=True, help="FILE.pt (chunks: FILE_chunk_START_END.pt)")
    export.add_argument("--encoding", choices=("onehot", "combined"), default="onehot")
    export.add_argument("--chunk", type=int, default=10_000, help="graphs per export file")
    export.set_defaults(func=cmd_export)

    show = dsub.add_parser("show", help="counts, metric distributions and a sample encoding")
    show.add_argument("dir")
    show.add_argument("--rows", type=int, default=8, help="node rows of the sample graph")
    show.set_defaults(func=cmd_show)

    render = sub.add_parser("render", help="draw a genome's architecture graph (.png or .html)")
    render.add_argument("genome", help="genome string, or @FILE for the first genome of a file")
    render.add_argument("--out", required=True)
    render.set_defaults(func=cmd_render)
