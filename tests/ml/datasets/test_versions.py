"""Dataset versions on the real genomes: an append encodes only new genomes, shares the
parent's shards, keeps repeated measurements (label noise, per-genome mean) and rejects bad
rows alone; the parent never changes."""
from __future__ import annotations

import csv
import hashlib
import json

import pytest

from ml.datasets.build import BuildOptions, build_dataset
from ml.datasets.reader import GraphDataset
from ml.datasets.records import mean_repeats
from ml.datasets.source import iter_labelled_rows
from ml.datasets.versions import append_dataset
from tests.conftest import train_rows

FIELDS = list(train_rows()[0])


def _write(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _tree_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    folder = tmp_path_factory.mktemp("versions")
    rows = [r for r in train_rows() if float(r["generation"]) <= 2]
    source = _write(folder / "g12.csv", rows)
    build_dataset(BuildOptions(source=source, out=folder / "v1", workers=1, progress=False))
    return folder / "v1", rows


def test_append_encodes_only_new_genomes_and_keeps_repeats(parent, tmp_path):
    v1, old_rows = parent
    before = _tree_digest(v1)
    new_rows = [r for r in train_rows() if float(r["generation"]) == 3]
    k = next(i for i, r in enumerate(old_rows) if float(r["uw_val_epoch_loss"]) < 1000)
    repeat = {**old_rows[k], "generation": "3.0",
              "ciou_loss": str(float(old_rows[k]["ciou_loss"]) + 0.5)}
    bad = {**new_rows[0], "genome": "RetinaNet_Head("}
    source = _write(tmp_path / "g3.csv", new_rows + [repeat, bad, repeat])
    metrics = tuple(json.loads((v1 / "manifest.json").read_text())["metrics"])
    result = append_dataset(v1, iter_labelled_rows(source, metrics), tmp_path / "v2",
                            source="generation 3")
    manifest = result.manifest
    assert _tree_digest(v1) == before                       # the parent is untouched
    assert manifest["timings"]["encoded_genomes"] == len(new_rows)   # repeats not re-encoded
    assert result.added == len(new_rows) + 2 and result.repeats == 2
    assert [(e["row"], e["code"]) for e in result.rejected] == [(len(new_rows) + 1,
                                                                 "UNEXPECTED_END")]
    assert manifest["counts"]["rows"] == len(old_rows) + len(new_rows) + 2
    assert manifest["lineage"] == [str(v1.resolve())]
    assert not (tmp_path / "v2" / "shards" / "shard_000000.pt").samefile(
        v1 / "shards" / "shard_000000.pt")
    noise = manifest["label_noise"]
    assert noise["genomes_measured_more_than_once"] == 1
    assert noise["measurements_of_those"] == 3
    assert noise["per_metric"]["ciou_loss"]["pooled_std"] == pytest.approx(0.2887, abs=1e-3)

    ds = GraphDataset(tmp_path / "v2")
    records = ds.records()
    assert len(records) == manifest["counts"]["rows"]
    assert [r.generation for r in records].count(3.0) == len(new_rows) + 2
    same = [r for r in records if r.canonical_hash == records[k].canonical_hash]
    assert len(same) == 3 and same[0].num_nodes == same[1].num_nodes
    cious = sorted(float(r.y[0, 1]) for r in same)
    assert cious[1] == pytest.approx(cious[0] + 0.5, abs=1e-5)
    merged = mean_repeats(records)
    assert len(merged) == len(records) - 2
    mean = next(r for r in merged if r.canonical_hash == records[k].canonical_hash)
    assert float(mean.y[0, 1]) == pytest.approx(sum(cious) / 3, abs=1e-5)
    # A version of a version reads the whole lineage, and repeats stay graph-free.
    again = append_dataset(tmp_path / "v2", iter([]), tmp_path / "v3", source="empty")
    assert again.manifest["lineage"] == [str(v1.resolve()), str((tmp_path / "v2").resolve())]
    assert len(GraphDataset(tmp_path / "v3")) == len(records)
    with pytest.raises(FileExistsError):
        append_dataset(v1, iter([]), tmp_path / "v2", source="again")


def test_append_cli(parent, tmp_path, capsys):
    from ml.cli import main

    v1, _ = parent
    source = _write(tmp_path / "g3.csv", [r for r in train_rows()
                                          if float(r["generation"]) == 3][:5])
    assert main(["dataset", "append", str(v1), str(source), "--out", str(tmp_path / "v2")]) == 0
    assert "5 rows added" in capsys.readouterr().err
    assert len(GraphDataset(tmp_path / "v2")) == len(GraphDataset(v1)) + 5
