"""Differential test: the gateway forwards requests exactly as Mongrel2 1.12 does.

A raw pyzmq handler written here (no takefive runtime) is connected to a real Mongrel2 and
to the gateway at once. The same raw HTTP requests go to both; the handler records what
each front end sent and answers the same bytes; the fields and the HTTP responses must be
identical. Intended differences (docs/gateway.md) are not in the request set.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from takefive import wire

from .harness import GatewayFactory, Mongrel2Factory

pytestmark = pytest.mark.mongrel2


class DiffHandler:
    """PULL from several front ends, PUB replies; records every message per front end."""

    def __init__(self, fronts: list[Any]) -> None:
        self.ctx = zmq.Context()
        self.pulls = []
        self.pubs: dict[str, zmq.Socket[bytes]] = {}
        self.poller = zmq.Poller()
        for fe in fronts:
            pull = self.ctx.socket(zmq.PULL)
            pull.setsockopt(zmq.LINGER, 0)
            pull.connect(fe.send_spec)
            pub = self.ctx.socket(zmq.XPUB)
            pub.setsockopt(zmq.LINGER, 0)
            pub.connect(fe.recv_spec)
            self.pulls.append(pull)
            self.pubs[fe.uuid] = pub
            self.poller.register(pull, zmq.POLLIN)
            self.poller.register(pub, zmq.POLLIN)
        self.messages: dict[str, list[wire.Message]] = {fe.uuid: [] for fe in fronts}
        self.subscribed: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for sock, _ in self.poller.poll(20):
                frame = sock.recv()
                if sock.type == zmq.XPUB:
                    # Mongrel2 subscribes to everything (""), the gateway to "UUID ".
                    self.subscribed.update(u for u, p in self.pubs.items() if p is sock)
                    continue
                msg = wire.parse_request(frame)
                self.messages[msg.sender].append(msg)
                if msg.is_disconnect or msg.headers.get("METHOD") == "WEBSOCKET":
                    continue
                pub = self.pubs[msg.sender]
                if msg.headers.get("METHOD") == "WEBSOCKET_HANDSHAKE":
                    body = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\nSec-WebSocket-Accept: %b\r\n\r\n" % msg.body)
                else:
                    text = f"{msg.method} {msg.path} {len(msg.body)}".encode()
                    body = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(text), text)
                    if msg.method == "HEAD":
                        body = body[: body.index(b"\r\n\r\n") + 4]
                for out in wire.encode_response(msg.sender, msg.conn_id, body):
                    pub.send(out)
        for sock in [*self.pulls, *self.pubs.values()]:
            sock.close(0)
        self.ctx.term()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def fronts(mongrel2_factory: Mongrel2Factory,
           gateway_factory: GatewayFactory) -> Iterator[tuple[Any, Any, DiffHandler]]:
    m2 = mongrel2_factory.start()
    gw = gateway_factory.start()
    handler = DiffHandler([m2, gw])
    deadline = time.monotonic() + 20
    while not {m2.uuid, gw.uuid} <= handler.subscribed:
        assert time.monotonic() < deadline, f"not subscribed: {handler.subscribed}"
        time.sleep(0.02)
    yield m2, gw, handler
    handler.close()


def exchange(port: int, data: bytes, replies: int = 1) -> bytes:
    """Send ``data`` on one connection; read ``replies`` complete responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        head_only = data.startswith(b"HEAD ")
        while out.count(b"HTTP/1.1 ") < replies or not _complete(out, head_only):
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def _complete(data: bytes, head_only: bool) -> bool:
    head, sep, body = data.rpartition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


REQUESTS = [
    (b"GET /hello HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 1),
    (b"GET /q?a=1&b=two&a=3 HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"GET /frag?#top HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"GET /p%20q/%2e%2E/x HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"GET /dup HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Dup: b\r\nX-Dup: c\r\n\r\n", 1),
    (b"GET /xff HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.8.7\r\n\r\n", 1),
    (b"GET /case HTTP/1.1\r\nHOST: x\r\nX-MiXeD-CaSe: Value With Spaces\r\n\r\n", 1),
    (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     b"Content-Length: 9\r\n\r\na=1&b=%20", 1),
    (b"PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n\x00\xff\n", 1),
    (b"DELETE /del HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n", 1),
    (b"GET /old HTTP/1.0\r\n\r\n", 1),
    (b"GET /utf HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n", 1),
    # keep-alive: two requests on one connection keep one id
    (b"GET /ka1 HTTP/1.1\r\nHost: x\r\n\r\nGET /ka2 HTTP/1.1\r\nHost: x\r\n\r\n", 2),
]


def comparable(msg: wire.Message) -> tuple[str, wire.Headers, bytes]:
    return msg.path, msg.headers, msg.body


def test_same_request_fields_and_same_responses(fronts: tuple[Any, Any, DiffHandler]) -> None:
    m2, gw, handler = fronts
    for data, replies in REQUESTS:
        answers = {}
        for fe in (m2, gw):
            before = len([m for m in handler.messages[fe.uuid] if not m.is_disconnect])
            answers[fe.kind] = exchange(fe.http_port, data, replies)
            deadline = time.monotonic() + 10
            while len([m for m in handler.messages[fe.uuid] if not m.is_disconnect]) < (
                    before + replies):
                assert time.monotonic() < deadline, f"no message for {data!r}"
                time.sleep(0.01)
        assert answers["mongrel2"] == answers["gateway"], data
        got = {fe.kind: [m for m in handler.messages[fe.uuid] if not m.is_disconnect][-replies:]
               for fe in (m2, gw)}
        assert [comparable(m) for m in got["mongrel2"]] == [comparable(m) for m in got["gateway"]]
        if replies > 1:
            for kind in got:
                assert len({m.conn_id for m in got[kind]}) == 1, kind


def test_same_disconnect_message(fronts: tuple[Any, Any, DiffHandler]) -> None:
    m2, gw, handler = fronts
    for fe in (m2, gw):
        exchange(fe.http_port, b"GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 10
    while not all(any(m.is_disconnect for m in handler.messages[fe.uuid]) for fe in (m2, gw)):
        assert time.monotonic() < deadline, "no disconnect"
        time.sleep(0.01)
    seen = {fe.kind: next(m for m in handler.messages[fe.uuid] if m.is_disconnect)
            for fe in (m2, gw)}
    assert comparable(seen["mongrel2"]) == comparable(seen["gateway"])
    assert seen["gateway"].path == "@*"


def ws_frame(opcode_byte: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    head = bytes((opcode_byte, 0x80 | size)) if size < 126 else (
        bytes((opcode_byte, 0x80 | 126)) + size.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_same_websocket_messages(fronts: tuple[Any, Any, DiffHandler]) -> None:
    m2, gw, handler = fronts
    handshake = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    frames = (ws_frame(0x81, b"hello") + ws_frame(0x02, b"frag") + ws_frame(0x80, b"ment" * 40)
              + ws_frame(0x89, b"ping"))
    responses = {}
    for fe in (m2, gw):
        with socket.create_connection(("127.0.0.1", fe.http_port), timeout=10) as sock:
            sock.sendall(handshake)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            responses[fe.kind] = reply
            sock.sendall(frames)
            deadline = time.monotonic() + 10
            while sum(m.method == "WEBSOCKET" for m in handler.messages[fe.uuid]) < 3:
                assert time.monotonic() < deadline, f"{fe.kind}: websocket messages missing"
                time.sleep(0.01)
    assert responses["mongrel2"] == responses["gateway"]
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in responses["gateway"]
    got = {fe.kind: [comparable(m) for m in handler.messages[fe.uuid]
                     if m.method.startswith("WEBSOCKET")] for fe in (m2, gw)}
    assert got["mongrel2"] == got["gateway"]
    assert [h["FLAGS"] for _, h, _ in got["gateway"][1:]] == ["0x81", "0x82", "0x89"]
