"""Trainer behaviour: resume, cancellation, bundles and the train/predict CLI on real genomes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml.cli import main
from ml.models.base import TrainingCancelled
from ml.models.registry import create
from ml.train import load_bundle, save_bundle
from tests.conftest import SEEDS_TXT
from tests.ml.models.test_models import FAST, records, subset_csv, write_subset  # noqa: F401 - fixtures

RESUMABLE = {**FAST, "epochs": 4, "val_fraction": 0.25, "checkpoint_every": 2}


class StopAt:
    """Asks the trainer to stop after ``epoch``; records progress."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.seen: list[int] = []

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.seen.append(epoch)

    def should_stop(self) -> bool:
        return bool(self.seen) and self.seen[-1] >= self.epoch


def test_cancel_then_resume_equals_uninterrupted(records, tmp_path):
    full = create("bigcn", RESUMABLE)
    full.fit(records)
    expected = full.predict(records[:6])

    interrupted = create("bigcn", {**RESUMABLE, "checkpoint_dir": str(tmp_path)})
    stop = StopAt(1)
    with pytest.raises(TrainingCancelled) as info:
        interrupted.fit(records, callbacks=stop)
    assert stop.seen == [0, 1] and info.value.checkpoint is not None
    assert info.value.checkpoint.is_file()

    resumed = create("bigcn", {**RESUMABLE, "checkpoint_dir": str(tmp_path)})
    history = resumed.fit(records, resume_from=info.value.checkpoint)
    assert [row["epoch"] for row in history["members"][0]] == [0, 1, 2, 3]
    got = resumed.predict(records[:6])
    np.testing.assert_allclose(got.mean, expected.mean, rtol=1e-6)
    np.testing.assert_allclose(got.p_fail, expected.p_fail, rtol=1e-6)


def test_cancel_without_checkpoint_dir_still_raises(records):
    model = create("simple_gcn", FAST)
    with pytest.raises(TrainingCancelled) as info:
        model.fit(records, callbacks=StopAt(0))
    assert info.value.checkpoint is None and info.value.epoch == 0


@pytest.mark.parametrize("name", ["stack", "trees", "frnas"])
def test_bundle_round_trip_is_exact(name, records, tmp_path):
    model = create(name, {**FAST, "ensemble": 2})
    model.fit(records)
    out = save_bundle(model, tmp_path / "bundle", manifest_hash="abc", metrics={"x": 1.0})
    weights = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.is_tensor(v) for v in weights.values())
    info = json.loads((out / "bundle.json").read_text())
    assert info["model"] == name and info["dataset_manifest_hash"] == "abc"
    for part in ("config.json", "normalisation.json", "training_metrics.json"):
        json.loads((out / part).read_text())
    loaded = load_bundle(out)
    a, b = model.predict(records), loaded.predict(records)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    np.testing.assert_array_equal(a.p_fail, b.p_fail)


def test_train_and_predict_cli(subset_csv, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--csv", str(subset_csv), "--out", str(out), "--ensemble", "2",
                 "--metrics", "uw_val_epoch_loss", "ciou_loss", "average_precision"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["records"] == 24 and summary["failed"] == 6
    good = SEEDS_TXT.read_text().splitlines()[0]
    genomes = tmp_path / "genomes.txt"
    genomes.write_text("\n".join([good, good[:40], good]) + "\n")
    assert main(["predict", "--model", str(out), str(genomes)]) == 1
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [i["index"] for i in items] == [0, 1, 2]
    assert items[1]["ok"] is False and set(items[1]["error"]) == {"code", "offset", "message"}
    for item in (items[0], items[2]):
        assert set(item) == {"index", "ok", "error", "canonical_hash", "p_fail",
                             "predictions", "std", "interval"}  # the default is a forest
        assert item["ok"] and 0 <= item["p_fail"] <= 1
        assert set(item["predictions"]) == {"uw_val_epoch_loss", "ciou_loss",
                                            "average_precision"}
        assert set(item["std"]) == set(item["predictions"]) == set(item["interval"])
        assert all(lo <= hi for lo, hi in item["interval"].values())
    assert items[0]["predictions"] == items[2]["predictions"]
