"""GPU against CPU for the neural predictors and the self-supervised pre-training (issue 13:
"when a GPU is lent, train the GNN and the pre-training there once and report the speed-up").

Each stage prints one JSON line (and appends it to ``--out`` when given), so a run cut short
still reports what it finished:

* ``fit``: each model in ``--models`` fitted once on the same grouped fold of the real CSV
  (seed 0, fold 0 of 5: ~190 genomes) on each device in ``--devices``, with its default
  config; seconds, and Kendall tau-b on the fold's held-out genomes (so a device that trains
  faster but worse shows);
* ``pretrain``: :func:`ml.train.pretrain.pretrain` for each ``--pretrain`` size (genomes) on each
  device, ``--processes`` corpus workers; seconds waiting for the corpus vs training, genomes per
  second, final masked-type accuracy. ``--budget S`` stops a run after S seconds and reports
  what it reached (the lease of a lent GPU is short).

    python benchmarks/gpu_speed.py [--models combined_gcn,bigcn] [--devices cuda,cpu]
        [--config JSON] [--pretrain 8192] [--processes N] [--threads T] [--budget S] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))


def _emit(row: dict, out: str | None) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        with open(out, "a") as fh:
            fh.write(line + "\n")


def _environment() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"stage": "environment", "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None}


def _fit_rows(models: list[str], devices: list[str], csv: str, config: dict,
              out: str | None) -> None:
    import numpy as np
    import torch
    from sklearn.model_selection import GroupKFold

    from ml.datasets.records import failed_flags, load_csv, targets
    from ml.metrics import kendall_per_metric
    from ml.models.registry import create

    start = time.perf_counter()
    records, _ = load_csv(csv)
    _emit({"stage": "load_csv", "records": len(records),
           "seconds": round(time.perf_counter() - start, 2)}, out)
    groups = [r.canonical_hash for r in records]
    train_idx, test_idx = next(GroupKFold(5, shuffle=True, random_state=0)
                               .split(records, groups=groups))
    train = [records[i] for i in train_idx]
    test = [records[i] for i in test_idx]
    for name in models:
        for device in devices:
            model = create(name, {**config, "device": device})
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            history = model.fit(train) or {}
            if device == "cuda":
                torch.cuda.synchronize()
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = model.predict(test)
            predict_s = time.perf_counter() - t0
            y = targets(test, len(model.metrics))
            failed = failed_flags(test) == 1.0
            taus = kendall_per_metric(y, pred.mean, failed, model.metrics)
            epochs = sum(len(h) for h in history.get("members", []))
            _emit({"stage": "fit", "model": name, "device": device, "config": config,
                   "train": len(train),
                   "test": len(test), "fit_s": round(fit_s, 2), "epochs": epochs or None,
                   "s_per_epoch": round(fit_s / epochs, 3) if epochs else None,
                   "predict_s": round(predict_s, 3),
                   "tau": {m: round(float(v), 3) for m, v in taus.items()},
                   "mean_tau": round(float(np.nanmean(list(taus.values()))), 3)}, out)


def _pretrain_once(config, budget: float | None) -> dict:
    """One pre-training run; stopped after ``budget`` seconds, it reports how far it got."""
    from ml.models.base import TrainingCancelled
    from ml.train.pretrain import pretrain

    last: dict = {}
    t0 = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        last.update(fraction=round(fraction, 4), message=message,
                    seconds=round(time.perf_counter() - t0, 2))

    def stop() -> bool:
        return budget is not None and time.perf_counter() - t0 > budget

    try:
        _, report = pretrain(config, progress=progress, stop=stop)
    except TrainingCancelled:
        return {"stopped_at_budget_s": budget, **last}
    report.pop("curve", None)
    report.pop("config", None)
    return {"wall_s": round(time.perf_counter() - t0, 2), **report}


def _pretrain_rows(sizes: list[int], devices: list[str], processes: int, budget: float | None,
                   out: str | None) -> None:
    from ml.train.pretrain import PretrainConfig

    for genomes in sizes:
        for device in devices:
            config = PretrainConfig(genomes=genomes, processes=processes, device=device)
            _emit({"stage": "pretrain", "device": device, "genomes_asked": genomes,
                   "processes": processes, **_pretrain_once(config, budget)}, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="combined_gcn,bigcn")
    parser.add_argument("--devices", default="cuda,cpu")
    parser.add_argument("--config", default="{}", help="JSON hyper-parameters for every model "
                        "(e.g. a longer run: '{\"epochs\": 600, \"patience\": 150}')")
    parser.add_argument("--pretrain", default="8192", help="comma-separated corpus sizes; "
                        "empty for none")
    parser.add_argument("--processes", type=int, default=max((os.cpu_count() or 2) - 1, 1))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds after which a pre-training run stops and reports")
    parser.add_argument("--csv", default=str(DATA / "surrogate_evolution_train.csv"))
    parser.add_argument("--out", default=None, help="append the JSON lines here too")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        print("no CUDA device: measuring the CPU only", file=sys.stderr)
        devices = [d for d in devices if d != "cuda"]
    _emit(_environment(), args.out)
    models = [m for m in args.models.split(",") if m]
    if models:
        _fit_rows(models, devices, args.csv, json.loads(args.config), args.out)
    sizes = [int(s) for s in args.pretrain.split(",") if s]
    if sizes:
        _pretrain_rows(sizes, devices, args.processes, args.budget, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
