"""The dashboard (/ui) in process, against the real PostgreSQL: sign-in and its cookie, CSRF and
origin checks, what each scope sees and may click, every page rendering from the real stores,
and the genome inspector on real genomes. The browser tests (tests/ui) drive the same pages in
Chromium against ``nas-surrogate serve``."""
from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import train_rows

from .conftest import headers, make_key

pytestmark = pytest.mark.usefixtures("db")


def login(client: Any, key: str, next_path: str = "/ui/") -> Any:
    form = client.get("/ui/login")
    assert form.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/ui/login", data={"api_key": key, "csrf": token, "next": next_path},
                       follow_redirects=False)


def csrf_of(page: Any) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def signed_in(api: dict[str, Any], scope: str) -> Any:
    client = api["client"]
    client.cookies.clear()
    assert login(client, api["keys"][scope]).status_code == 303
    return client


def test_login_sets_a_strict_httponly_cookie_and_pages_need_it(api):
    client = api["client"]
    r = client.get("/ui/models", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fmodels"
    r = login(client, api["keys"]["admin"], "/ui/models")
    assert r.status_code == 303 and r.headers["location"] == "/ui/models"
    cookie = r.headers["set-cookie"]
    assert "nas_ui_key=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie \
        and "Path=/ui" in cookie
    page = client.get("/ui/models")
    assert page.status_code == 200 and "default" in page.text and "v1" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # Sign out needs the form's CSRF token; then the cookie is gone.
    assert client.post("/ui/logout", data={"csrf": "x"}).status_code == 403
    out = client.post("/ui/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert out.status_code == 303 and 'nas_ui_key=""' in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_login_refuses_bad_keys_forged_forms_and_foreign_redirects(api):
    client = api["client"]
    r = login(client, "nas_not-a-key")
    assert r.status_code == 401 and "unknown or revoked" in r.text and "nas_ui_key" not in \
        r.headers.get("set-cookie", "")
    # A login form posted without the form's own token (another site's form) is refused.
    client.cookies.clear()
    r = client.post("/ui/login", data={"api_key": api["keys"]["admin"], "csrf": "forged"},
                    follow_redirects=False)
    assert r.status_code == 400 and "nas_ui_key=" not in r.headers.get("set-cookie", "")
    r = client.post("/ui/login", data={"api_key": api["keys"]["admin"], "csrf": "x"},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    # After sign-in only a dashboard path is followed, never another site.
    for target in ("https://evil.example/", "//evil.example", "/docs", "/ui\\@evil"):
        r = login(client, api["keys"]["admin"], target)
        assert r.status_code == 303 and r.headers["location"] == "/ui/", target


def test_scopes_decide_what_is_shown_and_what_can_be_clicked(api):
    client = signed_in(api, "predict")
    overview = client.get("/ui/")
    assert overview.status_code == 200
    assert 'href="/ui/models"' in overview.text and 'href="/ui/inspect"' in overview.text
    assert 'href="/ui/datasets"' not in overview.text and "Dataset versions" not in overview.text
    assert client.get("/ui/datasets").status_code == 403
    model = client.get("/ui/models/1")
    assert model.status_code == 200 and "/activate" not in model.text
    # Even with its own valid CSRF token a predict key cannot activate.
    r = client.post("/ui/models/1/activate", data={"csrf": csrf_of(model)})
    assert r.status_code == 403

    client = signed_in(api, "train")
    overview = client.get("/ui/")
    assert 'href="/ui/datasets"' in overview.text and 'href="/ui/models"' not in overview.text
    assert client.get("/ui/models").status_code == 403
    assert client.get("/ui/inspect").status_code == 403
    assert client.get("/ui/datasets").status_code == 200


def test_admin_activates_through_the_api_path_with_csrf(api, built_dataset):
    from ml.datasets.reader import GraphDataset
    from ml.evaluation.champion import compare_recipes
    from service.db import session_scope
    from service.store import model_registry as registry

    # A real champion/challenger comparison (held-out generations of the 238 genomes) to show.
    records = GraphDataset(built_dataset).records()
    comparison = compare_recipes(records, GraphDataset(built_dataset).metrics,
                                 {"predictor": "trees"}, {"predictor": "trees"})
    with session_scope() as session:
        row = registry.get_version(session, "default", 1)
        registry.register_version(session, name="default", predictor=row.predictor,
                                  source_path=row.source_path,
                                  encoder_version=row.encoder_version, metrics=row.metrics,
                                  training_metrics={"cv": {"trust_spea2_top30": 0.5}},
                                  dataset_id=row.dataset_id, comparison=comparison)
    client = signed_in(api, "admin")
    page = client.get("/ui/models/2")
    assert page.status_code == 200 and "/ui/models/2/activate" in page.text
    assert "Champion / challenger" in page.text and "a tie: not measured better" in page.text
    assert "Not promoted" in page.text                        # a tie keeps the champion
    assert 'alt="trust on the held-out generation' in page.text  # the per-generation curve
    assert page.text.count("data:image/svg+xml;base64,") == 1
    assert client.post("/ui/models/2/activate", data={"csrf": "stale"}).status_code == 403
    r = client.post("/ui/models/2/activate?name=default", data={"csrf": csrf_of(page)},
                    follow_redirects=False)
    assert r.status_code == 303
    with session_scope() as session:
        assert registry.alias_version(session, "default") == 2
    listing = client.get("/ui/models")
    assert listing.status_code == 200 and ">active<" in listing.text
    compare = client.get("/ui/models/compare?a=1&b=2")
    assert compare.status_code == 200 and "trust_spea2_top30" in compare.text
    assert client.get("/ui/models/compare?a=1&b=99").status_code == 404


def test_jobs_datasets_and_their_pages_render_from_the_stores(api):
    client = signed_in(api, "admin")
    created = client.post("/jobs/train", json={"dataset_id": api["dataset_id"],
                                               "predictor": "trees"},
                          headers=headers(api["keys"]["admin"]))
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    jobs = client.get("/ui/jobs?status=queued&kind=train")
    assert jobs.status_code == 200 and job_id[:8] in jobs.text
    assert job_id[:8] not in client.get("/ui/jobs?status=succeeded").text
    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200 and f'data-poll="/ui/jobs/{job_id}/live"' in page.text
    live = client.get(f"/ui/jobs/{job_id}/live")
    assert live.status_code == 200 and "queued" in live.text and "data-final" not in live.text
    r = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf_of(page)},
                    follow_redirects=False)
    assert r.status_code == 303
    assert "data-final" in client.get(f"/ui/jobs/{job_id}/live").text  # cancelled: final
    # Another key's job is not found, as at the API.
    other = signed_in(api, "train")
    assert other.get(f"/ui/jobs/{job_id}").status_code == 404
    client = signed_in(api, "admin")
    datasets = client.get("/ui/datasets")
    assert datasets.status_code == 200 and api["dataset_id"][:8] in datasets.text
    dataset = client.get(f"/ui/datasets/{api['dataset_id']}")
    assert dataset.status_code == 200
    # One histogram per metric, from the real labels; and the source's genomes to inspect.
    assert dataset.text.count('src="data:image/svg+xml;base64,') == 5
    assert "ciou_loss: 207 evaluated genomes" in dataset.text
    assert f"/ui/inspect?dataset={api['dataset_id']}&amp;row=0" in dataset.text
    assert client.get("/ui/datasets/nope").status_code == 404


def test_inspector_points_at_the_error_and_predicts_the_valid_ones(api):
    client = signed_in(api, "predict")
    form = client.get("/ui/inspect")
    good = train_rows()[0]["genome"]
    broken = good[:40] + "@" + good[41:]
    r = client.post("/ui/inspect", data={"genomes": f"{good}\n{broken}\n",
                                         "csrf": csrf_of(form)})
    assert r.status_code == 200, r.text[-2000:]
    assert "Genome 1: valid" in r.text and "Genome 2: invalid" in r.text
    assert "UNEXPECTED_CHARACTER" in r.text and "at character 40" in r.text
    assert "<mark>@</mark>" in r.text
    assert "predicted by default v1" in r.text and "uw_val_epoch_loss" in r.text
    assert "<svg" in r.text and "Architecture graph" in r.text
    # Markup in a genome is shown as text, never rendered.
    r = client.post("/ui/inspect", data={"genomes": "<script>alert(1)</script>",
                                         "csrf": csrf_of(form)})
    assert r.status_code == 200 and "<script>alert(1)" not in r.text \
        and "&lt;script&gt;alert(1)" in r.text
    too_many = "\n".join([good] * 11)
    r = client.post("/ui/inspect", data={"genomes": too_many, "csrf": csrf_of(form)})
    assert r.status_code == 422 and "At most 10 genomes" in r.text
    assert client.post("/ui/inspect", data={"genomes": good}).status_code == 403  # no CSRF
    # A dataset's row is training data: the train scope, as the dataset pages (issue 28).
    assert client.get(f"/ui/inspect?dataset={api['dataset_id']}&row=3").status_code == 403
    picked = signed_in(api, "admin").get(f"/ui/inspect?dataset={api['dataset_id']}&row=3")
    assert picked.status_code == 200 and "Genome 1: valid" in picked.text


def test_a_revoked_key_is_signed_out_and_the_ui_can_be_turned_off(api, monkeypatch):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings

    key = make_key(["predict"])
    client = api["client"]
    client.cookies.clear()
    assert login(client, key).status_code == 303
    assert client.get("/ui/").status_code == 200
    admin = headers(api["keys"]["admin"])
    key_id = next(k["id"] for k in client.get("/keys", headers=admin).json()["data"]
                  if key.startswith(k["prefix"]) and k["revoked_at"] is None)
    assert client.post(f"/keys/{key_id}/revoke", headers=admin).status_code == 200
    assert client.get("/ui/", follow_redirects=False).status_code == 303
    assert client.get("/ui/jobs/x/live").status_code == 401  # the poller is told, not moved
    off = create_app(get_settings().model_copy(update={"ui_enabled": False}))
    off.state.start_reconciler = False
    with TestClient(off) as bare:
        assert bare.get("/ui/login").status_code == 404
