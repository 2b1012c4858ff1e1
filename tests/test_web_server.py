"""The socket the web app and the consumer's ops port serve on: it accepts connections as soon
as its address is printed, and a taken port is a clear error naming the option to change."""

from __future__ import annotations

import socket

import pytest

from backlight.web.server import ServeError, address, listen


def test_a_client_connecting_before_the_server_loop_runs_is_queued_not_refused() -> None:
    """The address printed by `serve` accepts a connection before uvicorn's loop has started."""
    sock = listen("127.0.0.1", 0)
    try:
        host, port = address(sock).removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.recv(64).startswith(b"GET /healthz")
    finally:
        sock.close()


def test_a_taken_port_names_the_option_to_change() -> None:
    """Binding a port another socket holds raises ServeError naming the address and option."""
    held = listen("127.0.0.1", 0)
    try:
        port = held.getsockname()[1]
        with pytest.raises(ServeError, match=rf"127\.0\.0\.1:{port}.*--metrics-port"):
            listen("127.0.0.1", port, "--metrics-port")
    finally:
        held.close()
