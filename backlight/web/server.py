"""Running the app: ``serve`` for the CLI, ``running`` for tests and the demo (a real HTTP
server on a thread, on a free port when asked for port 0)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from backlight.config import Settings
from backlight.metrics import Metrics
from backlight.web.app import create_app
from backlight.web.service import WebService
from schemas.errors import BacklightError


class ServeError(BacklightError):
    """The server cannot start (the address is taken, or not this machine's)."""


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM and SIGINT end it with exit code 0 after the
    graceful shutdown (uvicorn raises the signal again afterwards, so a supervisor would see a
    process killed by SIGTERM). A second SIGINT forces the exit, as in uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _server(settings: Settings, host: str, port: int, service: WebService | None = None,
            metrics: Metrics | None = None) -> tuple[uvicorn.Server, socket.socket]:
    app = create_app(settings, service, metrics)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            server_header=False, proxy_headers=False)
    sock = listen(host, port)
    return _Server(config), sock


def listen(host: str, port: int, option: str = "--port") -> socket.socket:
    """A bound, listening TCP socket (``ServeError`` naming ``option`` when the address is taken)."""
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets; without it
    # every keep-alive response waits ~40 ms (Nagle against the client's delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                         socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another "
                         f"program has it? pass {option}, or 0 for any free port)") from exc
    # Listening now, not when the server's loop starts: the address is printed before that,
    # and a client that connects at once must queue, not be refused.
    sock.listen(2048)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(settings: Settings, host: str, port: int,
          on_ready: Callable[[str], object] | None = None,
          metrics: Metrics | None = None) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's own handling); ``metrics``: the in-process
    consumer's, if one runs."""
    server, sock = _server(settings, host, port, metrics=metrics)
    if on_ready:
        on_ready(address(sock))
    server.run(sockets=[sock])


@contextmanager
def running(settings: Settings, host: str = "127.0.0.1", port: int = 0,
            service: WebService | None = None,
            metrics: Metrics | None = None) -> Iterator[str]:
    """The app served on a thread; yields its base URL, stops it on exit."""
    server, sock = _server(settings, host, port, service, metrics)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="backlight-web", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise ServeError("the web server stopped while starting")
            threading.Event().wait(0.02)
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
