"""Who is looking at the dashboard: the API key in a cookie, and the CSRF checks of its forms.

The key is the only credential the service knows, so the login form takes one and keeps it in
an ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it)
cookie scoped to ``/ui``; every page authenticates it exactly as the API authenticates
``X-API-Key`` (:func:`app.api.deps.authenticate`: the same cache, failure counting and rate
limits), so a revoked key stops working here too.

Forms that change something carry a CSRF token besides the cookie (defence in depth, should a
browser ignore ``SameSite``): for a signed-in user it is a digest of the key under a fixed
label, which another site cannot compute without the key and which reveals nothing about it;
the login form, before there is a key, uses a random double-submit cookie. A request whose
``Origin`` names another host is refused as well.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request

from app.api.deps import Principal, authenticate
from service.errors import ServiceError
from service.security import allows

KEY_COOKIE = "nas_ui_key"
LOGIN_CSRF_COOKIE = "nas_ui_login"
COOKIE_PATH = "/ui"
#: A signed-in session lasts at most this long (the key itself does not expire).
SESSION_MAX_AGE_S = 12 * 3600
_CSRF_LABEL = b"nas-surrogate/ui/csrf/v1:"


class LoginRequired(Exception):
    """No valid key in the cookie: the page answers with a redirect to the login form."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason)
        self.next_path, self.reason = next_path, reason


class PageForbidden(Exception):
    """Signed in, but the key lacks the scope this page needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


@dataclass(frozen=True)
class Viewer:
    """The signed-in key: its principal and the CSRF token its forms carry."""

    principal: Principal
    csrf: str

    def can(self, scope: str) -> bool:
        return allows(self.principal.scopes, scope)

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


def csrf_for_key(key: str) -> str:
    return hashlib.sha256(_CSRF_LABEL + key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def same_token(sent: str | None, expected: str | None) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent), str(expected))


def check_origin(request: Request) -> None:
    """A state-changing request from a page of another host is refused (403)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", request.url.netloc)
    if origin and (origin == "null" or urlsplit(origin).netloc != host):
        raise ServiceError("PERMISSION_DENIED", "cross-origin form submissions are refused")


def safe_next(path: str | None) -> str:
    """Only a dashboard path may follow a login (never another site)."""
    if path and path.startswith(COOKIE_PATH) and not path.startswith("//") and "\\" not in path:
        return path
    return COOKIE_PATH + "/"


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{COOKIE_PATH}/login?next={quote(target, safe='')}"


def current_viewer(request: Request) -> Viewer:
    key = request.cookies.get(KEY_COOKIE)
    if not key:
        raise LoginRequired(login_url(request))
    try:
        principal = authenticate(request, key)
    except ServiceError as exc:
        if exc.code == "UNAUTHENTICATED":
            raise LoginRequired(login_url(request), "the key is unknown or revoked") from exc
        raise
    return Viewer(principal, csrf_for_key(key))


def viewer_with(*scopes: str) -> Callable[..., Viewer]:
    """A page dependency: the viewer, who must hold one of ``scopes``."""
    def dependency(viewer: Annotated[Viewer, Depends(current_viewer)]) -> Viewer:
        if not any(viewer.can(scope) for scope in scopes):
            raise PageForbidden(" or ".join(scopes))
        return viewer
    return dependency


def check_form(request: Request, viewer: Viewer, token: str | None) -> None:
    """A state-changing form: same origin and the viewer's CSRF token."""
    check_origin(request)
    if not same_token(token, viewer.csrf):
        raise ServiceError("PERMISSION_DENIED", "the form's CSRF token is missing or stale; "
                           "reload the page and try again")


AnyViewer = Annotated[Viewer, Depends(current_viewer)]
PredictViewer = Annotated[Viewer, Depends(viewer_with("predict"))]
TrainViewer = Annotated[Viewer, Depends(viewer_with("train"))]
AdminViewer = Annotated[Viewer, Depends(viewer_with("admin"))]
#: Jobs: a train key's own, a predict key's own (its propose jobs), an admin's all.
JobViewer = Annotated[Viewer, Depends(viewer_with("train", "predict"))]
