"""Scopes and ownership hold everywhere, the dashboard included (issue 28, items 4 and 11),
against the real PostgreSQL: a dataset names only the jobs its reader may see, the inspector
reads a dataset's rows only for the scope the dataset pages need, and a matrix generated from the
app's route table (every route x every scope x another key's objects) with an explicit
expectation per route, which fails when a route is missing from the table."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import train_rows

from .conftest import headers

pytestmark = pytest.mark.usefixtures("db")


def new_key(scopes: list[str]) -> tuple[str, str]:
    """A key's plaintext and its principal (``key:<id>``)."""
    from service.db import session_scope
    from service.store.keys import create_key

    with session_scope() as session:
        row, plaintext = create_key(session, "scopes " + "+".join(scopes), scopes)
        return plaintext, f"key:{row.id}"


def foreign_dataset(api: dict[str, Any], owner: str) -> dict[str, str]:
    """A dataset version built by ``owner``'s job, with a retraining ``owner`` queued."""
    from service.db import session_scope
    from service.store import datasets as dataset_store
    from service.store import jobs as job_store

    dataset_id = str(uuid.uuid4())
    with session_scope() as session:
        source = dataset_store.get_dataset(session, api["dataset_id"])
        build, _ = job_store.create_job(session, kind="build_dataset",
                                        params={"dataset_id": dataset_id, "secret": "p-1"},
                                        principal=owner, request_sha256="x")
        dataset_store.create_dataset(session, dataset_id=dataset_id, name="theirs",
                                     source_path=source.source_path, path=source.path,
                                     metrics=list(source.metrics))
        dataset_store.attach_job(session, dataset_id, build.id)
        retrain, _ = job_store.create_job(session, kind="train",
                                          params={"dataset_id": dataset_id},
                                          principal=owner, request_sha256="y")
        dataset_store.set_retrain_job(session, dataset_id, retrain.id)
        return {"dataset_id": dataset_id, "build": build.id, "retrain": retrain.id}


def test_a_dataset_shows_its_jobs_only_to_whom_get_jobs_shows_them(api):
    c, keys = api["client"], api["keys"]
    owner_key, owner = new_key(["train"])
    theirs = foreign_dataset(api, owner)
    for key, sees in ((keys["train"], False), (owner_key, True), (keys["admin"], True)):
        one = c.get(f"/datasets/{theirs['dataset_id']}", headers=headers(key))
        listed = [d for d in c.get("/datasets", headers=headers(key)).json()["data"]
                  if d["id"] == theirs["dataset_id"]]
        job = c.get(f"/jobs/{theirs['build']}", headers=headers(key))
        assert one.status_code == 200 and job.status_code == (200 if sees else 404)
        for body in (one.json(), listed[0]):
            assert (body["job"] is not None) == sees
            assert body["retrain_job_id"] == (theirs["retrain"] if sees else None)
            if not sees:
                assert theirs["build"] not in str(body) and "p-1" not in str(body)
                assert theirs["retrain"] not in str(body)
    # The dashboard's dataset pages apply the same rule.
    from .test_ui import signed_in
    client = signed_in(api, "train")
    page = client.get(f"/ui/datasets/{theirs['dataset_id']}")
    assert page.status_code == 200 and theirs["build"] not in page.text
    assert theirs["retrain"] not in page.text
    assert theirs["build"] not in client.get("/ui/datasets").text
    assert theirs["build"] not in client.get("/ui/").text
    client = signed_in(api, "admin")
    assert theirs["build"] in client.get(f"/ui/datasets/{theirs['dataset_id']}").text


def test_the_inspector_reads_dataset_rows_only_with_the_train_scope(api):
    from .test_ui import signed_in
    genome = train_rows()[0]["genome"]
    route = f"/ui/inspect?dataset={api['dataset_id']}&row=0"
    client = signed_in(api, "predict")
    r = client.get(route)
    assert r.status_code == 403 and genome not in r.text
    assert client.get(f"/ui/inspect?dataset={api['dataset_id']}").status_code == 403
    assert client.get("/ui/inspect").status_code == 200       # the inspector itself stays
    # GET /models names the dataset; nothing a predict key can reach reads its rows.
    dataset_id = client.get("/models", headers=headers(api["keys"]["predict"])).json()[
        "data"][0]["lineage"]["dataset_id"]
    assert dataset_id == api["dataset_id"]
    assert client.get(f"/datasets/{dataset_id}",
                      headers=headers(api["keys"]["predict"])).status_code == 403
    client = signed_in(api, "admin")
    r = client.get(route)
    assert r.status_code == 200 and genome[:200] in r.text.replace("&#39;", "'")


# -- the route matrix ----------------------------------------------------------------------

#: Scopes in the matrix: no credential, then a key of each scope (none of them the owner of the
#: objects the requests name: those belong to another train key).
SCOPES = ("none", "predict", "train", "admin")
#: What each route answers per scope, requests naming another key's objects. The body, form or
#: query is the one each request sends: past authorisation it is refused as invalid (422) where
#: a valid one would start work, so the matrix starts no job and scores nothing. API: 401
#: without a key, 403 without the scope; dashboard: 303 to the sign-in page without a cookie,
#: 403 without the scope; another key's job is 404 (as for no job) to everyone but an admin.
EXPECT: dict[str, dict[str, Any]] = {
    # public: the API description, probes, the dashboard's sign-in and static files
    "GET /openapi.json": {"status": (200, 200, 200, 200)},
    "GET /docs": {"status": (200, 200, 200, 200)},
    "GET /docs/oauth2-redirect": {"status": (200, 200, 200, 200)},
    "GET /redoc": {"status": (200, 200, 200, 200)},
    "GET /docs-static/{path}": {"status": (200, 200, 200, 200), "path": "swagger-ui.css"},
    "GET /healthz": {"status": (200, 200, 200, 200)},
    "GET /readyz": {"status": (200, 200, 200, 200)},
    "GET /metrics": {"status": (200, 200, 200, 200)},
    "GET /ui/login": {"status": (200, 200, 200, 200)},
    "POST /ui/login": {"status": (400, 400, 400, 400), "form": {"api_key": "x", "csrf": "x"}},
    "GET /ui/static/{path}": {"status": (200, 200, 200, 200), "path": "ui.css"},
    "GET /ui": {"status": (307, 307, 307, 307)},
    # predict
    "POST /predict": {"status": (401, 422, 403, 422), "json": {}},
    "POST /genomes/encode": {"status": (401, 422, 403, 422), "json": {}},
    "POST /propose": {"status": (401, 422, 403, 422), "json": {}},
    "GET /models": {"status": (401, 200, 403, 200)},
    "GET /models/{version}": {"status": (401, 200, 403, 200)},
    "GET /models/{version}/plots/{plot}": {"status": (401, 404, 403, 404)},
    # train
    "POST /jobs/train": {"status": (401, 403, 422, 422), "json": {}},
    "POST /jobs/pretrain": {"status": (401, 403, 422, 422), "json": {"genomes": -1}},
    "POST /datasets": {"status": (401, 403, 422, 422), "form": {"name": "x"}},
    "GET /datasets": {"status": (401, 403, 200, 200)},
    "GET /datasets/{dataset_id}": {"status": (401, 403, 200, 200)},
    "POST /evaluations": {"status": (401, 403, 422, 422), "json": {}},
    # jobs: a key's own (train, or predict for its proposals); an admin's all
    "GET /jobs": {"status": (401, 200, 200, 200)},
    "GET /jobs/{job_id}": {"status": (401, 404, 404, 200)},
    "GET /jobs/{job_id}/events": {"status": (401, 404, 404, 200)},
    "POST /jobs/{job_id}/cancel": {"status": (401, 404, 404, 200)},
    # admin
    "POST /models/{version}/activate": {"status": (401, 403, 403, 200)},
    "GET /keys": {"status": (401, 403, 403, 200)},
    "POST /keys": {"status": (401, 403, 403, 422), "json": {}},
    "POST /keys/{key_id}/revoke": {"status": (401, 403, 403, 200)},
    # the dashboard
    "POST /ui/logout": {"status": (303, 303, 303, 303), "csrf": True},
    "GET /ui/": {"status": (303, 200, 200, 200)},
    "GET /ui/jobs": {"status": (303, 200, 200, 200)},
    "GET /ui/jobs/{job_id}": {"status": (303, 404, 404, 200)},
    # the job page's poller is told it is signed out (401), not redirected
    "GET /ui/jobs/{job_id}/live": {"status": (401, 404, 404, 200)},
    "POST /ui/jobs/{job_id}/cancel": {"status": (303, 404, 404, 303), "csrf": True},
    "GET /ui/models": {"status": (303, 200, 403, 200)},
    "GET /ui/models/compare": {"status": (303, 200, 403, 200), "query": "a=1&b=1"},
    "GET /ui/models/{version}": {"status": (303, 200, 403, 200)},
    "GET /ui/models/{version}/plots/{plot}": {"status": (303, 404, 403, 404)},
    "POST /ui/models/{version}/activate": {"status": (303, 403, 403, 303), "csrf": True},
    "POST /ui/models/{version}/approve": {"status": (303, 403, 403, 409), "csrf": True},
    "GET /ui/datasets": {"status": (303, 403, 200, 200)},
    "GET /ui/datasets/{dataset_id}": {"status": (303, 403, 200, 200)},
    # a dataset's row needs the dataset pages' scope (train) on top of the inspector's
    "GET /ui/inspect": {"status": (303, 403, 403, 200), "query": "dataset={dataset_id}&row=0"},
    "POST /ui/inspect": {"status": (303, 422, 403, 422), "csrf": True,
                         "form": {"genomes": ""}},
}


def route_table(app: Any) -> set[str]:
    """Every ``METHOD /path`` the app serves (HEAD aside), included routers flattened: what
    the matrix must cover."""
    def flat(routes: Any) -> Any:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):   # FastAPI's included routers
                yield from flat(route.effective_route_contexts())
            elif hasattr(route, "routes") and not hasattr(route, "path_format"):
                yield from flat(route.routes)
            else:
                yield route
    out = set()
    for route in flat(app.routes):
        path = getattr(route, "path_format", None) or route.path
        methods = getattr(route, "methods", None) or {"GET"}   # a Mount serves GET
        out |= {f"{m} {path}" for m in methods if m != "HEAD"}
    return out


def test_the_matrix_covers_every_route(api):
    served = route_table(api["app"])
    assert served - set(EXPECT) == set(), "routes without an expectation in EXPECT"
    assert set(EXPECT) - served == set(), "expectations for routes the app does not serve"


def test_every_route_every_scope_on_another_keys_objects(api):
    """Each route of the table, as each scope, naming objects of another train key: the status
    of the table, and nothing the scope may not read in any answer: no training genome to a
    key without ``train``, none of the other key's job ids or parameters to a non-admin."""
    from app.ui.session import KEY_COOKIE, csrf_for_key

    c = api["client"]
    _owner_key, owner = new_key(["train"])
    marker = f"marker-{uuid.uuid4()}"
    theirs = foreign_dataset(api, owner)
    genomes = [r["genome"] for r in train_rows()[:3]]

    def job_of_owner() -> str:
        from service.db import session_scope
        from service.store import jobs as job_store
        with session_scope() as session:
            job, _ = job_store.create_job(session, kind="train", principal=owner,
                                          params={"dataset_id": theirs["dataset_id"],
                                                  "note": marker}, request_sha256="m")
            return job.id

    def throwaway_key_id() -> str:
        return new_key(["predict"])[1].split(":")[1]

    fill = {"job_id": job_of_owner, "dataset_id": lambda: theirs["dataset_id"],
            "version": lambda: "1", "plot": lambda: "none.png", "key_id": throwaway_key_id}
    keys = {"none": None, **{s: api["keys"][s] for s in ("predict", "train", "admin")}}
    failures, requests = [], 0
    for route, spec in sorted(EXPECT.items()):
        method, path = route.split(" ", 1)
        for scope, expected in zip(SCOPES, spec["status"]):
            url = path.replace("{path}", spec.get("path", ""))
            for name, make in fill.items():
                if "{" + name + "}" in url:
                    url = url.replace("{" + name + "}", make())
            if "query" in spec:
                url += "?" + spec["query"].format(**theirs)
            key = keys[scope]
            c.cookies.clear()
            sent: dict[str, Any] = {"follow_redirects": False}
            if url.startswith("/ui") and key is not None:
                sent["headers"] = {"Cookie": f"{KEY_COOKIE}={key}"}
            elif key is not None:
                sent["headers"] = {"X-API-Key": key}
            form = dict(spec.get("form") or {})
            if spec.get("csrf"):
                form["csrf"] = csrf_for_key(key) if key else "none"
            if form:
                sent["data"] = form
            if "json" in spec:
                sent["json"] = spec["json"]
            r = c.request(method, url, **sent)
            requests += 1
            if r.status_code != expected:
                failures.append(f"{route} as {scope}: {r.status_code}, expected {expected}")
            if scope in ("none", "predict") and any(g in r.text for g in genomes):
                failures.append(f"{route} as {scope}: a training genome in the answer")
            if scope != "admin" and (marker in r.text or theirs["retrain"] in r.text
                                     or theirs["build"] in r.text):
                failures.append(f"{route} as {scope}: another key's job in the answer")
    c.cookies.clear()
    assert not failures, "\n".join(failures)
    assert requests == 4 * len(EXPECT)
