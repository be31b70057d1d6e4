"""Core acceptance suite: real front end, real `takefive run` processes, real HTTP clients.

Every test runs once per front end in conftest.FRONTEND_KINDS (real Mongrel2, and the
built-in gateway), unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import time
import urllib.parse
from typing import Any

import pytest
import zmq

from takefive import wire

from .harness import (
    Frontend,
    HandlerProcess,
    RawHTTPClient,
    free_ports,
    http_request,
    tcp_spec,
    wait_for,
)

APP = "core:app"


def get_json(frontend: Frontend, path: str, **kw: Any) -> Any:
    status, _, body = http_request(frontend.http_port, "GET", path, **kw)
    assert status == 200, body
    return json.loads(body)


def wait_serving(frontend: Frontend, path: str = "/hello", timeout: float = 20.0) -> None:
    """Poll until a handler answers through the front end."""

    def answered() -> bool:
        try:
            status, _, _ = http_request(frontend.http_port, "GET", path, timeout=2.0)
        except OSError:
            return False
        return status == 200

    wait_for(answered, timeout, what=f"a handler answering {path}")


@pytest.fixture
def served(frontend: Frontend) -> Frontend:
    frontend.start_handler(APP)
    wait_serving(frontend)
    return frontend


# --------------------------------------------------------------------------- requests


def test_get_with_query(served: Frontend) -> None:
    info = get_json(served, "/echo?a=1&a=2&b=two%20words&empty=")
    assert info["method"] == "GET"
    assert info["path"] == "/echo"
    assert info["query"] == {"a": ["1", "2"], "b": ["two words"], "empty": [""]}
    assert info["version"] == "HTTP/1.1"
    assert info["remote_addr"] == "127.0.0.1"


def test_post_form_and_json(served: Frontend) -> None:
    form = urllib.parse.urlencode([("name", "Zoë"), ("tag", "a"), ("tag", "b")]).encode()
    status, _, body = http_request(
        served.http_port,
        "POST",
        "/echo",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    assert json.loads(body)["form"] == {"name": ["Zoë"], "tag": ["a", "b"]}

    document = {"numbers": [1, 2, 3], "nested": {"ok": True}, "text": "ünïcode"}
    status, _, body = http_request(
        served.http_port,
        "POST",
        "/echo",
        body=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body)["json"] == document

    status, _, body = http_request(
        served.http_port,
        "POST",
        "/echo",
        body=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400


@pytest.mark.frontend_options(content_length=2 * 1024 * 1024)
def test_one_mebibyte_body(served: Frontend) -> None:
    payload = os.urandom(1024 * 1024)
    status, _, body = http_request(
        served.http_port,
        "PUT",
        "/echo",
        body=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30.0,
    )
    assert status == 200
    info = json.loads(body)
    assert info["body_len"] == len(payload)
    assert info["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_path_parameters_and_class_handlers(served: Frontend) -> None:
    assert get_json(served, "/users/42") == {"id": 42, "type": "int"}
    status, _, _ = http_request(served.http_port, "GET", "/users/not-a-number")
    assert status == 404
    status, _, body = http_request(served.http_port, "DELETE", "/users/7")
    assert (status, body) == (204, b"")


def test_errors_404_405_500(served: Frontend) -> None:
    status, _, _ = http_request(served.http_port, "GET", "/no/such/page")
    assert status == 404

    status, headers, _ = http_request(served.http_port, "POST", "/only-get", body=b"x")
    assert status == 405
    assert {m.strip() for m in headers["Allow"].split(",")} >= {"GET", "HEAD"}

    # Methods Mongrel2 uses for its own control messages, sent by a client: Mongrel2
    # passes them on (the app answers 405); the gateway's parser knows no such method.
    for method in ("JSON", "XML"):
        status, _, _ = http_request(served.http_port, method, "/hello")
        assert status == (405 if served.kind == "mongrel2" else 400), method

    status, _, body = http_request(served.http_port, "GET", "/boom")
    assert status == 500
    assert b"secret internal detail" not in body
    assert b"Traceback" not in body

    status, _, body = http_request(served.http_port, "GET", "/teapot")
    assert status == 418

    # The handler process logged the traceback and still serves.
    assert http_request(served.http_port, "GET", "/hello")[0] == 200


def test_head_has_no_body_but_the_right_length(served: Frontend) -> None:
    with RawHTTPClient(served.http_port) as client:
        client.send(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        head = client.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 13\r\n" in head
        # No body follows: the next response on the same connection starts right away.
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = client.read_response()
        assert (status, body) == (200, b"Hello, World!")


def test_cookie_round_trip(served: Frontend) -> None:
    status, headers, _ = http_request(served.http_port, "GET", "/cookies/set")
    assert status == 200
    set_cookies = headers.get_all("Set-Cookie") or []
    assert len(set_cookies) == 2
    jar = "; ".join(c.split(";", 1)[0] for c in set_cookies)
    assert any("HttpOnly" in c for c in set_cookies)
    info = get_json(served, "/echo", headers={"Cookie": jar})
    assert info["cookies"] == {"session": "abc123", "theme": "dark"}


def test_repeated_headers_reach_the_handler(served: Frontend) -> None:
    with RawHTTPClient(served.http_port) as client:
        client.send(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n")
        status, _, body = client.read_response()
    assert status == 200
    assert json.loads(body)["x_dup"] == ["a", "b"]


# --------------------------------------------------------------------------- connections


def test_hundred_requests_over_one_keep_alive_connection(served: Frontend) -> None:
    with RawHTTPClient(served.http_port) as client:
        for i in range(100):
            client.send(f"GET /echo?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = client.read_response()
            assert status == 200
            assert json.loads(body)["query"] == {"i": [str(i)]}
            assert headers.get("connection", "").lower() != "close"


def test_connection_close_and_http_1_0_close_the_connection(served: Frontend) -> None:
    with RawHTTPClient(served.http_port) as client:
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = client.read_response()
        assert (status, body) == (200, b"Hello, World!")
        assert headers["connection"].lower() == "close"
        assert client.is_closed(timeout=5.0)
    with RawHTTPClient(served.http_port) as client:
        client.send(b"GET /hello HTTP/1.0\r\n\r\n")
        status, _, body = client.read_response()
        assert (status, body) == (200, b"Hello, World!")
        assert client.is_closed(timeout=5.0)


async def _fetch(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), body
    finally:
        writer.close()


def test_two_hundred_concurrent_requests(served: Frontend) -> None:
    async def main() -> list[tuple[int, bytes]]:
        return await asyncio.wait_for(
            asyncio.gather(*(_fetch(served.http_port, f"/slow?n={i}") for i in range(200))),
            60.0,
        )

    results = asyncio.run(main())
    assert [status for status, _ in results] == [200] * 200
    assert [json.loads(body)["n"] for _, body in results] == [str(i) for i in range(200)]


def test_two_handler_processes_both_receive_work(frontend: Frontend) -> None:
    first = frontend.start_handler(APP)
    second = frontend.start_handler(APP)
    wait_serving(frontend)
    pids: set[int] = set()
    deadline = time.monotonic() + 30.0
    while len(pids) < 2 and time.monotonic() < deadline:

        async def burst() -> list[tuple[int, bytes]]:
            return await asyncio.gather(*(_fetch(frontend.http_port, "/slow") for _ in range(40)))

        for status, body in asyncio.run(burst()):
            assert status == 200
            pids.add(json.loads(body)["pid"])
    assert pids == {first.pid, second.pid}


def test_one_handler_process_serves_two_front_ends(
    frontend: Frontend, request: pytest.FixtureRequest
) -> None:
    factory = request.getfixturevalue(f"{frontend.kind}_factory")
    other: Frontend = factory.start()
    process = frontend.start_handler(
        APP, extra_args=["--send-spec", other.send_spec, "--recv-spec", other.recv_spec]
    )
    wait_serving(frontend)
    wait_serving(other)
    for fe in (frontend, other, frontend, other):
        assert get_json(fe, "/echo?x=1")["pid"] == process.pid


def test_client_disconnect_reaches_the_handler(served: Frontend) -> None:
    with RawHTTPClient(served.http_port) as client:
        client.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: len(get_json(served, "/held")) == 1, 10.0, what="the held request")
        sender, conn_id = get_json(served, "/held")[0]
    wait_for(
        lambda: [sender, conn_id] in get_json(served, "/disconnects"),
        15.0,
        what="the disconnect event",
    )


def test_long_polling_push_to_many_connections(served: Frontend) -> None:
    clients = [RawHTTPClient(served.http_port) for _ in range(3)]
    try:
        for client in clients:
            client.send(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: len(get_json(served, "/held")) == 3, 10.0, what="3 held requests")
        status, _, body = http_request(served.http_port, "POST", "/release", body=b"news!")
        assert (status, body) == (200, b"3")
        for client in clients:
            assert client.read_response()[2] == b"news!"
    finally:
        for client in clients:
            client.close()


# --------------------------------------------------------------------------- failures


def test_handler_killed_and_restarted_serves_again(served: Frontend) -> None:
    handler: HandlerProcess = served.start_handler(APP)  # a second one, to be killed
    wait_serving(served)
    handler.send_signal(signal.SIGKILL)
    handler.wait(timeout=10.0)
    handler.restart()
    # The restarted process serves: requests reach both processes again. Requests go
    # over keep-alive connections: with one request per connection, each request is
    # followed by a disconnect notice, and with two handlers ZeroMQ's round robin would
    # deal every request to one process and every notice to the other.
    pids: set[int] = set()
    deadline = time.monotonic() + 30.0
    while handler.pid not in pids and time.monotonic() < deadline:
        try:
            with RawHTTPClient(served.http_port, timeout=3.0) as client:
                for _ in range(10):
                    client.send(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
                    status, _, body = client.read_response()
                    assert status == 200
                    pids.add(int(body))
        except (OSError, AssertionError):
            continue  # a request pushed to the dead process is lost with it
    assert handler.pid in pids


def test_sigterm_lets_in_flight_requests_finish(frontend: Frontend) -> None:
    handler = frontend.start_handler(APP)
    wait_serving(frontend)
    with RawHTTPClient(frontend.http_port, timeout=15.0) as client:
        client.send(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(
            lambda: http_request(frontend.http_port, "GET", "/sleeping")[2] == b"1",
            10.0,
            what="the sleeping request",
        )
        handler.send_signal(signal.SIGTERM)
        status, _, body = client.read_response()
        assert (status, body) == (200, b"rested")
    assert handler.wait(timeout=15.0) == 0
    # The sleeping request was in flight (a request that just finished may be counted too).
    assert re.search(r"stopping: no new requests; [1-9]\d* in flight", handler.log_text())


def test_garbage_on_the_pull_socket_leaves_the_handler_serving(frontend: Frontend) -> None:
    context: zmq.Context[Any] = zmq.Context()
    push = context.socket(zmq.PUSH)
    sub = context.socket(zmq.SUB)
    try:
        send_port, recv_port = free_ports(2)
        push.bind(tcp_spec(send_port))
        sub.setsockopt(zmq.SUBSCRIBE, b"test-front-end")
        sub.bind(tcp_spec(recv_port))
        frontend.start_handler(
            APP,
            extra_args=["--send-spec", tcp_spec(send_port), "--recv-spec", tcp_spec(recv_port)],
        )
        wait_serving(frontend)
        garbage = [
            b"",
            b"\x00\xff" * 64,
            b"not a mongrel2 message",
            b"uuid 1 /x 99999999999:{},0:,",
            b"uuid 1 /x 2:{},0:",
            b"bad!uuid 1 / 2:{},0:,",
            b"uuid x / 2:{},0:,",
            b"uuid 1 / 4:null,0:,",
            os.urandom(4096),
        ]
        for frame in garbage:
            push.send(frame)
        # Through the real front end, and through the test's own socket, it still serves.
        assert http_request(frontend.http_port, "GET", "/hello")[2] == b"Hello, World!"
        push.send(
            wire.encode_request(
                "test-front-end",
                5,
                "/hello",
                {"METHOD": "GET", "VERSION": "HTTP/1.1", "PATH": "/hello", "URI": "/hello"},
            )
        )
        assert sub.poll(10_000), "no answer to a real request after the garbage"
        reply = wire.parse_response(sub.recv())
        assert reply.conn_ids == ["5"]
        assert bytes(reply.body).endswith(b"Hello, World!")
    finally:
        push.close(linger=0)
        sub.close(linger=0)
        context.term()


def _exchange(port: int, requests: list[bytes]) -> list[bytes]:
    answers = []
    for raw in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
            sock.sendall(raw)
            client = RawHTTPClient.__new__(RawHTTPClient)
            client.sock, client.buffer = sock, b""
            status, headers, body = client.read_response()
            info = (
                json.loads(body)
                if headers.get("content-type", "").startswith("application/json")
                else body.decode("latin-1")
            )
            if isinstance(info, dict):
                info.pop("pid", None)
            answers.append(json.dumps([status, info], sort_keys=True).encode())
    return answers


def test_json_and_tnetstring_headers_behave_identically(mongrel2_factory: Any) -> None:
    # Header encoding is a Mongrel2 handler setting: this one runs behind Mongrel2 only.
    json_fe: Frontend = mongrel2_factory.start(protocol="json")
    tnet: Frontend = mongrel2_factory.start(protocol="tnetstring")
    for fe in (json_fe, tnet):
        fe.start_handler(APP)
        wait_serving(fe)
    requests = [
        b"GET /echo?a=1&a=2 HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Dup: b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\nX-Odd: tab\there \xe9\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"k": [1]} ',
        b"GET /users/5 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /only-get HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ]
    assert _exchange(json_fe.http_port, requests) == _exchange(tnet.http_port, requests)
