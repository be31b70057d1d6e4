"""The same WebSocket acceptance tests as behind Mongrel2, behind the built-in gateway.

The test functions are imported unchanged from test_websocket_mongrel2; only the
``server`` fixture differs: `takefive run` with the same app, behind `takefive gateway`.
"""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest

from .harness import GatewayFactory
from .test_websocket_mongrel2 import (  # noqa: F401  (collected here, against the gateway)
    APP,
    test_refused_and_unknown_websocket,
    test_server_initiated_close,
    test_websocket_round_trip,
)


@pytest.fixture
def server(gateway_factory: GatewayFactory, tmp_path: Path) -> tuple[str, int]:
    app_dir = tmp_path / "wsapp"
    app_dir.mkdir()
    (app_dir / "ws_echo_app.py").write_text(textwrap.dedent(APP))
    gw = gateway_factory.start()
    gw.start_handler("ws_echo_app:app", python_path=[app_dir])
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection((gw.host, gw.http_port), timeout=5) as s:
                s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            if data.endswith(b"plain"):
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "handler did not become ready"
        time.sleep(0.1)
    return gw.host, gw.http_port
