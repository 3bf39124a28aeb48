"""CLI subcommands of training: ``train``, ``predict`` and ``pretrain`` (``evaluate`` lives in
ml.evaluation).

``predict`` prints one JSON object per input genome, in input order::

    {"index", "ok", "error", "canonical_hash", "p_fail", "predictions": {metric: value},
     "std": {metric: value} | null}

A genome that does not parse/compile fails only its own line (``error`` = {code, offset,
message}, the rest null). Genomes go through the scoring engine (:mod:`ml.inference`) a
batch at a time, as the service's do.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ml.jsonsafe import emit

PREDICT_CHUNK = 1024


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def cmd_train(args: argparse.Namespace) -> int:
    from ml.train.bundle import save_bundle
    from ml.train.trainer import fit_predictor, load_training_records

    metrics = tuple(args.metrics) if args.metrics else None
    records, source = load_training_records(args.dataset, args.csv, metrics)
    config: dict[str, Any] = {"metrics": source["metrics"], "seed": args.seed,
                              "ensemble": args.ensemble}
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.checkpoint_dir:
        config["checkpoint_dir"] = args.checkpoint_dir

    class _Progress:
        def on_epoch_end(self, epoch: int, row: dict[str, float]) -> None:
            if args.verbose:
                print(json.dumps({k: _finite(v) if isinstance(v, float) else v
                                  for k, v in row.items()}), file=sys.stderr)

    model, info = fit_predictor(records, args.model, config, callbacks=_Progress(),
                                resume_from=args.resume)
    failed = sum(int(float(r.failed.reshape(-1)[0]) == 1.0) for r in records)
    path = save_bundle(model, args.out, manifest_hash=source["hash"], metrics={
        "fit_seconds": info["fit_seconds"], "num_records": len(records),
        "num_failed": failed, "history": info["history"]},
        training_hashes=(r.canonical_hash for r in records))
    print(json.dumps({"model": model.name, "out": str(path), "records": len(records),
                      "failed": failed, "fit_seconds": round(info["fit_seconds"], 3)}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ml.inference import Engine, batch_items
    from ml.sources import iter_genomes
    from ml.train.bundle import load_bundle

    model = load_bundle(args.model)
    engine = Engine()
    all_ok = True
    batch: list[tuple[int, str]] = []

    def flush() -> bool:
        """Score and print the batch in input order; False when one of its genomes failed."""
        scored = engine.evaluate([text for _, text in batch], model)
        items = batch_items(scored.hashes, scored.errors, model.metrics, scored.mean,
                            scored.std if scored.has_std else None, scored.p_fail,
                            scored.interval)
        for (index, _), item in zip(batch, items):
            item["index"] = index
            emit(item)
        return all(error is None for error in scored.errors)

    for index, text in iter_genomes(args.file):
        batch.append((index, text))
        if len(batch) >= PREDICT_CHUNK:
            all_ok &= flush()
            batch = []
    if batch:
        all_ok &= flush()
    return 0 if all_ok else 1


def pretrain_config(args: argparse.Namespace) -> Any:
    """The :class:`ml.train.pretrain.PretrainConfig` of the ``pretrain`` arguments."""
    from ml.train.pretrain import PretrainConfig

    config = PretrainConfig(genomes=args.genomes, seed=args.seed, device=args.device,
                            hidden=args.hidden, layers=args.layers, dims=args.dims,
                            chunk=args.chunk)
    if args.processes is not None:
        config.processes = args.processes
    return config


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pre-train the masked graph encoder on sampled genomes; print the report as JSON."""
    from ml.train.pretrain import pretrain

    log = (lambda message: print(message, file=sys.stderr, flush=True)) if args.verbose \
        else None
    embedder, report = pretrain(pretrain_config(args), log=log)
    embedder.save(args.out)
    if not args.curve:
        report.pop("curve")
    print(json.dumps({"out": args.out, **report}))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``nas-surrogate`` parser."""
    train = sub.add_parser("train", help="train a predictor and write a model bundle")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", default=None, help="built dataset directory")
    source.add_argument("--csv", default=None, help="evaluated-genome CSV")
    train.add_argument("--out", required=True, help="model bundle directory")
    train.add_argument("--model", default="auto",
                       help="auto (the default, stack) or any predictor of ml.models.registry; an "
                       "unknown name is refused with the list (kept out of --help so it needs "
                       "no torch)")
    train.add_argument("--metrics", nargs="+", default=None)
    train.add_argument("--epochs", type=int, default=None, help="neural models only")
    train.add_argument("--ensemble", type=int, default=1, help="K members (std across them)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-dir", default=None, help="neural models: resumable state")
    train.add_argument("--resume", default=None, help="checkpoint file to continue from")
    train.add_argument("--verbose", action="store_true", help="per-epoch JSON on stderr")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="predict metrics and P(fail) for genomes")
    predict.add_argument("--model", required=True, help="model bundle directory")
    predict.add_argument("file", help="one genome per line, or a CSV with a 'genome' column")
    predict.set_defaults(func=cmd_predict)

    pre = sub.add_parser("pretrain", help="pre-train a graph encoder on sampled genomes "
                         "(masked node reconstruction); writes an embedder file")
    pre.add_argument("--out", required=True, help="embedder file to write (.pt, tensors only)")
    pre.add_argument("--genomes", type=int, default=100_000,
                     help="sampled genomes, each seen once (default 100000)")
    pre.add_argument("--processes", type=int, default=None,
                     help="corpus encoder processes (default: cores - 1; 0 = in process)")
    pre.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--hidden", type=int, default=64)
    pre.add_argument("--layers", type=int, default=3)
    pre.add_argument("--dims", type=int, default=16, help="embedding columns (principal "
                     "components of the pooled node embeddings)")
    pre.add_argument("--chunk", type=int, default=256, help="genomes per corpus chunk")
    pre.add_argument("--curve", action="store_true", help="include the per-chunk loss curve")
    pre.add_argument("--verbose", action="store_true", help="progress on stderr")
    pre.set_defaults(func=cmd_pretrain)
