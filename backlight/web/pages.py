"""Server-rendered pages (Jinja2, autoescaped)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)


def error_page(request: Request, status: int, detail: str) -> Response:
    from html import escape
    return HTMLResponse(f"<!doctype html><title>Backlight</title><p>{escape(detail)}</p>",
                        status_code=status)
