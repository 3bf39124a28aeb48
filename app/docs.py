"""``/docs`` and ``/redoc`` that work with no internet: FastAPI's default pages load Swagger UI
and ReDoc from a CDN (and ReDoc its fonts from Google), which the machines this service runs on
often cannot reach. The assets come from the pinned ``fastapi-offline`` package (MIT; Swagger
UI: Apache-2.0, ReDoc: MIT) and are served by the service itself under ``/docs-static``."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

STATIC_URL = "/docs-static"
#: The pages may load nothing from elsewhere: ReDoc's footer logo (cdn.redoc.ly) is refused by
#: the browser itself. Inline script/style: the pages' own start-up code; blob: ReDoc's worker.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
       "'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
       "connect-src 'self'; frame-ancestors 'none'")


def assets_dir() -> Path:
    """The Swagger UI / ReDoc files shipped by ``fastapi-offline``."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _strict(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Mount the assets and the two pages (the app is built with ``docs_url=None`` and
    ``redoc_url=None`` so FastAPI's CDN pages are not registered)."""
    app.mount(STATIC_URL, StaticFiles(directory=assets_dir()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _strict(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters))

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _strict(get_redoc_html(openapi_url=f"{root}{openapi_url}",
                              title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{STATIC_URL}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{STATIC_URL}/favicon.png",
                              with_google_fonts=False))
