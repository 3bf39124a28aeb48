"""Dataset build/read/export/show on the real data, through the real encoder and workers."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ml.cli import main
from ml.datasets.build import BuildOptions, build_dataset
from ml.datasets.export import collapse_hyperparams, export_seed, load_seed_export
from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS, classify
from ml.datasets.reader import GraphDataset
from ml.datasets.records import make_record
from ml.datasets.source import build_key
from ml.datasets.storage import load_shard
from ml.encoding.encoder import ENCODER_VERSION, GLOBAL_FEATURES, GenomeEncoder
from ml.encoding.hyperparams import HYPERPARAM_COLUMNS
from ml.encoding.vocab import MODULE_TYPES, NUM_NODE_TYPES
from tests.conftest import REPO, TRAIN_CSV, seed_genomes, train_rows

CHUNK = 64  # 238 rows -> 4 shards


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ml.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "ds"
    proc = run("dataset", "build", str(TRAIN_CSV), "--out", str(out), "--workers", "2",
               "--chunk-size", str(CHUNK))
    assert proc.returncode == 0, proc.stderr
    assert "peak RSS summed over processes" in proc.stderr
    return out


def test_manifest_counts_and_vocabularies(built):
    manifest = json.loads((built / "manifest.json").read_text())
    counts = manifest["counts"]
    assert (counts["rows"], counts["ok"], counts["failed_evaluation"]) == (238, 207, 31)
    assert counts["failure_reasons"] == {"zero_predictions": 31}
    assert (counts["invalid_genome"], counts["duplicates"], counts["error_codes"]) == (0, 0, {})
    # a few CSV hashes depend on the evolution's libm (ml.genome.identity); the rest agree
    assert counts["individual_hash_mismatches"] < 20
    assert manifest["encoder_version"] == ENCODER_VERSION
    assert manifest["metrics"] == list(DEFAULT_METRICS)
    assert manifest["directions"] == {m: DIRECTIONS[m] for m in DEFAULT_METRICS}
    vocab = manifest["vocabularies"]
    assert vocab["module_types"] == ["other", *MODULE_TYPES]
    assert vocab["hyperparam_columns"] == list(HYPERPARAM_COLUMNS)
    assert vocab["global_features"] == list(GLOBAL_FEATURES)
    assert manifest["shards"] == [f"shard_{i:06d}.pt" for i in range(4)]
    assert manifest["parameters"]["workers"] == 2
    sha = hashlib.sha256(TRAIN_CSV.read_bytes()).hexdigest()
    assert manifest["source"]["sha256"] == sha
    assert manifest["memory"]["peak_rss_sum_mb"] > 0


def test_index_matches_shards_and_source(built):
    ds = GraphDataset(built)
    rows = train_rows()
    assert len(ds) == 238 and [e.row for e in ds.index] == list(range(238))
    for entry, row in zip(ds.index, rows):
        assert entry.source_individual_hash == row["individual_hash"]
        assert entry.shard == f"shard_{entry.row // CHUNK:06d}.pt"
        assert entry.position == entry.row % CHUNK
        assert entry.generation == float(row["generation"])
        labels = classify(row, DEFAULT_METRICS)
        assert entry.status == ("failed_evaluation" if labels.failed else "ok")
    assert sum(e.individual_hash == e.source_individual_hash for e in ds.index) > 200
    for i, graph in enumerate(ds):  # iteration order == index order
        entry = ds.index[i]
        assert (graph.row, graph.canonical_hash, graph.individual_hash) == \
            (entry.row, entry.canonical_hash, entry.individual_hash)
        assert graph.failed.item() == (entry.status == "failed_evaluation")
        assert graph.y.shape == (1, len(DEFAULT_METRICS))
        assert graph.hyperparams.shape == (graph.num_nodes, len(HYPERPARAM_COLUMNS))
    assert len(ds.records()) == 238
    assert ds[-1].row == 237


def test_stored_graph_equals_make_record(built):
    row_index = next(i for i, r in enumerate(train_rows()) if classify(r, DEFAULT_METRICS).failed)
    for i in (row_index, 237):
        _assert_same_record(built, i)


def _assert_same_record(built: Path, row_index: int) -> None:
    row = train_rows()[row_index]
    expected = make_record(GenomeEncoder().encode(row["genome"]), classify(row, DEFAULT_METRICS),
                           row_index, float(row["generation"]))
    got = GraphDataset(built)[row_index]
    assert set(got.keys()) == set(expected.keys())
    for key in expected.keys():  # noqa: SIM118 - iterating a PyG Data yields (key, value)
        a, b = expected[key], got[key]
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and a.shape == b.shape, key
            assert torch.equal(torch.nan_to_num(a, nan=-7.0), torch.nan_to_num(b, nan=-7.0)), key
        else:
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), key


def test_failed_rows_are_labelled_failed(built):
    labels = [(g.failed.item(), g.y) for g in GraphDataset(built)]
    failed = [y for flag, y in labels if flag == 1.0]
    assert len(failed) == 31
    assert all(y[0, 0].item() > 1e11 for y in failed)  # the 7e12 sentinel, never a target
    ok = [y for flag, y in labels if flag == 0.0]
    assert len(ok) == 207 and all(torch.isfinite(y).all() and y.abs().max() < 1e6 for y in ok)


def test_shards_load_safely(built):
    shard = load_shard(built / "shards" / "shard_000000.pt")  # weights_only=True inside
    assert shard["count"] == CHUNK and shard["start"] == 0 and shard["stop"] == CHUNK


def test_resume_redoes_only_missing_shards(built, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    before = (out / "index.csv").read_text()
    original = load_shard(out / "shards" / "shard_000002.pt")
    (out / "shards" / "shard_000002.pt").unlink()  # as if killed before this chunk finished
    (out / "shards" / "shard_000002.json").unlink()
    (out / "shards" / ".shard_000002.pt.tmp-999").write_bytes(b"torn")  # a torn temp file
    manifest = build_dataset(BuildOptions(TRAIN_CSV, out, workers=1, chunk_size=CHUNK,
                                          progress=False))
    assert (manifest["timings"]["shards_built"], manifest["timings"]["shards_reused"]) == (1, 3)
    assert (out / "index.csv").read_text() == before
    rebuilt = load_shard(out / "shards" / "shard_000002.pt")
    assert rebuilt["canonical_hash"] == original["canonical_hash"]
    assert torch.equal(rebuilt["feature_table"], original["feature_table"])
    assert torch.equal(rebuilt["edge_index"], original["edge_index"])


def test_build_key_names_source_encoder_metrics_and_chunking():
    base = build_key("a" * 64, "graph-v1", DEFAULT_METRICS, 64, "labelled")
    assert base != build_key("b" * 64, "graph-v1", DEFAULT_METRICS, 64, "labelled")
    assert base != build_key("a" * 64, "graph-v2", DEFAULT_METRICS, 64, "labelled")
    assert base != build_key("a" * 64, "graph-v1", ("ciou_loss",), 64, "labelled")
    assert base != build_key("a" * 64, "graph-v1", DEFAULT_METRICS, 32, "labelled")


def test_bad_rows_skipped_with_codes_and_duplicates_kept(tmp_path):
    rows = train_rows()
    fields = list(rows[0])
    source = tmp_path / "small.csv"
    bad = [dict(rows[1], genome="", individual_hash="empty"),
           dict(rows[2], genome="RetinaNet_Head(", individual_hash="cut")]
    failed_row = next(r for r in rows if classify(r, DEFAULT_METRICS).failed)
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows([rows[0], *bad, failed_row, rows[0]])
    manifest = build_dataset(BuildOptions(source, tmp_path / "ds", workers=1, chunk_size=2,
                                          metrics=("ciou_loss", "precision"), progress=False))
    counts = manifest["counts"]
    assert counts["rows"] == 5 and counts["invalid_genome"] == 2
    assert counts["error_codes"] == {"EMPTY_GENOME": 1, "UNEXPECTED_END": 1}
    assert (counts["ok"], counts["failed_evaluation"], counts["duplicates"]) == (2, 1, 1)
    errors_file = tmp_path / "ds" / "errors.jsonl"
    errors = [json.loads(line) for line in errors_file.read_text().splitlines()]
    assert [(e["row"], e["code"]) for e in errors] == [(1, "EMPTY_GENOME"), (2, "UNEXPECTED_END")]
    ds = GraphDataset(tmp_path / "ds")
    assert [e.row for e in ds.index] == [0, 3, 4]
    assert [e.duplicate for e in ds.index] == [False, False, True]
    assert ds.index[0].canonical_hash == ds.index[2].canonical_hash
    assert ds[0].y.tolist() == [[float(rows[0]["ciou_loss"]), float(rows[0]["precision"])]]
    assert ds[1].failed.item() == 1.0


def test_unknown_metric_is_a_clear_error(tmp_path):
    proc = run("dataset", "build", str(TRAIN_CSV), "--out", str(tmp_path / "x"),
               "--metrics", "ciou_loss", "no_such_metric")
    assert proc.returncode == 2
    assert "unknown metric column(s) ['no_such_metric']" in proc.stderr


def test_pool_mode(tmp_path):
    pool = tmp_path / "pool.txt"
    seeds = seed_genomes()
    pool.write_text("\n".join([seeds[0], "notAPrimitive(IN0)", seeds[1], seeds[0]]) + "\n")
    assert main(["dataset", "build", "--pool", str(pool), "--out", str(tmp_path / "ds"),
                 "--workers", "1", "--no-progress"]) == 0
    ds = GraphDataset(tmp_path / "ds")
    counts = ds.manifest["counts"]
    assert (counts["rows"], counts["unlabelled"], counts["invalid_genome"]) == (4, 3, 1)
    assert counts["duplicates"] == 1 and ds.metrics == []
    assert [e.status for e in ds.index] == ["unlabelled"] * 3
    graph = ds[0]
    assert graph.y.shape == (1, 0) and math.isnan(graph.failed.item())
    assert graph.canonical_hash == GenomeEncoder().encode(seeds[0]).canonical_hash


def test_export_seed_round_trip(built, tmp_path):
    ds = GraphDataset(built)
    paths = export_seed(built, tmp_path / "data.pt", encoding="onehot", chunk=100)
    assert [p.name for p in paths] == ["data_chunk_0_100.pt", "data_chunk_100_200.pt",
                                       "data_chunk_200_238.pt"]
    items = load_seed_export(paths)
    assert sorted(items) == list(range(238))
    for i in (0, 150, 237):
        info, data, label = items[i]
        graph = ds[i]
        assert data.x.shape == (graph.num_nodes, NUM_NODE_TYPES)
        assert torch.equal(data.x.argmax(1), graph.node_type)
        assert torch.equal(data.edge_index, graph.edge_index)
        assert torch.equal(info, graph.model_info[0]) and info.shape == (34,)
        assert torch.equal(label, graph.y[0])
        assert data.failed.item() == graph.failed.item()

    assert main(["dataset", "export", str(built), "--format", "seed", "--out",
                 str(tmp_path / "data_with_encoding.pt"), "--encoding", "combined"]) == 0
    combined = torch.load(tmp_path / "data_with_encoding.pt", weights_only=False)
    assert len(combined) == 238
    _, data, _ = combined[5]
    graph = ds[5]
    assert torch.equal(data.x, graph.node_type) and data.hyperparams.shape[1] == 43
    assert torch.equal(data.hyperparams, collapse_hyperparams(graph.hyperparams))
    mean = (graph.hyperparams[:, 0] + graph.hyperparams[:, 1]) / 2
    assert torch.equal(data.hyperparams[:, 0], mean)


def test_show(built, capsys):
    assert main(["dataset", "show", str(built), "--rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "rows 238  ok 207  failed_evaluation 31" in out
    assert "zero_predictions" in out
    for metric in DEFAULT_METRICS:
        assert metric in out
    assert "onehot (28)" in out and "combined hyper-parameters" in out
    assert "first 5 nodes" in out
