"""Named request/reply services, load balanced to ready workers, with heartbeats.

The caller's process holds a thin dispatcher (no separate broker)::

    Dispatcher (in your handler or script)          workers (any language)
    ROUTER bind endpoint  <──READY / HEARTBEAT──    DEALER connect
                          ──REQUEST / HEARTBEAT──>
                          <──REPLY / ERROR───────

It is the Paranoid Pirate / Majordomo pattern of the ZeroMQ guide, cut to what
takefive needs:

* a worker says ``READY`` with the services it offers and its heartbeat
  interval; the dispatcher keeps ready workers in least-recently-used order and
  gives each call to the first ready worker offering that service, one call per
  worker at a time; calls wait in a FIFO per service while none is ready;
* both sides heartbeat; a worker silent for ``liveness`` intervals is dead.
  Its call is retried on another worker if the call is *idempotent* (up to
  ``retries`` times), and fails with :class:`WorkerLost` otherwise: a call that
  must not run twice is never run twice by takefive;
* every call has a deadline (``timeout``): it ends with a result, an error from
  the worker (:class:`ServiceError`), :class:`WorkerLost` or
  :class:`ServiceTimeout`; nothing waits forever;
* if one of the dispatcher's two tasks (receive, heartbeat) stops for any reason
  other than :meth:`Dispatcher.close` (the ZeroMQ context was terminated, a bug),
  the dispatcher is *broken*: the error is logged, every pending call fails at once
  with :class:`ServiceError` (code ``broken``, the cause in the message), and so
  does every later call. Create a new dispatcher.

Use :class:`Dispatcher` from async code and :class:`BlockingDispatcher` from
plain scripts. Workers: ``takefive worker MODULE:FUNC --service ENDPOINT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive._sync import AsyncClosing, BlockingClient, Breakable, deadline, why_stopped
from takefive._zmqutil import CHECK_INTERVAL_MS, last_endpoint, recv_frames, send_frames
from takefive.workproto import WorkError

__all__ = [
    "BlockingDispatcher",
    "Dispatcher",
    "ServiceError",
    "ServiceTimeout",
    "WorkError",
    "WorkerLost",
    "WorkerStatus",
]

log = logging.getLogger("takefive.services")


class ServiceError(WorkError):
    """A service call failed; ``code`` says why (a worker's ``ERROR`` code, or one of
    the dispatcher's own: ``timeout``, ``worker-lost``, ``closed``, ``broken``)."""


class ServiceTimeout(ServiceError, TimeoutError):
    """The call did not finish within its timeout."""


class WorkerLost(ServiceError):
    """The worker running the call died (or left) and the call was not retried.

    A non-idempotent call is never retried: it may or may not have run. An
    idempotent call gets this once its retries are spent.
    """


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What the dispatcher knows about one connected worker."""

    identity: bytes
    info: str
    services: tuple[str, ...]
    heartbeat: float
    job_id: bytes | None  # the call it is running, None when ready


def _call_text(job_id: bytes, service: str) -> str:
    return f"call {job_id.decode()} to {service!r}"


@dataclass(eq=False, slots=True)
class _Call:
    seq: int
    job_id: bytes
    service: str
    frames: list[bytes]
    idempotent: bool
    retries_left: int
    future: asyncio.Future[wp.Reply | wp.Error]
    attempts: int = 0
    worker: _Worker | None = None

    @property
    def finished(self) -> bool:
        return self.future.done()


@dataclass(eq=False, slots=True)
class _Worker:
    identity: bytes
    info: str
    services: frozenset[str]
    heartbeat: float
    expires: float
    next_heartbeat: float
    call: _Call | None = None
    calls_done: int = 0


class Dispatcher(AsyncClosing, Breakable[ServiceError]):
    """The caller's side of takefive services: binds a ROUTER that workers connect to.

    Create it inside a running event loop (it binds at once; ``endpoint`` may end
    in ``:*`` for a free port, read back from :attr:`endpoint`).
    """

    _error_type = ServiceError

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:*",
        *,
        timeout: float = 30.0,
        retries: int = 2,
        liveness: int = 3,
        encoding: str = "json",
        context: zmq.asyncio.Context | None = None,
    ) -> None:
        if liveness < 1 or retries < 0:
            raise ValueError("liveness must be >= 1 and retries >= 0")
        wp.check_name(encoding, "encoding")
        self.timeout = timeout
        self.retries = retries
        self.liveness = liveness
        self.encoding = encoding
        self._loop = asyncio.get_running_loop()
        self._ctx = context or zmq.asyncio.Context.instance()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.SNDHWM, 0)
        self._router.setsockopt(zmq.RCVHWM, 0)
        self._router.setsockopt(zmq.RCVTIMEO, CHECK_INTERVAL_MS)  # see _receive
        try:
            self._router.bind(endpoint)
        except zmq.ZMQError:
            self._router.close(0)
            raise
        self.endpoint = last_endpoint(self._router)
        # Sends never block on a ROUTER: use a plain socket on the same handle.
        self._out: zmq.Socket[bytes] = zmq.Socket.shadow(self._router.underlying)
        self._workers: dict[bytes, _Worker] = {}
        self._ready: OrderedDict[bytes, _Worker] = OrderedDict()
        self._waiting: dict[str, deque[_Call]] = {}
        self._seq = itertools.count(1)
        self._prefix = os.urandom(4).hex().encode() + b"-"
        self._changed = asyncio.Event()
        self._wake_tick = asyncio.Event()
        self._closed = False
        self._tasks = [
            self._loop.create_task(self._receive(), name="takefive-services-receive"),
            self._loop.create_task(self._tick(), name="takefive-services-heartbeat"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_stopped)

    # ------------------------------------------------------------------ public API

    async def call(
        self,
        service: str,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's deadline, by design
        idempotent: bool = False,
        retries: int | None = None,
        encoding: str | None = None,
    ) -> Any:
        """Call ``service`` with ``payload`` on a ready worker; return the decoded result.

        ``idempotent=True`` lets the dispatcher re-run the call on another worker
        (at most ``retries`` times) when its worker dies; otherwise such a call
        fails with :class:`WorkerLost`. ``timeout`` (seconds) bounds the whole
        call, queueing and retries included.
        """
        if self._closed:
            raise ServiceError("the dispatcher is closed", code="closed")
        if self._broken is not None:
            raise self._broken_error()
        timeout = self.timeout if timeout is None else timeout
        encoding = encoding or self.encoding
        seq = next(self._seq)
        job_id = self._prefix + format(seq, "x").encode()
        data = wp.encode_payload(payload, encoding)
        frames = wp.encode_request(job_id, service, data, encoding)
        call = _Call(
            seq=seq,
            job_id=job_id,
            service=service,
            frames=frames,
            idempotent=idempotent,
            retries_left=(self.retries if retries is None else retries) if idempotent else 0,
            future=self._loop.create_future(),
        )
        self._submit(call)
        timer = deadline(call.future, timeout)
        try:
            answer = await call.future
        except TimeoutError:
            self._withdraw(call)
            if call.worker is not None:
                where = f"still running on worker {call.worker.info}"
            elif call.attempts:
                where = "waiting to be retried"
            else:
                where = f"no worker for {service!r} became ready"
            raise ServiceTimeout(
                f"call {job_id.decode()} to {service!r} did not finish within {timeout:g}s "
                f"({where})",
                code="timeout",
                job_id=job_id,
            ) from None
        except asyncio.CancelledError:  # the caller gave up
            self._withdraw(call)
            raise
        finally:
            timer.cancel()
            if not call.future.done():
                call.future.cancel()
        return wp.reply_value(answer, _call_text, ServiceError, job_id, service)

    @property
    def queued(self) -> int:
        """Calls waiting for a ready worker."""
        return sum(len(queue) for queue in self._waiting.values())

    def workers(self) -> list[WorkerStatus]:
        """The workers connected now (ready or busy)."""
        return [
            WorkerStatus(
                w.identity,
                w.info,
                tuple(sorted(w.services)),
                w.heartbeat,
                w.call.job_id if w.call is not None else None,
            )
            for w in self._workers.values()
        ]

    async def wait_for_workers(
        self,
        count: int = 1,
        service: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[WorkerStatus]:
        """Wait until ``count`` workers (offering ``service``, if given) are connected."""

        def matching() -> list[WorkerStatus]:
            return [w for w in self.workers() if service is None or service in w.services]

        deadline = time.monotonic() + timeout
        while len(found := matching()) < count:
            if self._broken is not None:
                raise self._broken_error()
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceTimeout(
                    f"{len(found)} of {count} worker(s) for {service or 'any service'} "
                    f"connected to {self.endpoint} within {timeout:g}s",
                    code="timeout",
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return found

    async def close(self) -> None:
        """Tell workers DISCONNECT, fail calls still pending, close the socket."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # A task that failed (a broken dispatcher) was logged already.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in list(self._workers.values()):
            self._send(worker, wp.encode_disconnect())
            if worker.call is not None:
                self._fail(worker.call, ServiceError, "the dispatcher was closed", "closed")
        for queue in self._waiting.values():
            for call in queue:
                self._fail(call, ServiceError, "the dispatcher was closed", "closed")
        self._waiting.clear()
        self._workers.clear()
        self._ready.clear()
        if not self._router.closed:  # a broken dispatcher closed it already
            with contextlib.suppress(zmq.ZMQError):  # a terminated context
                self._router.setsockopt(zmq.LINGER, 200)
            self._router.close()

    def _break(self, why: str, cause: BaseException | None) -> None:
        """The dispatcher cannot work any more: say so loudly, fail every call, close."""
        if self._closed or self._broken is not None:
            return
        message = f"the dispatcher on {self.endpoint} is broken: {why}; create a new Dispatcher"
        self._mark_broken(message, cause, log)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        calls = [w.call for w in self._workers.values() if w.call is not None]
        calls += [call for queue in self._waiting.values() for call in queue]
        for worker in self._workers.values():
            worker.call = None
        self._workers.clear()
        self._ready.clear()
        self._waiting.clear()
        for call in calls:
            call.worker = None
            if not call.future.done():
                call.future.set_exception(self._broken_error(call.job_id))
        self._changed.set()  # wake wait_for_workers()
        # Release the port, and let a context.term() waiting on this socket finish.
        self._router.close(0)

    def _task_stopped(self, task: asyncio.Task[None]) -> None:
        if not self._closed:
            why, cause = why_stopped(task)
            name = task.get_name().removeprefix("takefive-services-")
            self._break(f"its {name} task {why}", cause)

    # ------------------------------------------------------------------ scheduling

    def _submit(self, call: _Call, *, front: bool = False) -> None:
        if self._broken is not None:  # a retry or a requeue after the dispatcher broke
            if not call.future.done():
                call.future.set_exception(self._broken_error(call.job_id))
            return
        worker = next((w for w in self._ready.values() if call.service in w.services), None)
        if worker is not None:
            self._start(call, worker)
            return
        queue = self._waiting.setdefault(call.service, deque())
        if front:
            queue.appendleft(call)
        else:
            queue.append(call)

    def _withdraw(self, call: _Call) -> None:
        """Take a call that ended (timed out, cancelled) out of its queue, if it is there."""
        queue = self._waiting.get(call.service)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(call)
        if not queue:
            del self._waiting[call.service]

    def _start(self, call: _Call, worker: _Worker) -> None:
        del self._ready[worker.identity]
        if not self._send(worker, call.frames):
            # Never delivered, so never run: requeue it, idempotent or not, without
            # spending a retry, and forget the worker (it reconnected or died).
            self._lose(worker, "could not be reached")
            self._submit(call, front=True)
            return
        worker.call = call
        call.worker = worker
        call.attempts += 1

    def _worker_ready(self, worker: _Worker) -> None:
        """``worker`` is idle: give it the oldest waiting call it can run."""
        worker.call = None
        best: deque[_Call] | None = None
        for service in worker.services:
            queue = self._waiting.get(service)
            if not queue:
                continue
            while queue and queue[0].finished:
                queue.popleft()
            if queue and (best is None or queue[0].seq < best[0].seq):
                best = queue
        if best is not None:
            self._ready[worker.identity] = worker
            self._start(best.popleft(), worker)
        else:
            self._ready[worker.identity] = worker
            self._ready.move_to_end(worker.identity)

    def _fail(self, call: _Call, kind: type[ServiceError], message: str, code: str) -> None:
        call.worker = None
        if not call.future.done():
            call.future.set_exception(kind(message, code=code, job_id=call.job_id))

    def _unreachable(self, worker: _Worker) -> None:
        """A send to ``worker`` failed: it has gone. Its answer to the call it was running
        may still wait unread here (it answered, then left): handle what has arrived
        first, so an answered call is not counted as lost."""
        if worker.call is not None and self._broken is None:
            self._handle_received()
        if self._workers.get(worker.identity) is worker:  # not gone by its own DISCONNECT
            self._lose(worker, "could not be reached")

    def _expire(self, worker: _Worker, now: float) -> bool:
        """Forget ``worker`` if it has said nothing by its deadline; True if it is gone.

        Its last heartbeat may be waiting unread (this timer can run before the socket's
        reader in a turn of the loop, and a busy machine delays both): what has arrived
        is handled before the worker is blamed for silence.
        """
        if self._workers.get(worker.identity) is not worker:  # gone earlier in this tick
            return True
        if now <= worker.expires:
            return False
        if self._broken is None:
            self._handle_received()
        if self._workers.get(worker.identity) is not worker:  # it left, or said READY again
            return True
        if now <= worker.expires:  # it had spoken in time
            return False
        self._lose(worker, f"sent nothing for {worker.heartbeat * self.liveness:g}s")
        return True

    def _lose(self, worker: _Worker, why: str) -> None:
        """Forget ``worker``; retry or fail the call it was running."""
        if self._broken is not None:  # every worker is forgotten already
            return
        self._workers.pop(worker.identity, None)
        self._ready.pop(worker.identity, None)
        self._changed.set()
        call, worker.call = worker.call, None
        log.warning("worker %s %s", worker.info, why)
        if call is None or call.finished:
            return
        call.worker = None
        head = f"call {call.job_id.decode()} to {call.service!r}: worker {worker.info} {why}"
        if not call.idempotent:
            self._fail(
                call,
                WorkerLost,
                f"{head} while running it; the call is not idempotent, so it was not retried "
                "(it may or may not have run)",
                "worker-lost",
            )
        elif call.retries_left <= 0:
            self._fail(
                call,
                WorkerLost,
                f"{head}; no retries left after {call.attempts} attempt(s)",
                "worker-lost",
            )
        else:
            call.retries_left -= 1
            log.info("retrying idempotent call %s on another worker", call.job_id.decode())
            self._submit(call, front=True)

    def _tell_disconnect(self, identity: bytes) -> None:
        if self._broken is not None:  # the socket is closed
            return
        try:
            send_frames(self._out, [identity, *wp.encode_disconnect()], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: gone already
            self._check_socket(exc)

    def _send(self, worker: _Worker, frames: list[bytes]) -> bool:
        if self._broken is not None:  # the socket is closed
            return False
        try:
            send_frames(self._out, [worker.identity, *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer is gone
            log.debug("send to %s failed: %s", worker.info, exc)
            self._check_socket(exc)
            return False
        return True

    def _check_socket(self, exc: zmq.ZMQError) -> None:
        """A send failed: if the socket itself is unusable (not just one peer gone), break."""
        if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
            self._break(f"sending failed: {type(exc).__name__}: {exc}", exc)

    # ------------------------------------------------------------------ socket loops

    async def _receive(self) -> None:
        """Runs until close(); if it stops otherwise, _task_stopped breaks the dispatcher."""
        router = self._router
        while True:
            try:
                frames = await router.recv_multipart()
            except zmq.Again:  # RCVTIMEO: idle; the next recv raises if the context is gone
                continue
            # Then whatever else is already here, without a trip through the loop each.
            self._on_message_safely(frames)
            self._handle_received()

    def _handle_received(self) -> None:
        """Handle the messages already received (at most 10,000), without waiting."""
        router_now = self._out
        for _ in range(10_000):
            try:
                frames = recv_frames(router_now, zmq.NOBLOCK)
            except zmq.Again:
                break
            self._on_message_safely(frames)

    def _on_message_safely(self, frames: list[bytes]) -> None:
        try:
            self._on_message(frames[0], frames[1:])
        except Exception:  # a bug here must not stop the dispatcher
            log.exception("error handling a message from %r", frames[0])

    def _on_message(self, identity: bytes, frames: list[bytes]) -> None:
        worker = self._workers.get(identity)
        now = time.monotonic()
        if worker is not None:  # any message, even a bad one, is a sign of life
            worker.expires = now + worker.heartbeat * self.liveness
        try:
            msg = wp.parse(frames)
        except wp.ProtocolError as exc:
            log.warning("dropping a bad message from worker %r: %s", identity, exc)
            return
        if isinstance(msg, wp.Reply | wp.Error):
            if worker is None:
                log.info("reply from an unknown worker %r (presumed dead); dropped", identity)
                self._tell_disconnect(identity)
                return
            call = worker.call
            if call is None or call.job_id != msg.job_id:
                log.warning(
                    "worker %s answered job %r it was not running; dropped", worker.info, msg.job_id
                )
                return
            call.worker = None
            worker.calls_done += 1
            if not call.future.done():
                call.future.set_result(msg)
            self._worker_ready(worker)
        elif isinstance(msg, wp.Heartbeat):
            if worker is None:
                # A worker we declared dead, or from before a restart: make it say READY.
                self._tell_disconnect(identity)
        elif isinstance(msg, wp.Ready):
            if worker is not None:
                self._lose(worker, "said READY again")
            heartbeat = msg.heartbeat_ms / 1000
            worker = _Worker(
                identity=identity,
                info=msg.info or identity.hex(),
                services=frozenset(msg.services),
                heartbeat=heartbeat,
                expires=now + heartbeat * self.liveness,
                next_heartbeat=now + heartbeat,
            )
            self._workers[identity] = worker
            log.info("worker %s ready for %s", worker.info, ", ".join(sorted(msg.services)))
            self._changed.set()
            self._wake_tick.set()
            self._worker_ready(worker)
        elif isinstance(msg, wp.Disconnect):
            if worker is not None:
                self._lose(worker, "disconnected")
        else:
            log.warning("dropping an unexpected %s from %r", type(msg).__name__, identity)

    async def _tick(self) -> None:
        expected = time.monotonic()
        while True:
            now = time.monotonic()
            lag = now - expected
            if lag > 0.05:
                # This event loop was stalled (a blocking handler, an overloaded
                # machine): messages from workers may be waiting unread. Do not blame
                # the workers for our own delay.
                for worker in self._workers.values():
                    worker.expires += lag
            wait = 0.5
            for worker in list(self._workers.values()):
                if self._expire(worker, now):
                    continue
                if now >= worker.next_heartbeat:
                    if not self._send(worker, wp.encode_heartbeat()):
                        self._unreachable(worker)
                        continue
                    worker.next_heartbeat = now + worker.heartbeat
                wait = min(wait, worker.heartbeat / 2)
            # Sleep, but wake up when a new worker (maybe with a shorter heartbeat) arrives.
            self._wake_tick.clear()
            wait = max(wait, 0.005)
            expected = time.monotonic() + wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake_tick.wait()
            expected = min(expected, time.monotonic())  # woken early: no lag


class BlockingDispatcher(BlockingClient[Dispatcher]):
    """:class:`Dispatcher` for synchronous code: ``call(...)`` blocks.

    It runs its own event loop in a daemon thread (so heartbeats go on while
    your script does other things) and may be called from several threads.
    After :meth:`close`, its methods raise :class:`ServiceError` (code ``closed``).
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:*", **options: Any) -> None:
        super().__init__(
            "takefive-services",
            lambda: Dispatcher(endpoint, **options),
            lambda: ServiceError("the dispatcher is closed", code="closed"),
        )
        self.endpoint = self._client.endpoint

    def call(
        self,
        service: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
        retries: int | None = None,
        encoding: str | None = None,
    ) -> Any:
        return self._run(
            self._client.call(
                service,
                payload,
                timeout=timeout,
                idempotent=idempotent,
                retries=retries,
                encoding=encoding,
            )
        )

    def workers(self) -> list[WorkerStatus]:
        async def get() -> list[WorkerStatus]:
            return self._client.workers()

        return self._run(get())

    def wait_for_workers(
        self, count: int = 1, service: str | None = None, timeout: float = 10.0
    ) -> list[WorkerStatus]:
        return self._run(self._client.wait_for_workers(count, service, timeout))
