"""``/ui/login`` and ``/ui/logout``: an API key in, an HttpOnly cookie out (see
:mod:`app.ui.session` for why the key itself is the session)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import authenticate
from app.ui.session import (
    COOKIE_PATH,
    KEY_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_MAX_AGE_S,
    AnyViewer,
    check_form,
    check_origin,
    new_login_token,
    safe_next,
    same_token,
)
from app.ui.templating import page
from service.errors import ServiceError

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or \
        request.app.state.settings.environment == "production"


def _login_form(request: Request, next_path: str, error: str = "",
                status: int = 200) -> HTMLResponse:
    token = new_login_token()
    response = page(request, "login.html", None, status_code=status, next_path=next_path,
                    login_token=token, error=error)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=900, path=COOKIE_PATH,
                        httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_form(request, safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, api_key: Annotated[str, Form(max_length=512)] = "",
          csrf: Annotated[str, Form(max_length=100)] = "",
          next: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """A key that authenticates becomes the session cookie; anything else re-shows the form
    (failed attempts count towards the address's limit, exactly as at the API)."""
    target = safe_next(next)
    check_origin(request)
    if not same_token(csrf, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_form(request, target, "The form expired; please sign in again.", 400)
    if not api_key.strip():
        return _login_form(request, target, "Enter an API key.", 401)
    try:
        authenticate(request, api_key.strip())
    except ServiceError as exc:
        if exc.code in ("UNAUTHENTICATED", "TOO_MANY_REQUESTS"):
            return _login_form(request, target, exc.message.capitalize() + ".",
                               429 if exc.code == "TOO_MANY_REQUESTS" else 401)
        raise
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(KEY_COOKIE, api_key.strip(), max_age=SESSION_MAX_AGE_S,
                        path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    return response


@router.post("/logout")
def logout(request: Request, viewer: AnyViewer,
           csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    check_form(request, viewer, csrf)
    response = RedirectResponse(f"{COOKIE_PATH}/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response
