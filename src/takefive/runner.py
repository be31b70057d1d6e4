"""A handler process: serves an :class:`~takefive.app.App` to one or more front ends.

For each front end (Mongrel2 or the built-in gateway) the process holds a PULL
socket connected to the front end's ``send_spec`` (requests arrive round robin
among all handler processes) and a PUB socket connected to its ``recv_spec``
(responses, tagged with the front end's UUID). Each request runs in its own
asyncio task; at most ``max_in_flight`` run at once, and while that many are in
flight the process stops reading (backpressure: the requests wait in ZeroMQ,
or go to other handler processes).

This module knows ZeroMQ and the wire format; routing and HTTP semantics belong
to the app.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextvars import Context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from takefive import response as response_module
from takefive import wire
from takefive._zmqutil import ZERO_COPY_SIZE as _ZERO_COPY_SIZE
from takefive._zmqutil import NowaitSocket, nowait_socket
from takefive._zmqutil import send_raw as _send_frame
from takefive.loader import load_object
from takefive.request import Request, request_from
from takefive.response import Response

if TYPE_CHECKING:
    from takefive.app import App

__all__ = ["DEFAULT_RECV_SPEC", "DEFAULT_SEND_SPEC", "Endpoint", "HandlerServer", "run"]

log = logging.getLogger("takefive.runner")

#: The ports of the Mongrel2 examples: Mongrel2 PUSHes on 9997 and SUBscribes on 9996.
DEFAULT_SEND_SPEC = "tcp://127.0.0.1:9997"
DEFAULT_RECV_SPEC = "tcp://127.0.0.1:9996"

#: Messages drained from a PULL socket per wake-up before yielding to the loop.
_BATCH = 64
#: When a turn of the reader took this long per frame or more (seconds), the replies
#: made during its next turn wait for its end, for at most _CORK_S since the handler
#: that made the first of them started (see _Reader).
_SLOW_S = 50e-6
_CORK_S = 0.001


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One front end: where it PUSHes requests and where it SUBscribes to responses."""

    send_spec: str = DEFAULT_SEND_SPEC
    recv_spec: str = DEFAULT_RECV_SPEC


class _Outbox:
    """Publishes responses to the front end whose UUID is ``sender``.

    A sender seen on one endpoint is answered on that endpoint's PUB socket; an
    unknown sender (e.g. a push from a process that has not served it yet) is
    published on every PUB socket, and each front end's SUB keeps its own.
    """

    def __init__(self) -> None:
        self.pubs: list[NowaitSocket] = []
        self.routes: dict[str, NowaitSocket] = {}
        #: Called before anything is sent: sends the replies a reader holds first, so
        #: that everything leaves in the order it was made.
        self.flush: Callable[[], None] = _nothing

    def deliver(self, sender: str, conn_ids: str | Sequence[str], data: bytes) -> None:
        self.flush()
        messages = wire.encode_response(sender, conn_ids, data)
        socket = self.routes.get(sender)
        targets = (socket,) if socket is not None else self.pubs
        for pub in targets:
            for message in messages:
                _publish(pub, message)

    def reply(self, sender: str, conn_id: str, data: bytes) -> None:
        """The response to a request: one connection, of a front end known to this
        process (its request came in on one of our sockets)."""
        socket = self.routes.get(sender)
        if socket is None:
            self.deliver(sender, conn_id, data)
        else:
            self.flush()
            _publish(socket, wire.encode_reply(sender, conn_id, data))


def _publish(pub: NowaitSocket, data: bytes) -> None:
    """One message on a PUB socket: copied, or zero-copy when large (pyzmq's advice).

    A PUB socket never blocks nor refuses: past its high-water mark (SNDHWM, 100,000
    here) it drops, which makes that rare.
    """
    if len(data) < _ZERO_COPY_SIZE:
        pub.send(data)
    elif pub.attached:  # the owner, a shadow, would send on a closed socket
        _send_frame(pub.owner, data, 0, False)
    else:
        raise zmq.ZMQError(errno.ENOTSOCK)


def _nothing() -> None:
    pass


class HandlerServer:
    """Runs ``app`` against ``endpoints`` until :meth:`stop` is called."""

    def __init__(
        self,
        app: App,
        endpoints: Iterable[Endpoint] = (Endpoint(),),
        *,
        sender_id: str | None = None,
        max_in_flight: int = 1000,
        grace: float = 10.0,
        linger_ms: int = 1000,
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.app = app
        self.endpoints = tuple(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.sender_id = sender_id or str(uuid.uuid4())
        self.max_in_flight = max_in_flight
        self.grace = grace
        self.linger_ms = linger_ms
        self._context = context
        self._outbox = _Outbox()
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._paused: list[_Reader] = []
        self._readers: list[_Reader] = []
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        # Made at the first request, on the running loop (on 3.11 get_running_loop()
        # makes a getpid() system call: not once per request).
        self._starter: _TaskStarter | None = None

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Ask the server to stop receiving and shut down gracefully."""
        self._stopping.set()

    async def wait_ready(self) -> None:
        """Wait until the sockets are connected and the app has started."""
        await self._ready.wait()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def serve(self) -> None:
        """Serve until :meth:`stop`; then finish in-flight requests within ``grace``."""
        context = self._context or zmq.asyncio.Context.instance()
        pulls: list[zmq.asyncio.Socket] = []
        pubs: list[zmq.asyncio.Socket] = []
        identity = self.sender_id.encode()
        helpers: list[asyncio.Task[None]] = []
        readers: list[_Reader] = []
        nowaits: list[NowaitSocket] = []  # detached before their sockets close
        try:
            for endpoint in self.endpoints:
                pull = context.socket(zmq.PULL)
                pull.setsockopt(zmq.LINGER, 0)
                pull.connect(endpoint.send_spec)
                # XPUB rather than PUB: it tells us when the front end has subscribed, so no
                # response is published into the void while the SUB is still connecting.
                pub = context.socket(zmq.XPUB)
                pub.setsockopt(zmq.IDENTITY, identity)
                pub.setsockopt(zmq.XPUB_VERBOSE, 1)
                pub.setsockopt(zmq.SNDHWM, 100_000)
                pub.setsockopt(zmq.LINGER, self.linger_ms)
                pub.connect(endpoint.recv_spec)
                pulls.append(pull)
                pubs.append(pub)
            # Sends go through plain (non-async) shadows: a PUB send never blocks.
            self._outbox.pubs = [nowait_socket(zmq.Socket.shadow(p.underlying)) for p in pubs]
            nowaits += self._outbox.pubs
            self.app.attach(self._outbox)
            await self.app.startup()
            log.info(
                "handler %s serving %s",
                self.sender_id,
                ", ".join(f"{e.send_spec} -> {e.recv_spec}" for e in self.endpoints),
            )
            self._ready.set()
            loop = asyncio.get_running_loop()
            for pull, pub, pub_io in zip(pulls, pubs, self._outbox.pubs, strict=True):
                pull_io = nowait_socket(zmq.Socket.shadow(pull.underlying))
                nowaits.append(pull_io)
                reader = _Reader(self, pull_io, pub_io, loop)
                readers.append(reader)
                helpers.append(asyncio.create_task(self._watch(pub, pub_io, reader)))
            self._readers = readers
            self._outbox.flush = self._flush
            await self._stopping.wait()
            log.info("stopping: no new requests; %d in flight", len(self._tasks))
            for reader in readers:
                reader.stop()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._drain(readers, pulls)
            await self._finish_in_flight()
            await self.app.shutdown()
        finally:
            for reader in readers:
                reader.stop()
            for task in helpers:
                task.cancel()
            for io in nowaits:
                io.detach()
            for pull in pulls:
                pull.close(linger=0)
            for pub in pubs:
                pub.close(linger=self.linger_ms)

    async def _drain(self, readers: list[_Reader], pulls: list[zmq.asyncio.Socket]) -> None:
        """Serve what ZeroMQ had already queued for this process, so it is not lost.

        Queued frames are read *before* the PULL socket disconnects: libzmq throws away
        what a disconnected pipe still holds. Disconnecting then tells the front end to
        deal its next requests to the other handler processes.
        """
        for reader in readers:
            while True:
                if len(self._tasks) >= self.max_in_flight:
                    await self._wait_for_room()
                frame = reader.pull.recv()
                if frame is None:
                    break
                self._dispatch(frame, reader.pub, reader.send)
        for pull, endpoint in zip(pulls, self.endpoints, strict=True):
            with contextlib.suppress(zmq.ZMQError):
                pull.disconnect(endpoint.send_spec)

    async def _finish_in_flight(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace)
        if pending:
            log.warning("grace period over: cancelling %d requests", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ the hot path

    async def _watch(self, xpub: zmq.asyncio.Socket, pub: NowaitSocket, reader: _Reader) -> None:
        """Follow the front ends' subscriptions to this XPUB socket.

        Requests are read only once a front end has subscribed: an answer published
        before that would go nowhere.
        """
        while True:
            event = await xpub.recv()
            if not event:
                continue
            sender = event[1:].decode("ascii", "replace")
            if event[0] == 1:
                log.debug("front end %s subscribed", sender or "(all)")
                if sender:
                    self._outbox.routes[sender] = pub
                reader.start()
            elif event[0] == 0:
                log.debug("front end %s unsubscribed", sender or "(all)")

    async def _wait_for_room(self) -> None:
        while len(self._tasks) >= self.max_in_flight:
            self._room.clear()
            await self._room.wait()

    def _dispatch(self, frame: bytes, pub: NowaitSocket, send: Callable[[bytes], None]) -> None:
        """Serve one frame: inline while it needs no ``await``, else as a task of its own.

        ``pub`` is the socket the frame's front end is answered on; a plain handler's
        reply (under 64 KiB) goes to ``send``: ``pub.send``, or a reader's hold.
        """
        try:
            message = wire.parse_request(frame)
        except wire.ProtocolError as exc:
            log.warning("dropped malformed message (%s): %r", exc, frame[:120])
            return
        self._outbox.routes[message.sender] = pub
        if message.path[:1] == "@" and message.is_control:  # disconnects, credits...
            self._spawn(self._control(message))
            return
        try:
            request = request_from(message)
            started = self.app.start(request)  # a plain function handler has answered
            if isinstance(started, tuple):  # to be awaited: in a task of its own
                awaitable, context = started
                self._spawn(self._finish(request, awaitable), context)
            elif started is not None:  # answered: in one copy when it can be
                reply = _reply_frame(request, started)
                if reply is None:
                    self._send_rendered(request, started)
                elif len(reply) < _ZERO_COPY_SIZE:
                    send(reply)
                else:
                    self._flush()
                    _publish(pub, reply)
        except Exception:
            # App.start never raises; this is a bug in takefive itself. Keep serving.
            log.exception("internal error serving %s %s", message.sender, message.conn_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], context: Context | None = None) -> None:
        task = (self._starter or self._new_starter()).start(coro, context)
        if not task.done():  # it waits for something: in flight until done
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _new_starter(self) -> _TaskStarter:
        starter = self._starter = _TaskStarter(asyncio.get_running_loop())
        return starter

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._room.set()
        if self._paused and len(self._tasks) < self.max_in_flight:
            paused, self._paused = self._paused, []
            for reader in paused:
                reader.resume()

    def _flush(self) -> None:
        """Send the replies the readers hold (see :meth:`_Reader.read`)."""
        for reader in self._readers:
            if reader.held:
                reader.flush()

    def _send(self, request: Request, response: Response) -> None:
        """Send ``response`` to ``request``'s connection, on the socket its front end
        was last seen on."""
        self._flush()
        pub = self._outbox.routes.get(request.sender)
        frame = _reply_frame(request, response) if pub is not None else None
        if pub is None or frame is None:
            self._send_rendered(request, response)
        else:
            _publish(pub, frame)

    def _send_rendered(self, request: Request, response: Response) -> None:
        """Send ``response`` rendered in full (HEAD, no keep-alive, an uncommon response)."""
        keep_alive = request.keep_alive
        data = response.render(head=request.method == "HEAD", keep_alive=keep_alive)
        self._outbox.reply(request.sender, request.conn_id, data)
        if not keep_alive:
            self._outbox.reply(request.sender, request.conn_id, b"")

    async def _finish(self, request: Request, awaitable: Awaitable[Any]) -> None:
        try:
            response = await self.app.finish(request, awaitable)
            if response is not None:  # else the handler holds the connection
                self._send(request, response)
        except asyncio.CancelledError:
            raise
        except Exception:
            # App.finish never raises; this is a bug in takefive itself. Keep serving.
            log.exception("internal error serving %s %s", request.sender, request.conn_id)

    async def _control(self, message: wire.Message) -> None:
        try:
            if message.is_disconnect:
                await self.app.disconnected(message.sender, message.conn_id)
            else:
                log.debug("ignoring control message %r from %s", message.body, message.sender)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error serving %s %s", message.sender, message.conn_id)


#: Response classes whose responses may skip ``render()``: those with no ``render()`` nor
#: ``length_prefix()`` of their own (checked once per class; bounded). A class that
#: renders differently is always rendered.
_FRAMED_TYPES: set[type] = set()


def _renders_as_response(cls: type) -> bool:
    plain = cls.render is Response.render and cls.length_prefix is Response.length_prefix  # type: ignore[attr-defined]
    if plain and len(_FRAMED_TYPES) < 256:
        _FRAMED_TYPES.add(cls)
    return plain


def _response_frame(sender: str, conn_id: str, response: Response) -> bytes | None:
    """The frame answering a keep-alive, not HEAD request with ``response``, when the
    response is a common one (see :meth:`Response.length_prefix`) of a class that
    renders as Response does; else None (then ``render()`` makes the bytes)."""
    if type(response) not in _FRAMED_TYPES and not _renders_as_response(type(response)):
        return None
    prefix = response.length_prefix()
    if prefix is None:
        return None
    return wire.encode_sized_reply(sender, conn_id, prefix, response.body)


def _python_reply_frame(request: Request, response: Response) -> bytes | None:
    """The frame answering ``request`` with ``response`` in one copy, or None when the
    response must be rendered in full: no keep-alive, HEAD, or an uncommon response."""
    if not request.keep_alive or request.method == "HEAD":
        return None
    return _response_frame(request.sender, request.conn_id, response)


def _reply_frames() -> Callable[[Request, Response], bytes | None]:
    """:func:`_python_reply_frame`, in C when the speedups are built (the C function
    hands what it does not know, or has not cached yet, to the Python one)."""
    speedups = wire._speedups
    if speedups is None:
        return _python_reply_frame
    try:
        speedups.setup_response(
            Response,
            response_module._PREFIXES,
            wire._sender_raw,
            _FRAMED_TYPES,
            _python_reply_frame,
        )
    except TypeError:
        return _python_reply_frame
    frame: Callable[[Request, Response], bytes | None] = speedups.reply_frame
    return frame


_reply_frame = _reply_frames()


class _Reader:
    """Feeds one PULL socket's frames to the server from an event loop reader callback.

    The callback drains the socket with non-blocking reads (ZeroMQ's descriptor only
    says "look again"), up to _BATCH frames per turn of the loop, and pauses while the
    server has ``max_in_flight`` requests waiting: the rest stay queued in ZeroMQ.
    No future or task is made per message. The reads and the replies of plain
    handlers go through :func:`~takefive._zmqutil.nowait_socket` (libzmq called from
    C when built): an empty socket, which ends every turn, costs a C call there, where
    pyzmq raises ``zmq.Again``.

    When handlers are slow (the last turn took _SLOW_S or more per frame, e.g. a page
    rendered in 250 us), the replies of plain handlers are *held* until the turn ends,
    or until _CORK_S after the handler that made the first of them started, then sent
    in a row. The time is checked between handlers, so a reply can wait _CORK_S plus
    the run time of the handler that runs next (a plain handler blocks the whole
    process while it runs anyway). A front end then wakes up once for the lot instead
    of once per reply, and each wake-up of Mongrel2 polls every connection it has: at
    200 connections, with one reply every 250 us, Mongrel2 spent 55% of a core on it,
    and the handler got 92% of the other one. Fast handlers' replies go at once: held,
    they would leave the front end waiting for the whole turn, which then sends the
    next requests in lock-step (20% more CPU per request, measured). Anything else the
    process sends (a pushed message, an awaited handler's response) sends what is held
    first, so things leave in the order they were made.
    """

    def __init__(
        self,
        server: HandlerServer,
        pull: NowaitSocket,
        pub: NowaitSocket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.server = server
        self.pull = pull
        self.pub = pub
        self.send = pub.send
        self.loop = loop
        self.fd = int(pull.owner.getsockopt(zmq.FD))
        self.reading = False
        self.paused = False
        self.held: list[bytes] = []
        self.hold = self.held.append
        self.slow = False  # the last turn took _SLOW_S or more per frame

    def start(self) -> None:
        if not self.reading:
            self.reading = True
            self.loop.add_reader(self.fd, self.read)
            self.loop.call_soon(self.read)  # frames may already be queued

    def stop(self) -> None:
        if self.reading:
            self.reading = False
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.fd)

    def resume(self) -> None:
        self.paused = False
        self.loop.call_soon(self.read)

    def flush(self) -> None:
        """Send the held replies, in order.

        The list is emptied first, so a send that runs Python code (a signal handler
        that pushes) finds nothing held twice; what a failed send left is held again,
        first in line, and the error goes on to the caller.
        """
        held = self.held
        frames = held.copy()
        held.clear()
        send = self.send
        for sent, frame in enumerate(frames):
            try:
                send(frame)
            except BaseException:
                held[:0] = frames[sent:]
                raise

    def read(self) -> None:
        if not self.reading or self.paused:
            return
        server = self.server
        tasks, limit, dispatch = server._tasks, server.max_in_flight, server._dispatch
        recv, pub, held = self.pull.recv, self.pub, self.held
        timed = self.slow  # hold replies this turn (see the class's doc)
        hold = self.hold if timed else self.send
        clock = time.monotonic
        began, since, count = clock(), 0.0, 0  # since: the first held reply's handler began
        try:
            for _ in range(_BATCH):
                if since and clock() - since >= _CORK_S:
                    self.flush()
                    since = 0.0
                if len(tasks) >= limit:
                    self.paused = True
                    server._paused.append(self)
                    return
                try:
                    frame = recv()
                except zmq.ZMQError as exc:  # closed under us while shutting down
                    log.debug("request socket: %s", exc)
                    return
                if frame is None:  # drained: the descriptor will say when more come
                    return
                count += 1
                if timed and not since:
                    now = clock()
                try:
                    dispatch(frame, pub, hold)
                except BaseException:  # KeyboardInterrupt, SystemExit: on their way out
                    # ZeroMQ's descriptor only signals new arrivals: read on, or what is
                    # queued already waits for the next one.
                    self.loop.call_soon(self.read)
                    raise
                if timed and held and not since:
                    since = now
            self.loop.call_soon(self.read)  # more may be waiting: let the loop breathe first
        finally:
            if held:
                self.flush()
            if count:
                self.slow = clock() - began >= count * _SLOW_S


class _TaskStarter:
    """Starts the tasks of one event loop *eagerly*: inline, as the current task, until
    they first wait. Most requests then cost no scheduling and no extra turn of the loop.

    On 3.12+ that is ``eager_start``. Python 3.11 has none, and running the first step
    outside a task would break ``asyncio.timeout()``, ``TaskGroup`` and ``current_task()``
    in handlers. So the task is made as usual, but the first step that ``Task()`` hands
    to ``loop.call_soon`` is taken back and run at once, in the task's context (the C
    step itself makes the task current while it runs). That saves a loop handle, a turn
    of the loop and a done callback per request. Anything unexpected (a task factory, a
    ``call_soon`` already shadowed, a call from inside a task, ``Task()`` asking for
    anything but one callback) falls back to the plain, scheduled task.

    One per loop, used from that loop's thread only (what it captures is its own).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._captured: list[tuple[Any, tuple[Any, ...], Any]] = []
        captured = self._captured

        def capture(callback: Any, *args: Any, context: Any = None) -> None:
            captured.append((callback, args, context))

        self._capture = capture
        # No instance __dict__: call_soon cannot be shadowed, so never eager (3.11).
        self._instance_dict: dict[str, Any] = getattr(loop, "__dict__", {"call_soon": None})

    if sys.version_info >= (3, 12):

        def start(
            self, coro: Coroutine[Any, Any, None], context: Context | None = None
        ) -> asyncio.Task[None]:
            loop = self.loop
            if loop.get_task_factory() is not None:
                return loop.create_task(coro, context=context)
            return asyncio.Task(coro, loop=loop, context=context, eager_start=True)  # type: ignore[call-arg,unused-ignore]

    else:

        def start(
            self, coro: Coroutine[Any, Any, None], context: Context | None = None
        ) -> asyncio.Task[None]:
            loop = self.loop
            if (
                _current_task(loop) is not None  # a step cannot run inside another task
                or loop.get_task_factory() is not None
                or "call_soon" in self._instance_dict
            ):
                return loop.create_task(coro, context=context)
            captured = self._captured
            try:
                loop.call_soon = self._capture  # type: ignore[method-assign,assignment]
                task = asyncio.Task(coro, loop=loop, context=context)
            except BaseException:
                captured.clear()
                raise
            finally:
                del loop.call_soon
            if len(captured) == 1:
                step, args, step_context = captured.pop()
                step_context.run(step, *args)
            else:  # not what Task() does on 3.11: schedule what it asked for, as asked
                steps = captured[:]
                captured.clear()
                for step, args, step_context in steps:
                    loop.call_soon(step, *args, context=step_context)
            return task


_current_task = asyncio.current_task


# ---------------------------------------------------------------------- running


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run(
    app: App,
    endpoints: Iterable[Endpoint] = (Endpoint(),),
    **options: Any,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully.

    Uses uvloop when it is installed. ``options`` go to :class:`HandlerServer`.
    """
    server = HandlerServer(app, endpoints, **options)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(main())


# ---------------------------------------------------------------------- CLI


def add_command(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run one handler process",
        description=(
            "Run one handler process for MODULE:APP. --send-spec/--recv-spec may be repeated "
            "(in pairs) to serve several front ends from one process."
        ),
    )
    parser.add_argument(
        "app", metavar="MODULE:APP", help="e.g. examples/hello.py:app or pkg.web:app"
    )
    parser.add_argument(
        "--send-spec",
        action="append",
        metavar="SPEC",
        help=f"where the front end PUSHes requests (default {DEFAULT_SEND_SPEC})",
    )
    parser.add_argument(
        "--recv-spec",
        action="append",
        metavar="SPEC",
        help=f"where the front end SUBscribes to responses (default {DEFAULT_RECV_SPEC})",
    )
    parser.add_argument(
        "--sender-id", help="identity of this handler's PUB socket (default: a uuid)"
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=1000,
        help="requests served at once before reading stops (default 1000)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds in-flight requests get to finish on SIGTERM (default 10)",
    )
    parser.set_defaults(func=_command)


def endpoints_from(
    send_specs: Sequence[str] | None, recv_specs: Sequence[str] | None
) -> list[Endpoint]:
    """Pair repeated --send-spec/--recv-spec options into endpoints."""
    sends = list(send_specs or [DEFAULT_SEND_SPEC])
    recvs = list(recv_specs or [DEFAULT_RECV_SPEC])
    if len(sends) != len(recvs):
        raise ValueError(
            f"--send-spec and --recv-spec come in pairs: got {len(sends)} and {len(recvs)}"
        )
    return [Endpoint(s, r) for s, r in zip(sends, recvs, strict=True)]


def _command(args: argparse.Namespace) -> int:
    from takefive.app import App

    try:
        endpoints = endpoints_from(args.send_spec, args.recv_spec)
        app = load_object(args.app)
    except (ValueError, ImportError) as exc:
        log.error("%s", exc)
        return 2
    if not isinstance(app, App):
        log.error("%s is a %s, not a takefive.App", args.app, type(app).__name__)
        return 2
    run(
        app,
        endpoints,
        sender_id=args.sender_id,
        max_in_flight=args.max_in_flight,
        grace=args.grace,
    )
    return 0
