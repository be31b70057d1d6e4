"""Client-side WebSocket frames, turned into messages the way Mongrel2 1.12 forwards them.

After a handler answers a handshake with ``101``, the gateway reads RFC 6455 frames from
the client, unmasks them, reassembles fragmented messages, and forwards each message as a
``METHOD: "WEBSOCKET"`` request whose ``FLAGS`` is ``"0x%x" % (first frame byte | 0x80)``
(``"0x81"`` for text, ``"0x82"`` binary, ``"0x88"`` close, ``"0x89"`` ping, ``"0x8a"`` pong)
and whose body is the unmasked payload. Control frames pass through; the gateway answers
nothing itself. What handlers send back is written raw.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["WebSocketError", "WebSocketReader", "accept_key", "close_frame"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str | bytes) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (Mongrel2 sends it as the body)."""
    raw = key.encode("latin-1") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw.strip() + _GUID).digest()).decode("ascii")


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked close frame (what a server sends)."""
    payload = code.to_bytes(2, "big") + reason[:123]
    return bytes((0x88, len(payload))) + payload


class WebSocketError(Exception):
    """The client broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _unmask(payload: bytes | bytearray, mask: bytes) -> bytes:
    size = len(payload)
    if not size:
        return b""
    key = int.from_bytes(mask * ((size + 3) // 4), "little") & ((1 << (8 * size)) - 1)
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")


class WebSocketReader:
    """Feed raw client bytes; get complete ``(flags, payload)`` messages back."""

    __slots__ = ("_buf", "_first", "_fragments", "_max", "_size")

    def __init__(self, max_message: int) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._first = -1  # first byte of the data message being reassembled
        self._fragments: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Messages completed by ``data``; raises :class:`WebSocketError`."""
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if not b1 & 0x80:
                raise WebSocketError(1002, "client frames must be masked")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode >= 8:
                if length > 125 or not fin:
                    raise WebSocketError(1002, "bad control frame")
            elif length + self._size > self._max:
                raise WebSocketError(1009, f"message over {self._max} bytes")
            if end - pos < head + 4 + length:
                break
            mask = bytes(buf[pos + head : pos + head + 4])
            start = pos + head + 4
            payload = _unmask(buf[start : start + length], mask)
            pos = start + length
            if opcode >= 8:
                out.append((b0 | 0x80, payload))
            elif opcode == 0:
                if self._first < 0:
                    raise WebSocketError(1002, "continuation frame without a message")
                self._fragments.append(payload)
                self._size += length
                if fin:
                    out.append((self._first | 0x80, b"".join(self._fragments)))
                    self._first = -1
                    self._fragments = []
                    self._size = 0
            else:
                if self._first >= 0:
                    raise WebSocketError(1002, "new message inside a fragmented one")
                if fin:
                    out.append((b0, payload))
                else:
                    self._first = b0
                    self._fragments = [payload]
                    self._size = length
        del buf[:pos]
        return out
