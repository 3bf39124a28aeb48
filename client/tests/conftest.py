"""The client's tests run against a served instance: ``SURROGATE_URL`` and ``SURROGATE_KEY``
(an admin or predict+train key), and ``NAS_SURROGATE_DATA_DIR`` (the real CSV's folder).
Without them the service tests skip; tests/service/test_client_package.py sets them."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

URL = os.environ.get("SURROGATE_URL", "")
KEY = os.environ.get("SURROGATE_KEY", "")
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", "../shared/data"))

needs_service = pytest.mark.skipif(not URL, reason="SURROGATE_URL is not set (no served "
                                   "instance to test against)")


def real_rows() -> list[dict[str, str]]:
    """The real CSV's rows (one evaluated individual each, its kept epoch)."""
    with open(DATA / "surrogate_evolution_train.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def rows() -> list[dict[str, str]]:
    return real_rows()


@pytest.fixture(scope="session")
def client():
    from nas_surrogate_client import SurrogateClient

    c = SurrogateClient(URL, api_key=KEY)
    yield c
    c.close()
