"""Job pools: push jobs round robin to a pool of workers and collect their results.

This is the seed's job distributor (PUSH/PULL) with results::

    JobPool                                  workers (any language, any number)
    PUSH  bind  jobs_endpoint   ──REQUEST──>  PULL connect   (round robin)
    PULL  bind  results_endpoint <──REPLY───  PUSH connect   (to the REQUEST's reply-to)

Workers join or leave at any time (``takefive worker MODULE:FUNC --connect
ENDPOINT``); ZeroMQ spreads jobs over those connected. From a handler::

    pool = JobPool("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556")
    thumb = await pool.submit("thumbnail", {"path": path}, timeout=10)

**What PUSH/PULL cannot do**: a PUSH socket does not know whether a job it
handed to a worker was ever run. If the worker dies, the jobs it held are gone;
:meth:`JobPool.submit` then fails with :class:`JobTimeout` after ``timeout``
seconds (never hangs). When a job must not be lost, use
:mod:`takefive.services`, which notices dead workers by heartbeat and retries.

**A broken pool fails fast**: if the task that collects results stops for any
reason other than :meth:`JobPool.close` (the ZeroMQ context was terminated, a
bug), the error is logged, every pending job fails at once with
:class:`JobError` (code ``broken``, the cause in the message) and so does every
later ``submit``. The pool cannot be repaired: create a new one.

:class:`BlockingJobPool` is the same for plain synchronous scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, cast

import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive._sync import (
    AsyncClosing,
    BlockingClient,
    Breakable,
    Deadlines,
    deadline,
    why_stopped,
)
from takefive._zmqutil import CHECK_INTERVAL_MS, last_endpoint, recv_frames, send_frames
from takefive.workproto import WorkError

__all__ = ["BlockingJobPool", "JobError", "JobPool", "JobTimeout", "WorkError"]

log = logging.getLogger("takefive.jobs")


class JobError(WorkError):
    """A job failed: the worker sent ``ERROR`` (``code`` says which), or the pool closed
    (``closed``) or broke (``broken``)."""


class JobTimeout(JobError, TimeoutError):
    """No result within the timeout; the job may be lost (see the module docs)."""


#: Job ids: the pool's random prefix and a counter, in hex.
_ID_FORMAT = b"%b%x"
#: About this much payload (bytes) at most in one REQUESTS; a larger job goes alone.
_BATCH_BYTES = 256 * 1024

_MAYBE_LOST = (
    "the job was handed to a worker, which may have died with it "
    "(PUSH/PULL cannot tell); use takefive.services for jobs that must not be lost"
)


def _job_text(job_id: bytes, name: str) -> str:
    return f"job {job_id.decode()} ({name})"


class _Many:
    """The answers of one :meth:`JobPool.map` call, and the one future for all of them.

    Its jobs stand in the pool's pending table as ``(many, index)`` tuples.
    """

    __slots__ = ("answers", "future", "left")

    def __init__(self, count: int, future: asyncio.Future[None]) -> None:
        self.answers: list[wp.Reply | wp.Error | None] = [None] * count
        self.left = count
        self.future = future

    def answer(self, index: int, answer: wp.Reply | wp.Error) -> None:
        if self.answers[index] is None:
            self.answers[index] = answer
            self.left -= 1
            if not self.left and not self.future.done():
                self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


_Waiter = asyncio.Future[wp.Reply | wp.Error] | tuple[_Many, int]


def _fail(waiter: _Waiter, exc: BaseException) -> None:
    if isinstance(waiter, tuple):
        waiter[0].fail(exc)
    elif not waiter.done():
        waiter.set_exception(exc)


class JobPool(AsyncClosing, Breakable[JobError]):
    """The caller's side of a job pool. Binds at construction; use from one event loop.

    ``jobs_endpoint`` and ``results_endpoint`` may end in ``:*`` (a free port);
    read the chosen ones from :attr:`endpoint` and :attr:`results_endpoint`.
    ``reply_to`` is the results endpoint as workers must connect to it (defaults
    to the bound one; set it when binding to a wildcard address like ``tcp://*:5556``).

    Jobs submitted in the same turn of the event loop go out together, up to
    ``batch`` of them in one ``REQUESTS`` message (docs/protocol.md, "Batches"):
    much faster for small jobs. A batch goes to one worker, so keep it small
    next to the number of jobs in flight; ``batch=1`` sends each job as a single
    ``REQUEST``, for workers that do not handle ``REQUESTS``.
    """

    _error_type = JobError

    def __init__(
        self,
        jobs_endpoint: str = "tcp://127.0.0.1:*",
        results_endpoint: str = "tcp://127.0.0.1:*",
        *,
        encoding: str = "json",
        reply_to: str | None = None,
        timeout: float = 30.0,
        context: zmq.asyncio.Context | None = None,
        hwm: int = 1000,
        batch: int = 16,
    ) -> None:
        wp.check_name(encoding, "encoding")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.batch = batch
        self.encoding = encoding
        self.timeout = timeout
        self._ctx = context or zmq.asyncio.Context.instance()
        self._jobs = self._ctx.socket(zmq.PUSH)
        self._results = self._ctx.socket(zmq.PULL)
        for sock in (self._jobs, self._results):
            sock.setsockopt(zmq.LINGER, 0)
        self._jobs.setsockopt(zmq.SNDHWM, hwm)
        self._results.setsockopt(zmq.RCVHWM, 0)  # never drop a result
        self._results.setsockopt(zmq.RCVTIMEO, CHECK_INTERVAL_MS)  # see _receive
        try:
            self._jobs.bind(jobs_endpoint)
            self._results.bind(results_endpoint)
        except zmq.ZMQError:
            self._jobs.close(0)
            self._results.close(0)
            raise
        # Plain sockets on the same handles, for sends and reads that cannot block.
        self._jobs_out: zmq.Socket[bytes] = zmq.Socket.shadow(self._jobs.underlying)
        self._results_now: zmq.Socket[bytes] = zmq.Socket.shadow(self._results.underlying)
        self.endpoint = last_endpoint(self._jobs)
        self.results_endpoint = last_endpoint(self._results)
        self.reply_to = reply_to or self.results_endpoint
        self._prefix = os.urandom(4).hex().encode() + b"-"
        self._next_id = 1
        self._pending: dict[bytes, _Waiter] = {}
        self._receiver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Jobs waiting for the next REQUESTS (batch > 1), and jobs whose message is
        # waiting for room in ZeroMQ (to word their timeout).
        self._outgoing: list[bytes] = []
        self._outgoing_ids: list[bytes] = []
        self._outgoing_bytes = 0
        self._flush_scheduled = False
        self._unsent: dict[bytes, asyncio.Future[Any]] = {}
        self._deadlines = Deadlines()  # of submit()'s jobs; a map() has a timer of its own
        self._sends_waiting = 0  # messages queued in pyzmq; later ones go behind them
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop collecting results; pending :meth:`submit` calls fail with ``JobError``."""
        if self._closed:
            return
        self._closed = True
        if self._receiver is not None:
            self._receiver.cancel()
            # A receiver that failed (a broken pool) was logged already.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiver
        for job_id, waiter in list(self._pending.items()):
            _fail(waiter, JobError("the job pool was closed", code="closed", job_id=job_id))
        self._pending.clear()
        self._deadlines.close()
        self._outgoing, self._outgoing_ids = [], []
        self._jobs.close(0)
        self._results.close(0)

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet answered."""
        return len(self._pending)

    def _break(self, why: str, cause: BaseException | None) -> None:
        """The pool cannot work any more: say so loudly, fail every pending job, close."""
        if self._closed or self._broken is not None:
            return
        message = (
            f"the job pool (jobs {self.endpoint}, results {self.results_endpoint}) is broken: "
            f"{why}; create a new JobPool"
        )
        self._mark_broken(message, cause, log)
        if self._receiver is not None and not self._receiver.done():
            self._receiver.cancel()
        pending, self._pending = self._pending, {}
        self._deadlines.close()
        self._outgoing, self._outgoing_ids = [], []
        for job_id, waiter in pending.items():
            _fail(waiter, self._broken_error(job_id))
        # Release the ports, and let a context.term() waiting on these sockets finish.
        self._jobs.close(0)
        self._results.close(0)

    def _receiver_stopped(self, task: asyncio.Task[None]) -> None:
        if not self._closed:
            why, cause = why_stopped(task)
            self._break(f"its receiver task {why}", cause)

    def _send_failed(self, exc: zmq.ZMQError) -> None:
        self._break(f"sending a job failed: {type(exc).__name__}: {exc}", exc)

    # ------------------------------------------------------------------ jobs

    async def submit(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-job deadline, by design
        encoding: str | None = None,
    ) -> Any:
        """Run job ``name`` on some worker and return its decoded result.

        Raises :class:`JobError` if the worker reports an error (``.code`` is
        ``failed``, ``unknown`` or ``bad-request``) and :class:`JobTimeout` if no
        result arrives within ``timeout`` seconds (default: the pool's).
        """
        loop = self._ready()
        timeout = self.timeout if timeout is None else timeout
        encoding = encoding or self.encoding
        data = wp.encode_payload(payload, encoding)
        job_id = self._new_id()
        fut: asyncio.Future[wp.Reply | wp.Error] = loop.create_future()
        if self.batch == 1:
            frames = wp.encode_request(job_id, name, data, encoding, self.reply_to)
            self._pending[job_id] = fut
            self._send((job_id,), frames)
        else:
            record = wp.encode_job(job_id, name, data, encoding)
            self._pending[job_id] = fut
            self._queue(job_id, record, loop)
        self._deadlines.add(job_id, fut, timeout, loop)
        try:
            answer = await fut
        except TimeoutError:
            raise JobTimeout(
                f"job {job_id.decode()} ({name}) got no result within {timeout:g}s: "
                + self._why_unanswered(job_id),
                code="timeout",
                job_id=job_id,
            ) from None
        finally:
            self._deadlines.discard(job_id)
            self._pending.pop(job_id, None)
            self._unsent.pop(job_id, None)
        return wp.reply_value(answer, _job_text, JobError, job_id, name)

    async def map(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline for all, by design
        encoding: str | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run job ``name`` once per payload, spread over the workers; results in order.

        Like ``gather(*(submit(name, p) for p in payloads))``, with one future for
        all the jobs instead of one per job (much faster for many small jobs).
        Waits until every job has its answer, or until ``timeout`` seconds (for
        all of them; default: the pool's) have passed: then :class:`JobTimeout`
        says how many got none. A job whose worker reported an error raises its
        :class:`JobError` (the first, in payload order), or, with
        ``return_exceptions=True``, stands in the list in its place.
        """
        loop = self._ready()
        timeout = self.timeout if timeout is None else timeout
        encoding = encoding or self.encoding
        datas = wp.encode_payloads(payloads, encoding)  # all, before sending any
        if not datas:
            return []
        job_ids = self._new_ids(len(datas))
        if self.batch == 1:
            singles = [
                wp.encode_request(j, name, d, encoding, self.reply_to)
                for j, d in zip(job_ids, datas, strict=True)
            ]
        else:
            records = wp.encode_jobs(job_ids, name, datas, encoding)
        everything: asyncio.Future[None] = loop.create_future()
        many = _Many(len(datas), everything)
        pending = self._pending
        for index, job_id in enumerate(job_ids):
            pending[job_id] = (many, index)
        if self.batch == 1:
            for job_id, frames in zip(job_ids, singles, strict=True):
                self._send((job_id,), frames)
        else:
            for job_id, record in zip(job_ids, records, strict=True):
                self._queue(job_id, record, loop)
        timer = deadline(everything, timeout)
        try:
            await everything
        except TimeoutError:
            missing = [j for j, a in zip(job_ids, many.answers, strict=True) if a is None]
            raise JobTimeout(
                f"{len(missing)} of {len(datas)} jobs ({name}, the first {missing[0].decode()}) "
                f"got no result within {timeout:g}s: " + self._why_unanswered(missing[0]),
                code="timeout",
                job_id=missing[0],
            ) from None
        finally:
            timer.cancel()
            unsent = self._unsent
            for job_id in job_ids:
                pending.pop(job_id, None)
                if unsent:
                    unsent.pop(job_id, None)
        answers = cast(list[wp.Reply | wp.Error], many.answers)  # all there by now
        return wp.reply_values(
            answers,
            partial(_job_text, name=name),
            JobError,
            return_exceptions=return_exceptions,
        )

    def _ready(self) -> asyncio.AbstractEventLoop:
        """The checks and first-use set-up of every call; the pool's event loop."""
        if self._closed:
            raise JobError("the job pool is closed", code="closed")
        if self._broken is not None:
            raise self._broken_error()
        loop = self._loop
        if loop is None:  # the first job; cached: on 3.11 get_running_loop() calls getpid()
            loop = self._loop = asyncio.get_running_loop()
        if self._receiver is None:
            self._receiver = loop.create_task(self._receive(), name="takefive-jobs-receive")
            self._receiver.add_done_callback(self._receiver_stopped)
        return loop

    def _new_id(self) -> bytes:
        n = self._next_id
        self._next_id = n + 1
        return _ID_FORMAT % (self._prefix, n)

    def _new_ids(self, count: int) -> list[bytes]:
        first, prefix = self._next_id, self._prefix
        self._next_id = first + count
        return [_ID_FORMAT % (prefix, n) for n in range(first, first + count)]

    # ------------------------------------------------------------------ sending

    def _queue(self, job_id: bytes, record: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """Add a job to the next ``REQUESTS``, sent at the end of this loop turn at the latest."""
        if len(record) >= _BATCH_BYTES and self._outgoing:
            self._flush()  # a large job goes alone
        self._outgoing.append(record)
        self._outgoing_ids.append(job_id)
        self._outgoing_bytes += len(record)
        if len(self._outgoing) >= self.batch or self._outgoing_bytes >= _BATCH_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed or self._broken is not None:  # their jobs have failed already
            self._outgoing, self._outgoing_ids, self._outgoing_bytes = [], [], 0
            return
        if not self._outgoing:
            return
        records, job_ids = self._outgoing, self._outgoing_ids
        self._outgoing, self._outgoing_ids, self._outgoing_bytes = [], [], 0
        self._send(job_ids, wp.encode_requests(records, self.reply_to))

    def _send(self, job_ids: Sequence[bytes], frames: list[bytes]) -> None:
        """Send one message now if ZeroMQ takes it, else as soon as it does."""
        if self._sends_waiting:  # not ahead of the messages waiting for room
            self._send_later(job_ids, frames)
            return
        try:
            send_frames(self._jobs_out, frames, zmq.NOBLOCK)
        except zmq.Again:
            # No worker connected yet, or every worker's queue is full.
            self._send_later(job_ids, frames)
        except zmq.ZMQError as exc:  # ETERM, ENOTSOCK: this socket is done for
            self._send_failed(exc)  # fails these jobs too

    def _send_later(self, job_ids: Sequence[bytes], frames: list[bytes]) -> None:
        send: asyncio.Future[Any] = asyncio.ensure_future(self._jobs.send_multipart(frames))
        for job_id in job_ids:
            self._unsent[job_id] = send
        self._sends_waiting += 1

        def sent(f: asyncio.Future[Any]) -> None:
            self._sends_waiting -= 1
            if f.cancelled():
                return
            if isinstance(exc := f.exception(), zmq.ZMQError):
                self._send_failed(exc)
            elif exc is None:
                for job_id in job_ids:
                    self._unsent.pop(job_id, None)

        send.add_done_callback(sent)
        # Stop trying once nobody waits for any of the jobs any more (all timed out).
        waiting = [0]

        def job_over(_: object) -> None:
            waiting[0] -= 1
            if waiting[0] == 0 and not send.done():
                send.cancel()

        waiters: set[asyncio.Future[Any]] = set()
        for job_id in job_ids:
            waiter = self._pending.get(job_id)
            if isinstance(waiter, tuple):  # a map(): its one future stands for all its jobs
                waiters.add(waiter[0].future)
            elif waiter is not None:
                waiters.add(waiter)
        for fut in waiters:
            if not fut.done():
                waiting[0] += 1
                fut.add_done_callback(job_over)
        if waiting[0] == 0:
            send.cancel()

    def _why_unanswered(self, job_id: bytes) -> str:
        send = self._unsent.get(job_id)
        if send is None or (send.done() and not send.cancelled() and send.exception() is None):
            return _MAYBE_LOST
        return f"no worker connected to {self.endpoint} took it"

    def _on_result(self, frames: list[bytes]) -> None:
        try:
            msg = wp.parse(frames)
        except wp.ProtocolError as exc:
            log.warning("dropping a bad message on %s: %s", self.results_endpoint, exc)
            return
        if isinstance(msg, wp.Replies):
            for answer in msg.answers:
                self._resolve(answer)
        elif isinstance(msg, wp.Reply | wp.Error):
            self._resolve(msg)
        else:
            log.warning("dropping an unexpected %s on the results socket", type(msg).__name__)

    def _resolve(self, answer: wp.Reply | wp.Error) -> None:
        waiter = self._pending.pop(answer.job_id, None)
        if waiter is None:
            log.info("dropping the late result of job %s", answer.job_id.decode(errors="replace"))
        elif isinstance(waiter, tuple):
            waiter[0].answer(waiter[1], answer)
        elif not waiter.done():
            waiter.set_result(answer)

    def _on_result_safely(self, frames: list[bytes]) -> None:
        try:
            self._on_result(frames)
        except Exception:  # a bug here must not stop the pool
            log.exception("error handling a result on %s", self.results_endpoint)

    async def _receive(self) -> None:
        """Runs until close(); if it stops otherwise, _receiver_stopped breaks the pool."""
        results, results_now = self._results, self._results_now
        on_result = self._on_result_safely
        while True:
            try:
                on_result(await results.recv_multipart())
            except zmq.Again:  # RCVTIMEO: idle; the next recv raises if the context is gone
                continue
            # Then whatever else is already here, without a trip through the loop each.
            for _ in range(10_000):
                try:
                    frames = recv_frames(results_now, zmq.NOBLOCK)
                except zmq.Again:
                    break
                on_result(frames)


class BlockingJobPool(BlockingClient[JobPool]):
    """:class:`JobPool` for synchronous code: ``pool.submit(...)`` blocks.

    It runs its own event loop in a daemon thread; it is safe to call from
    several threads at once. After :meth:`close`, ``submit`` raises
    :class:`JobError` (code ``closed``).
    """

    def __init__(
        self,
        jobs_endpoint: str = "tcp://127.0.0.1:*",
        results_endpoint: str = "tcp://127.0.0.1:*",
        **options: Any,
    ) -> None:
        super().__init__(
            "takefive-jobs",
            lambda: JobPool(jobs_endpoint, results_endpoint, **options),
            lambda: JobError("the job pool is closed", code="closed"),
        )
        self.endpoint = self._client.endpoint
        self.results_endpoint = self._client.results_endpoint

    def submit(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        encoding: str | None = None,
    ) -> Any:
        return self._run(self._client.submit(name, payload, timeout=timeout, encoding=encoding))

    def map(
        self,
        name: str,
        payloads: Iterable[Any],
        *,
        timeout: float | None = None,
        encoding: str | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        payloads = list(payloads)  # here, not in the pool's thread
        return self._run(
            self._client.map(
                name,
                payloads,
                timeout=timeout,
                encoding=encoding,
                return_exceptions=return_exceptions,
            )
        )
