"""Model bundles: a self-describing directory that ``load_bundle`` turns back into a predictor.

Layout (``BUNDLE_FORMAT`` versions it)::

    bundle.json            format, model name/version, encoder version, metrics, created (UTC),
                           dataset manifest hash
    config.json            the predictor's config (enough to rebuild the network)
    weights.pt             flat dict of tensors (weights + normalisation), torch.save'd and
                           loaded with ``torch.load(..., weights_only=True)`` (no pickle code)
    normalisation.json     the same statistics, human-readable
    training_metrics.json  the fit history / CV scores handed in
    training_hashes.json   canonical hashes of the genomes it was trained on (sorted, unique):
                           what a search must never propose again (absent in older bundles)
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ml.datasets.atomic import fsync_tree, publish_dir
from ml.encoding.encoder import ENCODER_VERSION
from ml.jsonsafe import json_safe
from ml.models.base import Predictor
from ml.models.registry import create, model_class

BUNDLE_FORMAT = 1
WEIGHTS = "weights.pt"
TRAINING_HASHES = "training_hashes.json"


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def save_bundle(model: Predictor, out_dir: str | Path, manifest_hash: str | None = None,
                metrics: dict[str, Any] | None = None, replace: bool = True,
                training_hashes: Iterable[str] | None = None) -> Path:
    """Write ``model`` to ``out_dir``: every file is written into a temporary sibling, fsync'd,
    and the directory is published with one rename. ``replace=False`` (the service: one
    directory per training attempt) refuses to touch an existing directory; the CLI's default
    replaces it. Returns the path."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        config = {k: v for k, v in model.config.items() if k not in ("checkpoint_dir", "device")}
        _write_json(tmp / "config.json", config)
        torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                   tmp / WEIGHTS)
        _write_json(tmp / "normalisation.json", model.normalisation())
        _write_json(tmp / "training_metrics.json", metrics or {})
        if training_hashes is not None:
            _write_json(tmp / TRAINING_HASHES, sorted(set(training_hashes)))
        _write_json(tmp / "bundle.json", {
            "format": BUNDLE_FORMAT, "model": model.name, "model_version": model.version,
            "encoder_version": ENCODER_VERSION, "metrics": list(model.metrics),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "dataset_manifest_hash": manifest_hash})
        fsync_tree(tmp)
        publish_dir(tmp, out, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_bundle_info(bundle_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(bundle_dir) / "bundle.json").read_text())


def bundle_problem(bundle_dir: str | Path) -> str | None:
    """Why this code cannot load the bundle (format, encoder or predictor version, e.g. after an
    upgrade changed the features), or None when it can. Cheap: reads bundle.json only."""
    root = Path(bundle_dir)
    try:
        info = read_bundle_info(root)
    except (OSError, ValueError) as exc:
        return f"{root}: no readable bundle.json ({exc})"
    if info.get("format") != BUNDLE_FORMAT:
        return f"{root}: bundle format {info.get('format')} != {BUNDLE_FORMAT}"
    if info.get("encoder_version") != ENCODER_VERSION:
        return f"{root}: encoder {info.get('encoder_version')} != {ENCODER_VERSION}"
    cls = model_class(str(info.get("model")))
    if cls is None:
        return f"{root}: unknown model {info.get('model')!r}"
    if cls.version != info.get("model_version"):
        return f"{root}: {info['model']} version {info.get('model_version')} != {cls.version}"
    return None


def read_training_hashes(bundle_dir: str | Path) -> list[str]:
    """The canonical hashes a bundle was trained on; empty for a bundle written before they
    were recorded."""
    path = Path(bundle_dir) / TRAINING_HASHES
    return json.loads(path.read_text()) if path.is_file() else []


def load_bundle(bundle_dir: str | Path, device: str | None = None) -> Predictor:
    """A ready predictor; refuses bundles of another format, encoder or model version."""
    root = Path(bundle_dir)
    problem = bundle_problem(root)
    if problem is not None:
        raise ValueError(problem)
    info = read_bundle_info(root)
    config = json.loads((root / "config.json").read_text())
    config["device"] = device
    model = create(info["model"], config)
    model.load_state_dict(torch.load(root / WEIGHTS, map_location="cpu", weights_only=True))
    return model
