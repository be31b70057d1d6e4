"""takefive.wire against REAL Mongrel2 traffic.

Each test starts a real Mongrel2 (generated config, free loopback ports, tmp dir), talks
to it with real HTTP clients, and plays the handler with plain pyzmq (``RawHandler``:
PULL + XPUB), not takefive's runner. What Mongrel2 sends is decoded with
``wire.parse_request``; what we send back is built with ``wire.encode_*``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import struct

import pytest

from takefive import wire

from .harness import (
    Mongrel2Factory,
    RawHandler,
    RawHTTPClient,
    RunningMongrel2,
    http_request,
    raw_clients,
)

pytestmark = pytest.mark.mongrel2

PROTOCOLS = ["json", "tnetstring"]


def ok(body: bytes = b"ok", *, close: bool = False) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def start(factory: Mongrel2Factory, protocol: str = "json", **kw: object) -> RunningMongrel2:
    return factory.start(protocol=protocol, **kw)  # type: ignore[arg-type]


@pytest.fixture
def handler_for():
    handlers: list[RawHandler] = []

    def make(m2: RunningMongrel2) -> RawHandler:
        handler = RawHandler(m2.send_spec, m2.recv_spec)
        handlers.append(handler)
        handler.wait_subscribed()
        return handler

    yield make
    for handler in handlers:
        handler.close()


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_with_query(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    with RawHTTPClient(m2.http_port) as client:
        client.send(
            b"GET /hello/world?a=1&b=two%20x HTTP/1.1\r\nHost: example.test\r\n"
            b"User-Agent: takefive-test\r\nAccept: */*\r\n\r\n"
        )
        message = handler.recv_request()
        assert message.sender == m2.uuid
        assert message.conn_id.isdigit()
        assert message.path == "/hello/world"
        assert message.method == "GET"
        assert not message.is_disconnect
        h = message.headers
        assert h["PATH"] == "/hello/world"
        assert h["URI"] == "/hello/world?a=1&b=two%20x"
        assert h["QUERY"] == "a=1&b=two%20x"
        assert h["VERSION"] == "HTTP/1.1"
        assert h["PATTERN"] == "/"
        assert h["URL_SCHEME"] == "http"
        assert h["REMOTE_ADDR"] == "127.0.0.1"
        assert h["host"] == "example.test"
        assert h["user-agent"] == "takefive-test"
        assert h["accept"] == "*/*"
        assert message.body == b""

        handler.reply(message.sender, message.conn_id, ok(b"hello back"))
        status, _, body = client.read_response()
        assert (status, body) == (200, b"hello back")


def test_keep_alive_requests_keep_their_connection_id(mongrel2_factory, handler_for):
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with RawHTTPClient(m2.http_port) as client:
        ids = []
        for n in range(3):
            client.send(f"GET /n/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            message = handler.recv_request()
            assert message.path == f"/n/{n}"
            ids.append(message.conn_id)
            handler.reply(message.sender, message.conn_id, ok(str(n).encode()))
            assert client.read_response()[2] == str(n).encode()
        assert len(set(ids)) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_post_body_arrives_byte_for_byte(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    payload = bytes(range(256)) * 20 + b"\r\n0:,}]" + "ünï".encode()  # < 20,480 bytes
    with RawHTTPClient(m2.http_port) as client:
        client.send(
            b"POST /upload?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(payload), payload)
        )
        message = handler.recv_request()
        assert message.method == "POST"
        assert message.path == "/upload"
        assert message.headers["content-length"] == str(len(payload))
        assert message.headers["content-type"] == "application/octet-stream"
        assert message.body == payload
        handler.reply(message.sender, message.conn_id, ok(b"%d" % len(message.body)))
        assert client.read_response()[2] == str(len(payload)).encode()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_repeated_headers_become_a_list(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    with RawHTTPClient(m2.http_port) as client:
        client.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Dup: a\r\nX-Single: s\r\nx-dup: b\r\n"
            b"X-DUP: c, d\r\n\r\n"
        )
        message = handler.recv_request()
        assert message.headers["x-dup"] == ["a", "b", "c, d"]
        assert message.headers["x-single"] == "s"
        handler.reply(message.sender, message.conn_id, ok())
        assert client.read_response()[0] == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tab_and_non_utf8_bytes_in_a_header_value(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    raw_value = b'a\tb \xff\xfe "q" \\ \xc3\xa9'
    with RawHTTPClient(m2.http_port) as client:
        client.send(b"GET /w HTTP/1.1\r\nHost: x\r\nX-Weird: " + raw_value + b"\r\n\r\n")
        frame = handler.recv()
        if protocol == "json":
            # What the notes say: Mongrel2 escapes only '"' and '\', the rest passes raw.
            assert b"a\tb \xff\xfe" in frame
        message = wire.parse_request(frame)
        value = message.headers["x-weird"]
        assert isinstance(value, str)
        assert value.encode("utf-8", "surrogateescape") == raw_value
        handler.reply(message.sender, message.conn_id, ok())
        assert client.read_response()[0] == 200


def test_json_and_tnetstring_headers_decode_to_the_same_message(mongrel2_factory, handler_for):
    servers = [start(mongrel2_factory, "json"), start(mongrel2_factory, "tnetstring")]
    request = (
        b"POST /same/path?q=%C3%A9&r HTTP/1.1\r\nHost: example.test\r\nX-Dup: 1\r\n"
        b"X-Dup: 2\r\nX-Tab: a\tb\r\nX-Bin: \xff\xfe\r\nCookie: a=1; b=2\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    messages = []
    for m2 in servers:
        handler = handler_for(m2)
        with RawHTTPClient(m2.http_port) as client:
            client.send(request)
            message = handler.recv_request()
            handler.reply(message.sender, message.conn_id, ok())
            assert client.read_response()[0] == 200
        assert message.sender == m2.uuid
        messages.append(message)
    as_json, as_tnet = messages
    assert as_json.path == as_tnet.path == "/same/path"
    assert as_json.body == as_tnet.body == b"hello"
    assert as_json.headers == as_tnet.headers
    assert as_json.headers["x-dup"] == ["1", "2"]
    assert as_json.headers["QUERY"] == "q=%C3%A9&r"


# --------------------------------------------------------------------------- disconnects


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_disconnect_message_when_the_client_closes(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    client = RawHTTPClient(m2.http_port)
    client.send(b"GET /long-poll HTTP/1.1\r\nHost: x\r\n\r\n")
    request = handler.recv_request()
    client.close()
    frame = handler.recv()
    message = wire.parse_request(frame)
    assert message.is_disconnect
    assert message.sender == m2.uuid
    assert message.conn_id == request.conn_id
    assert message.path == "@*"
    assert message.method == "JSON"
    assert message.headers == {"METHOD": "JSON"}
    assert message.body == wire.DISCONNECT_BODY
    # Byte for byte what wire.encode_disconnect produces for this front end.
    assert frame == wire.encode_disconnect(
        m2.uuid, request.conn_id, tnetstring_headers=protocol == "tnetstring"
    )


def test_replying_to_a_gone_connection_yields_a_disconnect(mongrel2_factory, handler_for):
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with RawHTTPClient(m2.http_port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        live = handler.recv_request()
        handler.reply(m2.uuid, 987654, ok())  # an id that never existed
        message = handler.recv_message()
        assert message.is_disconnect
        assert message.conn_id == "987654"
        handler.reply(live.sender, live.conn_id, ok())
        assert client.read_response()[0] == 200


# --------------------------------------------------------------------------- responses


def test_one_response_message_reaches_three_clients(mongrel2_factory, handler_for):
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with raw_clients(m2.http_port, 3) as clients:
        for n, client in enumerate(clients):
            client.send(f"GET /wait/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        ids = sorted({handler.recv_request().conn_id for _ in clients})
        assert len(ids) == 3
        frames = wire.encode_response(m2.uuid, ids, ok(b"broadcast"))
        assert len(frames) == 1
        handler.send(frames[0])
        for client in clients:
            assert client.read_response()[1:] == (
                {"content-type": "text/plain", "content-length": "9"},
                b"broadcast",
            )


def test_empty_body_closes_the_connection(mongrel2_factory, handler_for):
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with RawHTTPClient(m2.http_port) as client:
        # HTTP/1.0 and "Connection: close" do not make Mongrel2 close: the handler must.
        client.send(b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n")
        message = handler.recv_request()
        handler.reply(message.sender, message.conn_id, ok(close=True))
        assert client.read_response()[2] == b"ok"
        assert not client.is_closed(timeout=0.5)
        for frame in wire.encode_close(message.sender, message.conn_id):
            handler.send(frame)
        assert client.is_closed(timeout=10.0)


def test_a_response_to_more_than_128_clients_is_split(mongrel2_factory, handler_for):
    count = 2 * wire.MAX_IDS_PER_MESSAGE + 3  # three messages: 128 + 128 + 3 ids
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with raw_clients(m2.http_port, count) as clients:
        for client in clients:
            client.send(b"GET /many HTTP/1.1\r\nHost: x\r\n\r\n")
        ids = {handler.recv_request().conn_id for _ in clients}
        assert len(ids) == count
        frames = wire.encode_response(m2.uuid, sorted(ids, key=int), ok(b"all of you"))
        assert [len(wire.parse_response(f).conn_ids) for f in frames] == [128, 128, 3]
        for frame in frames:
            handler.send(frame)
        for client in clients:
            assert client.read_response()[2] == b"all of you"


def test_a_single_message_with_129_ids_is_dropped_whole(mongrel2_factory, handler_for):
    """Why encode_response chunks: Mongrel2 1.12 rejects a message with more than 128 ids."""
    count = wire.MAX_IDS_PER_MESSAGE + 1
    m2 = start(mongrel2_factory)
    handler = handler_for(m2)
    with raw_clients(m2.http_port, count) as clients:
        by_id = {}
        for client in clients:
            client.send(b"GET /many HTTP/1.1\r\nHost: x\r\n\r\n")
            by_id[handler.recv_request().conn_id] = client
        ids = sorted(by_id, key=int)
        joined = " ".join(ids).encode()
        handler.send(b"%s %d:%s, %s" % (m2.uuid.encode(), len(joined), joined, ok(b"too many")))
        # Mongrel2 handles its SUB socket in order: once this reply has arrived, it has
        # dealt with the oversized message too.
        handler.reply(m2.uuid, ids[0], ok(b"marker"))
        assert by_id[ids[0]].read_response()[2] == b"marker"
        assert not any(_readable(by_id[i], 0) for i in ids)
        assert "too many target listeners" in m2.log_text()


def _readable(client: RawHTTPClient, timeout: float) -> bool:
    return bool(select.select([client.sock], [], [], timeout)[0])


# --------------------------------------------------------------------------- WebSocket

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_frame(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_websocket_handshake_and_message_shape(mongrel2_factory, handler_for, protocol):
    m2 = start(mongrel2_factory, protocol)
    handler = handler_for(m2)
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    with RawHTTPClient(m2.http_port) as client:
        client.send(
            b"GET /ws?room=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n"
        )
        handshake = handler.recv_request()
        assert handshake.method == "WEBSOCKET_HANDSHAKE"
        assert handshake.path == "/ws"
        assert handshake.headers["QUERY"] == "room=1"
        assert handshake.headers["sec-websocket-key"] == key.decode()
        assert handshake.headers["upgrade"].lower() == "websocket"
        assert handshake.body == accept
        handler.reply(
            handshake.sender,
            handshake.conn_id,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + handshake.body + b"\r\n\r\n",
        )
        assert client.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")

        client.send(_ws_frame(0x1, b"hello ws"))
        message = handler.recv_request()
        assert message.method == "WEBSOCKET"
        assert message.conn_id == handshake.conn_id
        assert message.headers["FLAGS"] == "0x81"
        assert message.body == b"hello ws"

        binary = os.urandom(300)
        client.send(_ws_frame(0x2, binary))
        message = handler.recv_request()
        assert message.headers["FLAGS"] == "0x82"
        assert message.body == binary

        # The handler sends complete unmasked frames.
        handler.reply(message.sender, message.conn_id, b"\x81\x05howdy")
        assert client.read_exactly(7) == b"\x81\x05howdy"


# --------------------------------------------------------------------------- the fixture itself


def test_factory_runs_several_servers_with_distinct_ports(mongrel2_factory, handler_for):
    a, b = start(mongrel2_factory), start(mongrel2_factory, "tnetstring")
    assert len({a.http_port, b.http_port, a.uuid, b.uuid} | {a.send_spec, b.send_spec}) == 6
    for m2 in (a, b):
        handler = handler_for(m2)
        with RawHTTPClient(m2.http_port) as client:
            client.send(b"GET /which HTTP/1.1\r\nHost: x\r\n\r\n")
            message = handler.recv_request()
            assert message.sender == m2.uuid
            handler.reply(message.sender, message.conn_id, ok(m2.uuid.encode()))
            assert client.read_response()[2] == m2.uuid.encode()


def test_content_length_limit_is_applied(mongrel2_factory, handler_for):
    m2 = start(mongrel2_factory, content_length=100, upload_temp_store=None)
    handler = handler_for(m2)
    status, _, _ = http_request(m2.http_port, "POST", "/big", body=b"x" * 101)
    assert status == 413
    assert handler.no_message(0.2)
    with RawHTTPClient(m2.http_port) as client:
        client.send(b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"y" * 100)
        message = handler.recv_request()
        assert message.body == b"y" * 100
        handler.reply(message.sender, message.conn_id, ok())
        assert client.read_response()[0] == 200
