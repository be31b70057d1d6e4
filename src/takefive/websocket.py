"""WebSockets: RFC 6455 framing (pure functions) and :class:`WebSocketHandler`.

Behind Mongrel2 1.12 a WebSocket arrives as:

1. a ``WEBSOCKET_HANDSHAKE`` request whose body is the computed
   ``Sec-WebSocket-Accept`` value; the handler answers the whole ``101`` response;
2. one ``WEBSOCKET`` request per client message, with the header ``FLAGS`` (the
   frame's first byte | 0x80, e.g. ``"0x81"``: opcode in the low 4 bits) and the
   unmasked, reassembled payload as body;
3. the handler sends complete *unmasked* frames (:func:`encode_frame`).

Consecutive messages of one WebSocket may reach different handler processes, so a
:class:`WebSocketHandler` instance lives for one message only: keep connection
state elsewhere (keyed by ``(sender, conn_id)``).

The decoder (:func:`decode_frame`) is for front ends reading client frames, which
are masked.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final

from takefive.response import Response
from takefive.wire import ProtocolError

if TYPE_CHECKING:
    from takefive.app import App
    from takefive.request import Request

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "MessageAssembler",
    "WebSocketHandler",
    "accept_key",
    "decode_frame",
    "encode_close_payload",
    "encode_frame",
    "handshake_response",
    "parse_close_payload",
    "parse_flags",
]

logger = logging.getLogger("takefive.app")

CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA
_OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})

#: Close status codes (RFC 6455 section 7.4.1).
NORMAL_CLOSURE: Final = 1000
GOING_AWAY: Final = 1001
PROTOCOL_ERROR: Final = 1002
UNSUPPORTED_DATA: Final = 1003
INVALID_PAYLOAD: Final = 1007
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011

#: Default largest payload :func:`decode_frame` accepts (16 MiB).
DEFAULT_MAX_SIZE: Final = 16 * 1024 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.strip().encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_response(accept: str, subprotocol: str | None = None) -> bytes:
    """The complete ``101 Switching Protocols`` response."""
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept.strip()),
    ]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    return Response(status=101, headers=headers).render()


def _xor(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little"
    )


def encode_frame(
    opcode: int, payload: bytes | str = b"", *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame. Server -> client frames are unmasked (the default); a client
    passes a 4-byte ``mask``. A ``str`` payload is UTF-8 encoded."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    if opcode not in _OPCODES:
        raise ValueError(f"unknown WebSocket opcode {opcode:#x}")
    if opcode >= CLOSE:
        if len(data) > 125:
            raise ValueError("control frame payload must be at most 125 bytes")
        if not fin:
            raise ValueError("control frames cannot be fragmented")
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    n = len(data)
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = bytes((first, mask_bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, mask_bit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + data
    if len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    return head + mask + _xor(data, mask)


def decode_frame(
    buf: bytes | bytearray | memoryview,
    *,
    masked: bool = True,
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[bool, int, bytes, int] | None:
    """Decode the frame at the start of ``buf``.

    Returns ``(fin, opcode, payload, consumed)`` with the payload unmasked, or
    ``None`` when ``buf`` does not hold a whole frame yet. ``masked`` says what the
    peer must send (clients mask, servers do not). Raises :class:`ProtocolError` for
    reserved bits, unknown opcodes, bad control frames, non-minimal lengths, a
    wrong mask bit, or a payload over ``max_size`` (checked before it arrives).
    """
    size = len(buf)
    if size < 2:
        return None
    b0, b1 = buf[0], buf[1]
    fin = bool(b0 & 0x80)
    if b0 & 0x70:
        raise ProtocolError("WebSocket frame has reserved bits set (no extension agreed)")
    opcode = b0 & 0x0F
    if opcode not in _OPCODES:
        raise ProtocolError(f"unknown WebSocket opcode {opcode:#x}")
    is_masked = bool(b1 & 0x80)
    if is_masked != masked:
        raise ProtocolError(
            "client frames must be masked" if masked else "server frames must not be masked"
        )
    length = b1 & 0x7F
    pos = 2
    if opcode >= CLOSE:
        if not fin:
            raise ProtocolError("fragmented WebSocket control frame")
        if length > 125:
            raise ProtocolError("WebSocket control frame longer than 125 bytes")
    if length == 126:
        if size < 4:
            return None
        length = int.from_bytes(buf[2:4], "big")
        if length < 126:
            raise ProtocolError("WebSocket frame length not minimally encoded")
        pos = 4
    elif length == 127:
        if size < 10:
            return None
        length = int.from_bytes(buf[2:10], "big")
        if length >> 63:
            raise ProtocolError("WebSocket frame length has its top bit set")
        if length < 65536:
            raise ProtocolError("WebSocket frame length not minimally encoded")
        pos = 10
    if length > max_size:
        raise ProtocolError(f"WebSocket frame of {length} bytes exceeds the {max_size} limit")
    if is_masked:
        if size < pos + 4:
            return None
        mask = bytes(buf[pos : pos + 4])
        pos += 4
    end = pos + length
    if size < end:
        return None
    payload = bytes(buf[pos:end])
    if is_masked:
        payload = _xor(payload, mask)
    return fin, opcode, payload, end


class MessageAssembler:
    """Reassembles fragmented data messages from decoded frames (for front ends).

    ``feed(fin, opcode, payload)`` returns ``(opcode, data)`` for each complete message
    (control frames, which may arrive between fragments, come back at once) and
    ``None`` while a fragmented message is incomplete. Raises :class:`ProtocolError`
    for a continuation with nothing to continue, a new message inside a fragmented
    one, or a message over ``max_size``. Text is not UTF-8-checked here.
    """

    __slots__ = ("_opcode", "_parts", "_size", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.max_size = max_size
        self._opcode: int | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode >= CLOSE:
            return opcode, payload
        if opcode == CONTINUATION:
            if self._opcode is None:
                raise ProtocolError("continuation frame without a fragmented message")
        else:
            if self._opcode is not None:
                raise ProtocolError("new data frame inside a fragmented message")
            if fin:
                if len(payload) > self.max_size:
                    raise ProtocolError(f"message exceeds the {self.max_size} byte limit")
                return opcode, payload
            self._opcode = opcode
        self._size += len(payload)
        if self._size > self.max_size:
            raise ProtocolError(f"message exceeds the {self.max_size} byte limit")
        self._parts.append(payload)
        if not fin:
            return None
        message = (self._opcode, b"".join(self._parts))
        self._opcode, self._parts, self._size = None, [], 0
        return message


def encode_close_payload(code: int | None = NORMAL_CLOSURE, reason: str = "") -> bytes:
    """The payload of a close frame (empty when ``code`` is ``None``)."""
    if code is None:
        return b""
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason too long (at most 123 bytes)")
    return data


def _valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    """``(code, reason)`` of a close frame; ``(None, "")`` for an empty one."""
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolError("close frame payload of 1 byte")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8") from None
    return code, reason


def parse_flags(flags: str) -> tuple[bool, int]:
    """``(fin, opcode)`` from Mongrel2's ``FLAGS`` header (e.g. ``"0x81"``)."""
    try:
        value = int(flags, 16)
    except (TypeError, ValueError):
        raise ProtocolError(f"bad WebSocket FLAGS {flags!r}") from None
    if not 0 <= value <= 0xFF:
        raise ProtocolError(f"bad WebSocket FLAGS {flags!r}")
    return bool(value & 0x80), value & 0x0F


class WebSocketHandler:
    """Base class for WebSocket endpoints (``@app.websocket("/path")``).

    Override ``on_open()``, ``on_message(data)`` and ``on_close()``, plain or async.
    ``self.send(data)`` sends a text (``str``) or binary (``bytes``) message,
    ``self.close(code, reason)`` ends the connection. Raise
    :class:`~takefive.response.HTTPError` in ``on_open`` to refuse the handshake.

    One instance per Mongrel2 message: do not keep state on ``self`` across messages.
    """

    #: Subprotocols this endpoint speaks, in order of preference.
    subprotocols: ClassVar[Sequence[str]] = ()

    def __init__(self, app: App, request: Request) -> None:
        self.app = app
        self.request = request
        self.sender = request.sender
        self.conn_id = request.conn_id
        #: Status code and reason of the client's close frame (in ``on_close``).
        self.close_code: int | None = None
        self.close_reason = ""
        #: The subprotocol chosen at the handshake (``None`` if none).
        self.subprotocol: str | None = None
        self._buffer: list[bytes] | None = None
        self._closed = False

    # ----------------------------------------------------------------- hooks

    def on_open(self) -> Any:
        """The client connected (before the 101 response goes out)."""
        return None

    def on_message(self, data: str | bytes) -> Any:
        """A text (``str``) or binary (``bytes``) message arrived."""
        return None

    def on_close(self) -> Any:
        """The client sent a close frame (see ``close_code``/``close_reason``)."""
        return None

    def select_subprotocol(self, offered: Sequence[str]) -> str | None:
        """Pick a subprotocol from the client's list (default: first of ours offered)."""
        for protocol in self.subprotocols:
            if protocol in offered:
                return protocol
        return None

    # ----------------------------------------------------------------- sending

    def _send_raw(self, frame: bytes) -> None:
        if self._buffer is not None:
            self._buffer.append(frame)
        else:
            self.app.deliver(self.sender, self.conn_id, frame)

    def send(self, data: str | bytes) -> None:
        """Send one message: text for ``str``, binary for ``bytes``."""
        if self._closed:
            raise RuntimeError("WebSocket already closed")
        opcode = TEXT if isinstance(data, str) else BINARY
        self._send_raw(encode_frame(opcode, data))

    def ping(self, data: bytes = b"") -> None:
        """Send a ping (the client answers with a pong, which is ignored)."""
        if self._closed:
            raise RuntimeError("WebSocket already closed")
        self._send_raw(encode_frame(PING, data))

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a close frame and close the connection."""
        if self._closed:
            return
        self._send_raw(encode_frame(CLOSE, encode_close_payload(code, reason)))
        self._closed = True
        if self._buffer is None:
            self.app.close(self.sender, self.conn_id)

    # ----------------------------------------------------------------- dispatch

    async def _handshake(self) -> bool:
        """Run ``on_open`` and send the 101 response and anything ``on_open`` sent.

        Returns False when the handler closed the connection during ``on_open``.
        """
        from takefive.handler import call

        offered = [
            p.strip()
            for value in self.request.headers.getlist("sec-websocket-protocol")
            for p in value.split(",")
            if p.strip()
        ]
        self.subprotocol = self.select_subprotocol(offered) if offered else None
        self._buffer = []
        try:
            await call(self.on_open)
        finally:
            buffered, self._buffer = self._buffer, None
        accept = self.request.body.decode("ascii", "replace")
        data = handshake_response(accept, self.subprotocol) + b"".join(buffered)
        self.app.deliver(self.sender, self.conn_id, data)
        if self._closed:
            self.app.close(self.sender, self.conn_id)
            return False
        return True

    async def _message(self, flags: str) -> None:
        from takefive.handler import call

        try:
            _, opcode = parse_flags(flags)
        except ProtocolError as exc:
            logger.warning("closing WebSocket %s:%s: %s", self.sender, self.conn_id, exc)
            self.close(PROTOCOL_ERROR)
            return
        body = self.request.body
        if opcode == TEXT:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                self.close(INVALID_PAYLOAD, "text message is not UTF-8")
                return
            await call(self.on_message, text)
        elif opcode == BINARY:
            await call(self.on_message, body)
        elif opcode == PING:
            self._send_raw(encode_frame(PONG, body[:125]))
        elif opcode == PONG:
            return
        elif opcode == CLOSE:
            try:
                self.close_code, self.close_reason = parse_close_payload(body)
            except ProtocolError:
                self.close(PROTOCOL_ERROR)
                return
            try:
                await call(self.on_close)
            finally:
                self.close(self.close_code or NORMAL_CLOSURE)
        else:
            self.close(PROTOCOL_ERROR, "unexpected opcode")
