"""The gateway: an asyncio HTTP server in front of ZeroMQ handler groups.

:class:`Gateway` owns the listening socket, one :class:`~takefive.gateway.upstream.Upstream`
per handler group, the route table, the connection-id -> connection dict replies are
dispatched through, and one timer that enforces every timeout (a coarse clock: deadlines
are checked a few times per second, not one timer per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import tnetstring
import zmq

from .. import wire
from .config import GatewayConfig, HandlerRoute
from .connection import HttpConnection
from .routes import RouteTable
from .static import StaticFiles
from .upstream import Upstream

__all__ = ["Gateway", "run", "run_until_signal"]

log = logging.getLogger("takefive.gateway")

_UUID_RE = re.compile(r"[A-Za-z0-9-]+\Z")


class Gateway:
    """The built-in front end. ``await start()``, then ``await stop()``."""

    def __init__(self, config: GatewayConfig) -> None:
        if not _UUID_RE.match(config.uuid):
            raise ValueError(f"gateway uuid {config.uuid!r} may only hold A-Z, a-z, 0-9 and '-'")
        self.config = config
        self.uuid_bytes = config.uuid.encode("ascii")
        self._prefix_len = len(self.uuid_bytes) + 1
        self.conns: dict[bytes, HttpConnection] = {}
        self.next_conn_id: Callable[[], int] = itertools.count(1).__next__
        self.routes: RouteTable[Upstream | StaticFiles] = RouteTable()
        self.upstreams: list[Upstream] = []
        self.now = 0.0
        self._context: zmq.Context[zmq.Socket[bytes]] | None = None
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        timeouts = (config.header_timeout, config.body_timeout, config.keepalive_timeout,
                    config.request_timeout, config.queue_timeout)
        #: How often deadlines are checked: a quarter of the shortest timeout, 20 ms..500 ms.
        self.tick = min(0.5, max(0.02, min(timeouts) / 4))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "gateway not started"
        return self._loop

    @property
    def port(self) -> int:
        """The TCP port actually listened on (useful with port 0)."""
        assert self._server is not None and self._server.sockets, "gateway not started"
        return int(self._server.sockets[0].getsockname()[1])

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.now = loop.time()
        self._stopped = asyncio.Event()
        self._context = zmq.Context()
        by_specs: dict[tuple[str, str], Upstream] = {}
        try:
            for route in self.config.routes:
                if isinstance(route, HandlerRoute):
                    key = (route.send_spec, route.recv_spec)
                    upstream = by_specs.get(key)
                    if upstream is None:
                        upstream = Upstream(self._context, route, self.config.uuid,
                                            self.config.queue_timeout)
                        by_specs[key] = upstream
                        self.upstreams.append(upstream)
                    elif upstream.tnetstring != route.tnetstring:
                        raise ValueError(f"routes on {key} disagree on the header protocol")
                    self.routes.add(route.prefix, upstream)
                else:
                    self.routes.add(route.prefix, StaticFiles(route.directory, route.index_file))
            for upstream in self.upstreams:
                upstream.start(loop, self)
            self._server = await loop.create_server(
                lambda: HttpConnection(self), self.config.host, self.config.port,
                backlog=self.config.backlog, reuse_address=True,
            )
        except BaseException:
            self._close_sockets()
            raise
        for sock in self._server.sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer = loop.create_task(self._run_timer())
        log.info("gateway %s listening on http://%s:%d/ (%s)", self.config.uuid,
                 self.config.host, self.port,
                 ", ".join(f"{p} -> {_describe(t)}" for p, t in self.routes))

    async def stop(self) -> None:
        """Stop listening, close every connection, close the sockets."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.handler_closed = True  # no disconnects: the sockets are going away
                conn.transport.abort()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        self._close_sockets()
        if self._stopped is not None:
            self._stopped.set()

    def _close_sockets(self) -> None:
        for upstream in self.upstreams:
            upstream.close()
        self.upstreams.clear()
        if self._context is not None:
            self._context.term()
            self._context = None

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()

    async def _run_timer(self) -> None:
        loop = self.loop
        while True:
            await asyncio.sleep(self.tick)
            now = self.now = loop.time()
            for conn in list(self.conns.values()):
                if conn.read_deadline <= now or conn.reply_deadline <= now:
                    try:
                        conn.check_deadlines(now)
                    except Exception:
                        log.exception("timeout handling failed for connection %d", conn.conn_id)

    # ------------------------------------------------------------------ replies

    def dispatch(self, frame: bytes, upstream: Upstream) -> None:
        """A frame from a handler: ``UUID SP LEN:ID ID ID, SP BYTES``."""
        start = self._prefix_len
        colon = frame.find(b":", start, start + 11)
        if colon < 0 or frame[start - 1 : start] != b" " or not frame[start:colon].isdigit():
            self._bad_reply(frame, "no 'LEN:' connection id list")
            return
        ids_end = colon + 1 + int(frame[start:colon])
        if frame[ids_end : ids_end + 2] != b", ":
            self._bad_reply(frame, "connection id list not followed by ', '")
            return
        ids = frame[colon + 1 : ids_end]
        body = ids_end + 2
        conns = self.conns
        if b" " not in ids:
            conn = conns.get(ids)
            if conn is not None:
                conn.on_reply(frame, body)
            elif ids.isdigit():
                upstream.send_disconnect(int(ids))
            else:
                self._bad_reply(frame, "bad connection id")
            return
        parts = ids.split(b" ")
        if parts[0] == b"X":
            self._control(parts[1:], frame[body:], upstream)
            return
        if len(parts) > wire.MAX_IDS_PER_MESSAGE or not all(p.isdigit() for p in parts):
            self._bad_reply(frame, "bad connection id list")
            return
        for cid in parts:
            conn = conns.get(cid)
            if conn is not None:
                conn.on_reply(frame, body)
            else:
                upstream.send_disconnect(int(cid))

    def _control(self, ids: list[bytes], body: bytes, upstream: Upstream) -> None:
        try:
            value = tnetstring.loads(body)
        except ValueError:
            value = None
        if (not isinstance(value, list) or len(value) != 2 or value[0] != b"ctl"
                or not isinstance(value[1], dict)):
            log.warning("bad control message %r; dropped", body[:80])
            return
        for cid in ids:
            conn = self.conns.get(cid)
            if conn is not None:
                conn.on_control(value[1])

    def _bad_reply(self, frame: bytes, why: str) -> None:
        log.warning("bad reply from a handler (%s): %r; dropped", why, frame[:80])


def _describe(target: Upstream | StaticFiles) -> str:
    if isinstance(target, StaticFiles):
        return f"files in {target.root}"
    return f"{target.send_spec} / {target.recv_spec}"


# --------------------------------------------------------------------------- running


def _new_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def run_until_signal(gateway: Gateway,
                           also: Coroutine[Any, Any, None] | None = None) -> None:
    """Start ``gateway``; stop it on SIGINT/SIGTERM (or when ``also`` returns)."""
    loop = asyncio.get_running_loop()
    await gateway.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters: list[asyncio.Task[Any]] = [loop.create_task(stop.wait())]
    if also is not None:
        waiters.append(loop.create_task(also))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        await gateway.stop()


def run(config: GatewayConfig) -> int:
    """Run a gateway until SIGINT/SIGTERM, on uvloop when it is installed."""
    gateway = Gateway(config)
    with asyncio.Runner(loop_factory=_new_loop_factory()) as runner:
        try:
            runner.run(run_until_signal(gateway))
        except (OSError, zmq.ZMQError) as exc:
            log.error("gateway cannot start: %s", exc)
            return 1
    return 0
