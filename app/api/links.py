"""OpenAPI links: which answer's field is which later request's parameter (``POST /keys`` →
``POST /keys/{key_id}/revoke`` with the new key's ``id``, ``POST /evaluations`` →
``GET /datasets/{dataset_id}``, ...).

They document how the resources chain (Swagger UI and ReDoc show them) and they are what the
stateful schema fuzz (tests/service/test_schema_fuzz.py) follows to reach objects that exist,
instead of ids it made up. Kept in one table, added to the generated schema once, so a route's
module stays about its route."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

Link = dict[str, Any]


def _link(operation_id: str, body: dict[str, str] | None = None, **parameters: str) -> Link:
    """An OpenAPI link object to ``operation_id``: its parameters and, where given, fields of
    its JSON body, each a runtime expression on this answer."""
    link: Link = {"operationId": operation_id, "parameters": parameters}
    if body is not None:
        link["requestBody"] = body
    return link


#: (method, path, status) → {link name: link}. Expressions are standard JSON pointers into the
#: answer's body (``/data/0/id``: the first item of a page).
LINKS: dict[tuple[str, str, str], dict[str, Link]] = {
    ("post", "/keys", "201"): {
        "RevokeTheNewKey": _link("keys-revoke_key", key_id="$response.body#/id")},
    ("get", "/keys", "200"): {
        "RevokeAListedKey": _link("keys-revoke_key", key_id="$response.body#/data/0/id")},
    ("post", "/jobs/train", "202"): {
        "GetTheJob": _link("jobs-get_job", job_id="$response.body#/id"),
        "GetItsEvents": _link("jobs-job_events", job_id="$response.body#/id"),
        "CancelTheJob": _link("jobs-cancel_job", job_id="$response.body#/id")},
    ("post", "/datasets", "202"): {
        "GetTheDataset": _link("datasets-get_dataset", dataset_id="$response.body#/id"),
        "GetItsBuildJob": _link("jobs-get_job", job_id="$response.body#/job/id")},
    ("post", "/evaluations", "202"): {
        "GetTheNewVersion": _link("datasets-get_dataset",
                                  dataset_id="$response.body#/dataset_id"),
        "GetTheParent": _link("datasets-get_dataset", dataset_id="$response.body#/parent_id"),
        "GetItsBuildJob": _link("jobs-get_job", job_id="$response.body#/job/id"),
        "CancelItsBuildJob": _link("jobs-cancel_job", job_id="$response.body#/job/id")},
    ("get", "/datasets/{dataset_id}", "200"): {
        "GetItsBuildJob": _link("jobs-get_job", job_id="$response.body#/job/id"),
        "TrainOnIt": _link("jobs-submit_train", body={"dataset_id": "$response.body#/id"}),
        "AppendToIt": _link("datasets-add_evaluations",
                            body={"dataset_id": "$response.body#/id"})},
    ("get", "/models", "200"): {
        "GetAListedVersion": _link("models-get_model",
                                   version="$response.body#/data/0/version")},
    ("get", "/models/{version}", "200"): {
        "ActivateTheVersion": _link("models-activate_model", version="$response.body#/version"),
        "GetAPlot": _link("models-get_model_plot", version="$response.body#/version",
                          plot="$response.body#/report_plots/0"),
        "GetItsDataset": _link("datasets-get_dataset",
                               dataset_id="$response.body#/lineage/dataset_id"),
        "RetrainOnItsDataset": _link("jobs-submit_train",
                                     body={"dataset_id": "$response.body#/lineage/dataset_id"}),
        "AppendToItsDataset": _link("datasets-add_evaluations",
                                    body={"dataset_id": "$response.body#/lineage/dataset_id"})},
}


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Add :data:`LINKS` to the responses of a generated OpenAPI schema (in place; a route
    that is absent, e.g. with the dashboard or docs off, is skipped)."""
    paths = schema.get("paths", {})
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        response.setdefault("links", {}).update(copy.deepcopy(links))
    return schema


def install(app: FastAPI) -> None:
    """Serve the schema with its links (FastAPI builds it once, on the first request)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            return add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
