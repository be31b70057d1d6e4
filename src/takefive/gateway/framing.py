"""Where does a handler's HTTP response end? Observed in the byte stream, never rewritten.

Mongrel2 never parses responses: it writes whatever a handler publishes. The gateway
writes the same bytes straight through, and only watches them with a
:class:`ResponseFramer` to know when the response to the current request is complete
(to release the next pipelined request and to stop the request timer). It reads the
head (status, ``Content-Length``, ``Transfer-Encoding``) and then only counts body bytes
or skips over chunk framing; it never copies a body.

A response the framer cannot follow (no ``HTTP/`` status line, a head over 64 KiB, no
length and not chunked) is "open-ended": it lasts until the handler closes the connection.
"""

from __future__ import annotations

__all__ = ["COMPLETE", "MORE", "UPGRADE", "ResponseFramer"]

#: :meth:`ResponseFramer.feed` results.
MORE = 0
COMPLETE = 1
UPGRADE = 2

_MAX_HEAD = 64 * 1024
_MAX_LINE = 4096

# states
_HEAD = 0
_LENGTH = 1
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_CRLF = 4
_TRAILER = 5
_OPEN = 6  # until the handler closes
_DONE = 7


class ResponseFramer:
    """Follows one response at a time. Call :meth:`start` per request, then :meth:`feed`."""

    __slots__ = ("_buf", "_head_only", "_remaining", "_state", "status")

    def __init__(self) -> None:
        self._state = _DONE
        self._head_only = False
        self._remaining = 0
        self._buf = b""
        #: Status code of the response seen (0 until its head arrived).
        self.status = 0

    def start(self, head_only: bool = False) -> None:
        """Expect a new response; ``head_only`` for a HEAD request (no body follows)."""
        self._state = _HEAD
        self._head_only = head_only
        self._remaining = 0
        self._buf = b""
        self.status = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def started(self) -> bool:
        """True once any byte of the response has arrived."""
        return self._state != _HEAD or bool(self._buf)

    def feed(self, data: bytes, pos: int = 0) -> int:
        """Observe ``data[pos:]``; return :data:`COMPLETE`, :data:`UPGRADE` (a 101) or :data:`MORE`.

        Bytes after the end of the response are ignored. ``pos`` lets the caller pass a
        whole ZeroMQ frame without slicing (copying) the body out of it.
        """
        state = self._state
        if state == _LENGTH:
            # The common streaming case: just count.
            self._remaining -= len(data) - pos
            if self._remaining <= 0:
                self._state = _DONE
                return COMPLETE
            return MORE
        if state == _HEAD:
            return self._feed_head(data, pos)
        if state == _OPEN or state == _DONE:
            return MORE
        return self._feed_chunked(data, pos)

    # ------------------------------------------------------------------ head

    def _feed_head(self, data: bytes, pos: int) -> int:
        if self._buf:
            data = self._buf + data[pos:]
            pos = 0
            self._buf = b""
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            size = len(data) - pos
            if size > _MAX_HEAD or (size >= 5 and data[pos : pos + 5] != b"HTTP/"):
                self._state = _OPEN
            else:
                self._buf = data[pos:]
            return MORE
        head = data[pos : end + 2].lower()
        body_start = end + 4
        # "http/1.1 200 ok\r\n"
        if not head.startswith(b"http/") or len(head) < 12 or not head[9:12].isdigit():
            self._state = _OPEN
            return MORE
        status = int(head[9:12])
        self.status = status
        if status < 200:
            if status == 101:
                self._state = _DONE
                return UPGRADE
            # Informational: the real response follows.
            return self._feed_head(data, body_start) if len(data) > body_start else MORE
        if self._head_only or status == 204 or status == 304:
            self._state = _DONE
            return COMPLETE
        te = head.find(b"\r\ntransfer-encoding:")
        if te >= 0:
            if b"chunked" in head[te : head.find(b"\r\n", te + 2)]:
                self._state = _CHUNK_SIZE
                return self._feed_chunked(data, body_start)
            self._state = _OPEN
            return MORE
        cl = head.find(b"\r\ncontent-length:")
        if cl < 0:
            self._state = _OPEN
            return MORE
        value = head[cl + 17 : head.find(b"\r\n", cl + 2)].strip()
        if not value.isdigit():
            self._state = _OPEN
            return MORE
        self._remaining = int(value) - (len(data) - body_start)
        if self._remaining <= 0:
            self._state = _DONE
            return COMPLETE
        self._state = _LENGTH
        return MORE

    # ------------------------------------------------------------------ chunked

    def _feed_chunked(self, data: bytes, pos: int) -> int:
        size = len(data)
        while pos < size:
            state = self._state
            if state == _CHUNK_DATA or state == _CHUNK_CRLF:
                take = min(self._remaining, size - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    if state == _CHUNK_DATA:
                        self._state = _CHUNK_CRLF
                        self._remaining = 2
                    else:
                        self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                end = data.find(b"\n", pos)
                if end < 0:
                    self._buf += data[pos:]
                    if len(self._buf) > _MAX_LINE:
                        self._state = _OPEN
                    return MORE
                line = self._buf + data[pos:end]
                self._buf = b""
                pos = end + 1
                try:
                    chunk = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._state = _OPEN
                    return MORE
                if chunk < 0:
                    self._state = _OPEN
                    return MORE
                if chunk == 0:
                    self._state = _TRAILER
                    self._buf = b"\n"
                else:
                    self._state = _CHUNK_DATA
                    self._remaining = chunk
            elif state == _TRAILER:
                # Trailer lines, then an empty line: done at the first "\n\r\n".
                tail = self._buf + data[pos:]
                if b"\n\r\n" in tail:
                    self._state = _DONE
                    self._buf = b""
                    return COMPLETE
                self._buf = tail[-2:]
                return MORE
            else:
                return MORE
        return MORE
