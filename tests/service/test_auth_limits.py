"""Failed authentications cannot lock out valid keys, and cannot be spread over invented
client addresses (issue 28): failures count against the failing credential and the client
address; a key that authenticates is never refused for them; ``X-Forwarded-For`` names the
client only from ``SURROGATE_TRUSTED_PROXIES``."""
from __future__ import annotations

import signal

import httpx

from .conftest import Served, headers, wait_for

BAD = [f"nas_guess-{i}" for i in range(25)]


def test_bad_keys_from_one_address_do_not_lock_out_a_valid_admin_key(api):
    c, admin = api["client"], api["keys"]["admin"]
    limit = api["app"].state.settings.auth_failures_per_minute
    codes = [c.get("/jobs", headers=headers(key)).status_code for key in BAD]
    assert len(BAD) > limit and codes[:limit] == [401] * limit
    assert set(codes[limit:]) == {429}
    r = c.get("/jobs", headers=headers(admin))
    assert r.status_code == 200, r.text
    assert c.get("/keys", headers=headers(admin)).status_code == 200
    # Still limited: one more bad key from the address, and the same bad key again.
    assert c.get("/jobs", headers=headers("nas_another")).status_code == 429
    assert c.get("/jobs").status_code == 429  # no key at all counts against the address


def test_one_credential_is_limited_from_any_address(api, monkeypatch):
    from app.api import deps

    c = api["client"]
    addresses = iter(f"10.0.0.{i}" for i in range(1, 200))
    monkeypatch.setattr(deps, "client_address", lambda request: next(addresses))
    limit = api["app"].state.settings.auth_failures_per_minute
    codes = [c.get("/jobs", headers=headers("nas_stolen-and-revoked")).status_code
             for _ in range(limit + 2)]
    assert codes == [401] * limit + [429, 429]
    assert c.get("/jobs", headers=headers(api["keys"]["train"])).status_code == 200


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit(tmp_path):
    """A real ``serve`` (uvicorn): a loopback client varying X-Forwarded-For is still one
    address; valid keys keep working throughout."""
    data_dir = tmp_path / "var"
    served = Served(data_dir, tmp_path / "no-seed.csv", tmp_path / "serve.log",
                    env={"SURROGATE_WARM_UP": "false", "SURROGATE_ENCODER_PROCESSES": "0"})
    try:
        def up() -> bool:
            try:
                return httpx.get(served.base + "/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                assert served.proc.poll() is None, served.log_path.read_text()[-3000:]
                return False
        wait_for(up, 120, interval=0.5, what="serve to answer /healthz")
        admin = (data_dir / "admin.key").read_text().strip()
        with httpx.Client(base_url=served.base, timeout=10) as c:
            codes = [c.get("/jobs", headers={"X-API-Key": key,
                                             "X-Forwarded-For": f"203.0.113.{i}"}).status_code
                     for i, key in enumerate(BAD)]
            assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}, codes
            r = c.get("/jobs", headers={"X-API-Key": "nas_fresh",
                                        "X-Forwarded-For": "198.51.100.7"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "TOO_MANY_REQUESTS"
            assert c.get("/jobs", headers={"X-API-Key": admin}).status_code == 200
    finally:
        served.stop(signal.SIGTERM, 30)
