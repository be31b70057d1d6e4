"""WebSocketHandler behind each front end (Mongrel2, the gateway): handshake, echo, ping, close.

The client is a raw socket speaking RFC 6455 with takefive.websocket's own framing
(masked frames out, unmasked frames in); the server side is `takefive run` with an app
written to a temporary module.
"""

from __future__ import annotations

import base64
import os
import socket
import textwrap
import time
from pathlib import Path

import pytest

from takefive.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    accept_key,
    decode_frame,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
)

from .harness import Frontend, http_request, wait_for

pytestmark = pytest.mark.mongrel2

APP = """
from takefive import App, HTTPError, WebSocketHandler

app = App()

@app.route("/plain")
def plain(request):
    return "plain"

@app.websocket("/ws/{room}")
class Echo(WebSocketHandler):
    subprotocols = ("echo.v1",)

    async def on_open(self):
        if self.request.query.get("deny"):
            raise HTTPError(403, "denied")
        self.send("welcome to " + self.request.path_params["room"])

    async def on_message(self, data):
        if data == "bye":
            self.close(4000, "bye")
        elif isinstance(data, bytes):
            self.send(data[::-1])
        else:
            self.send("echo: " + data)
"""


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def _recv_more(self, deadline: float) -> None:
        self.sock.settimeout(max(0.05, deadline - time.monotonic()))
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def handshake(self, path: str, protocol: str | None = None) -> tuple[int, dict[str, str]]:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: localhost",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self.buf:
            self._recv_more(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if status == 101:
            assert headers["sec-websocket-accept"] == accept_key(key)
        return status, headers

    def send(self, opcode: int, payload: bytes | str) -> None:
        self.sock.sendall(encode_frame(opcode, payload, mask=os.urandom(4)))

    def recv(self) -> tuple[int, bytes]:
        deadline = time.monotonic() + 10
        while True:
            frame = decode_frame(self.buf, masked=False)
            if frame is not None:
                _, opcode, payload, used = frame
                self.buf = self.buf[used:]
                return opcode, payload
            self._recv_more(deadline)

    def closed_by_server(self) -> bool:
        deadline = time.monotonic() + 10
        try:
            while True:
                self._recv_more(deadline)
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(frontend: Frontend, tmp_path: Path) -> tuple[str, int]:
    """`takefive run` with the echo app behind each front end (Mongrel2, the gateway)."""
    app_dir = tmp_path / "wsapp"
    app_dir.mkdir()
    (app_dir / "ws_echo_app.py").write_text(textwrap.dedent(APP))
    frontend.start_handler("ws_echo_app:app", python_path=[app_dir])
    # The handler is ready when a plain request gets through.
    wait_for(
        lambda: _plain_answered(frontend.host, frontend.http_port),
        20.0,
        what="the WebSocket app answering /plain",
    )
    return frontend.host, frontend.http_port


def _plain_answered(host: str, port: int) -> bool:
    try:
        status, _, body = http_request(port, "GET", "/plain", host=host, timeout=5.0)
    except OSError:
        return False
    return status == 200 and body.endswith(b"plain")


def test_websocket_round_trip(server: tuple[str, int]) -> None:
    client = Client(*server)
    try:
        status, headers = client.handshake("/ws/lobby", protocol="other, echo.v1")
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        assert headers["sec-websocket-protocol"] == "echo.v1"
        assert client.recv() == (TEXT, b"welcome to lobby")

        client.send(TEXT, "héllo")
        assert client.recv() == (TEXT, "echo: héllo".encode())
        client.send(BINARY, b"\x00\x01\x02")
        assert client.recv() == (BINARY, b"\x02\x01\x00")
        big = os.urandom(70_000)
        client.send(BINARY, big)
        assert client.recv() == (BINARY, big[::-1])
        client.send(PING, b"p1")
        assert client.recv() == (PONG, b"p1")

        client.send(CLOSE, encode_close_payload(1000, "done"))
        opcode, payload = client.recv()
        assert opcode == CLOSE and parse_close_payload(payload) == (1000, "")
        assert client.closed_by_server()
    finally:
        client.close()


def test_server_initiated_close(server: tuple[str, int]) -> None:
    client = Client(*server)
    try:
        assert client.handshake("/ws/x")[0] == 101
        client.recv()  # welcome
        client.send(TEXT, "bye")
        opcode, payload = client.recv()
        assert opcode == CLOSE and parse_close_payload(payload) == (4000, "bye")
        assert client.closed_by_server()
    finally:
        client.close()


def test_refused_and_unknown_websocket(server: tuple[str, int]) -> None:
    client = Client(*server)
    try:
        status, _ = client.handshake("/ws/x?deny=1")
        assert status == 403
    finally:
        client.close()
    client = Client(*server)
    try:
        status, _ = client.handshake("/nope")
        assert status == 404
    finally:
        client.close()
