"""The optional C extension takefive._speedups against its reference, takefive.wire.

Every C function must give exactly what the Python code gives for the same input
(or None, leaving the decision to the Python code). Under CI the extension must be
built: a missing one fails there instead of quietly testing only the Python code.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from takefive import request as request_module
from takefive import response as response_module
from takefive import runner as runner_module
from takefive import wire
from takefive.request import Request, request_from
from takefive.response import HTMLResponse, JSONResponse, PlainTextResponse, Response
from takefive.wire import Message, encode_request, parse_request

try:
    from takefive import _speedups
except ImportError:  # pragma: no cover - a machine without a C compiler
    if os.environ.get("CI"):
        raise
    pytest.skip("takefive._speedups is not built (no C compiler?)", allow_module_level=True)

SENDER = "54c6755b-9628-40a4-9a2d-cc82a816345e"
OTHER = "0badc0de-0000-4000-8000-000000000000"
HEADERS = {"PATH": "/hello", "METHOD": "GET", "VERSION": "HTTP/1.1", "host": "h", "x": "é"}


def frame(conn_id: object = 7, path: str = "/hello", body: bytes = b"", **extra: str) -> bytes:
    return encode_request(SENDER, conn_id, path, {**HEADERS, **extra}, body)  # type: ignore[arg-type]


def c_parse(data: bytes) -> Message | None:
    return _speedups.parse_common(data, wire._senders, wire._known_headers, Message)


def learn(data: bytes) -> None:
    """Let the Python code see a frame twice: its sender and header block become known.
    (Not through parse_request: the C code may answer from its last sender and header
    block, which the Python code's dicts may have forgotten meanwhile.)"""
    wire._parse_any(data)
    wire._parse_any(data)


def mutations(data: bytes) -> list[bytes]:
    """Every truncation, and every single-byte replacement by a few telling bytes."""
    out = [data[:cut] for cut in range(len(data))]
    for i in range(len(data)):
        out.extend(data[:i] + bytes([b]) + data[i + 1 :] for b in b' :,0}9"x[\xff')
    out.extend([data + b",", data + b"0", b" " + data])
    return out


def test_the_extension_is_in_use() -> None:
    assert wire.C_SPEEDUPS
    assert wire.parse_request is _speedups.parse_request
    assert wire._c_encode_reply is _speedups.encode_reply
    assert wire._c_encode_sized_reply is _speedups.encode_sized_reply


# --------------------------------------------------------------------------- parse_common


REFERENCE_FRAMES = [
    frame(),
    frame(12345678901234567890, "/a/b%20c", b"body bytes, with , and : in it"),
    frame(0, "/\xe9t\xe9", b"x" * 300),
    encode_request(SENDER, 3, "/p", {"METHOD": "POST"}, b"{}"),
    b"%b 5 /raw\xff\xfe 2:{},0:," % SENDER.encode(),  # a path that is not UTF-8
    encode_request(SENDER, 5, "@*", {"METHOD": "JSON"}, wire.DISCONNECT_BODY),
]


@pytest.mark.parametrize("data", REFERENCE_FRAMES)
def test_parse_agrees_with_the_python_code_on_every_mutation(data: bytes) -> None:
    learn(data)
    assert c_parse(data) == parse_request(data)
    taken = 0
    for candidate in [data, *mutations(data)]:
        fast = c_parse(candidate)
        reference = wire._parse_common(candidate)
        if fast is None:
            continue  # the Python code decides (an unknown block, or not the common case)
        taken += 1
        assert fast == reference, candidate
        assert type(fast) is Message and type(fast.headers) is dict
        assert fast == wire._parse_request(candidate)
    assert taken >= 1


def _decoded(parse: Any, data: object) -> object:
    """A message, or the ProtocolError's text."""
    try:
        return parse(data)
    except wire.ProtocolError as exc:
        return f"ProtocolError: {exc}"


@pytest.mark.parametrize("data", REFERENCE_FRAMES)
def test_parse_request_in_c_is_the_python_decoder_on_every_mutation(data: bytes) -> None:
    learn(data)
    for candidate in [data, *mutations(data)]:
        assert _decoded(_speedups.parse_request, candidate) == _decoded(wire._parse_any, candidate)
    for other in (bytearray(data), memoryview(data), data.decode("latin-1"), None, 7):
        assert _decoded(_speedups.parse_request, other) == _decoded(wire._parse_any, other)


def test_parse_request_in_c_leaks_no_references() -> None:
    data = frame(body=b"abc")
    learn(data)
    bad = data[:-1]
    before = sys.getrefcount(data), sys.getrefcount(bad), sys.getrefcount(wire._parse_any)
    for _ in range(5_000):
        assert _speedups.parse_request(data).body == b"abc"
        with pytest.raises(wire.ProtocolError):
            _speedups.parse_request(bad)
    gc.collect()
    after = sys.getrefcount(data), sys.getrefcount(bad), sys.getrefcount(wire._parse_any)
    assert after == before


def test_parse_of_a_large_body() -> None:
    data = frame(body=bytes(range(256)) * 1000)
    learn(data)
    message = c_parse(data)
    assert message == parse_request(data) == wire._parse_request(data)
    assert c_parse(data[:-2] + b"x,") is not None  # same length: still the common case
    assert c_parse(data[:-1]) is None and c_parse(data + b",") is None


def test_parse_leaves_unknown_senders_and_header_blocks_to_the_python_code() -> None:
    data = frame(x="never seen before")
    assert c_parse(data) is None  # an unknown header block
    assert parse_request(data).headers["x"] == "never seen before"
    assert c_parse(data) is not None  # the Python code has learnt it
    stranger = encode_request(OTHER, 1, "/", HEADERS)
    wire._senders.pop(stranger.split(b" ", 1)[0], None)
    assert c_parse(stranger) is None
    assert parse_request(stranger).sender == OTHER


def test_parse_of_tnetstring_headers_and_lists_is_the_python_codes() -> None:
    for data in (
        encode_request(SENDER, 1, "/", HEADERS, tnetstring_headers=True),
        encode_request(SENDER, 1, "/", {"METHOD": "GET", "x": ["a", "b"]}),
    ):
        learn(data)
        assert c_parse(data) is None
        assert parse_request(data) == wire._parse_request(data)


def test_parsed_messages_own_their_headers() -> None:
    data = frame()
    learn(data)
    first, second = c_parse(data), c_parse(data)
    assert first is not None and second is not None
    assert first.headers is not second.headers
    first.headers["METHOD"] = "DELETE"
    assert second.headers["METHOD"] == "GET"
    assert c_parse(data).headers["METHOD"] == "GET"  # type: ignore[union-attr]


def test_parse_request_remembers_only_what_it_found() -> None:
    """The last sender and header block found are compared before hashing: frames of
    the same length that differ in them, in turn, and after the dicts are emptied,
    decode as the Python code decodes them, each with headers of its own."""
    frames = [
        frame(x="a"),
        frame(x="b"),  # a header block of the same length, one byte apart
        encode_request(OTHER, 7, "/hello", {**HEADERS, "x": "a"}),  # a sender likewise
        frame(x="a"),
    ]
    for data in frames:
        learn(data)
    for round_ in range(3):
        if round_ == 2:  # forgotten by the Python code: decoded (and learnt) as new
            wire._known_headers.clear()
            wire._senders.clear()
        decoded = [_speedups.parse_request(data) for data in frames + frames[::-1]]
        assert decoded == [wire._parse_any(data) for data in frames + frames[::-1]]
        assert len({id(message.headers) for message in decoded}) == len(decoded)
        decoded[0].headers["x"] = "changed"
        assert _speedups.parse_request(frames[0]).headers["x"] == "a"


def test_parse_rejects_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        _speedups.parse_common(bytearray(frame()), {}, {}, Message)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.parse_common(frame(), {}, {}, dict)  # type: ignore[type-var]
    with pytest.raises(TypeError):
        _speedups.parse_common(frame(), {}, {})  # type: ignore[call-arg]


_IDS = st.integers(min_value=0, max_value=10**25)
# Paths as a front end sends them: text without spaces or lone surrogates (what
# surrogateescape cannot turn back into bytes never comes off the wire).
_PATHS = st.text(
    st.characters(blacklist_characters=" ", blacklist_categories=("Cs",)), min_size=1, max_size=20
)
_BODIES = st.binary(max_size=64)
_VALUES = st.text(max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    conn_id=_IDS,
    path=_PATHS,
    body=_BODIES,
    extra=st.dictionaries(st.text(min_size=1, max_size=8), _VALUES, max_size=4),
    cut=st.integers(min_value=0, max_value=400),
    flip=st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)),
)
def test_parse_agrees_with_the_python_code_on_generated_frames(
    conn_id: int, path: str, body: bytes, extra: dict[str, str], cut: int, flip: tuple[int, int]
) -> None:
    data = encode_request(SENDER, conn_id, path, {**HEADERS, **extra}, body)
    learn(data)
    assert c_parse(data) == parse_request(data)
    where, byte = flip
    for candidate in (data[:cut], data[:where] + bytes([byte]) + data[where + 1 :]):
        fast = c_parse(candidate)
        if fast is not None:
            assert fast == wire._parse_common(candidate) == wire._parse_request(candidate)


def test_parse_leaks_no_references() -> None:
    data = frame(body=b"abc")
    learn(data)
    raw_sender = data.split(b" ", 1)[0]
    sender = wire._senders[raw_sender]
    template = next(v for k, v in wire._known_headers.items() if data.find(k) > 0)
    before = sys.getrefcount(sender), sys.getrefcount(template), sys.getrefcount(Message)
    for _ in range(10_000):
        assert c_parse(data) is not None
        assert c_parse(data[:-1]) is None
    gc.collect()
    assert (sys.getrefcount(sender), sys.getrefcount(template), sys.getrefcount(Message)) == before


# --------------------------------------------------------------------------- encode_reply


@pytest.mark.parametrize("conn_id", ["0", "7", "12345678901234567890", "1" * 64])
@pytest.mark.parametrize("data", [b"", b"HTTP/1.1 200 OK\r\n\r\nhi", b"\x00" * 70_000])
def test_encode_agrees_with_the_python_code(conn_id: str, data: bytes) -> None:
    uuid = SENDER.encode()
    expected = b"%b %d:%b, %b" % (uuid, len(conn_id), conn_id.encode(), data)
    assert _speedups.encode_reply(uuid, conn_id, data) == expected
    assert wire.encode_response(SENDER, conn_id, data) == [expected]
    assert wire.parse_response(expected).conn_ids == [conn_id]


@pytest.mark.parametrize(
    "conn_id", ["", "1 2", "-1", "1a", "\u0661\u0662", "1" * 65, 7, b"7", None, ["7"]]
)
def test_encode_leaves_anything_else_to_the_python_code(conn_id: object) -> None:
    assert _speedups.encode_reply(SENDER.encode(), conn_id, b"x") is None


def test_encode_takes_only_exact_bytes() -> None:
    assert _speedups.encode_reply(SENDER.encode(), "7", bytearray(b"x")) is None  # type: ignore[arg-type]
    assert _speedups.encode_reply(SENDER, "7", b"x") is None  # type: ignore[arg-type]
    assert wire.encode_response(SENDER, "7", bytearray(b"x")) == [SENDER.encode() + b" 1:7, x"]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- encode_sized_reply

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "


def sized_reference(sender: str, conn_id: str, head: bytes, body: bytes) -> bytes:
    data = head + str(len(body)).encode() + b"\r\n\r\n" + body
    return b"%b %d:%b, %b" % (sender.encode(), len(conn_id), conn_id.encode(), data)


@pytest.mark.parametrize("conn_id", ["0", "7", "12345678901234567890", "1" * 64])
@pytest.mark.parametrize("head", [b"", _HEAD])
@pytest.mark.parametrize("body", [b"", b"Hello, World!", b"x" * 9, b"x" * 10, b"\x00" * 70_000])
def test_encode_sized_agrees_with_the_python_code(conn_id: str, head: bytes, body: bytes) -> None:
    wire.encode_reply(SENDER, "1", b"")  # the sender is known (checked) from here on
    expected = sized_reference(SENDER, conn_id, head, body)
    assert _speedups.encode_sized_reply(wire._sender_raw, SENDER, conn_id, head, body) == expected
    assert wire.encode_sized_reply(SENDER, conn_id, head, body) == expected


@given(st.integers(min_value=0, max_value=10**6))
def test_encode_sized_writes_every_length_in_decimal(size: int) -> None:
    wire.encode_reply(SENDER, "1", b"")
    body = b"b" * size
    assert _speedups.encode_sized_reply(
        wire._sender_raw, SENDER, "3", b"H: ", body
    ) == sized_reference(SENDER, "3", b"H: ", body)


@pytest.mark.parametrize(
    "conn_id", ["", "1 2", "-1", "1a", "\u0661\u0662", "1" * 65, 7, b"7", None, ["7"]]
)
def test_encode_sized_leaves_anything_else_to_the_python_code(conn_id: object) -> None:
    wire.encode_reply(SENDER, "1", b"")
    senders = wire._sender_raw
    assert _speedups.encode_sized_reply(senders, SENDER, conn_id, b"h", b"x") is None
    assert _speedups.encode_sized_reply(senders, OTHER + "-unknown", "7", b"h", b"x") is None
    assert _speedups.encode_sized_reply(senders, SENDER.encode(), "7", b"h", b"x") is None  # type: ignore[arg-type]
    assert _speedups.encode_sized_reply(senders, SENDER, "7", bytearray(b"h"), b"x") is None  # type: ignore[arg-type]
    assert _speedups.encode_sized_reply(senders, SENDER, "7", b"h", memoryview(b"x")) is None  # type: ignore[arg-type]
    assert _speedups.encode_sized_reply({SENDER: "not bytes"}, SENDER, "7", b"h", b"x") is None  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        _speedups.encode_sized_reply([], SENDER, "7", b"h", b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.encode_sized_reply(senders, SENDER, "7", b"h")  # type: ignore[call-arg]


def test_encode_sized_leaks_no_references() -> None:
    wire.encode_reply(SENDER, "1", b"")
    uuid = wire._sender_raw[SENDER]
    head, body = _HEAD, b"Hello"
    before = sys.getrefcount(uuid), sys.getrefcount(head), sys.getrefcount(body)
    for _ in range(10_000):
        assert _speedups.encode_sized_reply(wire._sender_raw, SENDER, "12", head, body)
        assert _speedups.encode_sized_reply(wire._sender_raw, SENDER, "x", head, body) is None
    gc.collect()
    assert (sys.getrefcount(uuid), sys.getrefcount(head), sys.getrefcount(body)) == before


# --------------------------------------------------------------------------- request_from


def same_request(fast: Request, reference: Request) -> None:
    """Every slot of the C-built request equals the Python-built one's."""
    assert type(fast) is Request
    for name in Request.__slots__:
        assert getattr(fast, name) == getattr(reference, name), name
    assert fast.path_params is not reference.path_params and fast.state is not reference.state


def test_request_from_is_in_use() -> None:
    assert request_module.request_from is _speedups.request_from
    assert set(_speedups.request_slots()) == set(Request.__slots__)


_METHODS = ["GET", "POST", "HEAD", "JSON", "get", "Get", "PROPFIND", "", "ß", ["GET"], None]
_PATH_VALUES = ["/hello", "/a b", "/a%20b", "%", "", "@*", "/é", ["/x"], None]
_VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", ["HTTP/1.0"], None]
_CONNECTIONS = [None, "close", "keep-alive", "Keep-Alive, Upgrade", ["close"]]


def _message(method: object, path: object, version: object, connection: object) -> Message:
    headers: dict[str, Any] = {"host": "h", "x-forwarded-for": "127.0.0.1"}
    for key, value in (("METHOD", method), ("PATH", path), ("VERSION", version)):
        if value is not None:
            headers[key] = value
    if connection is not None:
        headers["connection"] = connection
    return Message(SENDER, "7", "/hello", headers, b"body")


def _built_in_c(monkeypatch: pytest.MonkeyPatch, message: object) -> bool:
    """Whether request_from built the request itself (else it called Request.__init__)."""
    calls: list[object] = []
    init = Request.__init__

    def counting_init(self: Request, message: Message) -> None:
        calls.append(message)
        init(self, message)

    with monkeypatch.context() as patch:
        patch.setattr(Request, "__init__", counting_init)
        _speedups.request_from(message)
    return not calls


@pytest.mark.parametrize("method", _METHODS)
@pytest.mark.parametrize("path", _PATH_VALUES)
def test_request_from_agrees_with_the_constructor(
    monkeypatch: pytest.MonkeyPatch, method: object, path: object
) -> None:
    built = 0
    for version in _VERSIONS:
        for connection in _CONNECTIONS:
            message = _message(method, path, version, connection)
            same_request(_speedups.request_from(message), Request(message))
            built += _built_in_c(monkeypatch, message)
    common = method in ("GET", "POST", "HEAD", "JSON") and path in ("/hello", "/a b", "@*", "/é")
    assert built == (5 if common else 0)  # no Connection header, VERSION a str or absent


def test_request_from_gives_anything_else_to_the_constructor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = _message("GET", "/", "HTTP/1.1", None)
    assert _built_in_c(monkeypatch, message)
    for odd in (
        Message(SENDER, 7, "/", message.headers, b""),  # type: ignore[arg-type]
        Message(SENDER, "7", "/", dict(message.headers), bytearray()),  # type: ignore[arg-type]
    ):
        assert not _built_in_c(monkeypatch, odd)
        same_request(_speedups.request_from(odd), Request(odd))
    # Only wire.Message is built in C: a plain tuple of the same five values goes to the
    # constructor too (which wants a Message).
    for bad in (tuple(message), (SENDER, "7", "/", message.headers), "not a message", None):
        with pytest.raises(AttributeError):
            Request(bad)  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            _speedups.request_from(bad)


def test_request_from_leaks_no_references() -> None:
    # Strings made at run time (not interned, not immortal), so their counts tell.
    method, path = "".join(["PO", "ST"]), "".join(["/lea", "ks"])
    sender, conn_id, body = "".join([SENDER]), str(10**6 + 7), b"body" * 3
    headers = {"METHOD": method, "PATH": path, "VERSION": "HTTP/1.1"}
    message = Message(sender, conn_id, path, headers, body)
    other = Message(sender, conn_id, path, {**headers, "METHOD": "post"}, body)
    watched = (message, headers, method, path, sender, conn_id, body, Request)

    def counts() -> list[int]:
        return [sys.getrefcount(x) for x in watched]

    before = counts()
    objects = len(gc.get_objects())
    for _ in range(10_000):
        request = _speedups.request_from(message)
        assert request.method == "POST" and request.path == "/leaks"
        del request
        assert _speedups.request_from(other).method == "POST"  # by the constructor
    gc.collect()
    assert counts() == before
    assert len(gc.get_objects()) < objects + 100  # no Request, dict or state kept alive


def test_setup_request_refuses_another_layout() -> None:
    class Extra(Request):
        __slots__ = ("more",)

    class WithDict(Request):
        pass

    class Renamed:
        __slots__ = tuple(n + "_" for n in Request.__slots__)

    for cls in (Extra, WithDict, Renamed, int):
        with pytest.raises(TypeError):
            _speedups.setup_request(cls, Message, frozenset(), None)
    with pytest.raises(TypeError):
        _speedups.setup_request(Request, dict, frozenset(), None)
    # Still set up for the real Request.
    message = _message("GET", "/", None, None)
    same_request(request_from(message), Request(message))


# --------------------------------------------------------------------------- response_frame


class _WithDict(PlainTextResponse):  # a user's subclass: slots of its own and a __dict__
    pass


class _Unset(Response):
    def __init__(self) -> None:  # never calls Response.__init__: slots left unset
        pass


def _responses() -> list[Response]:
    touched = PlainTextResponse("headers asked for")
    touched.headers["X-A"] = "1"
    return [
        PlainTextResponse("Hello, World!"),
        HTMLResponse("<p>é</p>", status=404),
        JSONResponse({"a": [1, 2]}),
        Response(b"raw bytes"),
        Response(b""),
        Response("text", content_type="text/x-frame-test"),
        Response(b"", status=204),
        Response(b"x", status=599),
        Response(b"x", headers={"X-B": "2"}),
        touched,
        _WithDict("subclass"),
    ]


@pytest.mark.parametrize("conn_id", ["7", "123456789", "", "x", "1 2"])
def test_response_frame_agrees_with_the_python_code(conn_id: str) -> None:
    response_module._PREFIXES.clear()  # a cache: room for what this test renders
    for sender in (SENDER, "a-sender-the-c-code-has-not-seen-" + conn_id):
        for response in _responses():
            fast = _speedups.response_frame(sender, conn_id, response)
            try:
                reference = runner_module._response_frame(sender, conn_id, response)
            except wire.ProtocolError:
                reference = None
            assert fast is None or fast == reference
            # Once the Python code has cached the prefix and checked the sender, the C
            # code answers every common response itself.
            if reference is not None:
                assert _speedups.response_frame(sender, conn_id, response) == reference
            else:
                assert _speedups.response_frame(sender, conn_id, response) is None


def test_response_frame_leaves_anything_else_to_the_python_code() -> None:
    response = PlainTextResponse("x")
    assert runner_module._response_frame(SENDER, "7", response) is not None
    assert _speedups.response_frame(SENDER, "7", response) is not None
    assert _speedups.response_frame(SENDER, "7", _Unset()) is None
    assert _speedups.response_frame(SENDER, "7", "not a response") is None
    assert _speedups.response_frame(SENDER.encode(), "7", response) is None  # type: ignore[arg-type]
    assert _speedups.response_frame(SENDER, 7, response) is None
    odd = PlainTextResponse("x")
    odd.status = True  # not an exact int
    assert _speedups.response_frame(SENDER, "7", odd) is None
    with pytest.raises(TypeError):
        _speedups.response_frame(SENDER, "7")  # type: ignore[call-arg]


def test_response_frame_leaks_no_references() -> None:
    ctype = "".join(["text/x-", "leak-test"])  # made at run time: its count tells
    response = Response(b"Hello" * 3, status=201, content_type=ctype)
    assert runner_module._response_frame(SENDER, "12", response) is not None
    prefix = response_module._PREFIXES[(201, ctype)]
    uuid = wire._sender_raw[SENDER]
    assert _speedups.response_frame(SENDER, "12", response)  # now its last prefix, held
    watched = (response, response.body, ctype, prefix, uuid, Response)
    before = [sys.getrefcount(x) for x in watched]
    for _ in range(10_000):
        assert _speedups.response_frame(SENDER, "12", response)
        assert _speedups.response_frame(SENDER, "x", response) is None
    gc.collect()
    assert [sys.getrefcount(x) for x in watched] == before
    other = PlainTextResponse("x")
    assert runner_module._response_frame(SENDER, "12", other)
    held = sys.getrefcount(ctype)
    assert _speedups.response_frame(SENDER, "12", other)  # another last prefix
    assert sys.getrefcount(ctype) == held - 1  # this one's is let go


def test_a_response_class_with_its_own_rendering_is_rendered() -> None:
    """A class overriding render() or length_prefix() never takes the one-copy path."""

    class Fine(PlainTextResponse):
        def render(self, *, head: bool = False, keep_alive: bool = True) -> bytes:
            return super().render(head=head, keep_alive=keep_alive).replace(b" OK", b" Fine")

    class Prefixed(PlainTextResponse):
        def length_prefix(self, head: bool = False, keep_alive: bool = True) -> bytes | None:
            return None

    for cls in (Fine, Prefixed):
        response = cls("x")
        assert runner_module._response_frame(SENDER, "7", response) is None
        assert _speedups.response_frame(SENDER, "7", response) is None
        assert cls not in runner_module._FRAMED_TYPES
    assert Fine("x").render().startswith(b"HTTP/1.1 200 Fine")
    plain = _WithDict("x")
    assert runner_module._response_frame(SENDER, "7", plain) is not None
    assert _WithDict in runner_module._FRAMED_TYPES
    assert _speedups.response_frame(SENDER, "7", plain) == runner_module._response_frame(
        SENDER, "7", plain
    )


class _OwnRequest(Request):  # a user's subclass: the C code leaves it to Python
    __slots__ = ()


def _requests() -> list[Any]:
    out: list[Any] = []
    for method in ("GET", "HEAD", "POST", "head"):
        for version, connection in (
            ("HTTP/1.1", None),
            ("HTTP/1.1", "close"),
            ("HTTP/1.0", None),
            ("HTTP/1.0", "keep-alive"),
        ):
            message = _message(method, "/hello", version, connection)
            out += [request_from(message), Request(message), _OwnRequest(message)]
    changed = request_from(_message("GET", "/hello", "HTTP/1.1", None))
    changed.keep_alive = 1  # type: ignore[assignment]  # truthy, not True
    unset = Request.__new__(Request)  # no slot set: the Python code decides
    return [*out, changed, unset]


def test_reply_frame_agrees_with_the_python_code() -> None:
    assert runner_module._reply_frame is _speedups.reply_frame
    response_module._PREFIXES.clear()  # a cache: room for what this test renders
    for request in _requests():
        for response in _responses():
            for _ in range(2):  # the second time with the prefixes cached
                try:
                    reference: Any = runner_module._python_reply_frame(request, response)
                except Exception as exc:
                    reference = type(exc)
                try:
                    fast: Any = _speedups.reply_frame(request, response)
                except Exception as exc:
                    fast = type(exc)
                assert fast == reference, (request, response)
    with pytest.raises(TypeError):
        _speedups.reply_frame(request_from(_message("GET", "/", None, None)))  # type: ignore[call-arg]


def test_reply_frame_leaks_no_references() -> None:
    request = request_from(_message("GET", "/hello", "HTTP/1.1", None))
    response = PlainTextResponse("".join(["leak", "-reply"]))
    assert runner_module._python_reply_frame(request, response) is not None
    head = request_from(_message("HEAD", "/hello", "HTTP/1.1", None))
    other = Request(_message("GET", "/hello", "HTTP/1.1", None))
    watched = (request, head, other, response, response.body, request.sender, Request)
    gc.collect()
    before = [sys.getrefcount(x) for x in watched]
    for _ in range(10_000):
        assert _speedups.reply_frame(request, response)
        assert _speedups.reply_frame(head, response) is None
        assert _speedups.reply_frame(other, response)
    gc.collect()
    assert [sys.getrefcount(x) for x in watched] == before


def test_setup_response_refuses_a_class_without_its_slots() -> None:
    class Other:
        __slots__ = ("body", "status")

    for cls in (Other, int):
        with pytest.raises(TypeError):
            _speedups.setup_response(cls, {}, {}, set(), print)
    with pytest.raises(TypeError):
        _speedups.setup_response(Response, [], {}, set(), print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.setup_response(Response, {}, {}, frozenset(), print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _speedups.setup_response(Response, {}, {}, set(), None)


# --------------------------------------------------------------------------- ResponseBase


class _CSV(PlainTextResponse):  # a user's text response: another text_type
    __slots__ = ()
    text_type = "text/csv; charset=utf-8"


class _Looked(Response):  # a user's __getattribute__, which answers text_type its way
    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name == "text_type":
            return response_module.HTML
        return super().__getattribute__(name)


class _Raising(PlainTextResponse):  # a text_type that raises when read
    __slots__ = ()

    @property  # type: ignore[misc]
    def text_type(self) -> str:  # type: ignore[override]
        raise RuntimeError("text_type read")


class _RaisingResponse(Response):
    __slots__ = ()

    @property  # type: ignore[misc]
    def text_type(self) -> str:  # type: ignore[override]
        raise RuntimeError("text_type read")


class _Wrapped(Response):  # a user's constructor, calling the base one
    __slots__ = ()

    def __init__(self, body: Any, status: int = 200) -> None:
        super().__init__(body, status, None, "text/x-wrapped")


_BODIES: list[Any] = [
    "",
    "héllo",
    "ascii",
    "\udcff\udc80",
    "\ud800",
    b"",
    b"x",
    bytearray(b"y"),
    None,
    {"a": 1},
    [1],
    3,
]
_STATUSES: list[Any] = [200, 404, 599, 99, "200", True, 200.0]
_HEADER_INITS: list[Any] = [None, {"X-A": "1"}, [("Content-Type", "text/x-given")]]
_CONTENT_TYPES: list[Any] = [None, "", "text/csv", "bad\r\nvalue", response_module.JSON, 5]


def _outcome(make: Any) -> tuple[Any, ...]:
    """What constructing gives: the error, or every slot and the rendering."""
    try:
        response = make()
    except Exception as exc:
        return ("error", type(exc), str(exc).replace("_TextResponse.", "").replace("Response.", ""))
    headers = None if response._headers is None else list(response._headers.items())
    return (
        type(response),
        response.status,
        response.body,
        response._ctype,
        headers,
        response.render(),
    )


def _reference(cls: type[Response]) -> Any:
    text = issubclass(cls, response_module._TextResponse)
    return response_module._text_init if text else response_module._response_init


def _both(cls: type[Response], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    def reference() -> Response:
        response = cls.__new__(cls)
        _reference(cls)(response, *args, **kwargs)
        return response

    return _outcome(lambda: cls(*args, **kwargs)), _outcome(reference)


def test_response_base_is_in_use() -> None:
    assert Response.__mro__[1] is _speedups.ResponseBase
    for cls in (Response, PlainTextResponse, HTMLResponse, response_module._TextResponse):
        assert "__init__" not in vars(cls)  # the base's constructor: in C
    assert "__init__" in vars(JSONResponse)


@pytest.mark.parametrize(
    "cls",
    [
        Response,
        PlainTextResponse,
        HTMLResponse,
        _CSV,
        _WithDict,
        _Looked,
        _Raising,
        _RaisingResponse,
    ],
)
def test_response_constructor_agrees_with_the_python_code(cls: type[Response]) -> None:
    response_module._CHECKED_TYPES.discard("text/csv")  # learnt by the reference
    for body in _BODIES:
        for status in _STATUSES:
            for headers in _HEADER_INITS:
                for content_type in _CONTENT_TYPES:
                    args = (body, status, headers, content_type)
                    fast, slow = _both(cls, *args)
                    assert fast == slow, args
    for args, kwargs in [
        ((), {}),
        (("x",), {"status": 201}),
        ((), {"content": "by name"}),
        ((), {"body": b"by name"}),
        ((), {"status": 404, "content_type": "text/csv"}),
        (("x",), {"content": "twice"}),
        (("x",), {"body": "twice"}),
        (("x", 200, None, None, "one too many"), {}),
        (("x",), {"colour": "red"}),
        ((), {"status": 201, "colour": "red"}),
    ]:
        fast, slow = _both(cls, *args, **kwargs)
        assert fast == slow, (args, kwargs)


def test_a_user_constructor_calls_the_c_one() -> None:
    assert _outcome(lambda: _Wrapped("x", 202)) == (
        _Wrapped,
        202,
        b"x",
        "text/x-wrapped",
        None,
        _Wrapped("x", 202).render(),
    )
    with pytest.raises(ValueError):
        _Wrapped("x", 99)


def test_calling_the_constructor_again_replaces_every_slot() -> None:
    response = PlainTextResponse("first", 404)
    response.headers["X-A"] = "1"
    Response.__init__(response, b"second")
    assert (response.status, response.body, response._headers) == (200, b"second", None)
    assert response._ctype == response_module.TEXT  # still a text response: its text_type


def test_response_construction_leaks_no_references() -> None:
    body = "".join(["leak", "-test"])  # made at run time: its count tells
    ctype = "".join(["text/x-", "leak-ctor"])
    raw = b"".join([b"raw", b"-bytes"])
    Response(body, content_type=ctype)  # checked, then cached in _CHECKED_TYPES
    watched = (body, ctype, raw, PlainTextResponse, Response, _WithDict)
    gc.collect()  # earlier tests' instances hold their classes
    before = [sys.getrefcount(x) for x in watched]
    for _ in range(10_000):
        PlainTextResponse(body)
        PlainTextResponse(content=body, status=404)
        Response(body, content_type=ctype)
        Response(raw, 201)
        _WithDict(body)
        with pytest.raises(ValueError):
            PlainTextResponse(body, 99)
    gc.collect()
    assert [sys.getrefcount(x) for x in watched] == before


def test_a_response_in_a_reference_cycle_is_collected() -> None:
    import weakref

    response = _WithDict("x")
    response.me = response  # type: ignore[attr-defined]
    gone = weakref.ref(response)
    del response
    gc.collect()
    assert gone() is None


def test_responses_copy_and_pickle_as_before() -> None:
    import copy
    import pickle

    for response in _responses():
        for twin in (copy.copy(response), pickle.loads(pickle.dumps(response))):
            assert type(twin) is type(response)
            assert twin.render() == response.render()
            assert (twin.status, twin.body, twin._ctype) == (
                response.status,
                response.body,
                response._ctype,
            )


def test_response_base_alone_is_not_a_response() -> None:
    with pytest.raises(TypeError):
        _speedups.ResponseBase(b"x")


_FINALIZER_CHANGES_THE_STATUS = """
import gc
from takefive import wire, runner
from takefive.response import Response
sp = wire._speedups
S = "f0f0-sender"
wire._sender_raw[S] = S.encode()
runner._FRAMED_TYPES.add(Response)
Response("p", 404).length_prefix()
r = Response("x", int("404"))
other = Response("y", 500)
other.length_prefix()
freed = id(r.status)
class Bomb:
    def __del__(self):
        r.status = 200
gc.disable(); gc.collect()
b = Bomb(); b.me = b; del b
keep = [(i, -i) for i in range(5000)]  # empties the free list of pairs: PyTuple_Pack allocates
gc.set_threshold(1); gc.enable()
sp.response_frame(S, "1", r)  # the key's allocation collects: Bomb frees the 404 it read
gc.disable()
fresh = int("500")  # may take the freed int's place
other.status = fresh
assert sp.response_frame(S, "2", other) == wire.encode_sized_reply(
    S, "2", other.length_prefix(), other.body
), "a prefix for the wrong status"
print("ok", id(fresh) == freed)
"""


def test_a_finalizer_changing_the_response_mid_frame_frees_nothing_in_use() -> None:
    """A collection run by the key tuple's allocation may run a finalizer that changes the
    response: what the C code read from it stays held (this crashed, or framed 500 with
    the prefix of 404, when status and content type were only borrowed)."""
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _FINALIZER_CHANGES_THE_STATUS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr


def test_setup_response_init_refuses_what_it_cannot_use() -> None:
    for args in [
        (None, None, PlainTextResponse, {}, set(), "x"),
        (print, print, "not a type", {}, set(), "x"),
        (print, print, PlainTextResponse, [], set(), "x"),
        (print, print, PlainTextResponse, {}, frozenset(), "x"),
        (print, print, PlainTextResponse, {}, set(), b"x"),
    ]:
        with pytest.raises(TypeError):
            _speedups.setup_response_init(*args)


# --------------------------------------------------------------------------- without it


SUITES_WITH_C_PATHS = ["tests/test_wire.py", "tests/test_request.py", "tests/test_response.py"]


def test_the_wire_suite_passes_without_the_extension() -> None:
    """TAKEFIVE_NO_EXTENSIONS=1: the Python code alone, with the same tests (wire,
    request and response: each has a C fast path)."""
    root = Path(__file__).parent.parent
    env = {**os.environ, "TAKEFIVE_NO_EXTENSIONS": "1"}
    check = subprocess.run(
        [sys.executable, "-c", "from takefive import wire; print(wire.C_SPEEDUPS)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "False"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES_WITH_C_PATHS],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
