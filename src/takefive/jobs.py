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
import itertools
import logging
import os
from typing import Any

import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive._sync import AsyncClosing, BlockingClient, Breakable, deadline, why_stopped
from takefive._zmqutil import CHECK_INTERVAL_MS, last_endpoint, recv_frames, send_frames
from takefive.workproto import WorkError

__all__ = ["BlockingJobPool", "JobError", "JobPool", "JobTimeout", "WorkError"]

log = logging.getLogger("takefive.jobs")


class JobError(WorkError):
    """A job failed: the worker sent ``ERROR`` (``code`` says which), or the pool closed
    (``closed``) or broke (``broken``)."""


class JobTimeout(JobError, TimeoutError):
    """No result within the timeout; the job may be lost (see the module docs)."""


_MAYBE_LOST = (
    "the job was handed to a worker, which may have died with it "
    "(PUSH/PULL cannot tell); use takefive.services for jobs that must not be lost"
)


class JobPool(AsyncClosing, Breakable[JobError]):
    """The caller's side of a job pool. Binds at construction; use from one event loop.

    ``jobs_endpoint`` and ``results_endpoint`` may end in ``:*`` (a free port);
    read the chosen ones from :attr:`endpoint` and :attr:`results_endpoint`.
    ``reply_to`` is the results endpoint as workers must connect to it (defaults
    to the bound one; set it when binding to a wildcard address like ``tcp://*:5556``).
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
    ) -> None:
        wp.check_name(encoding, "encoding")
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
        self._ids = itertools.count(1)
        self._pending: dict[bytes, asyncio.Future[wp.Reply | wp.Error]] = {}
        self._receiver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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
        for job_id, fut in list(self._pending.items()):
            if not fut.done():
                fut.set_exception(JobError("the job pool was closed", code="closed", job_id=job_id))
        self._pending.clear()
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
        for job_id, fut in pending.items():
            if not fut.done():
                fut.set_exception(self._broken_error(job_id))
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
        if self._closed:
            raise JobError("the job pool is closed", code="closed")
        if self._broken is not None:
            raise self._broken_error()
        timeout = self.timeout if timeout is None else timeout
        encoding = encoding or self.encoding
        data = wp.encode_payload(payload, encoding)
        job_id = self._prefix + format(next(self._ids), "x").encode()
        frames = wp.encode_request(job_id, name, data, encoding, self.reply_to)
        loop = self._loop
        if loop is None:  # the first job; cached: on 3.11 get_running_loop() calls getpid()
            loop = self._loop = asyncio.get_running_loop()
        if self._receiver is None:
            self._receiver = loop.create_task(self._receive(), name="takefive-jobs-receive")
            self._receiver.add_done_callback(self._receiver_stopped)
        fut: asyncio.Future[wp.Reply | wp.Error] = loop.create_future()
        self._pending[job_id] = fut
        try:
            send_frames(self._jobs_out, frames, zmq.NOBLOCK)
        except zmq.Again:
            # No worker connected yet, or every worker's queue is full.
            answer = await self._submit_slowly(job_id, name, frames, fut, timeout)
        except zmq.ZMQError as exc:  # ETERM, ENOTSOCK: this socket is done for
            del self._pending[job_id]  # this job fails here, not through its future
            self._send_failed(exc)
            raise self._broken_error(job_id) from None
        else:
            # The fast path: one future and one timer per job.
            timer = deadline(fut, timeout)
            try:
                answer = await fut
            except TimeoutError:
                raise JobTimeout(
                    f"job {job_id.decode()} ({name}) got no result within {timeout:g}s: "
                    + _MAYBE_LOST,
                    code="timeout",
                    job_id=job_id,
                ) from None
            finally:
                timer.cancel()
                self._pending.pop(job_id, None)
        return wp.reply_value(answer, f"job {job_id.decode()} ({name})", JobError)

    async def _submit_slowly(
        self,
        job_id: bytes,
        name: str,
        frames: list[bytes],
        fut: asyncio.Future[wp.Reply | wp.Error],
        timeout: float,  # noqa: ASYNC109
    ) -> wp.Reply | wp.Error:
        send: asyncio.Future[Any] = asyncio.ensure_future(self._jobs.send_multipart(frames))

        def check_send(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and isinstance(exc := f.exception(), zmq.ZMQError):
                self._send_failed(exc)

        send.add_done_callback(check_send)
        timer = deadline(fut, timeout)

        def stop_sending(_: object) -> None:
            if not send.done():
                send.cancel()

        fut.add_done_callback(stop_sending)
        try:
            return await fut
        except TimeoutError:
            sent = send.done() and not send.cancelled() and send.exception() is None
            why = _MAYBE_LOST if sent else f"no worker connected to {self.endpoint} took it"
            raise JobTimeout(
                f"job {job_id.decode()} ({name}) got no result within {timeout:g}s: {why}",
                code="timeout",
                job_id=job_id,
            ) from None
        finally:
            timer.cancel()
            stop_sending(None)
            self._pending.pop(job_id, None)

    def _on_result(self, frames: list[bytes]) -> None:
        try:
            msg = wp.parse(frames)
        except wp.ProtocolError as exc:
            log.warning("dropping a bad message on %s: %s", self.results_endpoint, exc)
            return
        if not isinstance(msg, wp.Reply | wp.Error):
            log.warning("dropping an unexpected %s on the results socket", type(msg).__name__)
            return
        fut = self._pending.pop(msg.job_id, None)
        if fut is None:
            log.info("dropping the late result of job %s", msg.job_id.decode(errors="replace"))
        elif not fut.done():
            fut.set_result(msg)

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
