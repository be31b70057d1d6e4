"""One handler group: the PUSH socket requests go out on and the SUB socket replies come in on.

Exactly Mongrel2's sockets: the gateway *binds* PUSH on ``send_spec`` and SUB on
``recv_spec`` (subscribed to its own UUID); handlers connect PULL and PUB.

Sending never blocks the event loop: a request that cannot be queued to a handler right
now (none connected, or every handler's queue full) waits in a backlog, in order, and is
answered 503 by the gateway when no handler took it within ``queue_timeout``.

Replies are read by one reader callback per SUB socket, registered on the socket's file
descriptor: it drains every queued frame and hands each to the gateway's dispatcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Protocol

import zmq

from .. import wire

if TYPE_CHECKING:
    from .config import HandlerRoute

__all__ = ["Upstream"]

log = logging.getLogger("takefive.gateway")

#: Frames handled per wake-up before yielding to the rest of the event loop.
_BATCH = 512
_RETRY = 0.005


class Waiter(Protocol):
    """What waits for a backlogged request to be sent (a connection)."""

    def still_wanted(self, token: object) -> bool:
        """Called just before a backlogged message goes out; False drops it."""

    def unavailable(self, token: object) -> None:
        """No handler took the message within the queue timeout."""


class Dispatcher(Protocol):
    def dispatch(self, frame: bytes, upstream: Upstream) -> None: ...


class Upstream:
    """PUSH + SUB sockets for one ``(send_spec, recv_spec)`` pair."""

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], route: HandlerRoute,
                 uuid: str, queue_timeout: float) -> None:
        self.send_spec = route.send_spec
        self.recv_spec = route.recv_spec
        self.tnetstring = route.tnetstring
        self.uuid = uuid
        self.queue_timeout = queue_timeout
        self.push = context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, uuid.encode("ascii") + b" ")
        try:
            self.push.bind(route.send_spec)
            self.sub.bind(route.recv_spec)
        except zmq.ZMQError:
            self.push.close()
            self.sub.close()
            raise
        self._backlog: deque[tuple[Waiter | None, object, bytes, float]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._send = self.push.send
        self._fd = int(self.sub.getsockopt(zmq.FD))

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher) -> None:
        self._loop = loop
        self._dispatcher = dispatcher
        loop.add_reader(self._fd, self._on_readable)
        loop.call_soon(self._on_readable)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.remove_reader(self._fd)
            except (zmq.ZMQError, ValueError, OSError):
                pass
        if self._flusher is not None:
            self._flusher.cancel()
        self._backlog.clear()
        self.push.close(0)
        self.sub.close(0)

    # ------------------------------------------------------------------ requests

    def send(self, message: bytes, waiter: Waiter | None = None, token: object = None) -> bool:
        """Queue ``message`` for a handler; True when it went out at once."""
        if not self._backlog:
            try:
                self._send(message, zmq.NOBLOCK)
                return True
            except zmq.Again:
                pass
        self._backlog.append((waiter, token, message, self._now()))
        if self._flusher is None and self._loop is not None:
            self._flusher = self._loop.create_task(self._flush())
        return False

    def send_disconnect(self, conn_id: int) -> None:
        """Tell the handlers client ``conn_id`` has gone (dropped if none takes it in time)."""
        self.send(wire.encode_disconnect(self.uuid, conn_id, tnetstring_headers=self.tnetstring))

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    async def _flush(self) -> None:
        backlog = self._backlog
        try:
            while backlog:
                waiter, token, message, _ = backlog[0]
                if waiter is not None and not waiter.still_wanted(token):
                    backlog.popleft()
                    continue
                try:
                    self._send(message, zmq.NOBLOCK)
                except zmq.Again:
                    now = self._now()
                    # Expire everything that has waited too long, then wait a bit.
                    while backlog and now - backlog[0][3] >= self.queue_timeout:
                        waiter, token, _, _ = backlog.popleft()
                        if waiter is not None:
                            waiter.unavailable(token)
                    if backlog:
                        await asyncio.sleep(_RETRY)
                    continue
                backlog.popleft()
        finally:
            self._flusher = None

    @property
    def backlog_size(self) -> int:
        return len(self._backlog)

    # ------------------------------------------------------------------ replies

    def _on_readable(self) -> None:
        recv = self.sub.recv
        dispatch = self._dispatcher.dispatch  # type: ignore[union-attr]
        try:
            for _ in range(_BATCH):
                frame = recv(zmq.NOBLOCK)
                try:
                    dispatch(frame, self)
                except Exception:
                    log.exception("error delivering a reply; dropped")
        except zmq.Again:
            return
        except zmq.ZMQError as exc:  # socket closed under us during shutdown
            log.debug("reply socket: %s", exc)
            return
        # More may be waiting: come back after the rest of the loop had a turn.
        assert self._loop is not None
        self._loop.call_soon(self._on_readable)
