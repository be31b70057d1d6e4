"""One HTTP client connection: parse requests (httptools), forward them, write replies back.

Per connection the gateway keeps one connection id (a keep-alive connection keeps it for
all its requests, as in Mongrel2) and a queue of requests in arrival order. Only the
request at the head of the queue is "current": it has been forwarded to a handler (or is
being answered by the gateway itself: static files, errors); pipelined requests behind it
wait until the current response is complete, so responses leave in request order.

What handlers publish for this connection's id is written to the socket as it comes,
without copying or re-encoding; a :class:`~takefive.gateway.framing.ResponseFramer` only
watches it to see where the current response ends. An empty message closes the
connection. After a ``101`` to a WebSocket handshake the connection carries WebSocket
frames (see :mod:`takefive.gateway.websocket`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools
import orjson

from .. import wire
from .framing import UPGRADE, ResponseFramer
from .static import StaticFiles, read_chunks
from .websocket import WebSocketError, WebSocketReader, accept_key, close_frame

if TYPE_CHECKING:
    from .server import Gateway
    from .upstream import Upstream

__all__ = ["HttpConnection", "error_response"]

log = logging.getLogger("takefive.gateway")
access_log = logging.getLogger("takefive.gateway.access")

_INF = float("inf")
#: After an error response: how long (s) and how much the gateway still reads before closing.
_LINGER = 2.0
_MAX_DISCARD = 1024 * 1024

# request kinds
_HANDLER = 0
_LOCAL = 1
_STATIC = 2

_REASONS = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    413: "Content Too Large", 417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_ERROR_CACHE: dict[tuple[int, bool], bytes] = {}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status: int, close: bool) -> bytes:
    """A complete plain-text error response (cached)."""
    key = (status, close)
    cached = _ERROR_CACHE.get(key)
    if cached is None:
        reason = _REASONS.get(status, "Error")
        body = f"{status} {reason}\n".encode()
        connection = "Connection: close\r\n" if close else ""
        cached = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{connection}\r\n"
        ).encode() + body
        _ERROR_CACHE[key] = cached
    return cached


class _Req:
    """One request in the connection's queue, and what the access log needs about it."""

    __slots__ = (
        "close", "headers", "keep_alive", "kind", "method", "nbytes", "payload", "rel",
        "started", "static", "status", "upgrade", "upstream", "uri", "version", "websocket",
    )

    def __init__(self, kind: int, method: str, uri: str, version: str, keep_alive: bool) -> None:
        self.kind = kind
        self.method = method
        self.uri = uri
        self.version = version
        self.keep_alive = keep_alive
        self.payload = b""  # the wire message, or the local response
        self.close = False  # close the connection after this response
        self.upstream: Upstream | None = None
        self.static: StaticFiles | None = None
        self.rel = ""
        self.headers: wire.Headers | None = None
        self.upgrade = False
        self.websocket = False
        self.started = 0.0
        self.status = 0
        self.nbytes = 0


class HttpConnection(asyncio.Protocol):
    """The HTTP/1.1 protocol for one client socket."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.cfg = gateway.config
        self.conn_id = gateway.next_conn_id()
        self.id_bytes = b"%d" % self.conn_id
        #: ``UUID ID `` — the start of every request message for this connection.
        self.prefix = gateway.uuid_bytes + b" " + self.id_bytes + b" "
        self.transport: asyncio.Transport | None = None
        self.remote = "-"
        self.parser = httptools.HttpRequestParser(self)
        # the request being parsed
        self._url = b""
        self._headers: dict[str, Any] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0
        self._head_bytes = 0
        self._header_count = 0
        self._in_message = False
        self._in_head = False
        self._continue = False
        # the queue
        self.current: _Req | None = None
        self.queue: deque[_Req] = deque()
        self.framer = ResponseFramer()
        self.upstream: Upstream | None = None  # last handler group used: gets the disconnect
        self.read_deadline = _INF
        self.reply_deadline = _INF
        self.closing = False  # read nothing more; close after the queue
        self.closed = False
        self.handler_closed = False
        self._paused_reading = False
        self._paused_writing = False
        self._drain: asyncio.Future[None] | None = None
        self._static_task: asyncio.Task[None] | None = None
        # upgrades
        self._upgrade_buf: bytearray | None = None
        self.ws: WebSocketReader | None = None
        self._ws_heads: dict[int, bytes] = {}
        self._ws_headers: wire.Headers = {}
        self._ws_path = b""
        self._ws_upstream: Upstream | None = None
        self._raw = False
        self._lingering = False
        self._discarded = 0

    # ================================================================== transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.remote = str(peer[0])
        elif peer:
            self.remote = str(peer)
        self.gw.conns[self.id_bytes] = self
        self.read_deadline = self.gw.now + self.cfg.keepalive_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gw.conns.pop(self.id_bytes, None)
        current = self.current
        if current is not None:
            self._log(current)
            self.current = None
        self.queue.clear()
        if self._static_task is not None:
            self._static_task.cancel()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("client went away"))
            self._drain.exception()  # retrieved: nobody else may await it
        if not self.handler_closed:
            upstream = self._ws_upstream or self.upstream
            if upstream is not None:
                upstream.send_disconnect(self.conn_id)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._ws_data(data)
            return
        if self._upgrade_buf is not None:
            self._upgrade_buf += data
            if len(self._upgrade_buf) > self.cfg.max_body_size:
                self._abort()
            return
        if self.closing or self._raw:
            # After an error response: read and drop what the client still sends, so that
            # closing does not reset the connection before it could read the response.
            self._discarded += len(data)
            if self._discarded > _MAX_DISCARD:
                self._abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            rest = data[int(exc.args[0]) :]
            if self.current is None and not self.queue:
                # Already answered (by the gateway itself) without switching: go on in HTTP.
                self.parser = httptools.HttpRequestParser(self)
                if rest and not self.closing:
                    self.data_received(rest)
            else:
                self._upgrade_buf = bytearray(rest)
                self._pause()
        except httptools.HttpParserCallbackError as exc:
            if not self.closing:
                log.error("gateway bug while parsing a request", exc_info=exc.__context__)
                self._fail(500)
        except httptools.HttpParserError as exc:
            if not self.closing:
                log.debug("connection %d: bad request: %s", self.conn_id, exc)
                self._fail(400)
        else:
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > self.cfg.max_header_size:
                    self._fail(431)

    def eof_received(self) -> bool | None:
        # Half-close from the client: finish nothing more; Mongrel2 also treats it as gone.
        return None

    # ================================================================== httptools callbacks

    def on_message_begin(self) -> None:
        self._in_message = True
        self._in_head = True
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._head_size = 0
        self._head_bytes = 0
        self._header_count = 0
        self._continue = False
        self.read_deadline = self.gw.now + self.cfg.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_size += len(name) + len(value) + 4
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "surrogateescape")
        headers = self._headers
        old = headers.get(key)
        if old is None:
            headers[key] = text
        elif isinstance(old, list):
            old.append(text)
        else:
            headers[key] = [old, text]

    def on_headers_complete(self) -> None:
        self._in_head = False
        cfg = self.cfg
        if self._head_size > cfg.max_header_size or self._header_count > cfg.max_header_count:
            self._stop(431)
        length = self._headers.get("content-length")
        if length is not None:
            if not isinstance(length, str) or not length.isdigit():
                self._stop(400)
            if int(length) > cfg.max_body_size:
                self._stop(413)
        self.read_deadline = self.gw.now + cfg.body_timeout
        expect = self._headers.get("expect")
        if expect is not None:
            if not isinstance(expect, str) or expect.lower() != "100-continue":
                self._stop(417)
            # Send it now only when no earlier response is still going out.
            if self.current is None and self.transport is not None:
                self.transport.write(_CONTINUE)
            else:
                self._continue = True

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.cfg.max_body_size:
            self._stop(413)
        self._body.append(body)
        self.read_deadline = self.gw.now + self.cfg.body_timeout

    def on_message_complete(self) -> None:
        self._in_message = False
        self._continue = False
        self.read_deadline = _INF
        req = self._build()
        req.upgrade = self.parser.should_upgrade()
        self._enqueue(req)

    # ================================================================== requests

    def _build(self) -> _Req:
        parser = self.parser
        method = parser.get_method().decode("ascii", "replace")
        version = parser.get_http_version()
        keep_alive = parser.should_keep_alive()
        url = self._url
        fragment: bytes | None = None
        hash_at = url.find(b"#")
        if hash_at >= 0:
            fragment = url[hash_at + 1 :]
            url = url[:hash_at]
        if not url.startswith(b"/"):
            # absolute-form (a proxy request) -> its path; "OPTIONS *" stays "*"
            scheme = url.find(b"://")
            if scheme > 0:
                slash = url.find(b"/", scheme + 3)
                url = url[slash:] if slash >= 0 else b"/"
            elif url != b"*":
                return self._local(400, method, url, version, close=True)
        query_at = url.find(b"?")
        path_b = url[:query_at] if query_at >= 0 else url
        path = path_b.decode("utf-8", "surrogateescape")
        uri = url.decode("utf-8", "surrogateescape")

        found = self.gw.routes.match(path)
        if found is None:
            return self._local(404, method, url, version, close=not keep_alive)
        pattern, target = found
        headers = self._headers
        if not isinstance(target, StaticFiles):
            return self._handler_request(target, pattern, method, version, keep_alive,
                                         path_b, path, uri, url, query_at, fragment, headers)
        req = _Req(_STATIC, method, uri, version, keep_alive)
        req.static = target
        req.rel = path[len(pattern):]
        req.headers = headers
        req.close = not keep_alive
        return req

    def _handler_request(self, upstream: Upstream, pattern: str, method: str, version: str,
                         keep_alive: bool, path_b: bytes, path: str, uri: str, url: bytes,
                         query_at: int, fragment: bytes | None, headers: dict[str, Any]) -> _Req:
        remote = self.remote
        headers["x-forwarded-for"] = remote
        websocket = False
        if self.parser.should_upgrade():
            upgrade = headers.get("upgrade")
            websocket = (isinstance(upgrade, str) and upgrade.lower() == "websocket"
                         and isinstance(headers.get("sec-websocket-key"), str))
        headers["PATH"] = path
        headers["METHOD"] = "WEBSOCKET_HANDSHAKE" if websocket else method
        headers["VERSION"] = "HTTP/" + version
        headers["URI"] = uri
        if query_at >= 0:
            headers["QUERY"] = url[query_at + 1 :].decode("utf-8", "surrogateescape")
        if fragment is not None:
            headers["FRAGMENT"] = fragment.decode("utf-8", "surrogateescape")
        headers["PATTERN"] = pattern
        headers["URL_SCHEME"] = "http"
        headers["REMOTE_ADDR"] = remote
        if websocket:
            body = accept_key(headers["sec-websocket-key"]).encode("ascii")
        elif not self._body:
            body = b""
        elif len(self._body) == 1:
            body = self._body[0]
        else:
            body = b"".join(self._body)
        if "transfer-encoding" in headers and self._body_size:
            # The body arrives de-chunked and complete: say how long it is.
            del headers["transfer-encoding"]
            headers["content-length"] = str(len(body))
        req = _Req(_HANDLER, method, uri, version, keep_alive)
        req.upstream = upstream
        req.websocket = websocket
        if websocket:
            req.headers = headers
        req.payload = self._encode(upstream, path_b, headers, body)
        return req

    def _encode(self, upstream: Upstream, path_b: bytes, headers: wire.Headers,
                body: bytes) -> bytes:
        if not upstream.tnetstring:
            try:
                head = orjson.dumps(headers)
            except TypeError:
                pass  # undecodable bytes from the client: wire knows how
            else:
                return b"%b%b %d:%b,%d:%b," % (self.prefix, path_b, len(head), head,
                                                 len(body), body)
        return wire.encode_request(self.gw.config.uuid, self.conn_id,
                                   path_b.decode("utf-8", "surrogateescape"), headers, body,
                                   tnetstring_headers=upstream.tnetstring)

    def _local(self, status: int, method: str, url: bytes, version: str, close: bool) -> _Req:
        req = _Req(_LOCAL, method, url.decode("utf-8", "replace"), version, not close)
        req.payload = error_response(status, close)
        req.close = close
        req.status = status
        return req

    def _enqueue(self, req: _Req) -> None:
        if self.current is None and not self.queue:
            self._start(req)
            return
        self.queue.append(req)
        if len(self.queue) >= self.cfg.max_pipeline:
            self._pause()

    def _start(self, req: _Req) -> None:
        self.current = req
        if self.cfg.access_log and access_log.isEnabledFor(logging.INFO):
            req.started = time.perf_counter()
        kind = req.kind
        if kind == _HANDLER:
            upstream = req.upstream
            assert upstream is not None
            self.upstream = upstream
            self.framer.start(req.method == "HEAD")
            self.reply_deadline = self.gw.now + self.cfg.request_timeout
            upstream.send(req.payload, self, req)
        elif kind == _LOCAL:
            assert self.transport is not None
            self.transport.write(req.payload)
            req.nbytes = len(req.payload)
            self._finish(req)
        else:
            self._static_task = self.gw.loop.create_task(self._serve_static(req))

    def _finish(self, req: _Req) -> None:
        """The response to ``req`` is complete: log it, then start the next request."""
        if self.current is not req:
            return
        self.current = None
        self.reply_deadline = _INF
        self._log(req)
        if req.close:
            self._close()
            return
        if req.upgrade and self._upgrade_buf is not None:
            # The handler did not switch protocols: carry on with HTTP.
            rest = bytes(self._upgrade_buf)
            self._upgrade_buf = None
            self.parser = httptools.HttpRequestParser(self)
            self._resume()
            if rest:
                self.data_received(rest)
            if self.current is not None or self.closed:
                return
        if self.queue:
            nxt = self.queue.popleft()
            if self._paused_reading and len(self.queue) < self.cfg.max_pipeline // 2:
                self._resume()
            self._start(nxt)
            return
        if self.closing:
            self._close()
            return
        if self._in_message:
            if self._continue and self.transport is not None:
                self._continue = False
                self.transport.write(_CONTINUE)
        else:
            self.read_deadline = self.gw.now + self.cfg.keepalive_timeout

    def _log(self, req: _Req) -> None:
        if not req.started:
            return
        status = req.status or (self.framer.status if req.kind == _HANDLER else 0)
        elapsed = (time.perf_counter() - req.started) * 1000.0
        access_log.info('%s - - "%s %s HTTP/%s" %s %d %.1fms', self.remote, req.method, req.uri,
                        req.version, status or "-", req.nbytes, elapsed)

    # ================================================================== errors and closing

    def _fail(self, status: int) -> None:
        """The client broke a rule: answer ``status`` (after earlier responses), then close."""
        if self.closing:
            return
        self.closing = True
        self._in_message = False
        self._in_head = False
        self.read_deadline = _INF
        self._resume_always()
        try:
            method = self.parser.get_method().decode("ascii", "replace")
        except httptools.HttpParserError:
            method = "-"
        self._enqueue(self._local(status, method, self._url, "1.1", close=True))

    def _stop(self, status: int) -> None:
        """:meth:`_fail` from inside a parser callback: also stop the parser."""
        self._fail(status)
        raise _StopParsing

    def _pause(self) -> None:
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused_reading and self.transport is not None and not self.closing:
            self._paused_reading = False
            self.transport.resume_reading()

    def _resume_always(self) -> None:
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()

    def _close(self) -> None:
        transport = self.transport
        if transport is None or self.closed or self._lingering:
            return
        self.reply_deadline = _INF
        if self.closing and transport.can_write_eof():
            # Lingering close: send FIN, drain the client's input a little while, then close.
            self._lingering = True
            self._resume_always()
            transport.write_eof()
            self.read_deadline = self.gw.now + _LINGER
            return
        self.closed = True
        self.read_deadline = _INF
        transport.close()

    def _abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def check_deadlines(self, now: float) -> None:
        """Called by the gateway's timer for every connection."""
        if self.reply_deadline <= now:
            self.reply_deadline = _INF
            req = self.current
            if req is not None and req.kind == _HANDLER:
                # 504, close, and the handlers get the disconnect (from connection_lost).
                self.queue.clear()
                self.closing = True
                assert self.transport is not None
                payload = error_response(504, True)
                self.transport.write(payload)
                req.status = 504
                req.nbytes += len(payload)
                req.close = True
                self._finish(req)
        if self.read_deadline <= now:
            self.read_deadline = _INF
            if self._lingering:
                self.closed = True
                if self.transport is not None:
                    self.transport.close()
            elif self._in_message:
                self._fail(408)
            elif self.current is None and not self.queue:
                self._close()  # idle keep-alive connection

    # ================================================================== backlog (Waiter)

    def still_wanted(self, token: object) -> bool:
        return not self.closed and self.current is token

    def unavailable(self, token: object) -> None:
        if self.closed or self.current is not token:
            return
        assert isinstance(token, _Req) and self.transport is not None
        payload = error_response(503, not token.keep_alive)
        self.transport.write(payload)
        token.status = 503
        token.nbytes = len(payload)
        token.close = not token.keep_alive
        if token.upgrade:
            token.close = True
        self._finish(token)

    # ================================================================== replies from handlers

    def on_reply(self, frame: bytes, pos: int) -> None:
        """Bytes a handler published for this connection: ``frame[pos:]``."""
        transport = self.transport
        if pos == len(frame):
            self.handler_closed = True
            if self.current is not None:
                self._log(self.current)
                self.current = None
            self._close()
            return
        if transport is None or self.closed or self._lingering:
            return
        transport.write(memoryview(frame)[pos:] if pos else frame)
        if self._paused_writing and transport.get_write_buffer_size() > self.cfg.max_write_buffer:
            log.warning("connection %d does not read its replies; dropped", self.conn_id)
            self._abort()
            return
        req = self.current
        if req is None or req.kind != _HANDLER:
            return  # streaming after the response, WebSocket frames, or stray bytes
        self.reply_deadline = _INF
        req.nbytes += len(frame) - pos
        result = self.framer.feed(frame, pos)
        if result:
            if result == UPGRADE:
                self._upgraded(req)
            else:
                self._finish(req)

    def on_control(self, payload: dict[bytes, Any]) -> None:
        """A Mongrel2 ``ctl`` message for this connection."""
        if payload.get(b"cancel"):
            self.handler_closed = True
            self._abort()
        elif payload.get(b"keep-alive"):
            if self.read_deadline != _INF:
                self.read_deadline = self.gw.now + self.cfg.keepalive_timeout

    # ================================================================== WebSocket

    def _upgraded(self, req: _Req) -> None:
        req.status = 101
        self.current = None
        self.reply_deadline = self.read_deadline = _INF
        self._log(req)
        self.queue.clear()
        rest = bytes(self._upgrade_buf or b"")
        self._upgrade_buf = None
        if not req.websocket or req.headers is None:
            self._raw = True  # some other protocol: handler bytes pass, client bytes do not
            self._resume()
            return
        self.ws = WebSocketReader(self.cfg.max_body_size)
        headers = req.headers
        self._ws_path = headers["PATH"].encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
        self._ws_headers = headers
        self._ws_upstream = req.upstream
        self._resume()
        if rest:
            self._ws_data(rest)

    def _ws_data(self, data: bytes) -> None:
        assert self.ws is not None
        try:
            messages = self.ws.feed(data)
        except WebSocketError as exc:
            log.debug("connection %d: websocket: %s", self.conn_id, exc)
            if self.transport is not None:
                self.transport.write(close_frame(exc.code, str(exc).encode()))
            self.ws = None
            self._raw = True
            self._close()
            return
        upstream = self._ws_upstream
        assert upstream is not None
        for flags, payload in messages:
            head = self._ws_heads.get(flags)
            if head is None:
                headers = dict(self._ws_headers)
                headers["METHOD"] = "WEBSOCKET"
                headers["FLAGS"] = f"0x{flags:x}"
                head = self._ws_head(upstream, headers)
                self._ws_heads[flags] = head
            upstream.send(b"%b%b %b%d:%b," % (self.prefix, self._ws_path, head, len(payload),
                                              payload))

    def _ws_head(self, upstream: Upstream, headers: wire.Headers) -> bytes:
        """The encoded headers netstring of a WebSocket message (what follows the path)."""
        full = wire.encode_request(self.gw.config.uuid, self.conn_id, "/", headers, b"",
                                   tnetstring_headers=upstream.tnetstring)
        start = len(self.prefix) + 2  # "UUID ID / "
        return full[start:-3]  # drop "0:,"

    # ================================================================== static files

    async def _serve_static(self, req: _Req) -> None:
        transport = self.transport
        assert transport is not None and req.static is not None and req.headers is not None
        try:
            response = req.static.prepare(req.method, req.rel, req.headers, req.keep_alive)
            req.status = response.status
            transport.write(response.head)
            req.nbytes = len(response.head)
            if response.path is not None:
                sent = 0
                for chunk in read_chunks(response.path, response.offset, response.length):
                    if self.closed:
                        return
                    transport.write(chunk)
                    sent += len(chunk)
                    if self._paused_writing:
                        self._drain = self.gw.loop.create_future()
                        await self._drain
                req.nbytes += sent
                if sent < response.length:  # the file shrank: the client cannot resync
                    req.close = True
        except (ConnectionError, asyncio.CancelledError):
            return
        except OSError as exc:
            log.warning("static file %r: %s", req.rel, exc)
            req.close = True
            if not req.status:
                transport.write(error_response(404, True))
        finally:
            self._static_task = None
        self._finish(req)


class _StopParsing(Exception):
    """Raised from a parser callback to stop parsing after :meth:`HttpConnection._fail`."""
