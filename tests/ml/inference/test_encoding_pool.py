"""The encoder processes: what a worker returns is what the API process computes (hash, error,
feature row, and so the /predict items), a worker that dies loses no genome and only a genome
that kills a worker again fails, and a request's deadline holds while workers encode."""
from __future__ import annotations

import os

import numpy as np
import pytest

from app.scoring import LoadedModel, RequestBudget, Scorer
from ml.inference.pool import EncodingPool, encode_rows, supports
from ml.models.trees import TreePredictor
from service.config import Settings
from service.errors import ServiceError
from tests.conftest import train_rows

KEY = TreePredictor.feature_key
GENOMES = [r["genome"] for r in train_rows()]
BAD = ["Broken(", "RetinaNet_Head(" * 3, "NoSuch(IN0, 1)", "x" * 30, ""]
CRASH = "CRASH_THE_WORKER"


def crashing_task(texts, feature_key):
    """encode_rows, except that a batch holding the marker kills its worker process."""
    if CRASH in texts:
        os._exit(3)
    return encode_rows(texts, feature_key)


@pytest.fixture(scope="module")
def pool():
    pool = EncodingPool(2, 20_000, warm=False, task=crashing_task)
    assert pool.wait_ready(300), "the encoder processes did not start"
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def trees_model():
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.records import load_csv
    from ml.train import fit_predictor
    from tests.conftest import TRAIN_CSV
    records, _ = load_csv(TRAIN_CSV, DEFAULT_METRICS)
    model, _ = fit_predictor(records, "auto", {"ensemble": 2})
    return LoadedModel("default", 1, "trees", "graph-v2", model)


def test_workers_answer_as_the_api_process(pool):
    from ml.encoding.encoder import GenomeEncoder
    from ml.features.vectors import tabular_features
    from ml.genome import canonical_hash, load

    texts = GENOMES[:60] + BAD + GENOMES[60:70]
    got = pool.encode(texts, KEY, task_size=8)
    assert len(got) == len(texts) and len(pool.pids()) == 2
    encoder = GenomeEncoder()
    for text, outcome in zip(texts, got):
        if text in BAD:
            assert outcome.row is None and outcome.canonical_hash is None
            with pytest.raises(Exception) as raised:
                encoder.encode(text)
            assert outcome.error == raised.value.to_dict()
            continue
        assert outcome.error is None
        assert outcome.canonical_hash == canonical_hash(load(text))
        record = encoder.encode(text).to_data("combined")
        assert outcome.num_nodes == int(record.num_nodes)
        assert np.array_equal(outcome.row, tabular_features([record])[0])
    assert supports(KEY) and not supports("no-such-features") and not supports(None)


def _respelled(text: str) -> str:
    """``text`` with its first number literal ``v`` written ``add(v, 0)``: another string, the
    same evaluated genome (so the same canonical hash and feature row)."""
    from ml.genome import parse
    from ml.genome.tree import Call, Literal

    stack = [parse(text)]
    while stack:
        node = stack.pop()
        if isinstance(node, Call):
            stack.extend(reversed(node.args))
        elif isinstance(node, Literal) and not isinstance(node.value, bool):
            spelled = repr(node.value)
            return text[:node.offset] + f"add({spelled}, 0)" + text[node.offset + len(spelled):]
    raise AssertionError("no number literal")


def test_a_new_spelling_of_an_encoded_genome_reuses_its_row(pool, monkeypatch):
    """A worker remembers the rows it computed by canonical hash: a respelled genome (later in
    the same task, or in a later task) gets the row its first spelling got, which is the row
    the API process computes for it, without being compiled again."""
    from ml.encoding.encoder import GenomeEncoder
    from ml.features.vectors import tabular_features
    from ml.genome import canonical_hash, load
    from ml.inference import pool as encoding_pool

    originals = GENOMES[100:106]
    twins = [_respelled(t) for t in originals]
    assert all(a != b for a, b in zip(originals, twins))
    encoder = GenomeEncoder()
    expected = [tabular_features([encoder.encode(t).to_data("combined")])[0] for t in twins]
    # In this process: the memo's hits are countable here.
    monkeypatch.setattr(encoding_pool, "_ENCODER", encoder)
    monkeypatch.setattr(encoding_pool, "_ROWS", encoding_pool.Memo(64))
    first = encode_rows(originals[:3] + twins[:3], KEY)  # twins in the same task
    assert encoding_pool._ROWS.hits == 0 and len(encoding_pool._ROWS) == 3
    later = encode_rows(twins[3:] + originals[3:], KEY)  # the original after its twin
    assert encoding_pool._ROWS.hits == 0 and len(encoding_pool._ROWS) == 6
    again = encode_rows(twins[:3] + originals[3:], KEY)  # a later task
    assert encoding_pool._ROWS.hits == 6
    for outcome, text, row in zip(first[3:] + later + again, twins[:3] + twins[3:] + originals[3:]
                                  + twins[:3] + originals[3:], expected + expected[3:] + expected):
        assert outcome.canonical_hash == canonical_hash(load(text)) and outcome.error is None
        assert np.array_equal(outcome.row, row)
        assert outcome.num_nodes == int(encoder.encode(text).to_data("combined").num_nodes)
    # Through the worker processes, in tasks of 4 (twins in one task and across tasks).
    got = pool.encode(originals + twins + twins, KEY, task_size=4)
    for outcome, row in zip(got[6:], expected + expected):
        assert np.array_equal(outcome.row, row)


def test_a_dying_worker_loses_no_genome(pool):
    texts = GENOMES[:40] + [CRASH] + GENOMES[40:80]
    before = pool.restarts
    got = pool.encode(texts, KEY, task_size=8)
    assert len(got) == len(texts)
    crashed = got[40]
    assert crashed.error["code"] == "INTERNAL_ERROR" and "died" in crashed.error["message"]
    assert all(o.error is None and o.row is not None for i, o in enumerate(got) if i != 40)
    # restarts: the batch broke, its broken tasks broke again, the culprit alone broke a third
    assert pool.restarts == before + 3
    again = pool.encode(GENOMES[:20], KEY)     # the pool serves on
    assert [o.canonical_hash for o in again] == [o.canonical_hash for o in got[:20]]


def test_killed_worker_mid_batch(pool):
    """A worker killed from outside (the OOM killer) while it works: every genome answered."""
    import signal
    import threading

    victim = pool.pids()[0]
    threading.Timer(0.3, os.kill, (victim, signal.SIGKILL)).start()
    texts = GENOMES * 2
    got = pool.encode(texts, KEY, task_size=4)
    assert len(got) == len(texts) and all(o.error is None for o in got)
    assert victim not in pool.pids()


def test_scorer_with_the_pool_answers_as_without(pool, trees_model):
    batch = GENOMES[:150] + BAD + GENOMES[:10]     # duplicates within the batch too
    plain = Scorer(Settings(database_url="sqlite://", warm_up=False, encoder_processes=0))
    pooled = Scorer(Settings(database_url="sqlite://", warm_up=False, encoder_processes=2,
                             encoder_pool_min_misses=16))
    pooled.pool = pool
    reference = plain.score(batch, trees_model)
    first = pooled.score(batch, trees_model)
    assert {**first, "cache_hits": None} == {**reference, "cache_hits": None}
    # a repeat within the batch finds its first occurrence's row (in process it is encoded
    # again: rows are cached when their chunk is predicted)
    assert first["cache_hits"] == 10 and reference["cache_hits"] == 0
    assert pool.encoded >= 150 + len(BAD)
    encoded = pool.encoded
    second = pooled.score(batch, trees_model)      # all cached now: no worker is asked
    assert second["items"] == reference["items"] and second["cache_hits"] == len(batch)
    assert pool.encoded == encoded
    # Few misses are encoded in process (no round trip).
    small = pooled.score(GENOMES[150:160], trees_model)
    assert pool.encoded == encoded and small == plain.score(GENOMES[150:160], trees_model)


def test_chunks_are_predicted_while_workers_encode(pool, trees_model):
    """Results arrive in order, and each full chunk is predicted then, while the workers
    encode the rest; the answer is the in-process one."""
    batch = GENOMES[:150] + BAD + GENOMES[:10]
    settings = {"database_url": "sqlite://", "warm_up": False, "predict_chunk": 32}
    plain = Scorer(Settings(**settings, encoder_processes=0))
    pooled = Scorer(Settings(**settings, encoder_processes=2, encoder_pool_min_misses=16))
    pooled.pool = pool
    kept, seen_at_predict = [], []
    keep_pooled, predict = pooled.cache.keep_pooled, pooled.engine._predict

    def counting_keep(*args):
        kept.append(1)
        return keep_pooled(*args)

    def noting_predict(*args):
        seen_at_predict.append(len(kept))
        return predict(*args)

    pooled.cache.keep_pooled, pooled.engine._predict = counting_keep, noting_predict
    reference = plain.score(batch, trees_model)
    assert {**pooled.score(batch, trees_model), "cache_hits": None} == {
        **reference, "cache_hits": None}
    misses = len(set(GENOMES[:150] + BAD))
    assert len(kept) == misses and len(seen_at_predict) >= 5
    assert seen_at_predict[0] < misses / 2   # the first chunk did not wait for the batch


def test_deadline_holds_while_workers_encode(pool, trees_model):
    scorer = Scorer(Settings(database_url="sqlite://", warm_up=False, encoder_processes=2,
                             encoder_pool_min_misses=16))
    scorer.pool = pool
    import time

    pool.encode(GENOMES, KEY)   # workers replaced by the tests before build their backbones
    # 7,616 new spellings (several seconds of two workers' time) under a 2 s deadline
    texts = [g + " " * k for k in range(1, 33) for g in GENOMES]
    started = time.monotonic()
    with pytest.raises(ServiceError) as raised:
        scorer.evaluate(texts, trees_model.model, RequestBudget(0, 2.0))
    assert raised.value.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 4.0      # the answer did not wait for the batch
    # what the workers finished before the deadline is cached: the retry starts from there
    retry = scorer.evaluate(texts[:400], trees_model.model, RequestBudget(0, 0))
    assert retry.hits > 0


def test_a_pool_still_starting_is_not_waited_for(trees_model):
    slow = EncodingPool(1, 20_000, warm=True)
    scorer = Scorer(Settings(database_url="sqlite://", warm_up=False, encoder_processes=1,
                             encoder_pool_min_misses=8))
    scorer.pool = slow
    try:
        out = scorer.score(GENOMES[:30], trees_model)   # starts the pool, encodes in process
        assert all(i["ok"] for i in out["items"]) and slow.encoded == 0
    finally:
        slow.close(wait=False)
