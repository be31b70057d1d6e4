"""Unit and property tests for takefive.wire (the Mongrel2 wire protocol).

The reference bytes come from /work/shared/notes/mongrel2-protocol.md: they were captured from a
real Mongrel2 1.12.2 on this kind of machine.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import tnetstring
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from takefive import wire
from takefive.wire import (
    DISCONNECT_BODY,
    MAX_IDS_PER_MESSAGE,
    Message,
    ProtocolError,
    Reply,
    encode_close,
    encode_control,
    encode_disconnect,
    encode_request,
    encode_response,
    parse_request,
    parse_response,
)

# --------------------------------------------------------------------------- reference data

UUID = "54c6755b-9628-40a4-9a2d-cc82a816345e"
UUID_B = UUID.encode()

#: A request captured from Mongrel2 1.12.2 (curl 'http://127.0.0.1:6767/hello?a=1&b=two').
CAPTURED_JSON_HEADERS = (
    b'{"PATH":"/hello","x-forwarded-for":"127.0.0.1","accept":"*/*","user-agent":"curl/7.88.1",'
    b'"host":"127.0.0.1:6767","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/hello?a=1&b=two",'
    b'"QUERY":"a=1&b=two","PATTERN":"/","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"}'
)
CAPTURED = UUID_B + b" 7 /hello 254:" + CAPTURED_JSON_HEADERS + b",0:,"

CAPTURED_HEADERS: dict[str, str | list[str]] = {
    "PATH": "/hello",
    "x-forwarded-for": "127.0.0.1",
    "accept": "*/*",
    "user-agent": "curl/7.88.1",
    "host": "127.0.0.1:6767",
    "METHOD": "GET",
    "VERSION": "HTTP/1.1",
    "URI": "/hello?a=1&b=two",
    "QUERY": "a=1&b=two",
    "PATTERN": "/",
    "URL_SCHEME": "http",
    "REMOTE_ADDR": "127.0.0.1",
}

CAPTURED_MESSAGE = Message(UUID, "7", "/hello", CAPTURED_HEADERS, b"")


def _netstring(text: str) -> bytes:
    raw = text.encode()
    return b"%d:%b," % (len(raw), raw)


#: The same request as Mongrel2 sends it with ``protocol='tnetstring'`` (same key order).
_TNET_PAIRS = b"".join(
    _netstring(k) + _netstring(v) for k, v in CAPTURED_HEADERS.items() if isinstance(v, str)
)
CAPTURED_TNET_HEADERS = b"%d:%b}" % (len(_TNET_PAIRS), _TNET_PAIRS)
CAPTURED_TNET = UUID_B + b" 7 /hello " + CAPTURED_TNET_HEADERS + b"0:,"

#: Disconnect messages, byte for byte as the notes recorded them.
DISCONNECT_JSON = UUID_B + b' 5 @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},'
DISCONNECT_TNET = UUID_B + b' 5 @* 16:6:METHOD,4:JSON,}21:{"type":"disconnect"},'

#: Valid frames used by the truncation and mutation tests.
VALID_REQUESTS = [
    CAPTURED,
    CAPTURED_TNET,
    DISCONNECT_JSON,
    DISCONNECT_TNET,
    UUID_B + b' 12 /post 27:{"METHOD":"POST","x":["a"]},5:hello,',
    UUID_B + b" 12 /post 27:6:METHOD,4:POST,1:x,4:1:a,]}5:hello,",
]


def request_frame(headers: bytes, body: bytes = b"", *, prefix: bytes | None = None) -> bytes:
    """A request frame with JSON ``headers`` wrapped in a netstring (or a raw ``prefix``)."""
    head = prefix if prefix is not None else b"%d:%b," % (len(headers), headers)
    return UUID_B + b" 7 /p " + head + b"%d:%b," % (len(body), body)


def assert_protocol_error(func: Callable[..., Any], *args: Any, match: str | None = None) -> str:
    """``func(*args)`` raises exactly ProtocolError (not a subclass, not another ValueError)."""
    with pytest.raises(ProtocolError, match=match) as info:
        func(*args)
    assert type(info.value) is ProtocolError
    message = str(info.value)
    assert message.strip(), "a ProtocolError must say what is wrong"
    return message


# --------------------------------------------------------------------------- requests


def test_captured_mongrel2_request_json_headers() -> None:
    assert len(CAPTURED_JSON_HEADERS) == 254  # the capture is self-consistent
    msg = parse_request(CAPTURED)
    assert msg == CAPTURED_MESSAGE
    assert list(msg.headers) == list(CAPTURED_HEADERS)  # order is preserved
    assert msg.method == "GET"
    assert not msg.is_disconnect
    assert isinstance(msg.body, bytes)


def test_encode_request_reproduces_the_capture_byte_for_byte() -> None:
    assert encode_request(UUID, 7, "/hello", CAPTURED_HEADERS) == CAPTURED
    assert encode_request(UUID, "7", "/hello", CAPTURED_HEADERS, b"") == CAPTURED


def test_captured_request_with_tnetstring_headers_decodes_identically() -> None:
    assert CAPTURED_TNET.startswith(UUID_B + b" 7 /hello 260:4:PATH,6:/hello,")
    msg = parse_request(CAPTURED_TNET)
    assert msg == CAPTURED_MESSAGE
    assert list(msg.headers) == list(CAPTURED_HEADERS)  # wire order is kept
    encoded = encode_request(UUID, 7, "/hello", CAPTURED_HEADERS, tnetstring_headers=True)
    assert len(encoded) == len(CAPTURED_TNET)
    assert encoded.endswith(b"}0:,")
    assert parse_request(encoded) == CAPTURED_MESSAGE


def test_request_accepts_bytearray_and_memoryview() -> None:
    assert parse_request(bytearray(CAPTURED)) == CAPTURED_MESSAGE  # type: ignore[arg-type]
    assert parse_request(memoryview(CAPTURED)) == CAPTURED_MESSAGE  # type: ignore[arg-type]


def test_request_body_and_path_are_kept_exactly() -> None:
    body = b"a=1&b=2 ,:}\x00\xff" * 3
    frame = UUID_B + b' 42 /upload/x%20y?q 17:{"METHOD":"POST"},' + b"%d:%b," % (len(body), body)
    msg = parse_request(frame)
    assert msg.conn_id == "42"
    assert msg.path == "/upload/x%20y?q"
    assert msg.body == body
    assert msg.method == "POST"


def test_repeated_headers_are_lists_in_both_modes() -> None:
    json_frame = request_frame(b'{"METHOD":"GET","x-dup":["a","b"],"x-one":["c"],"x-none":[]}')
    tnet_head = b"%d:%b}" % (
        len(b"6:METHOD,3:GET,5:x-dup,8:1:a,1:b,]5:x-one,4:1:c,]6:x-none,0:]"),
        b"6:METHOD,3:GET,5:x-dup,8:1:a,1:b,]5:x-one,4:1:c,]6:x-none,0:]",
    )
    tnet_frame = request_frame(b"", prefix=tnet_head)
    expected = {"METHOD": "GET", "x-dup": ["a", "b"], "x-one": ["c"], "x-none": []}
    assert parse_request(json_frame).headers == expected
    assert parse_request(tnet_frame).headers == expected
    assert parse_request(json_frame) == parse_request(tnet_frame)


def test_raw_tab_and_non_utf8_bytes_in_json_header_decode_like_tnetstring() -> None:
    # Mongrel2 escapes only '"' and '\\': a tab, a newline and invalid UTF-8 arrive raw.
    value = b'curl\t7\n\xff\xfe \xc3\xa9 \\"q\\"'
    json_head = b'{"METHOD":"GET","user-agent":"' + value + b'","x-\xe9":"ok"}'
    # strict JSON decoders refuse this; wire must not
    with pytest.raises(ValueError):
        orjson.loads(json_head)
    json_msg = parse_request(request_frame(json_head))

    tnet_head = tnetstring.dumps(
        {b"METHOD": b"GET", b"user-agent": b'curl\t7\n\xff\xfe \xc3\xa9 "q"', b"x-\xe9": b"ok"}
    )
    tnet_msg = parse_request(request_frame(b"", prefix=tnet_head))

    expected = 'curl\t7\n\udcff\udcfe é "q"'
    assert json_msg.headers["user-agent"] == expected
    assert json_msg.headers["x-\udce9"] == "ok"
    assert json_msg == tnet_msg
    # undecodable bytes stay reversible
    assert expected.encode("utf-8", "surrogateescape") == b'curl\t7\n\xff\xfe \xc3\xa9 "q"'


def test_non_utf8_path_is_surrogate_escaped() -> None:
    frame = UUID_B + b" 7 /caf\xe9 2:{},0:,"
    assert parse_request(frame).path == "/caf\udce9"
    assert encode_request(UUID, 7, "/caf\udce9", {}) == frame


def test_surrogate_escaped_header_values_encode_back_to_raw_bytes() -> None:
    headers: dict[str, str | list[str]] = {"ua": "a\t\udcff", "l": ["\udc80", "x"]}
    frame = encode_request(UUID, 1, "/", headers)
    assert b'"a\\t\xff"' in frame  # tab escaped by the encoder, the byte passed raw
    assert parse_request(frame).headers == headers
    tframe = encode_request(UUID, 1, "/", headers, tnetstring_headers=True)
    assert b"2:ua,3:a\t\xff," in tframe
    assert parse_request(tframe).headers == headers


def test_json_fallback_encoding_is_compact_like_mongrel2() -> None:
    frame = encode_request("a", 1, "/", {"ua": "\udcff", "x": "y"})
    assert frame == b'a 1 / 18:{"ua":"\xff","x":"y"},0:,'


@pytest.mark.parametrize("frame", [DISCONNECT_JSON, DISCONNECT_TNET], ids=["json", "tnetstring"])
def test_disconnect_messages(frame: bytes) -> None:
    msg = parse_request(frame)
    assert msg == Message(UUID, "5", "@*", {"METHOD": "JSON"}, DISCONNECT_BODY)
    assert msg.method == "JSON"
    assert msg.is_disconnect


def test_encode_disconnect_is_byte_exact_in_both_modes() -> None:
    assert encode_disconnect(UUID, 5) == DISCONNECT_JSON
    assert encode_disconnect(UUID, "5", tnetstring_headers=True) == DISCONNECT_TNET
    assert DISCONNECT_BODY == b'{"type":"disconnect"}'


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (b'{"METHOD":"JSON"}', b'{"type":"credits"}'),  # download flow control
        (b'{"METHOD":"JSON","DOWNLOAD_CREDITS":"4096"}', b'{"type":"credits"}'),
        (b'{"METHOD":"JSON"}', b'{"type":"disconnected"}'),
        (b'{"METHOD":"JSON"}', b'{"kind":"disconnect"}'),
        (b'{"METHOD":"JSON"}', b'["disconnect"]'),
        (b'{"METHOD":"JSON"}', b'"disconnect"'),
        (b'{"METHOD":"JSON"}', b'{"type":"disconnect"'),  # body not JSON
        (b'{"METHOD":"JSON"}', b'{"type":["disconnect"]}'),
        (b'{"METHOD":"JSON"}', b""),
        (b'{"METHOD":"GET"}', b'{"type":"disconnect"}'),  # a GET whose body looks like one
        (b'{"METHOD":"POST"}', b'{"type":"disconnect"}'),
        (b'{"METHOD":["JSON","JSON"]}', b'{"type":"disconnect"}'),
        (b"{}", b'{"type":"disconnect"}'),
    ],
)
def test_non_disconnect_messages(headers: bytes, body: bytes) -> None:
    msg = parse_request(request_frame(headers, body))
    assert not msg.is_disconnect


def test_a_client_request_shaped_like_a_disconnect_is_not_one() -> None:
    """Mongrel2 sends disconnects on '@*'; a client's 'JSON /p' with such a body is not one."""
    assert parse_request(DISCONNECT_JSON).is_disconnect
    assert parse_request(DISCONNECT_JSON).is_control
    msg = parse_request(request_frame(b'{"METHOD":"JSON"}', b'{"type":"disconnect"}'))
    assert msg.path == "/p" and msg.method == "JSON"
    assert not msg.is_disconnect and not msg.is_control


@pytest.mark.parametrize(
    ("path", "method", "control"),
    [("@*", "JSON", True), ("@chat", "XML", True), ("@*", "GET", False), ("/", "JSON", False)],
)
def test_control_messages_are_json_or_xml_on_an_at_path(
    path: str, method: str, control: bool
) -> None:
    msg = parse_request(wire.encode_request(UUID, 3, path, {"METHOD": method}, b"{}"))
    assert msg.is_control is control


def test_method_is_empty_when_missing_or_a_list() -> None:
    assert parse_request(request_frame(b"{}")).method == ""
    assert parse_request(request_frame(b'{"METHOD":["GET"]}')).method == ""


def test_message_is_frozen() -> None:
    msg = parse_request(CAPTURED)
    with pytest.raises(AttributeError):
        msg.path = "/other"  # type: ignore[misc]


# --------------------------------------------------------------------------- responses


def test_encode_response_exact_bytes_for_one_id() -> None:
    assert encode_response("UUID", 7, b"BODY") == [b"UUID 1:7, BODY"]
    assert encode_response("UUID", "7", b"BODY") == [b"UUID 1:7, BODY"]
    assert encode_response(b"UUID", [7], b"BODY") == [b"UUID 1:7, BODY"]
    assert encode_response(UUID, [1, 22, 333], b"x") == [UUID_B + b" 8:1 22 333, x"]


@pytest.mark.parametrize("count", [1, 3, 128, 129, 300])
def test_response_split_into_messages_of_at_most_128_ids(count: int) -> None:
    ids = list(range(1000, 1000 + count))
    body = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    messages = encode_response(UUID, ids, body)
    assert len(messages) == math.ceil(count / MAX_IDS_PER_MESSAGE)
    seen: list[str] = []
    for message in messages:
        reply = parse_response(message)
        assert reply.sender == UUID
        assert not reply.control
        assert 1 <= len(reply.conn_ids) <= MAX_IDS_PER_MESSAGE
        assert bytes(reply.body) == body
        seen.extend(reply.conn_ids)
    assert seen == [str(i) for i in ids]
    if count > MAX_IDS_PER_MESSAGE:
        assert len(parse_response(messages[0]).conn_ids) == MAX_IDS_PER_MESSAGE


def test_response_to_no_ids_is_no_message() -> None:
    assert encode_response(UUID, [], b"x") == []
    assert encode_close(UUID, []) == []


def test_response_accepts_any_iterable_of_ids() -> None:
    assert encode_response(UUID, (str(i) for i in (4, 5)), b"z") == [UUID_B + b" 3:4 5, z"]


def test_close_is_an_empty_body() -> None:
    assert encode_close(UUID, 7) == [UUID_B + b" 1:7, "]
    messages = encode_close(UUID, range(200))
    assert len(messages) == 2
    for message in messages:
        reply = parse_response(message)
        assert bytes(reply.body) == b""
        assert not reply.control
    assert sum(len(parse_response(m).conn_ids) for m in messages) == 200


@pytest.mark.parametrize(
    "payload",
    [{"credits": 4096}, {"keep-alive": True}, {"cancel": True}],
)
def test_control_messages(payload: dict[str, Any]) -> None:
    frame = encode_control(UUID, 9, payload)
    assert frame.startswith(UUID_B + b" 3:X 9, ")
    body = frame[len(UUID_B) + len(b" 3:X 9, ") :]
    assert tnetstring.loads(body) == [b"ctl", {k.encode(): v for k, v in payload.items()}]
    reply = parse_response(frame)
    assert reply == Reply(UUID, ["9"], reply.body, True)
    assert reply.control
    assert bytes(reply.body) == body


def test_control_message_exact_bytes() -> None:
    assert encode_control("a", 1, {"credits": 5}) == b"a 3:X 1, 24:3:ctl,14:7:credits,1:5#}]"
    assert encode_control("a", "12", {"cancel": True}) == (
        b"a 4:X 12, 26:3:ctl,16:6:cancel,4:true!}]"
    )


def test_parse_response_control_form_handwritten() -> None:
    body = b"24:3:ctl,14:7:credits,1:5#}]"
    reply = parse_response(b"abc-DEF-123 4:X 77, " + body)
    assert reply.sender == "abc-DEF-123"
    assert reply.conn_ids == ["77"]
    assert reply.control is True
    assert bytes(reply.body) == body


def test_parse_response_plain_and_body_is_a_view() -> None:
    frame = b"U 5:1 2 3, HTTP/1.1 200 OK\r\n\r\n"
    reply = parse_response(frame)
    assert reply.sender == "U"
    assert reply.conn_ids == ["1", "2", "3"]
    assert reply.control is False
    assert isinstance(reply.body, memoryview)
    assert bytes(reply.body) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_parse_response_body_may_hold_anything() -> None:
    body = b", 1:2, \x00\xff X"
    assert bytes(parse_response(b"U 1:1, " + body).body) == body


# --------------------------------------------------------------------------- request errors


@pytest.mark.parametrize("frame", VALID_REQUESTS)
def test_request_truncated_at_every_byte_raises(frame: bytes) -> None:
    parse_request(frame)  # the whole frame is valid
    for cut in range(len(frame)):
        assert_protocol_error(parse_request, frame[:cut])


def test_empty_and_non_bytes_requests() -> None:
    assert_protocol_error(parse_request, b"")
    assert_protocol_error(parse_request, CAPTURED.decode(), match="expected bytes")
    assert_protocol_error(parse_request, None, match="expected bytes")
    assert_protocol_error(parse_request, 7, match="expected bytes")


@pytest.mark.parametrize(
    "frame",
    [
        UUID_B,
        UUID_B + b" 7",
        UUID_B + b" 7 /hello",
        UUID_B + b" 7 /hello ",
        UUID_B + b"7 /hello 2:{},0:,",
    ],
)
def test_request_missing_parts(frame: bytes) -> None:
    assert_protocol_error(parse_request, frame)


def test_request_empty_path() -> None:
    assert_protocol_error(parse_request, UUID_B + b" 7  2:{},0:,", match="empty path")


@pytest.mark.parametrize(
    "frame",
    [
        # headers length off by one in both directions and far off
        UUID_B + b" 7 /hello 253:" + CAPTURED_JSON_HEADERS + b",0:,",
        UUID_B + b" 7 /hello 255:" + CAPTURED_JSON_HEADERS + b",0:,",
        UUID_B + b" 7 /hello 200:" + CAPTURED_JSON_HEADERS + b",0:,",
        UUID_B + b" 7 /hello 260:" + CAPTURED_JSON_HEADERS + b",0:,",
        UUID_B + b" 7 /hello 0:" + CAPTURED_JSON_HEADERS + b",0:,",
        # body length off by one in both directions
        UUID_B + b" 7 /p 2:{},4:hello,",
        UUID_B + b" 7 /p 2:{},6:hello,",
        UUID_B + b" 7 /p 2:{},0:hello,",
        UUID_B + b" 7 /p 2:{},1:,",
        # tnetstring headers length off by one
        UUID_B + b" 5 @* 15:6:METHOD,4:JSON,}0:,",
        UUID_B + b" 5 @* 17:6:METHOD,4:JSON,}0:,",
        # inner tnetstring length wrong
        UUID_B + b" 5 @* 16:7:METHOD,4:JSON,}0:,",
        UUID_B + b" 5 @* 16:6:METHOD,3:JSON,}0:,",
    ],
)
def test_wrong_length_prefixes(frame: bytes) -> None:
    assert_protocol_error(parse_request, frame)


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"-2",
        b"+2",
        b" 2",
        b"2 ",
        b"0x2",
        b"2.0",
        b"1e1",
        b"\xc2\xb2",
        b"\xd9\xa2",
        b"two",
        b"2a",
    ],
)
def test_non_digit_length_prefixes(prefix: bytes) -> None:
    # headers prefix
    frame = UUID_B + b" 7 /p " + prefix + b":{},0:,"
    assert_protocol_error(parse_request, frame)
    # body prefix
    frame = UUID_B + b" 7 /p 2:{}," + prefix + b":ab,"
    assert_protocol_error(parse_request, frame)


def test_missing_colon() -> None:
    assert_protocol_error(parse_request, UUID_B + b" 7 /p 2{},0:,")
    assert_protocol_error(parse_request, UUID_B + b" 7 /p 2:{},0,")
    assert_protocol_error(parse_request, UUID_B + b" 7 /p 2:{}," + b"1" * 50)


@pytest.mark.parametrize(
    "prefix", [b"99999999999", b"1000000000", b"4294967296", b"9" * 10, b"9" * 40, b"9" * 5000]
)
def test_huge_length_prefix_rejected_without_allocating(prefix: bytes) -> None:
    frames = [
        UUID_B + b" 7 /p " + prefix + b":{},0:,",
        UUID_B + b" 7 /p 2:{}," + prefix + b":,",
        UUID_B + b" 7 /p " + prefix + b":6:METHOD,4:JSON,}0:,",
    ]
    tracemalloc.start()
    try:
        for frame in frames:
            message = assert_protocol_error(parse_request, frame)
            assert "length prefix" in message
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Nothing close to the announced size (gigabytes) was ever allocated.
    assert peak < 1_000_000


def test_10_to_the_9_prefix_rejected() -> None:
    frame = UUID_B + b" 7 /p %d:{},0:," % 10**9
    assert_protocol_error(parse_request, frame, match="runs past the end")
    assert_protocol_error(parse_response, b"U %d:1, x" % 10**9, match="runs past the end")


@pytest.mark.parametrize("garbage", [b"x", b",", b" ", b"\n", b"\x00", b"0:,", b"}"])
def test_trailing_garbage(garbage: bytes) -> None:
    for frame in (CAPTURED, CAPTURED_TNET, DISCONNECT_JSON):
        assert_protocol_error(parse_request, frame + garbage)


@pytest.mark.parametrize(
    "sender",
    [
        b"54c6755b_9628",
        b"abc!",
        b"a.b",
        b"a/b",
        b"a\tb",
        b"caf\xc3\xa9",
        b"\xff",
        b"a:b",
        b"a\n",
        b"\x00",
    ],
)
def test_bad_uuid_characters(sender: bytes) -> None:
    assert_protocol_error(parse_request, sender + b" 7 /p 2:{},0:,", match="sender uuid")
    assert_protocol_error(parse_response, sender + b" 1:7, x", match="sender uuid")


def test_empty_uuid() -> None:
    assert_protocol_error(parse_request, b" 7 /p 2:{},0:,")
    assert_protocol_error(parse_response, b" 1:7, x")


@pytest.mark.parametrize(
    "conn_id", [b"x", b"7a", b"-7", b"+7", b"7.0", b"0x7", b"\xd9\xa3", b"\xc2\xb2", b"7\n", b""]
)
def test_non_numeric_connection_ids(conn_id: bytes) -> None:
    frame = UUID_B + b" " + conn_id + b" /p 2:{},0:,"
    assert_protocol_error(parse_request, frame)


@pytest.mark.parametrize(
    "headers", [b"[]", b'["METHOD","GET"]', b'"GET"', b"1", b"1.5", b"null", b"true", b"false"]
)
def test_json_headers_not_an_object(headers: bytes) -> None:
    message = assert_protocol_error(parse_request, request_frame(headers))
    assert "headers" in message


@pytest.mark.parametrize(
    "headers",
    [b"", b"{", b"{'a':'b'}", b'{"a":"b",}', b'{"a"}', b"x", b'{"a":"b"}{}', b"\xff\xfe"],
)
def test_headers_not_json(headers: bytes) -> None:
    assert_protocol_error(parse_request, request_frame(headers))


@pytest.mark.parametrize(
    "headers",
    [
        b'{"a":1}',
        b'{"a":1.5}',
        b'{"a":null}',
        b'{"a":true}',
        b'{"a":{"b":"c"}}',
        b'{"a":["x",1]}',
        b'{"a":[["x"]]}',
        b'{"a":[null]}',
        b'{"METHOD":"GET","x":"ok","y":2}',
    ],
)
def test_json_header_values_of_the_wrong_type(headers: bytes) -> None:
    assert_protocol_error(parse_request, request_frame(headers), match="must be a string")


@pytest.mark.parametrize(
    "value",
    [1, 1.5, None, True, {b"b": b"c"}, [b"x", 1], [[b"x"]], [None]],
)
def test_tnetstring_header_values_of_the_wrong_type(value: Any) -> None:
    head = tnetstring.dumps({b"METHOD": b"GET", b"a": value})
    assert_protocol_error(parse_request, request_frame(b"", prefix=head), match="must be a string")


@pytest.mark.parametrize("key", [b"1:1#", b"0:~", b"4:true!", b"3:1.5^"])
def test_tnetstring_header_names_must_be_strings(key: bytes) -> None:
    inner = key + b"1:x,"
    head = b"%d:%b}" % (len(inner), inner)
    assert_protocol_error(parse_request, request_frame(b"", prefix=head), match="names")


@pytest.mark.parametrize(
    "head",
    [
        b"6:1:a,1:}",  # truncated inner value
        b"7:1:a,1:x!}",  # bad boolean
        b"7:1:a,1:x#}",  # bad integer
        b"5:1:a,1}",
        b"3:1:a}",  # key without value
        b"4:3:xy,}",
        b"2:{}]",  # list marker after a JSON-looking payload
        b"2:{}x",  # unknown type byte
    ],
)
def test_malformed_tnetstring_headers(head: bytes) -> None:
    assert_protocol_error(parse_request, request_frame(b"", prefix=head))


@pytest.mark.parametrize("frame", [b"u 1 /x 6:0:]0:~}0:,", b"u 1 /x 6:0:}0:~}0:,"])
def test_tnetstring_header_unhashable_key(frame: bytes) -> None:
    assert_protocol_error(parse_request, frame)


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _deep_tnet(depth: int) -> bytes:
    value = b"0:]"
    for _ in range(depth):
        value = b"%d:%b]" % (len(value), value)
    inner = b"1:a," + value
    return b"%d:%b}" % (len(inner), inner)


def test_deep_but_acceptable_nesting_is_a_protocol_error() -> None:
    # orjson parses up to 1024 levels; the result is not a header object.
    assert_protocol_error(parse_request, request_frame(_deep_json(1024)))
    assert_protocol_error(parse_request, request_frame(b'{"a":' + _deep_json(1000) + b"}"))
    assert_protocol_error(parse_request, request_frame(b"", prefix=_deep_tnet(100)))


def test_deeply_nested_json_headers() -> None:
    assert_protocol_error(parse_request, request_frame(_deep_json(1025)))


def test_deeply_nested_tnetstring_headers() -> None:
    assert_protocol_error(parse_request, request_frame(b"", prefix=_deep_tnet(600)))


# --------------------------------------------------------------------------- response errors


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b" ",
        b"U",
        b"U ",
        b"U 1:7",
        b"U 1:7,",  # no space after the comma
        b"U 1:7,BODY",
        b"U 1:7;  BODY",
        b"U 1:7 BODY",
        b"U 0:, BODY",  # no ids
        b"U 1: , BODY",
        b"U 2:7 , BODY",  # empty id after a space
        b"U 3:7  , BODY",
        b"U 1:X, BODY",  # control form without an id
        b"U 3:7 X, BODY",  # X not first
        b"U 3:X X, BODY",
        b"U 1:a, BODY",
        b"U 2:-1, BODY",
        b"U 2:+1, BODY",
        b"U 3:1.5, BODY",
        b"U 2:\xd9\xa3, BODY",
        b"U 2:7, BODY",  # length past the ids
        b"U 0:7, BODY",
        b"U x:7, BODY",
        b"U :7, BODY",
        b"U -1:7, BODY",
        b"U 99999999999:7, BODY",
        b"U 1000000000:7, BODY",
        b"U 17, BODY",
    ],
)
def test_malformed_responses(frame: bytes) -> None:
    assert_protocol_error(parse_response, frame)


def test_response_with_more_than_128_ids_is_rejected() -> None:
    ids = b" ".join(b"%d" % i for i in range(129))
    frame = b"U %d:%b, x" % (len(ids), ids)
    assert_protocol_error(parse_response, frame, match="at most 128")
    ids = b" ".join(b"%d" % i for i in range(128))
    assert len(parse_response(b"U %d:%b, x" % (len(ids), ids)).conn_ids) == 128


def test_response_truncated_before_the_body_raises() -> None:
    frame = UUID_B + b" 10:1 22 333 4, BODY"
    body_start = frame.index(b", ") + 2
    for cut in range(body_start - 1):
        assert_protocol_error(parse_response, frame[:cut])
    # Cut right after ", " the frame is a valid close: the format cannot tell the difference.
    assert bytes(parse_response(frame[:body_start]).body) == b""


@pytest.mark.parametrize("frame", ["U 1:7, x", None, 17])
def test_parse_response_rejects_non_bytes(frame: Any) -> None:
    assert_protocol_error(parse_response, frame)


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_parse_response_accepts_other_byte_buffers(kind: Any) -> None:
    reply = parse_response(kind(b"U 1:7, x"))
    assert (reply.sender, reply.conn_ids, bytes(reply.body)) == ("U", ["7"], b"x")


# --------------------------------------------------------------------------- encode errors


BAD_SENDERS: list[Any] = ["", "a b", "a\nb", "a_b", "caf\u00e9", "a:b", "a,b", "\u0661", "abc\n"]
BAD_IDS: list[Any] = [-1, -128, "-1", "", "x", "1a", "1.5", 1.5, " 1", "1 ", "1 2", "\u0663", True]


@pytest.mark.parametrize("sender", BAD_SENDERS)
def test_encode_rejects_bad_uuid(sender: Any) -> None:
    assert_protocol_error(encode_response, sender, 1, b"x", match="sender uuid")
    assert_protocol_error(encode_close, sender, [1])
    assert_protocol_error(encode_control, sender, 1, {"credits": 1})
    assert_protocol_error(encode_request, sender, 1, "/", {})
    assert_protocol_error(encode_disconnect, sender, 1)


def test_encode_response_accepts_bytes_uuid_and_rejects_bad_bytes() -> None:
    assert encode_response(b"ab-C", 1, b"") == [b"ab-C 1:1, "]
    assert_protocol_error(encode_response, b"a b", 1, b"")
    assert_protocol_error(encode_response, b"\xff", 1, b"")


@pytest.mark.parametrize("conn_id", BAD_IDS)
def test_encode_rejects_bad_connection_ids(conn_id: Any) -> None:
    if isinstance(conn_id, str | int):
        assert_protocol_error(encode_response, UUID, conn_id, b"x", match="connection id")
    assert_protocol_error(encode_response, UUID, [1, conn_id, 2], b"x", match="connection id")
    assert_protocol_error(encode_response, UUID, [1, None, 2], b"x", match="connection id")
    assert_protocol_error(encode_close, UUID, [conn_id])
    assert_protocol_error(encode_control, UUID, conn_id, {"credits": 1})
    assert_protocol_error(encode_request, UUID, conn_id, "/", {})
    assert_protocol_error(lambda: encode_disconnect(UUID, conn_id, tnetstring_headers=True))


@pytest.mark.parametrize("conn_ids", [1.5, None, b"12"])
def test_encode_response_rejects_scalar_ids_of_other_types(conn_ids: Any) -> None:
    assert_protocol_error(encode_response, UUID, conn_ids, b"x")


def test_encode_accepts_large_and_zero_ids() -> None:
    big = 2**70
    assert parse_response(encode_response(UUID, [0, big], b"")[0]).conn_ids == ["0", str(big)]
    assert parse_request(encode_request(UUID, big, "/", {})).conn_id == str(big)


# --------------------------------------------------------------------------- properties

_SENDERS = st.from_regex(r"[A-Za-z0-9-]+", fullmatch=True)
_IDS = st.one_of(
    st.integers(min_value=0, max_value=2**64), st.from_regex(r"[0-9]{1,25}", fullmatch=True)
)
_CONTROL = st.sampled_from(
    ['"', "\\", "\t", "\n", "\r", "\x00", "\x1f", "\x7f", "\u2028", "{", "}", ","]
)


def _join(parts: list[str | bytes]) -> str:
    """Canonical text: what a header value is after surrogateescape-decoding raw bytes."""
    raw = b"".join(p if isinstance(p, bytes) else p.encode("utf-8") for p in parts)
    return raw.decode("utf-8", "surrogateescape")


#: Arbitrary text, control characters and surrogate-escaped (non-UTF-8) bytes, mixed.
_TEXT = st.lists(st.one_of(st.text(max_size=12), st.binary(max_size=6), _CONTROL), max_size=4).map(
    _join
)
_PATHS = _TEXT.filter(lambda p: p != "" and " " not in p)
_HEADERS = st.dictionaries(_TEXT, st.one_of(_TEXT, st.lists(_TEXT, max_size=4)), max_size=8)

_FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(
    sender=_SENDERS,
    conn_id=_IDS,
    path=_PATHS,
    headers=_HEADERS,
    body=st.binary(max_size=200),
    tnet=st.booleans(),
)
@example(UUID, 7, "/hello", CAPTURED_HEADERS, b"", False)
@example("a", 0, "/\udcff", {"\udcc3": ["\t", "\udca9"]}, b",", True)
def test_request_round_trip(
    sender: str,
    conn_id: int | str,
    path: str,
    headers: dict[str, str | list[str]],
    body: bytes,
    tnet: bool,
) -> None:
    frame = encode_request(sender, conn_id, path, headers, body, tnetstring_headers=tnet)
    msg = parse_request(frame)
    assert msg == Message(sender, str(conn_id), path, headers, body)
    # and the other header mode decodes to the same message
    other = encode_request(sender, conn_id, path, headers, body, tnetstring_headers=not tnet)
    assert parse_request(other) == msg


@_FAST
@given(
    sender=_SENDERS,
    conn_ids=st.lists(_IDS, max_size=400),
    body=st.binary(max_size=200),
)
def test_response_round_trip(sender: str, conn_ids: list[int | str], body: bytes) -> None:
    messages = encode_response(sender, conn_ids, body)
    assert len(messages) == math.ceil(len(conn_ids) / MAX_IDS_PER_MESSAGE)
    seen: list[str] = []
    for message in messages:
        reply = parse_response(message)
        assert reply.sender == sender
        assert reply.control is False
        assert 1 <= len(reply.conn_ids) <= MAX_IDS_PER_MESSAGE
        assert bytes(reply.body) == body
        seen.extend(reply.conn_ids)
    assert seen == [str(c) for c in conn_ids]


@_FAST
@given(
    sender=_SENDERS,
    conn_id=_IDS,
    payload=st.dictionaries(
        st.sampled_from(["credits", "keep-alive", "cancel"]),
        st.one_of(st.integers(0, 2**31), st.booleans()),
        min_size=1,
    ),
)
def test_control_round_trip(sender: str, conn_id: int | str, payload: dict[str, Any]) -> None:
    reply = parse_response(encode_control(sender, conn_id, payload))
    assert reply.sender == sender
    assert reply.conn_ids == [str(conn_id)]
    assert reply.control is True
    assert tnetstring.loads(bytes(reply.body)) == [
        b"ctl",
        {k.encode(): v for k, v in payload.items()},
    ]


def _only_protocol_errors(func: Callable[[bytes], Any], data: bytes) -> None:
    try:
        func(data)
    except ProtocolError as exc:
        assert type(exc) is ProtocolError
        assert str(exc)


_GARBAGE = st.one_of(
    st.binary(max_size=300),
    # garbage that looks a lot like the protocol
    st.lists(
        st.sampled_from(
            [
                b"u",
                b"7",
                b" ",
                b"/",
                b":",
                b",",
                b"}",
                b"]",
                b"{",
                b"[",
                b'"',
                b"0",
                b"1",
                b"2",
                b"9",
                b"#",
                b"~",
                b"!",
                b"^",
                b"X",
                b"\xff",
                b"a",
                b"-",
            ]
        ),
        max_size=60,
    ).map(b"".join),
)

_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.timeout(60)
@_FUZZ
@given(data=_GARBAGE)
def test_garbage_raises_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(parse_request, data)
    _only_protocol_errors(parse_response, data)
    _only_protocol_errors(parse_request, UUID_B + b" 7 /p " + data)
    _only_protocol_errors(parse_response, UUID_B + b" " + data)


_STRUCTURAL = st.sampled_from(list(b'0123456789 :,}]~#!^X"{[\xff'))


@st.composite
def _mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, len(data)))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and pos < len(data):
            data[pos] = draw(_STRUCTURAL)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


_VALID_RESPONSES = [
    UUID_B + b" 1:7, BODY",
    UUID_B + b" 8:1 22 333, HTTP/1.1 200 OK\r\n\r\n",
    UUID_B + b" 1:7, ",
    encode_control(UUID, 7, {"credits": 4096}),
]


@pytest.mark.timeout(60)
@_FUZZ
@given(data=_mutated(VALID_REQUESTS))
def test_mutated_requests_raise_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(parse_request, data)


@pytest.mark.timeout(60)
@_FUZZ
@given(data=_mutated(_VALID_RESPONSES))
def test_mutated_responses_raise_only_protocol_error(data: bytes) -> None:
    _only_protocol_errors(parse_response, data)


def test_public_api() -> None:
    assert set(wire.__all__) >= {
        "Message",
        "ProtocolError",
        "parse_request",
        "encode_request",
        "encode_response",
        "encode_close",
        "encode_control",
        "encode_disconnect",
        "parse_response",
    }
    assert issubclass(ProtocolError, ValueError)


def test_docs_examples_are_true() -> None:
    """The ``>>>`` examples and the raw frames in docs/wire.md match what the code does."""
    import doctest
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "wire.md").read_text()
    source = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    test = doctest.DocTestParser().get_doctest(source, {"wire": wire}, "wire.md", "docs/wire.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).attempted >= 10
    assert runner.failures == 0

    frames = [
        line.encode().replace(b"\\r\\n", b"\r\n")
        for block in re.findall(r"```\n(.*?)```", text, re.S)
        for line in block.splitlines()
        if line.startswith(UUID) and "..." not in line
    ]
    requests = [f for f in frames if re.match(rb"\S+ \d+ \S+ \d+:", f)]
    responses = [f for f in frames if f not in requests]
    assert len(requests) == 4 and len(responses) == 6
    assert CAPTURED in requests and DISCONNECT_JSON in requests and DISCONNECT_TNET in requests
    for frame in requests:
        parse_request(frame)
    for frame in responses:
        parse_response(frame)


# --------------------------------------------------------------------------- the fast path


def _mutations(frame: bytes) -> list[bytes]:
    """Every truncation of ``frame`` and every single-byte replacement by a few bytes."""
    out = [frame[:cut] for cut in range(len(frame))]
    for i in range(len(frame)):
        out.extend(frame[:i] + bytes([b]) + frame[i + 1 :] for b in b' :,0}9"x[\xff')
    return out


@pytest.mark.parametrize("frame", VALID_REQUESTS)
def test_fast_path_agrees_with_the_careful_path(frame: bytes) -> None:
    parse_request(frame)  # the sender is now known
    for candidate in [frame, *_mutations(frame)]:
        fast = wire._parse_common(candidate)
        if fast is None:
            continue  # the careful path decides
        careful = wire._parse_request(candidate)
        assert fast == careful
        assert type(fast) is Message and type(fast.headers) is dict


def test_fast_path_takes_the_common_request() -> None:
    parse_request(CAPTURED)
    assert wire._parse_common(CAPTURED) == CAPTURED_MESSAGE
    # tnetstring headers, list values and unknown senders go the careful way
    assert wire._parse_common(CAPTURED_TNET) is None
    assert wire._parse_common(VALID_REQUESTS[4]) is None
    assert wire._parse_common(b"other-uuid" + CAPTURED[len(UUID_B) :]) is None


def test_message_is_an_immutable_named_tuple() -> None:
    msg = parse_request(CAPTURED)
    assert msg == CAPTURED_MESSAGE
    assert repr(msg).startswith("Message(sender=")
    for name in ("sender", "conn_id", "path", "headers", "body"):
        with pytest.raises(AttributeError):
            setattr(msg, name, None)
    with pytest.raises(TypeError):
        msg[0] = "x"  # type: ignore[index]


def test_known_headers_are_copies_no_message_sees_another_ones_changes() -> None:
    first = parse_request(CAPTURED)
    second = parse_request(CAPTURED)  # the same header bytes: served from the cache
    assert first.headers == second.headers == CAPTURED_HEADERS
    assert first.headers is not second.headers
    first.headers["METHOD"] = "DELETE"
    first.headers["x-evil"] = "1"
    del first.headers["host"]
    third = parse_request(CAPTURED)
    assert second.headers == third.headers == CAPTURED_HEADERS
    for template in wire._known_headers.values():
        assert "x-evil" not in template


def test_known_headers_cache_is_bounded() -> None:
    for i in range(3 * wire._KNOWN_HEADERS_MAX):
        msg = parse_request(request_frame(b'{"METHOD":"GET","x-n":"%d"}' % i))
        assert msg.headers == {"METHOD": "GET", "x-n": str(i)}
        assert len(wire._known_headers) <= wire._KNOWN_HEADERS_MAX
    big = b'{"METHOD":"GET","x":"' + b"a" * wire._KNOWN_HEADERS_MAX_BYTES + b'"}'
    parse_request(request_frame(big))
    assert big not in wire._known_headers
    assert all(len(key) <= wire._KNOWN_HEADERS_MAX_BYTES for key in wire._known_headers)


@pytest.mark.parametrize("conn_id", ["0", "7", 42, "123456789012345678901234567890"])
def test_encode_reply_is_encode_response_for_one_id(conn_id: str | int) -> None:
    for data in (b"", b"HTTP/1.1 200 OK\r\n\r\nhi"):
        assert (
            wire.encode_reply(UUID, conn_id, data) == wire.encode_response(UUID, conn_id, data)[0]
        )
        assert wire.parse_response(wire.encode_reply(UUID, conn_id, data)).conn_ids == [
            str(conn_id)
        ]


@pytest.mark.parametrize("conn_id", ["", "-1", "1 2", "x", True, None])
def test_encode_reply_refuses_what_encode_response_refuses(conn_id: object) -> None:
    with pytest.raises(ProtocolError):
        wire.encode_reply(UUID, conn_id, b"x")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        wire.encode_reply("not a uuid!", "7", b"x")


@pytest.mark.parametrize("conn_id", ["0", "7", 42, "123456789012345678901234567890"])
@pytest.mark.parametrize("sender", [UUID, UUID.encode(), "a-sender-seen-for-the-first-time-1"])
def test_encode_sized_reply_is_encode_reply_of_head_length_and_body(
    conn_id: str | int, sender: str | bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: "
    for body in (b"", b"hi", b"x" * 1234):
        data = head + str(len(body)).encode() + b"\r\n\r\n" + body
        assert wire.encode_sized_reply(sender, conn_id, head, body) == wire.encode_reply(
            sender, conn_id, data
        )


@pytest.mark.parametrize("conn_id", ["", "-1", "1 2", "x", True, None])
def test_encode_sized_reply_refuses_what_encode_reply_refuses(conn_id: object) -> None:
    with pytest.raises(ProtocolError):
        wire.encode_sized_reply(UUID, conn_id, b"h", b"x")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        wire.encode_sized_reply("not a uuid!", "7", b"h", b"x")
