"""Self-supervised pre-training (issue 13 §2) and the embedding it gives the tree models, on
genomes really sampled, compiled and encoded, and on the real training subset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml.models.pretrained import GraphEmbedder
from ml.models.registry import create
from ml.train.bundle import load_bundle, save_bundle
from ml.train.pretrain import PretrainConfig, corpus_chunk, pretrain
from tests.ml.models.test_models import FAST, records, subset_csv  # noqa: F401 - fixtures
from tests.ml.test_cli import run

SMALL = {"genomes": 24, "chunk": 8, "processes": 0, "hidden": 16, "layers": 2, "batch_size": 8,
         "dims": 4, "projection_genomes": 24, "seed": 3}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    embedder, report = pretrain(PretrainConfig(**SMALL))
    path = tmp_path_factory.mktemp("pretrained") / "embedder.pt"
    embedder.save(path)
    return embedder, report, path


def test_a_corpus_chunk_is_the_same_in_any_process_and_every_genome_built():
    one, two = corpus_chunk(7, 2, 3), corpus_chunk(7, 2, 3)
    assert len(one) == 3
    for a, b in zip(one, two):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        types, edges, inputs, presence = a
        assert len(types) > 0 and edges.shape[0] == 2 and edges.max() < len(types)
        assert inputs.shape == presence.shape and inputs.shape[0] == len(types)
    assert any(len(a[0]) != len(b[0]) for a, b in zip(one, corpus_chunk(7, 3, 3)))


def test_pretraining_reports_and_learns_the_masked_types(pretrained):
    embedder, report, _ = pretrained
    assert report["genomes"] == 24 and report["nodes"] > 24
    assert [p["genomes"] for p in report["curve"]] == [8, 16, 24]
    first, last = report["curve"][0], report["curve"][-1]
    assert np.isfinite(last["type_loss"]) and np.isfinite(last["input_mse"])
    assert last["type_loss"] < first["type_loss"]  # it learns from 24 genomes already
    assert embedder.dims == 4 and report["device"] == "cpu"


def test_embeddings_survive_save_and_load(pretrained, records):
    embedder, _, path = pretrained
    rows = embedder.embed(records)
    assert rows.shape == (len(records), 4) and np.isfinite(rows).all()
    assert rows.std(axis=0).min() > 0  # the genomes are told apart
    again = GraphEmbedder.load(path)
    np.testing.assert_allclose(again.embed(records), rows, rtol=1e-5, atol=1e-6)
    assert again.digest() == embedder.digest()


@pytest.mark.parametrize("name", ["trees", "stack"])
def test_tree_models_take_the_embedding_and_keep_it_in_their_bundle(name, pretrained, records,
                                                                    tmp_path):
    embedder, _, path = pretrained
    plain = create(name, {**FAST, "target_transform": "robust"})
    plain.fit(records)
    model = create(name, {**FAST, "target_transform": "robust", "embedding": str(path)})
    model.fit(records)
    x = model.featurize(records)
    assert x.shape[1] == plain.featurize(records).shape[1] + 4
    np.testing.assert_allclose(x[:, -4:], embedder.embed(records), rtol=1e-5, atol=1e-6)
    assert model.feature_key == f"{plain.feature_key}+embedding-{embedder.digest()}"
    before = model.predict(records)
    path.rename(path.with_suffix(".moved"))  # the bundle must not need the file
    try:
        loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    finally:
        path.with_suffix(".moved").rename(path)
    assert loaded.feature_key == model.feature_key
    after = loaded.predict(records)
    np.testing.assert_allclose(after.mean, before.mean, rtol=1e-6)
    np.testing.assert_allclose(after.p_fail, before.p_fail, rtol=1e-6)
    assert "embedding" in loaded.normalisation()["features"]


def test_pretrain_command_writes_a_loadable_embedder(tmp_path):
    out = tmp_path / "emb.pt"
    proc = run("pretrain", "--out", str(out), "--genomes", "8", "--chunk", "4",
               "--processes", "0", "--hidden", "8", "--layers", "1", "--dims", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["out"] == str(out) and report["genomes"] == 8 and "curve" not in report
    state = torch.load(out, weights_only=True)
    assert GraphEmbedder.from_state(state).dims == 2


def test_a_stop_between_chunks_cancels_and_shuts_the_corpus_workers_down():
    """The default path (a spawned corpus worker) and the job's cancel hook together."""
    import multiprocessing

    from ml.models.base import TrainingCancelled

    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first chunk was trained on

    progress: list[float] = []
    config = PretrainConfig(**{**SMALL, "genomes": 6, "chunk": 2, "processes": 1})
    with pytest.raises(TrainingCancelled):
        pretrain(config, progress=lambda f, _: progress.append(f), stop=stop)
    assert progress == [pytest.approx(2 / 6)]
    assert not multiprocessing.active_children()


def test_on_a_gpu_the_trainer_leaves_the_cores_to_the_corpus_workers():
    """Measured on an H200 node (docs/results.md): with torch's one thread per core, the trainer
    fought 15 busy corpus workers, and the GPU trained no faster than the CPU."""
    assert PretrainConfig(processes=15, device="cuda").training_threads(cpus=16) == 1
    assert PretrainConfig(processes=3, device="cuda").training_threads(cpus=16) == 13
    assert PretrainConfig(processes=0, device="cuda").training_threads(cpus=16) is None
    assert PretrainConfig(processes=15, device="cpu").training_threads(cpus=16) is None
    assert PretrainConfig(threads=2, device="cpu").training_threads(cpus=16) == 2
    before = torch.get_num_threads()
    _, report = pretrain(PretrainConfig(**{**SMALL, "threads": 1}))
    assert report["threads"] == 1
    assert torch.get_num_threads() == before
