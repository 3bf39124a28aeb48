"""The search loop's Python client against the real app (PostgreSQL, Redis, a trained model)."""
from __future__ import annotations

from tests.conftest import train_rows

from .conftest import needs_redis

pytestmark = needs_redis


def test_fitnesses_follow_the_evolution_convention(api):
    from app.client import FAILED_FITNESS, SurrogateClient

    client = SurrogateClient(api_key=api["keys"]["predict"], http=api["client"], batch_size=7)
    genomes = [r["genome"] for r in train_rows()[:20]] + ["Broken(", ""]
    items = client.predict(genomes)
    assert [i["index"] for i in items] == list(range(len(genomes)))   # chunks of 7, in order
    fits = client.fitnesses(genomes)
    assert len(fits) == len(genomes) and fits[-1] == fits[-2] == FAILED_FITNESS
    for item, fit in zip(items, fits):
        assert len(fit) == 3 and all(-300.0 <= v <= 300.0 for v in fit)
        if item["ok"] and item["p_fail"] >= 0.5:
            assert fit == FAILED_FITNESS
        elif item["ok"]:
            assert fit[1] == min(300.0, item["predictions"]["ciou_loss"])


def test_train_is_idempotent_and_errors_carry_codes(api):
    import pytest

    from app.client import SurrogateClient, SurrogateError

    client = SurrogateClient(api_key=api["keys"]["train"], http=api["client"])
    first = client.train(api["dataset_id"], "trees", idempotency_key="loop-gen-7")
    again = client.train(api["dataset_id"], "trees", idempotency_key="loop-gen-7")
    assert first["id"] == again["id"] and client.job(first["id"])["status"] == "queued"
    with pytest.raises(SurrogateError) as err:
        client.train("no-such-dataset")
    assert err.value.status == 404 and err.value.code == "DATASET_NOT_FOUND"
