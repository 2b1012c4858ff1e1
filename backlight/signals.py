"""SIGTERM and SIGINT as a stop request for the long-running loops (consume, alerts run)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import structlog

log = structlog.stdlib.get_logger("backlight.jobs")


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT ask the loop to finish its batch, commit and return."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, finishing the batch", signal=signum)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
