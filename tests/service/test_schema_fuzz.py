"""Schema fuzz (service-notes §3): Schemathesis generates requests from the app's own OpenAPI
schema and sends them in-process (ASGI) with an admin key, against the real PostgreSQL, the
Redis test database and a trained active model.

Checks (Schemathesis' defaults): no 5xx, every response matches its declared schema and
content type, only declared status codes, invalid data is rejected (validation is not
bypassed), undeclared methods get 405 with ``Allow``. Left out: ``positive_data_acceptance``
(a schema-valid request must not get 4xx): the API answers 422 by design for semantic errors
the schema cannot express (an unknown predictor name, a forged ``page_token``, a dataset id
that is not a CSV), all declared as 422 with the error envelope. ``POST /jobs/train`` and
``POST /datasets`` publish to the Redis test database; nothing consumes there.

Bounded: ``FUZZ_EXAMPLES`` examples per operation (env ``SURROGATE_FUZZ_EXAMPLES``), no
deadline, no example database.
"""
from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from .conftest import needs_redis

pytestmark = needs_redis

FUZZ_EXAMPLES = int(os.environ.get("SURROGATE_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzz_schema(api_module: dict[str, Any]) -> Any:
    # A proposal past a few hundred candidates is queued (published to the Redis test
    # database) instead of searched in the request, so no example runs for minutes.
    settings = api_module["app"].state.settings
    saved = settings.propose_sync_max_candidates
    settings.propose_sync_max_candidates = 300
    yield schemathesis.openapi.from_asgi("/openapi.json", api_module["app"])
    settings.propose_sync_max_candidates = saved


@pytest.fixture(scope="module")
def admin_headers(api_module: dict[str, Any]) -> dict[str, str]:
    return {"X-API-Key": api_module["keys"]["admin"]}


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@schema.parametrize()
def test_openapi_contract(case: Any, admin_headers: dict[str, str]) -> None:
    case.call_and_validate(headers=admin_headers,
                           excluded_checks=[checks.positive_data_acceptance])


def test_schema_covers_every_route(fuzz_schema: Any) -> None:
    """The fuzz above reaches every public operation (a route dropped from the schema would
    silently escape it)."""
    labels = {op.ok().label for op in fuzz_schema.get_all_operations()}
    assert {"POST /predict", "POST /propose", "POST /genomes/encode", "POST /jobs/train",
            "GET /jobs",
            "GET /jobs/{job_id}", "GET /jobs/{job_id}/events", "POST /jobs/{job_id}/cancel",
            "POST /datasets", "GET /datasets", "GET /datasets/{dataset_id}", "GET /models",
            "GET /models/{version}", "POST /models/{version}/activate", "GET /healthz",
            "GET /readyz"} <= labels
