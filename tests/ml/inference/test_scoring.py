"""The API's scorer without HTTP: the byte-bounded caches, and cached paths giving exactly the
predictions of the uncached model."""
from __future__ import annotations

import numpy as np
import pytest

from app.scoring import LoadedModel, Scorer
from ml.inference.caches import ByteLRU
from service.config import Settings
from tests.conftest import train_rows

GENOMES = [r["genome"] for r in train_rows()]


def test_lru_is_bounded_in_bytes():
    lru = ByteLRU(100, lambda _k, v: len(v))
    for i in range(10):
        lru.put(i, "x" * 30)
    assert lru.bytes <= 100 and len(lru) == 3 and lru.get(9) and lru.get(0) is None
    lru.put(9, "y" * 10)                        # replacing frees the old entry's bytes
    assert lru.bytes == 70 and lru.get(9) == "y" * 10
    lru.put("big", "z" * 500)                   # larger than the whole cache: not kept
    assert "big" not in lru and lru.bytes == 70
    keyed = ByteLRU(100, lambda k, _v: len(k))  # a text's size is its key's
    keyed.put("a" * 60, 1)
    keyed.put("b" * 60, 2)
    assert len(keyed) == 1 and keyed.get("b" * 60) == 2


@pytest.fixture(scope="module")
def trees_model():
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.records import load_csv
    from ml.train import fit_predictor
    from tests.conftest import TRAIN_CSV
    records, _ = load_csv(TRAIN_CSV, DEFAULT_METRICS)
    model, _ = fit_predictor(records, "auto", {"ensemble": 2})
    return LoadedModel("default", 1, "trees", "graph-v2", model)


@pytest.mark.parametrize("budget_mb", [1, 512])
def test_cached_scores_equal_uncached_predictions(trees_model, budget_mb):
    settings = Settings(database_url="sqlite://", warm_up=False, encoding_cache_mb=budget_mb,
                        feature_cache_mb=budget_mb, text_cache_mb=budget_mb)
    scorer = Scorer(settings)
    batch = GENOMES[:120] + ["Broken("] + GENOMES[:10]       # duplicates within the batch too
    first = scorer.score(batch, trees_model)
    second = scorer.score(batch, trees_model)
    assert first["items"] == second["items"] and first["ranking"] == second["ranking"]
    # A row-based predictor needs no graph past its chunk: records are not cached at all.
    assert len(scorer.cache.by_hash) == 0
    if budget_mb == 512:
        assert second["cache_hits"] == len(batch)
        assert len(scorer.cache.rows) >= 100
    else:                                                     # 1 MB: ~110 rows fit
        assert scorer.cache.rows.bytes <= 2 ** 20 + 20_000 and len(scorer.cache.rows) < 120
    from ml.encoding.encoder import GenomeEncoder
    encoder = GenomeEncoder()
    records = [encoder.encode(g).to_data("combined") for g in GENOMES[:120]]
    direct = trees_model.model.predict(records)
    got = np.array([[i["predictions"][m] for m in trees_model.model.metrics]
                    for i in first["items"][:120]])
    assert np.array_equal(got, direct.mean)
    assert [i["p_fail"] for i in first["items"][:120]] == direct.p_fail.tolist()


def test_the_predict_answer_is_the_response_models_serialisation(trees_model):
    """/predict writes its answer without pydantic validating each item: it must be byte for
    byte what PredictResponse would have written (fields, order, errors, nulls)."""
    from app.schemas import PredictResponse
    from app.scoring import predict_json

    scorer = Scorer(Settings(database_url="sqlite://", warm_up=False, encoder_processes=0))
    result = scorer.score(GENOMES[:40] + ["Broken(", ""] + GENOMES[:5], trees_model)
    assert any(not item["ok"] for item in result["items"])
    assert predict_json(result) == PredictResponse.model_validate(result).model_dump_json().encode()


def test_batch_items_equal_the_item_by_item_shape():
    from ml.inference.items import batch_items, error_item, ok_item

    metrics = ["a", "b"]
    mean = np.array([[1.0, np.nan], [np.inf, 2.0], [np.nan, np.nan]])
    std = np.array([[0.1, 0.2], [0.3, np.nan], [np.nan, np.nan]])
    p_fail = np.array([0.1, 0.2, np.nan])
    interval = np.arange(12, dtype=float).reshape(3, 2, 2)
    interval[0, 1, 0] = np.nan
    errors = [None, None, {"code": "SYNTAX_ERROR", "offset": 0, "message": "m"}]
    assert batch_items(["h0", "h1", None], errors, metrics, mean, std, p_fail, interval) == [
        ok_item(0, "h0", metrics, mean[0], std[0], p_fail[0], interval[0]),
        ok_item(1, "h1", metrics, mean[1], std[1], p_fail[1], interval[1]),
        error_item(2, errors[2])]
    assert batch_items(["h0"], [None], metrics, mean[:1], None, p_fail[:1]) == [
        ok_item(0, "h0", metrics, mean[0], None, p_fail[0])]
