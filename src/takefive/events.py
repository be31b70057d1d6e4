"""Events: publish from any handler, subscribe from any process (PUB/SUB).

An event is ``[topic, T5W1, EVENT, encoding, payload]``; subscribers filter on
the topic frame by *prefix* (``"chat."`` matches ``"chat.room1"``; ``""``
matches everything), so end topic prefixes with a separator.

Topologies (``docs/workers.md`` has the full story):

* one publisher, many subscribers: the publisher binds, subscribers connect;
* many publishers, one subscriber: the subscriber binds (``bind=True``),
  publishers connect;
* many to many (every handler process publishes *and* subscribes, e.g. to
  broadcast a chat message to the connections every handler holds): run
  :class:`EventProxy` (libzmq's own XSUB/XPUB forwarder) somewhere; publishers
  connect to its XSUB endpoint, subscribers to its XPUB endpoint.

Delivery is best effort, by design of PUB/SUB:

* **late joiners** miss what was published before their subscription reached
  the publisher (connecting takes a moment; there is no history);
* **slow subscribers** lose messages: once a subscriber's queue holds ``hwm``
  messages, the publisher *drops* further ones for it instead of blocking.

When every message matters, use :mod:`takefive.services` (or a broker with
persistent queues, see ``docs/workers.md``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive._sync import Closing
from takefive._zmqutil import CHECK_INTERVAL_MS, last_endpoint, recv_frames, send_frames

__all__ = [
    "BlockingSubscriber",
    "Event",
    "EventProxy",
    "Publisher",
    "Subscriber",
    "run_proxy",
]

log = logging.getLogger("takefive.events")

S = TypeVar("S", bound=zmq.Socket[Any])


@dataclass(frozen=True, slots=True)
class Event:
    """A received event: its topic and decoded payload."""

    topic: str
    data: Any


def _attach(sock: zmq.Socket[Any], endpoints: str | Sequence[str], bind: bool) -> str:
    """Bind or connect ``sock`` to every endpoint (closing it if one fails).

    Returns the endpoint to show: the one bound last (its port chosen), or the first
    one connected to.
    """
    endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
    try:
        for endpoint in endpoints:
            (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError:
        sock.close(0)
        raise
    return last_endpoint(sock) if bind else endpoints[0]


def _decode(frames: Sequence[bytes]) -> Event | None:
    try:
        event = wp.decode_event(frames)
        return Event(event.topic, wp.decode_payload(event.payload, event.encoding))
    except wp.ProtocolError as exc:
        log.warning("dropping a bad event: %s", exc)
        return None


class Publisher(Closing):
    """Publish events. Never blocks: a subscriber past its high-water mark loses messages.

    ``bind=True`` (default) binds ``endpoints`` (read the chosen one back from
    :attr:`endpoint`); ``bind=False`` connects to them (a subscriber that binds,
    or the XSUB side of :func:`run_proxy`). Usable from sync and async code alike.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = "tcp://127.0.0.1:*",
        *,
        bind: bool = True,
        hwm: int = 1000,
        encoding: str = "json",
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        wp.check_name(encoding, "encoding")
        self.encoding = encoding
        self._ctx = context or zmq.Context.instance()
        self.socket: zmq.Socket[bytes] = self._ctx.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.endpoint = _attach(self.socket, endpoints, bind)

    def publish(self, topic: str, data: Any = None, *, encoding: str | None = None) -> None:
        """Publish ``data`` under ``topic`` (dropped if nobody subscribed)."""
        encoding = encoding or self.encoding
        frames = wp.encode_event(topic, wp.encode_payload(data, encoding), encoding)
        send_frames(self.socket, frames, zmq.NOBLOCK)

    def close(self, linger: float = 0.2) -> None:
        """Close, giving queued messages up to ``linger`` seconds to leave."""
        self.socket.close(int(linger * 1000))


class _SubscriberBase(Generic[S]):
    """A SUB socket; ``context`` defaults to the shared instance of ``_context_type``."""

    _context_type: ClassVar[type[zmq.Context[Any]]]

    def __init__(
        self,
        endpoints: str | Sequence[str],
        topics: Iterable[str] = ("",),
        *,
        bind: bool = False,
        hwm: int = 1000,
        context: zmq.Context[S] | None = None,
    ) -> None:
        ctx = context or self._context_type.instance()
        sock: S = ctx.socket(zmq.SUB)
        self.socket = sock
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, hwm)
        for topic in topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))
        self.endpoint = _attach(sock, endpoints, bind)
        self._terminated = False

    def _context_gone(self) -> zmq.ContextTerminated:
        """The context was terminated: close (so that ``term()`` can finish) and say so."""
        self._terminated = True
        self.close()
        return zmq.ContextTerminated()

    def _check_context(self) -> None:
        if self._terminated:
            raise zmq.ContextTerminated()

    def subscribe(self, topic: str) -> None:
        self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode("utf-8"))

    def unsubscribe(self, topic: str) -> None:
        self.socket.setsockopt(zmq.UNSUBSCRIBE, topic.encode("utf-8"))

    def close(self) -> None:
        self.socket.close(0)


class Subscriber(_SubscriberBase[zmq.asyncio.Socket]):
    """Receive events in async code: ``await sub.recv()`` or ``async for event in sub``.

    ``topics`` are prefixes (default: everything). ``bind=False`` (default)
    connects to every endpoint in ``endpoints``; ``bind=True`` binds them.
    ``context``, if given, is a ``zmq.asyncio.Context``.
    """

    _context_type = zmq.asyncio.Context

    def __init__(
        self,
        endpoints: str | Sequence[str],
        topics: Iterable[str] = ("",),
        *,
        bind: bool = False,
        hwm: int = 1000,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        super().__init__(endpoints, topics, bind=bind, hwm=hwm, context=context)
        self.socket.setsockopt(zmq.RCVTIMEO, CHECK_INTERVAL_MS)  # see recv

    async def recv(self) -> Event:
        """The next well-formed event (bad ones are logged and dropped).

        Raises ``zmq.ContextTerminated`` (after closing the socket) if the ZeroMQ
        context is terminated, within about a second, instead of waiting for ever.
        """
        self._check_context()
        while True:
            try:
                frames = await self.socket.recv_multipart()
            except zmq.Again:  # RCVTIMEO: idle; the next recv raises if the context is gone
                continue
            except zmq.ContextTerminated:
                raise self._context_gone() from None
            event = _decode(frames)
            if event is not None:
                return event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            yield await self.recv()

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class BlockingSubscriber(_SubscriberBase[zmq.Socket[bytes]], Closing):
    """Receive events in synchronous code: ``sub.recv(timeout=1.0)``.

    ``topics``, ``bind`` and ``hwm`` as for :class:`Subscriber`; ``context``, if
    given, is a plain ``zmq.Context``.
    """

    _context_type = zmq.Context

    def recv(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` if none arrives within ``timeout`` seconds.

        Bad events are logged and dropped; they do not extend the timeout. Raises
        ``zmq.ContextTerminated`` (after closing the socket) if the ZeroMQ context
        is terminated.
        """
        self._check_context()
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            poll_ms = None if end is None else max(0, math.ceil((end - time.monotonic()) * 1000))
            try:
                if not self.socket.poll(poll_ms):
                    return None
                frames = recv_frames(self.socket)
            except zmq.ContextTerminated:
                raise self._context_gone() from None
            event = _decode(frames)
            if event is not None:
                return event


class EventProxy:
    """Forward events from publishers to subscribers: libzmq's XSUB/XPUB proxy.

    Publishers connect to :attr:`xsub_endpoint`, subscribers to
    :attr:`xpub_endpoint`. Not a broker: no storage, no acknowledgements;
    subscriptions flow upstream so publishers only send what someone wants.
    Binds at construction; :meth:`run` blocks until :meth:`stop` (from another
    thread) or until the context is terminated.
    """

    def __init__(
        self,
        xsub_endpoint: str = "tcp://127.0.0.1:*",
        xpub_endpoint: str = "tcp://127.0.0.1:*",
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = self._ctx.socket(zmq.XPUB)
        self._control = self._ctx.socket(zmq.PAIR)
        self._stopper = self._ctx.socket(zmq.PAIR)
        control_addr = f"inproc://takefive-event-proxy-{id(self)}"
        try:
            self._xsub.bind(xsub_endpoint)
            self._xpub.bind(xpub_endpoint)
            self._control.bind(control_addr)
            self._stopper.connect(control_addr)
        except zmq.ZMQError:
            self._close()
            raise
        self.xsub_endpoint = last_endpoint(self._xsub)
        self.xpub_endpoint = last_endpoint(self._xpub)

    def run(self) -> None:
        try:
            zmq.proxy_steerable(self._xsub, self._xpub, None, self._control)
        except zmq.ContextTerminated:
            pass
        finally:
            self._close()

    def stop(self) -> None:
        """End :meth:`run` (safe from any thread)."""
        with self._lock:
            if not self._stopper.closed:
                self._stopper.send(b"TERMINATE")

    def _close(self) -> None:
        with self._lock:
            for sock in (self._xsub, self._xpub, self._control, self._stopper):
                sock.close(0)


def run_proxy(xsub_endpoint: str, xpub_endpoint: str) -> None:
    """Run an :class:`EventProxy` on these endpoints until the process ends."""
    EventProxy(xsub_endpoint, xpub_endpoint).run()
