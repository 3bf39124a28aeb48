"""Jinja2 templates of the dashboard, their filters, and the HTML answers for errors.

Templates autoescape (every value from a genome, a job message or a dataset name is data, never
markup); the only markup inserted unescaped is SVG this package drew itself (``|safe`` on
:mod:`app.ui.plots` output and :func:`ml.render.render_svg`, which escapes its labels).
"""
from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return "" if value is None else str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _num(value: Any, digits: int = 3) -> str:
    """A number for a table cell: 3 significant digits, thousands separated, '—' for none."""
    if isinstance(value, Undefined):
        return "—"
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return "—"
    if f != 0 and (abs(f) >= 1e6 or abs(f) < 1e-3):
        return f"{f:.{digits - 1}e}"
    return f"{f:,.{digits}g}" if abs(f) >= 1000 else f"{f:.{digits}g}"


def _short(value: Any, n: int = 8) -> str:
    return "" if value is None else str(value)[:n]


TEMPLATES.env.filters.update(when=_when, num=_num, short=_short)


def page(request: Request, template: str, viewer: Any = None, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """Render one page; every page knows its viewer (the navigation shows what its scopes
    allow) and the CSRF token its forms carry."""
    return TEMPLATES.TemplateResponse(request, template, {"viewer": viewer, **context},
                                      status_code=status_code)


def error_page(request: Request, status: int, code: str, message: str,
               viewer: Any = None) -> HTMLResponse:
    return page(request, "error.html", viewer, status_code=status, code=code,
                message=message)
