"""The dashboard at ``/ui``: server-rendered pages over the same stores and helpers as the API.

``install(app)`` adds its routes, its static files (one stylesheet and one small script, both in
this package: the machines have no internet), the HTML answers for its errors and the security
headers of its pages. Pages authenticate the API key kept in a cookie (:mod:`app.ui.session`);
the key's scopes decide what is shown and what can be clicked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from app.ui import datasets, inspector, jobs, login, models, overview
from app.ui.session import COOKIE_PATH, LoginRequired, PageForbidden
from app.ui.templating import error_page
from service.errors import ServiceError

STATIC = Path(__file__).parent / "static"
#: Pages load only this origin's script, style and images; SVG is inline markup, not script.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEAVY_PATHS = (f"{COOKIE_PATH}/inspect",)
PAGES = (login, overview, jobs, models, datasets, inspector)


def is_ui(request: Request) -> bool:
    """A request for a dashboard page of an app that serves the dashboard."""
    path = request.scope.get("path", "")
    return getattr(request.app.state, "ui_installed", False) and \
        (path == COOKIE_PATH or path.startswith(COOKIE_PATH + "/"))


def allowed_methods(path: str) -> set[str]:
    """The methods the dashboard's routes take at ``path`` (for a 405's ``Allow``: Starlette's
    lists only the first route whose path matches)."""
    methods: set[str] = set()
    for module in PAGES:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and route.path_regex.match(path):
                methods |= set(route.methods or ())
    return methods


def service_error_page(request: Request, exc: ServiceError) -> Response:
    """A service error on a page: the same status and code, as a page with navigation."""
    return error_page(request, exc.status, exc.code, exc.message)


def install(app: FastAPI) -> None:
    app.state.ui_installed = True
    for module in PAGES:
        app.include_router(module.router)
    app.mount(f"{COOKIE_PATH}/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get(COOKIE_PATH, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{COOKIE_PATH}/", status_code=307)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.endswith("/live"):  # the poller: tell it, do not redirect it
            return error_page(request, 401, "UNAUTHENTICATED", "signed out")
        return RedirectResponse(exc.next_path, status_code=303)

    @app.exception_handler(PageForbidden)
    async def forbidden(request: Request, exc: PageForbidden) -> Response:
        return error_page(request, 403, "PERMISSION_DENIED",
                          f"This page needs a key with the {exc.scope} scope.")

    @app.middleware("http")
    async def page_headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if is_ui(request):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
            if not request.url.path.startswith(f"{COOKIE_PATH}/static") and \
                    "/plots/" not in request.url.path:
                response.headers.setdefault("Cache-Control", "no-store")
        return response
