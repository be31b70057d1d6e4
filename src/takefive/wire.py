"""The Mongrel2 wire protocol, both directions, as pure functions (no I/O).

Front end -> handler (one ZeroMQ frame)::

    UUID SP ID SP PATH SP LEN:HEADERS, LEN:BODY,

``HEADERS`` is a JSON object in a netstring (``254:{...},``) or a tnetstring dict
(``16:6:METHOD,4:JSON,}``); both decode to the same :class:`Message`.

Handler -> front end (one frame)::

    UUID SP LEN:ID ID ID, SP RAW_BYTES

An empty ``RAW_BYTES`` closes the listed connections. A control message uses the
id list ``X ID`` and a tnetstring ``["ctl", {...}]`` body.

Everything here raises :class:`ProtocolError` on malformed input, and checks every
length prefix against the bytes actually present before slicing anything.

The hot path (decoding a common request, encoding a reply to one connection) has an
optional C version in ``takefive._speedups``, built when takefive is installed with a
C compiler at hand. The Python code here is the reference and decides everything the
C code does not handle; :data:`C_SPEEDUPS` says whether the C version is in use, and
``TAKEFIVE_NO_EXTENSIONS=1`` in the environment turns it off.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any, NamedTuple

import orjson
import tnetstring

__all__ = [
    "C_SPEEDUPS",
    "DISCONNECT_BODY",
    "MAX_IDS_PER_MESSAGE",
    "HeaderValue",
    "Headers",
    "Message",
    "ProtocolError",
    "Reply",
    "encode_close",
    "encode_control",
    "encode_disconnect",
    "encode_reply",
    "encode_request",
    "encode_response",
    "parse_request",
    "parse_response",
]

#: Mongrel2 accepts at most this many connection ids in one response message.
MAX_IDS_PER_MESSAGE = 128
#: Body of the message a front end sends when a client goes away.
DISCONNECT_BODY = b'{"type":"disconnect"}'

#: A length prefix never has more digits than this (10 digits > 4 GiB).
_MAX_PREFIX_DIGITS = 10
_UUID_RE = re.compile(rb"[A-Za-z0-9-]+\Z")
_ID_RE = re.compile(rb"[0-9]+\Z")

_speedups: ModuleType | None = None
if not os.environ.get("TAKEFIVE_NO_EXTENSIONS"):
    try:
        from takefive import _speedups
    except ImportError:  # installed without a C compiler: the Python code does it all
        pass
    else:  # a build older than this code (an editable install not rebuilt): not used
        if not all(
            hasattr(_speedups, name)
            for name in (
                *("setup_parse", "parse_request", "parse_common"),
                *("encode_reply", "encode_sized_reply"),
                *("setup_request", "request_slots", "request_from"),
                *("setup_response", "response_frame", "reply_frame"),
                *("ResponseBase", "setup_response_init"),
            )
        ):
            _speedups = None

#: Whether the C versions of the hot path (``takefive._speedups``) are in use.
C_SPEEDUPS = _speedups is not None

#: The methods of front end control messages (on '@' paths).
_CONTROL_METHODS = frozenset({"JSON", "XML"})

HeaderValue = str | list[str]
Headers = dict[str, HeaderValue]


class ProtocolError(ValueError):
    """A message does not follow the wire protocol. The message says what is wrong."""


class Message(NamedTuple):
    """One decoded front end -> handler message (immutable: a named tuple)."""

    sender: str
    conn_id: str
    path: str
    headers: Headers
    body: bytes

    @property
    def method(self) -> str:
        method = self.headers.get("METHOD", "")
        return method if isinstance(method, str) else ""

    @property
    def is_control(self) -> bool:
        """True for a front end's own message (disconnects, credits): ``METHOD`` JSON or
        XML on an '@' path. No client reaches an '@' path (Mongrel2 answers 404), while
        a client may send the method JSON on an HTTP path: that is a request."""
        return self.path[:1] == "@" and self.method in _CONTROL_METHODS

    @property
    def is_disconnect(self) -> bool:
        """True for the message a front end sends when a client has gone."""
        return self.is_control and self.method == "JSON" and _json_type(self.body) == "disconnect"


class Reply(NamedTuple):
    """One decoded handler -> front end message. ``body`` is a view into the frame."""

    sender: str
    conn_ids: list[str]
    body: memoryview
    control: bool


# --------------------------------------------------------------------------- helpers


def _json_type(body: bytes) -> str | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value.get("type") if isinstance(value, dict) else None


def _read_prefix(data: bytes, start: int, what: str) -> tuple[int, int]:
    """Read ``LEN:`` at ``start``; return (payload start, payload end)."""
    colon = data.find(b":", start, start + _MAX_PREFIX_DIGITS + 1)
    if colon < 0:
        raise ProtocolError(f"{what}: missing or too long length prefix at byte {start}")
    digits = data[start:colon]
    if not digits.isdigit():
        raise ProtocolError(f"{what}: length prefix {digits[:16]!r} is not a number")
    size = int(digits)
    end = colon + 1 + size
    # +1: the type byte after the payload must be there too.
    if end + 1 > len(data):
        raise ProtocolError(
            f"{what}: length prefix {size} runs past the end of the message "
            f"({len(data) - colon - 1} bytes left)"
        )
    return colon + 1, end


def _decode_text(raw: bytes) -> str:
    # Mongrel2 passes header bytes through untouched: keep undecodable bytes reversible.
    return raw.decode("utf-8", "surrogateescape")


def _check_headers(value: Any) -> Headers:
    if type(value) is not dict:
        raise ProtocolError(f"headers must be an object, not {type(value).__name__}")
    for key, item in value.items():
        if type(item) is str:
            continue
        if type(item) is list and all(type(v) is str for v in item):
            continue
        raise ProtocolError(f"header {key!r} must be a string or a list of strings")
    return value


def _tnet_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return _decode_text(value)
    if isinstance(value, list):
        return [_tnet_text(v) for v in value]
    return value


def _decode_json_headers(payload: bytes) -> Headers:
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # Mongrel2 escapes only '"' and '\\': raw control characters and non-UTF-8
        # bytes reach us as they came from the client.
        try:
            value = json.loads(_decode_text(payload), strict=False)
        except ValueError as exc:
            raise ProtocolError(f"headers are not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError("headers are nested too deeply") from None
    return _check_headers(value)


def _decode_tnet_headers(raw: bytes) -> Headers:
    try:
        value = tnetstring.loads(raw)
    except (ValueError, TypeError) as exc:  # TypeError: a list or dict used as a dict key
        raise ProtocolError(f"headers are not a valid tnetstring: {exc}") from None
    except RecursionError:
        raise ProtocolError("headers are nested too deeply") from None
    if not isinstance(value, dict):
        raise ProtocolError("tnetstring headers must be a dict")
    headers = {}
    for key, item in value.items():
        if not isinstance(key, bytes):
            raise ProtocolError("tnetstring header names must be strings")
        headers[_decode_text(key)] = _tnet_text(item)
    return _check_headers(headers)


# --------------------------------------------------------------------------- requests


#: Senders seen before, already checked and decoded (front ends are few; bounded anyway).
_senders: dict[bytes, str] = {}


def _sender_text(raw: bytes) -> str:
    sender = _senders.get(raw)
    if sender is None:
        if not _UUID_RE.match(raw):
            raise ProtocolError(f"bad sender uuid {raw[:40]!r}")
        sender = raw.decode("ascii")
        if len(_senders) < 1024:
            _senders[raw] = sender
    return sender


def _parse_any(data: bytes) -> Message:
    """parse_request in Python: the one-pass fast path, else the careful decoder."""
    if type(data) is bytes:
        message = _parse_common(data)
        if message is not None:
            return message
    return _parse_request(data)


#: Header blocks seen recently (their exact bytes) and what they decode to. Clients on
#: keep-alive connections send the same headers again and again: a hit costs a dict
#: copy instead of a JSON decode and a check. Only copies are handed out, so no message
#: can change what another one gets. Bounded: cleared when full; large blocks not kept.
_known_headers: dict[bytes, Headers] = {}
_KNOWN_HEADERS_MAX = 256
_KNOWN_HEADERS_MAX_BYTES = 2048

_new_message = tuple.__new__
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


# The head of a request in the common case: "SENDER ID PATH LEN:" (sender and path
# without spaces, ids and lengths in plain digits, as _parse_request checks them).
_COMMON_HEAD = re.compile(rb"([^ ]+) ([0-9]+) ([^ ]+) ([0-9]{1,%d}):" % _MAX_PREFIX_DIGITS)
_NETSTRING_LEN = re.compile(rb"([0-9]{1,%d}):" % _MAX_PREFIX_DIGITS)


def _parse_common(data: bytes) -> Message | None:
    """The common case in one pass: a known sender, JSON headers whose values are all
    strings. Returns ``None`` for anything else, and :func:`_parse_request` then
    decides (and says what is wrong)."""
    match = _COMMON_HEAD.match(data)
    if match is None:
        return None
    raw_sender, conn_id, path, digits = match.groups()
    sender = _senders.get(raw_sender)
    head = match.end()
    end = head + int(digits)
    if sender is None or data[end : end + 1] != b",":
        return None
    # The body: "0:," (no body) or "LEN:BODY,", ending the frame.
    match = _NETSTRING_LEN.match(data, end + 1)
    if match is None:
        return None
    body_start = match.end()
    body_end = body_start + int(match.group(1))
    if body_end + 1 != len(data) or data[body_end] != 44:  # b","
        return None
    raw = data[head:end]
    known = _known_headers.get(raw)
    if known is not None:
        headers = known.copy()  # each message owns its dict; the template is never handed out
    else:
        try:
            headers = _loads(raw)
        except _JSONDecodeError:
            return None
        if type(headers) is not dict:
            return None
        for value in headers.values():
            if type(value) is not str:
                return None
        if end - head <= _KNOWN_HEADERS_MAX_BYTES:
            if len(_known_headers) >= _KNOWN_HEADERS_MAX:
                _known_headers.clear()
            _known_headers[raw] = headers.copy()
    return _new_message(
        Message,
        (
            sender,
            conn_id.decode("ascii"),
            path.decode("utf-8", "surrogateescape"),
            headers,
            data[body_start:body_end],
        ),
    )


def _to_bytes(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    return bytes(data)


def _parse_request(data: bytes) -> Message:
    if type(data) is not bytes:
        data = _to_bytes(data)
    # find() rather than split(): no copy of the (possibly large) body.
    sp1 = data.find(b" ")
    sp2 = data.find(b" ", sp1 + 1)
    sp3 = data.find(b" ", sp2 + 1)
    if sp1 <= 0 or sp2 < 0 or sp3 < 0:
        raise ProtocolError("request must be 'UUID ID PATH LEN:HEADERS,LEN:BODY,'")
    sender = _sender_text(data[:sp1])
    conn_id = data[sp1 + 1 : sp2]
    if not conn_id.isdigit():
        raise ProtocolError(f"bad connection id {conn_id[:40]!r}")
    if sp3 == sp2 + 1:
        raise ProtocolError("empty path")
    head_start = sp3 + 1

    start, end = _read_prefix(data, head_start, "headers")
    kind = data[end : end + 1]
    if kind == b",":
        headers = _decode_json_headers(data[start:end])
    elif kind == b"}":
        headers = _decode_tnet_headers(data[head_start : end + 1])
    else:
        raise ProtocolError(f"headers end in {kind!r}, expected ',' or '}}'")

    body_start, body_end = _read_prefix(data, end + 1, "body")
    if data[body_end : body_end + 1] != b",":
        raise ProtocolError("body netstring does not end in ','")
    if body_end + 1 != len(data):
        raise ProtocolError(f"{len(data) - body_end - 1} bytes of trailing garbage after body")
    return Message(
        sender,
        conn_id.decode("ascii"),
        _decode_text(data[sp2 + 1 : sp3]),
        headers,
        data[body_start:body_end],
    )


def _encode_text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _tnet_value(value: HeaderValue) -> bytes | list[bytes]:
    if isinstance(value, str):
        return _encode_text(value)
    return [_encode_text(v) for v in value]


def encode_request(
    sender: str,
    conn_id: str | int,
    path: str,
    headers: Mapping[str, HeaderValue],
    body: bytes = b"",
    *,
    tnetstring_headers: bool = False,
) -> bytes:
    """Encode a front end -> handler message exactly as Mongrel2 does."""
    if tnetstring_headers:
        head = tnetstring.dumps({_encode_text(k): _tnet_value(v) for k, v in headers.items()})
    else:
        try:
            payload = orjson.dumps(headers)
        except TypeError:  # surrogate-escaped bytes from a client
            payload = _encode_text(json.dumps(headers, ensure_ascii=False, separators=(",", ":")))
        head = b"%d:%b," % (len(payload), payload)
    return b"%b %b %b %b%d:%b," % (
        _sender_bytes(sender),
        _id_bytes(conn_id),
        _encode_text(path),
        head,
        len(body),
        body,
    )


def encode_disconnect(
    sender: str, conn_id: str | int, *, tnetstring_headers: bool = False
) -> bytes:
    """The message a front end sends when client ``conn_id`` has gone."""
    return encode_request(
        sender,
        conn_id,
        "@*",
        {"METHOD": "JSON"},
        DISCONNECT_BODY,
        tnetstring_headers=tnetstring_headers,
    )


# --------------------------------------------------------------------------- responses


#: Senders already checked and encoded, for the response side (bounded).
_sender_raw: dict[str | bytes, bytes] = {}


def _sender_bytes(sender: str | bytes) -> bytes:
    raw = _sender_raw.get(sender)
    if raw is not None:
        return raw
    raw = sender.encode("ascii", "replace") if isinstance(sender, str) else bytes(sender)
    if not _UUID_RE.match(raw):
        raise ProtocolError(f"sender uuid {sender!r} may only hold A-Z, a-z, 0-9 and '-'")
    if len(_sender_raw) < 1024:
        _sender_raw[sender] = raw
    return raw


def _id_bytes(conn_id: str | int) -> bytes:
    if not isinstance(conn_id, str | int) or isinstance(conn_id, bool):
        raise ProtocolError(f"connection id {conn_id!r} must be a str or an int")
    raw = str(conn_id).encode("ascii", "replace")
    if not _ID_RE.match(raw):
        raise ProtocolError(f"connection id {conn_id!r} must be a non-negative integer")
    return raw


_c_encode_reply: Callable[[bytes, object, bytes], bytes | None] | None = (
    _speedups.encode_reply if _speedups is not None else None
)


def encode_response(
    sender: str | bytes, conn_ids: str | int | Iterable[str | int], data: bytes
) -> list[bytes]:
    """Encode ``data`` for one or many connections of front end ``sender``.

    Returns one message per :data:`MAX_IDS_PER_MESSAGE` ids (an empty list for no ids).
    """
    uuid = _sender_bytes(sender)
    if _c_encode_reply is not None:
        message = _c_encode_reply(uuid, conn_ids, data)
        if message is not None:
            return [message]
    if type(conn_ids) is str and conn_ids.isdigit() and conn_ids.isascii():
        # The hot path: one reply to the connection that asked.
        return [b"%b %d:%b, %b" % (uuid, len(conn_ids), conn_ids.encode(), data)]
    if isinstance(conn_ids, str | int):
        ids = [_id_bytes(conn_ids)]
    elif isinstance(conn_ids, bytes | bytearray | memoryview) or not isinstance(conn_ids, Iterable):
        raise ProtocolError(
            f"connection ids must be an id or a sequence of ids, not {type(conn_ids).__name__}"
        )
    else:
        ids = [_id_bytes(c) for c in conn_ids]
    messages = []
    for i in range(0, len(ids), MAX_IDS_PER_MESSAGE):
        joined = b" ".join(ids[i : i + MAX_IDS_PER_MESSAGE])
        messages.append(b"%b %d:%b, %b" % (uuid, len(joined), joined, data))
    return messages


def encode_reply(sender: str | bytes, conn_id: str | int, data: bytes) -> bytes:
    """The one frame that sends ``data`` to connection ``conn_id`` of front end ``sender``."""
    if _c_encode_reply is not None:
        message = _c_encode_reply(_sender_bytes(sender), conn_id, data)
        if message is not None:
            return message
    return encode_response(sender, conn_id, data)[0]


_c_encode_sized_reply: (
    Callable[[dict[str | bytes, bytes], str, object, bytes, bytes], bytes | None] | None
) = _speedups.encode_sized_reply if _speedups is not None else None


def encode_sized_reply(sender: str | bytes, conn_id: str | int, head: bytes, body: bytes) -> bytes:
    """``encode_reply(sender, conn_id, head + b"%d\\r\\n\\r\\n" % len(body) + body)`` in one copy.

    For a response whose ``head`` ends with ``Content-Length: `` (the runner's hot path:
    see :meth:`takefive.response.Response.length_prefix`).
    """
    if _c_encode_sized_reply is not None and type(sender) is str:
        message = _c_encode_sized_reply(_sender_raw, sender, conn_id, head, body)
        if message is not None:
            return message
    return encode_reply(sender, conn_id, b"%b%d\r\n\r\n%b" % (head, len(body), body))


def encode_close(sender: str | bytes, conn_ids: str | int | Iterable[str | int]) -> list[bytes]:
    """Messages that make the front end close these connections."""
    return encode_response(sender, conn_ids, b"")


def encode_control(sender: str | bytes, conn_id: str | int, payload: Mapping[str, Any]) -> bytes:
    """A Mongrel2 control message, e.g. ``{"credits": 4096}`` or ``{"cancel": True}``."""
    ids = b"X " + _id_bytes(conn_id)
    body = tnetstring.dumps([b"ctl", {k.encode(): v for k, v in payload.items()}])
    return b"%b %d:%b, %b" % (_sender_bytes(sender), len(ids), ids, body)


def parse_response(data: bytes) -> Reply:
    """Decode one handler -> front end message (what a front end does with it)."""
    if type(data) is not bytes:
        data = _to_bytes(data)
    space = data.find(b" ")
    if space <= 0:
        raise ProtocolError("response must start with 'UUID '")
    sender = data[:space]
    if not _UUID_RE.match(sender):
        raise ProtocolError(f"bad sender uuid {sender[:40]!r}")
    start, end = _read_prefix(data, space + 1, "connection ids")
    if data[end : end + 2] != b", ":
        raise ProtocolError("connection id list must be followed by ', '")
    raw_ids = data[start:end].split(b" ")
    control = raw_ids[0] == b"X"
    if control:
        raw_ids = raw_ids[1:]
    if not raw_ids or not all(_ID_RE.match(i) for i in raw_ids):
        raise ProtocolError(f"bad connection id list {data[start:end][:60]!r}")
    if len(raw_ids) > MAX_IDS_PER_MESSAGE:
        raise ProtocolError(f"{len(raw_ids)} connection ids, at most {MAX_IDS_PER_MESSAGE}")
    return Reply(
        sender.decode("ascii"),
        [i.decode("ascii") for i in raw_ids],
        memoryview(data)[end + 2 :],
        control,
    )


def _request_parser() -> Callable[[bytes], Message]:
    if _speedups is None:
        return _parse_any
    _speedups.setup_parse(_senders, _known_headers, Message, _parse_any)
    parse: Callable[[bytes], Message] = _speedups.parse_request
    return parse


#: ``parse_request(data: bytes) -> Message``: decode one front end -> handler message
#: (``ProtocolError`` for anything malformed). With the C speedups, a C function that
#: decodes the common frame (a known sender and header block) and hands any other to the
#: Python code, which decides; else that Python code alone.
parse_request = _request_parser()
