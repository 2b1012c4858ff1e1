"""``GET /api/processes/{name}/figures``: a process's figures from its read model
(backlight/figures_view.py says what they are and how exact)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from backlight.figures_view import FiguresOut, Window
from backlight.web.service import NotFound, WebService

router = APIRouter(prefix="/api", tags=["api"])


def _service(request: Request) -> WebService:
    svc: WebService = request.app.state.service
    return svc


@router.get("/processes/{name}/figures", response_model=FiguresOut)
def get_figures(name: str, svc: Annotated[WebService, Depends(_service)],
                window: Annotated[Window, Query(description="time window")] = "all") -> FiguresOut:
    """The process's figures for the window from its read model (folded up to the last stored
    event first): never a read of its event history."""
    if name not in svc.names():
        raise NotFound(f"no process named {name!r}")
    return svc.figures(name, window)
