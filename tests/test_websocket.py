"""takefive.websocket: RFC 6455 framing, and WebSocket handlers behind Mongrel2 messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takefive import App, HTTPError, ProtocolError, Request, WebSocketHandler
from takefive.websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    MessageAssembler,
    accept_key,
    decode_frame,
    encode_close_payload,
    encode_frame,
    handshake_response,
    parse_close_payload,
    parse_flags,
)
from takefive.wire import encode_request, parse_request

SENDER = "0b5e7a1c-1111-4222-8333-444455556666"

# --------------------------------------------------------------------------- framing


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_response_bytes() -> None:
    data = handshake_response("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "chat")
    assert data == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n\r\n"
    )


def test_rfc_examples() -> None:
    # RFC 6455 section 5.7
    assert encode_frame(TEXT, "Hello") == b"\x81\x05\x48\x65\x6c\x6c\x6f"
    masked = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert encode_frame(TEXT, "Hello", mask=b"\x37\xfa\x21\x3d") == masked
    assert decode_frame(masked) == (True, TEXT, b"Hello", len(masked))
    assert decode_frame(b"\x01\x03Hel", masked=False) == (False, TEXT, b"Hel", 5)
    assert decode_frame(b"\x80\x02lo", masked=False) == (True, CONTINUATION, b"lo", 4)
    assert encode_frame(PING, b"Hello")[:2] == b"\x89\x05"
    assert encode_frame(BINARY, bytes(256))[:4] == b"\x82\x7e\x01\x00"
    assert encode_frame(BINARY, bytes(65536))[:10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"


@given(
    payload=st.binary(max_size=70000),
    opcode=st.sampled_from([TEXT, BINARY, CONTINUATION]),
    fin=st.booleans(),
    mask=st.binary(min_size=4, max_size=4),
    extra=st.binary(max_size=10),
)
def test_masked_round_trip(
    payload: bytes, opcode: int, fin: bool, mask: bytes, extra: bytes
) -> None:
    frame = encode_frame(opcode, payload, fin=fin, mask=mask)
    assert decode_frame(frame + extra) == (fin, opcode, payload, len(frame))
    # Every strict prefix is incomplete, never an error.
    for cut in {0, 1, 2, 3, 5, 9, 13, len(frame) - 1}:
        if 0 <= cut < len(frame):
            assert decode_frame(frame[:cut]) is None


@given(payload=st.binary(max_size=300), opcode=st.sampled_from([TEXT, BINARY, PING, PONG, CLOSE]))
def test_unmasked_round_trip(payload: bytes, opcode: int) -> None:
    if opcode >= CLOSE:
        payload = payload[:125]
    frame = encode_frame(opcode, payload)
    assert decode_frame(memoryview(frame), masked=False) == (True, opcode, payload, len(frame))


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\xc1\x80" + bytes(4), "reserved bits"),
        (b"\x83\x80" + bytes(4), "unknown WebSocket opcode"),
        (b"\x81\x00", "must be masked"),
        (b"\x09\x80" + bytes(4), "fragmented WebSocket control"),
        (b"\x89\xfe\x00\x7e" + bytes(4), "control frame longer"),
        (b"\x82\xfe\x00\x05" + bytes(4), "minimally"),
        (b"\x82\xff" + (100).to_bytes(8, "big") + bytes(4), "minimally"),
        (b"\x82\xff" + (1 << 63).to_bytes(8, "big"), "top bit"),
        (b"\x82\xff" + (1 << 40).to_bytes(8, "big"), "exceeds"),
    ],
)
def test_decode_errors(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_frame(frame)


def test_decode_size_limit_before_payload_arrives() -> None:
    header = b"\x82\xfe" + (2000).to_bytes(2, "big")
    with pytest.raises(ProtocolError, match="exceeds the 1000 limit"):
        decode_frame(header, max_size=1000)
    assert decode_frame(header + b"\x00\x00\x00\x00" + bytes(10), max_size=2000) is None


def test_server_frames_must_not_be_masked_for_client_side_decoding() -> None:
    with pytest.raises(ProtocolError, match="must not be masked"):
        decode_frame(encode_frame(TEXT, "x", mask=b"abcd"), masked=False)


def test_encode_errors() -> None:
    with pytest.raises(ValueError):
        encode_frame(3, b"")
    with pytest.raises(ValueError):
        encode_frame(PING, bytes(126))
    with pytest.raises(ValueError):
        encode_frame(CLOSE, b"", fin=False)
    with pytest.raises(ValueError):
        encode_frame(TEXT, b"", mask=b"abc")


def test_close_payloads() -> None:
    assert encode_close_payload() == b"\x03\xe8"
    assert encode_close_payload(None) == b""
    assert parse_close_payload(encode_close_payload(4001, "bye ✓")) == (4001, "bye ✓")
    assert parse_close_payload(b"") == (None, "")
    for bad in (b"\x03", (999).to_bytes(2, "big"), (1005).to_bytes(2, "big"), b"\x03\xe8\xff"):
        with pytest.raises(ProtocolError):
            parse_close_payload(bad)
    with pytest.raises(ValueError):
        encode_close_payload(1000, "x" * 124)


def test_parse_flags() -> None:
    assert parse_flags("0x81") == (True, TEXT)
    assert parse_flags("0x88") == (True, CLOSE)
    assert parse_flags("0x2") == (False, BINARY)
    for bad in ("", "zz", "0x100", "-1"):
        with pytest.raises(ProtocolError):
            parse_flags(bad)


# --------------------------------------------------------------------------- handlers


class Collector:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    def deliver(self, sender: str, conn_ids: Sequence[str], data: bytes) -> None:
        self.sent.append((sender, list(conn_ids), data))

    def frames(self) -> list[tuple[int, bytes] | str]:
        """Decoded frames per delivery; "CLOSE-CONN" for an empty delivery."""
        out: list[tuple[int, bytes] | str] = []
        for _, _, data in self.sent:
            if not data:
                out.append("CLOSE-CONN")
                continue
            if data.startswith(b"HTTP/1.1 101"):
                data = data[data.index(b"\r\n\r\n") + 4 :]
                out.append("101")
            while data:
                decoded = decode_frame(data, masked=False)
                assert decoded is not None
                _, opcode, payload, used = decoded
                out.append((opcode, payload))
                data = data[used:]
        return out


ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws_request(
    method: str, path: str = "/chat", body: bytes = b"", flags: str | None = None, **extra: Any
) -> Request:
    headers: dict[str, Any] = {
        "METHOD": method,
        "PATH": path,
        "VERSION": "HTTP/1.1",
        "URI": path,
        "host": "localhost",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    if flags is not None:
        headers["FLAGS"] = flags
    headers.update(extra)
    return Request(parse_request(encode_request(SENDER, 11, path, headers, body)))


def handshake(path: str = "/chat", **extra: Any) -> Request:
    return ws_request("WEBSOCKET_HANDSHAKE", path, ACCEPT.encode(), **extra)


def message(data: bytes, flags: str = "0x81", path: str = "/chat") -> Request:
    return ws_request("WEBSOCKET", path, data, flags)


@pytest.fixture
def setup() -> tuple[App, Collector, list[Any]]:
    app = App()
    box = Collector()
    app.attach(box)
    events: list[Any] = []

    @app.websocket("/chat")
    class Chat(WebSocketHandler):
        subprotocols = ("v2.chat", "v1.chat")

        async def on_open(self) -> None:
            if self.request.query.get("deny"):
                raise HTTPError(403, "go away")
            events.append(("open", self.sender, self.conn_id, self.subprotocol))
            self.send("welcome")
            if self.request.query.get("bye"):
                self.close(4000, "not today")

        async def on_message(self, data: str | bytes) -> None:
            events.append(("message", data))
            if data == "fail":
                raise RuntimeError("handler bug")
            if data == "quit":
                self.close()
                return
            self.send(data)

        def on_close(self) -> None:
            events.append(("close", self.close_code, self.close_reason))

    @app.websocket("/room/{name}")
    class Room(WebSocketHandler):
        def on_message(self, data: str | bytes) -> None:
            self.send(f"{self.request.path_params['name']}: {data!r}")

    return app, box, events


def handle(app: App, request: Request) -> Any:
    return asyncio.run(app.handle(request))


def test_handshake_sends_101_with_on_open_messages(setup: Any) -> None:
    app, box, events = setup
    assert handle(app, handshake(**{"sec-websocket-protocol": "v1.chat, v2.chat"})) is None
    assert len(box.sent) == 1  # 101 and welcome in one message, in order
    sender, ids, data = box.sent[0]
    assert (sender, ids) == (SENDER, ["11"])
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {ACCEPT}\r\n".encode() in data
    assert b"Sec-WebSocket-Protocol: v2.chat\r\n" in data
    assert b"Content-Length" not in data
    assert box.frames() == ["101", (TEXT, b"welcome")]
    assert events == [("open", SENDER, "11", "v2.chat")]


def test_handshake_without_matching_subprotocol(setup: Any) -> None:
    app, box, events = setup
    handle(app, handshake(**{"sec-websocket-protocol": "other"}))
    assert b"Sec-WebSocket-Protocol" not in box.sent[0][2]
    assert events[0][3] is None


def test_handshake_refused_with_http_error(setup: Any) -> None:
    app, box, events = setup
    response = handle(app, handshake(QUERY="deny=1"))
    assert response is not None and response.status == 403
    assert box.sent == [] and events == []


def test_close_during_on_open(setup: Any) -> None:
    app, box, _ = setup
    handle(app, handshake(QUERY="bye=1"))
    frames = box.frames()
    assert frames[:2] == ["101", (TEXT, b"welcome")]
    assert frames[2] == (CLOSE, encode_close_payload(4000, "not today"))
    assert frames[3] == "CLOSE-CONN"


def test_handshake_unknown_path_is_404_and_plain_get_is_426(setup: Any) -> None:
    app, box, _ = setup
    response = handle(app, handshake("/nope"))
    assert response is not None and response.status == 404
    get = ws_request("GET", "/chat")
    response = handle(app, get)
    assert response is not None and response.status == 426
    assert response.headers["Upgrade"] == "websocket"
    assert box.sent == []


def test_text_and_binary_messages_echo(setup: Any) -> None:
    app, box, events = setup
    assert handle(app, message("héllo".encode())) is None
    handle(app, message(b"\x00\xff", "0x82"))
    assert box.frames() == [(TEXT, "héllo".encode()), (BINARY, b"\x00\xff")]
    assert events == [("message", "héllo"), ("message", b"\x00\xff")]


def test_path_params_in_websocket_routes(setup: Any) -> None:
    app, box, _ = setup
    handle(app, message(b"hi", path="/room/blue"))
    assert box.frames() == [(TEXT, b"blue: 'hi'")]


def test_ping_gets_pong_and_pong_is_ignored(setup: Any) -> None:
    app, box, events = setup
    handle(app, message(b"are you there", "0x89"))
    handle(app, message(b"ignored", "0x8a"))
    assert box.frames() == [(PONG, b"are you there")]
    assert events == []


def test_client_close_runs_on_close_echoes_and_closes(setup: Any) -> None:
    app, box, events = setup
    handle(app, message(encode_close_payload(1001, "leaving"), "0x88"))
    assert events == [("close", 1001, "leaving")]
    assert box.frames() == [(CLOSE, b"\x03\xe9"), "CLOSE-CONN"]


def test_empty_close_frame_answered_with_1000(setup: Any) -> None:
    app, box, events = setup
    handle(app, message(b"", "0x88"))
    assert events == [("close", None, "")]
    assert box.frames() == [(CLOSE, b"\x03\xe8"), "CLOSE-CONN"]


def test_handler_close(setup: Any) -> None:
    app, box, _ = setup
    handle(app, message(b"quit"))
    assert box.frames() == [(CLOSE, b"\x03\xe8"), "CLOSE-CONN"]


@pytest.mark.parametrize(
    ("body", "flags", "code"),
    [
        (b"\xff\xfe", "0x81", 1007),  # text not UTF-8
        (b"x", "bogus", 1002),  # unreadable FLAGS
        (b"x", "0x80", 1002),  # continuation: Mongrel2 reassembles, so unexpected
        (b"\x03", "0x88", 1002),  # malformed close payload
    ],
)
def test_protocol_problems_close_the_connection(
    setup: Any, body: bytes, flags: str, code: int
) -> None:
    app, box, events = setup
    handle(app, message(body, flags))
    frames = box.frames()
    assert frames[-1] == "CLOSE-CONN"
    first = frames[0]
    assert isinstance(first, tuple) and first[0] == CLOSE
    assert parse_close_payload(first[1])[0] == code
    assert events == []


def test_handler_exception_closes_with_1011_and_logs(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, box, _ = setup
    with caplog.at_level(logging.ERROR, logger="takefive.app"):
        assert handle(app, message(b"fail")) is None
    frames = box.frames()
    assert frames == [(CLOSE, b"\x03\xf3"), "CLOSE-CONN"]
    assert "handler bug" in caplog.text


def test_message_for_unrouted_path_closes_with_1008(setup: Any) -> None:
    app, box, _ = setup
    handle(app, message(b"x", path="/gone"))
    assert box.frames() == [(CLOSE, b"\x03\xf0"), "CLOSE-CONN"]


def test_send_after_close_raises(setup: Any) -> None:
    app, box, _ = setup
    handler = WebSocketHandler(app, message(b"x"))
    handler.close()
    handler.close()  # idempotent
    with pytest.raises(RuntimeError):
        handler.send("late")
    with pytest.raises(RuntimeError):
        handler.ping(b"late")
    assert box.frames()[0] == (CLOSE, b"\x03\xe8")


def test_websocket_decorator_type_check() -> None:
    app = App()
    with pytest.raises(TypeError):
        app.websocket("/x")(object)  # type: ignore[type-var]
    with pytest.raises(TypeError):
        app.add_route("/y", WebSocketHandler)


@given(st.binary(max_size=40), st.booleans())
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes, masked: bool) -> None:
    try:
        result = decode_frame(data, masked=masked, max_size=1 << 20)
    except ProtocolError:
        return
    if result is not None:
        _, _, payload, used = result
        assert used <= len(data) and len(payload) <= used


# --------------------------------------------------------------------------- reassembly


def test_message_assembler() -> None:
    asm = MessageAssembler(max_size=10)
    assert asm.feed(True, TEXT, b"whole") == (TEXT, b"whole")
    assert asm.feed(False, BINARY, b"ab") is None
    assert asm.feed(True, PING, b"p") == (PING, b"p")  # control frames interleave
    assert asm.feed(False, CONTINUATION, b"cd") is None
    assert asm.feed(True, CONTINUATION, b"ef") == (BINARY, b"abcdef")
    with pytest.raises(ProtocolError, match="without a fragmented"):
        asm.feed(True, CONTINUATION, b"x")
    asm.feed(False, TEXT, b"a")
    with pytest.raises(ProtocolError, match="inside a fragmented"):
        asm.feed(True, TEXT, b"b")
    with pytest.raises(ProtocolError, match="limit"):
        MessageAssembler(max_size=3).feed(True, BINARY, b"abcd")
    big = MessageAssembler(max_size=5)
    big.feed(False, BINARY, b"abc")
    with pytest.raises(ProtocolError, match="limit"):
        big.feed(False, CONTINUATION, b"def")


@given(st.binary(max_size=200), st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_fragments_decode_and_reassemble(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    stream = b""
    for i, piece in enumerate(pieces):
        opcode = BINARY if i == 0 else CONTINUATION
        stream += encode_frame(opcode, piece, fin=i == len(pieces) - 1, mask=b"\x01\x02\x03\x04")
    asm = MessageAssembler()
    out = []
    while stream:
        frame = decode_frame(stream)
        assert frame is not None
        fin, opcode, payload, used = frame
        stream = stream[used:]
        message = asm.feed(fin, opcode, payload)
        if message is not None:
            out.append(message)
    assert out == [(BINARY, data)]
