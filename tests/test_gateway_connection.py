"""The gateway's HTTP connection handling, against a raw pyzmq handler written here.

The gateway runs in a thread on its own (uv)loop with real sockets; the handler is a
plain PULL/PUB loop in another thread that answers by path. Every limit and error has a
test that checks the status code and that another client is served meanwhile.
"""

from __future__ import annotations

import asyncio
import heapq
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from takefive import wire
from takefive.gateway import Gateway, GatewayConfig, HandlerRoute

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


# --------------------------------------------------------------------------- the handler


class RawHandler:
    """A Mongrel2 handler with nothing but pyzmq: PULL requests, PUB replies.

    Paths: ``/never`` (no reply), ``/slow`` (reply after 0.3 s), ``/close`` (reply, then
    close), ``/stream`` (chunked in three messages), ``/split`` (head and body in two
    messages), anything else: 200 with the request's headers as JSON in the body.
    """

    def __init__(self, send_spec: str, recv_spec: str) -> None:
        self.ctx = zmq.Context()
        self.pull = self.ctx.socket(zmq.PULL)
        self.pull.connect(send_spec)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.connect(recv_spec)
        self.messages: list[wire.Message] = []
        self.disconnects: list[str] = []
        self._later: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reply(self, sender: str, conn_ids: str | list[str], data: bytes, delay: float = 0) -> None:
        for frame in wire.encode_response(sender, conn_ids, data):
            self._seq += 1
            heapq.heappush(self._later, (time.monotonic() + delay, self._seq, frame))

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pull, zmq.POLLIN)
        while not self._stop.is_set():
            while self._later and self._later[0][0] <= time.monotonic():
                self.pub.send(heapq.heappop(self._later)[2])
            if not poller.poll(10):
                continue
            msg = wire.parse_request(self.pull.recv())
            if msg.is_disconnect:
                self.disconnects.append(msg.conn_id)
                continue
            self.messages.append(msg)
            self.handle(msg)
        self.pull.close(0)
        self.pub.close(0)
        self.ctx.term()

    def handle(self, msg: wire.Message) -> None:
        path = msg.path
        if path == "/never":
            return
        if path == "/stream":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            self.reply(msg.sender, msg.conn_id, head + b"5\r\nhello\r\n")
            self.reply(msg.sender, msg.conn_id, b"6\r\n world\r\n", delay=0.05)
            self.reply(msg.sender, msg.conn_id, b"0\r\n\r\n", delay=0.1)
            return
        if path == "/split":
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
            self.reply(msg.sender, msg.conn_id, head + b"01234")
            self.reply(msg.sender, msg.conn_id, b"56789", delay=0.05)
            return
        body = json.dumps({"headers": msg.headers, "body": msg.body.decode("latin-1"),
                           "conn_id": msg.conn_id}).encode()
        response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        if msg.method == "HEAD":
            response = response[: response.index(b"\r\n\r\n") + 4]
        self.reply(msg.sender, msg.conn_id, response, delay=0.3 if path == "/slow" else 0)
        if path == "/close":
            self.reply(msg.sender, msg.conn_id, b"")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------- the gateway


class GatewayThread:
    """A :class:`Gateway` on its own event loop in a thread."""

    def __init__(self, config: GatewayConfig) -> None:
        self.gateway = Gateway(config)
        self.loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "gateway did not start"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.gateway.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_until_complete(self.gateway.wait_stopped())
        self.loop.close()

    @property
    def port(self) -> int:
        return self.gateway.port

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gateway.stop(), self.loop).result(10)
        self._thread.join(10)


@pytest.fixture
def specs(tmp_path: Path) -> tuple[str, str]:
    return f"ipc://{tmp_path}/send", f"ipc://{tmp_path}/recv"


def make_config(specs: tuple[str, str], **kwargs: Any) -> GatewayConfig:
    defaults: dict[str, Any] = dict(port=0, uuid="gw-test", routes=[HandlerRoute("/", *specs)])
    defaults.update(kwargs)
    return GatewayConfig(**defaults)


@pytest.fixture
def handler(specs: tuple[str, str]) -> Iterator[RawHandler]:
    h = RawHandler(*specs)
    yield h
    h.close()


@pytest.fixture
def gw(specs: tuple[str, str], handler: RawHandler) -> Iterator[GatewayThread]:
    g = GatewayThread(make_config(specs))
    wait_ready(g.port)
    yield g
    g.stop()


def wait_ready(port: int, path: str = "/ready") -> None:
    """Poll until a request gets through to a handler (the PUSH peer is connected)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            status, _, _ = get(port, path, timeout=0.25)
            if status == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "gateway + handler not ready"
        time.sleep(0.05)


Reply = tuple[int, dict[str, str], bytes]


def get(port: int, path: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None, timeout: float = 5) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 5, until: bytes | None = None) -> bytes:
    """Send raw bytes; read until the server closes (or ``until`` is seen)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while until is None or until not in out:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
        return out


def assert_others_served(port: int) -> None:
    status, _, body = get(port, "/other")
    assert status == 200 and json.loads(body)["headers"]["PATH"] == "/other"


# --------------------------------------------------------------------------- basics


def test_request_fields_like_mongrel2(gw: GatewayThread, handler: RawHandler) -> None:
    status, _, body = get(gw.port, "/hello/there?a=1&b=two",
                                headers={"X-Dup": "a", "X-Forwarded-For": "6.6.6.6"})
    assert status == 200
    seen = json.loads(body)["headers"]
    assert seen["PATH"] == "/hello/there"
    assert seen["METHOD"] == "GET"
    assert seen["VERSION"] == "HTTP/1.1"
    assert seen["URI"] == "/hello/there?a=1&b=two"
    assert seen["QUERY"] == "a=1&b=two"
    assert seen["PATTERN"] == "/"
    assert seen["URL_SCHEME"] == "http"
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["x-forwarded-for"] == "127.0.0.1"  # replaced, as Mongrel2 does
    assert seen["x-dup"] == "a"
    assert seen["host"].startswith("127.0.0.1")
    msg = handler.messages[-1]
    assert msg.sender == "gw-test"


def test_no_query_no_key_and_empty_query_and_fragment(gw: GatewayThread) -> None:
    reply = raw_exchange(gw.port, b"GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                         until=b"}")
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])["headers"]
    assert "QUERY" not in seen and "FRAGMENT" not in seen
    reply = raw_exchange(gw.port, b"GET /p?#frag HTTP/1.1\r\nHost: x\r\n\r\n", until=b"}")
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])["headers"]
    assert seen["QUERY"] == "" and seen["FRAGMENT"] == "frag" and seen["URI"] == "/p?"


def test_repeated_header_is_a_list_and_body_arrives(gw: GatewayThread) -> None:
    data = (b"POST /form HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Dup: b\r\n"
            b"Content-Length: 5\r\n\r\nhello")
    reply = raw_exchange(gw.port, data, until=b"}")
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert seen["headers"]["x-dup"] == ["a", "b"]
    assert seen["body"] == "hello"
    assert seen["headers"]["content-length"] == "5"


def test_keep_alive_keeps_the_connection_id(gw: GatewayThread) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    ids = set()
    for i in range(3):
        conn.request("GET", f"/k{i}")
        ids.add(json.loads(conn.getresponse().read())["conn_id"])
    conn.close()
    assert len(ids) == 1
    other = json.loads(get(gw.port, "/k")[2])["conn_id"]
    assert other not in ids


def test_pipelined_responses_in_request_order(gw: GatewayThread) -> None:
    # /slow is answered after 0.3 s, /fast at once: the gateway must hold /fast's request.
    data = (b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /split HTTP/1.1\r\nHost: x\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\n\r\n")
    reply = raw_exchange(gw.port, data, until=b'"/last"')
    assert reply.index(b'"/slow"') < reply.index(b'"/fast"') < reply.index(b"0123456789")
    assert reply.index(b"0123456789") < reply.index(b'"/last"')
    assert reply.count(b"HTTP/1.1 200 OK") == 4


def test_streamed_chunked_response(gw: GatewayThread) -> None:
    status, _, body = get(gw.port, "/stream")
    assert status == 200 and body == b"hello world"
    assert_others_served(gw.port)


def test_head_request_response_has_no_body(gw: GatewayThread) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    conn.request("HEAD", "/h")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    conn.request("GET", "/after-head")  # the framer knew the HEAD response was complete
    assert json.loads(conn.getresponse().read())["headers"]["PATH"] == "/after-head"
    conn.close()


def test_empty_reply_closes_and_no_disconnect_is_sent(gw: GatewayThread,
                                                      handler: RawHandler) -> None:
    reply = raw_exchange(gw.port, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK")  # and then EOF: raw_exchange returned
    conn_id = handler.messages[-1].conn_id
    get(gw.port, "/after")
    time.sleep(0.1)
    assert conn_id not in handler.disconnects


def test_client_close_sends_disconnect(gw: GatewayThread, handler: RawHandler) -> None:
    get(gw.port, "/bye")
    conn_id = handler.messages[-1].conn_id
    handler.wait_for(lambda: conn_id in handler.disconnects)


def test_one_reply_to_many_ids(gw: GatewayThread, handler: RawHandler) -> None:
    socks = []
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(f"GET /never?{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    handler.wait_for(lambda: sum(m.path == "/never" for m in handler.messages) >= 3)
    ids = [m.conn_id for m in handler.messages if m.path == "/never"][-3:]
    handler.reply("gw-test", ids, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nall")
    for s in socks:
        data = b""
        while not data.endswith(b"all"):
            chunk = s.recv(1000)
            assert chunk
            data += chunk
        s.close()


def test_reply_to_unknown_id_gets_a_disconnect(gw: GatewayThread, handler: RawHandler) -> None:
    handler.reply("gw-test", "987654", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    handler.wait_for(lambda: "987654" in handler.disconnects)


def test_access_log_line(gw: GatewayThread, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="takefive.gateway.access"):
        get(gw.port, "/logged?x=1")
        deadline = time.monotonic() + 5
        while not any("/logged" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    line = next(r.getMessage() for r in caplog.records if "/logged" in r.getMessage())
    assert '"GET /logged?x=1 HTTP/1.1" 200' in line and line.startswith("127.0.0.1 ")


# --------------------------------------------------------------------------- limits and errors


@pytest.fixture
def strict(tmp_path: Path, specs: tuple[str, str], handler: RawHandler) -> Iterator[GatewayThread]:
    """Small limits and short timeouts; ``/nobody/`` goes to sockets no handler connects to."""
    routes = [HandlerRoute("/", *specs),
              HandlerRoute("/nobody/", f"ipc://{tmp_path}/n-send", f"ipc://{tmp_path}/n-recv")]
    g = GatewayThread(make_config(
        specs, routes=routes, max_header_size=2048, max_body_size=65536, header_timeout=0.5,
        body_timeout=0.5, keepalive_timeout=0.8, request_timeout=0.8, queue_timeout=0.5))
    wait_ready(g.port)
    yield g
    g.stop()


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:80]
    return int(reply[9:12])


def test_chunked_request_body_arrives_whole(strict: GatewayThread) -> None:
    data = (b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    reply = raw_exchange(strict.port, data, until=b"}")
    seen = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert seen["body"] == "hello world"
    assert seen["headers"]["content-length"] == "11"
    assert "transfer-encoding" not in seen["headers"]


def test_expect_100_continue(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        reply = b""
        while b"}" not in reply:
            reply += sock.recv(65536)
    assert status_of(reply) == 200 and json.loads(reply.split(b"\r\n\r\n", 1)[1])["body"] == "data"


def test_expect_100_continue_with_too_big_body_is_413(strict: GatewayThread) -> None:
    reply = raw_exchange(strict.port, b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert status_of(reply) == 413 and b"100 Continue" not in reply
    assert_others_served(strict.port)


def test_unknown_expectation_is_417(strict: GatewayThread) -> None:
    reply = raw_exchange(strict.port, b"GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n")
    assert status_of(reply) == 417


def test_oversized_headers_431(strict: GatewayThread) -> None:
    big = b"X-Big: " + b"a" * 4000 + b"\r\n"
    reply = raw_exchange(strict.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert status_of(reply) == 431
    assert_others_served(strict.port)


def test_oversized_headers_sent_slowly_431(strict: GatewayThread) -> None:
    # A header line that never ends: refused once the limit is passed, not buffered forever.
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(5):
            sock.sendall(b"a" * 1000)
            assert_others_served(strict.port)
        assert status_of(sock.recv(1000)) == 431


def test_too_many_headers_431(strict: GatewayThread) -> None:
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    reply = raw_exchange(strict.port, b"GET / HTTP/1.1\r\n" + many + b"\r\n")
    assert status_of(reply) == 431


def test_oversized_body_413(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n")
        assert_others_served(strict.port)
        reply = sock.recv(1000)
    assert status_of(reply) == 413 and b"Connection: close" in reply


def test_oversized_chunked_body_413(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply = b""
        try:
            for _ in range(10):
                sock.sendall(b"2000\r\n" + b"z" * 0x2000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert_others_served(strict.port)
        try:
            reply = sock.recv(1000)
        except ConnectionResetError:
            pytest.fail("connection reset before the 413 could be read")
    assert status_of(reply) == 413


def test_slow_header_408(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET /slowpoke HTTP/1.1\r\nHost: x\r\n")
        assert_others_served(strict.port)
        reply = sock.recv(1000)
        assert status_of(reply) == 408
        assert sock.recv(1000) == b""  # and closed


def test_slow_body_408(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        assert_others_served(strict.port)
        assert status_of(sock.recv(1000)) == 408


def test_idle_keep_alive_connection_is_closed(strict: GatewayThread) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += sock.recv(65536)
        started = time.monotonic()
        assert_others_served(strict.port)
        assert sock.recv(1000) == b""
        assert time.monotonic() - started < 4


def test_no_reply_in_time_504_and_disconnect(strict: GatewayThread, handler: RawHandler) -> None:
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        handler.wait_for(lambda: any(m.path == "/never" for m in handler.messages))
        conn_id = next(m.conn_id for m in handler.messages if m.path == "/never")
        assert_others_served(strict.port)
        reply = sock.recv(1000)
        assert status_of(reply) == 504
    handler.wait_for(lambda: conn_id in handler.disconnects)


def test_no_handler_connected_503(strict: GatewayThread) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", strict.port), timeout=5) as sock:
        sock.sendall(b"GET /nobody/x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_others_served(strict.port)
        reply = sock.recv(1000)
        assert status_of(reply) == 503
        assert time.monotonic() - started < 5
        # The connection stays usable: the request never reached a handler.
        sock.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"}" not in data:
            data += sock.recv(65536)
        assert status_of(data) == 200


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    b"GET nohost HTTP/1.1\r\n\r\n",
])
def test_malformed_http_400(strict: GatewayThread, garbage: bytes) -> None:
    reply = raw_exchange(strict.port, garbage)
    assert status_of(reply) == 400
    assert_others_served(strict.port)


def test_no_route_404(strict: GatewayThread, specs: tuple[str, str],
                      handler: RawHandler) -> None:
    g = GatewayThread(make_config(specs, routes=[HandlerRoute("/api/", *specs)]))
    try:
        status, _, _ = get(g.port, "/elsewhere")
        assert status == 404
    finally:
        g.stop()
