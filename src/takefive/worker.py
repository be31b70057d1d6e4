"""The Python worker: ``takefive worker MODULE:FUNC ... --connect/--service ENDPOINT``.

A worker runs plain Python functions for the job pools (:mod:`takefive.jobs`)
and service dispatchers (:mod:`takefive.services`) it connects to, speaking
the ``T5W1`` protocol of :mod:`takefive.workproto` (``docs/protocol.md``):

* ``--connect ENDPOINT`` (jobs): a PULL socket connected to a pool's job
  endpoint; each result goes back on a PUSH socket connected to the
  ``reply-to`` endpoint the request names.
* ``--service ENDPOINT`` (services): a DEALER socket per dispatcher; the worker
  says ``READY``, heartbeats both ways, and reconnects when the dispatcher goes
  silent (the Paranoid Pirate pattern of the ZeroMQ guide).

The worker runs one job at a time. With service links the function runs in a
helper thread so heartbeats continue during long jobs; a jobs-only worker runs
functions inline (faster). Functions take the decoded payload and return the
result; an exception becomes an ``ERROR`` reply with code ``failed``.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, GeneratorType
from typing import Any

import zmq

from takefive import workproto as wp
from takefive._zmqutil import recv_frames, send_frames
from takefive.loader import load_object

__all__ = ["Worker", "add_command", "load_functions", "main"]

log = logging.getLogger("takefive.worker")

Function = Callable[[Any], Any]

#: Longest the main loop sleeps before it checks the stop flag, in seconds.
_MAX_POLL = 0.1
#: Results kept per reply-to endpoint while the pool is unreachable.
_RESULT_HWM = 10_000
_new = tuple.__new__
_BINARY = (bytes, bytearray, memoryview)  # a tuple: a union is built at every isinstance
#: Messages a worker's PULL takes ahead of time: lost with it if it dies (with
#: batches of 16, up to 320 jobs), yet enough to keep it busy between messages.
_JOBS_RCVHWM = 20
#: A job of a batch slower than this (seconds) sends the batch's waiting answers at once.
_SLOW_JOB = 0.001
#: Reply-to endpoints the worker keeps a PUSH socket for (the most recently used).
_MAX_REPLY_TO = 64


def run_function(functions: Mapping[str, Function], request: wp.Request) -> wp.Reply | wp.Error:
    """Run one request and return its answer (no I/O)."""
    func = functions.get(request.name)
    if func is None:
        known = ", ".join(sorted(functions)) or "none"
        return wp.Error(
            request.job_id, "unknown", f"no function {request.name!r} here (known: {known})"
        )
    try:
        argument = wp.decode_payload(request.payload, request.encoding)
    except wp.ProtocolError as exc:
        return wp.Error(request.job_id, "bad-request", str(exc))
    try:
        result = func(argument)
        if _is_awaitable(result):
            result = asyncio.run(_await(result))
    except Exception as exc:
        log.info("job %s (%s) failed: %r", request.job_id.decode(), request.name, exc)
        return wp.Error(request.job_id, "failed", f"{type(exc).__name__}: {exc}")
    if request.encoding == "msgpack":
        encoding = "msgpack"
    elif isinstance(result, _BINARY):
        encoding = "raw"
    else:
        encoding = "json"
    try:
        # tuple.__new__: the NamedTuple without its Python-level __new__ (hot path).
        return _new(wp.Reply, (request.job_id, encoding, wp.encode_payload(result, encoding)))
    except wp.ProtocolError as exc:
        return wp.Error(request.job_id, "failed", f"cannot encode the result: {exc}")


#: Result types seen, and whether their instances are awaitable (bounded).
_AWAITABLE: dict[type, bool] = {}


def _is_awaitable(obj: object) -> bool:
    """``inspect.isawaitable``, remembered per type: the plain results functions return
    (dict, list, str...) are not, and asking a type again costs an AttributeError."""
    kind = type(obj)
    awaitable = _AWAITABLE.get(kind)
    if awaitable is None:
        awaitable = hasattr(kind, "__await__")
        if len(_AWAITABLE) < 256:
            _AWAITABLE[kind] = awaitable
    return awaitable or (isinstance(obj, GeneratorType) and inspect.isawaitable(obj))


async def _await(awaitable: Any) -> Any:
    return await awaitable


@dataclass(eq=False)
class _ServiceLink:
    """One DEALER connection to a service dispatcher."""

    endpoint: str
    sock: zmq.Socket[bytes] | None = None
    last_seen: float = 0.0
    next_heartbeat: float = 0.0
    backoff: float = 0.0
    reconnect_at: float = 0.0
    jobs: int = 0


@dataclass(eq=False, slots=True)
class _Job:
    """A request received, and where from: ``link`` None for a job pool's PULL socket."""

    request: wp.Request
    link: _ServiceLink | None = None
    sock: zmq.Socket[bytes] | None = None  # the link's connection it came on

    def stale(self) -> bool:
        """Its connection was reset or closed: its dispatcher no longer waits for it."""
        return self.link is not None and self.link.sock is not self.sock


class Worker:
    """Serve ``functions`` (name -> callable) to job pools and service dispatchers."""

    def __init__(
        self,
        functions: Mapping[str, Function],
        *,
        connect: Sequence[str] = (),
        services: Sequence[str] = (),
        heartbeat: float = 1.0,
        liveness: int = 3,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        info: str | None = None,
    ) -> None:
        if not functions:
            raise ValueError("a worker needs at least one function")
        for name in functions:
            wp.check_name(name, "function name")
        if not connect and not services:
            raise ValueError("a worker needs at least one --connect or --service endpoint")
        if heartbeat <= 0 or liveness < 1:
            raise ValueError("heartbeat must be > 0 and liveness >= 1")
        self.functions = dict(functions)
        self.connect = list(connect)
        self.service_endpoints = list(services)
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.info = info or f"python/{os.getpid()}@{socket.gethostname()}"
        self.jobs_done = 0
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._pull: zmq.Socket[bytes] | None = None
        self._results: OrderedDict[str, zmq.Socket[bytes]] = OrderedDict()
        self._links: list[_ServiceLink] = []

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask :meth:`run` to finish the current job and return (thread/signal safe)."""
        self._stop.set()

    def run(self) -> None:
        """Serve until :meth:`stop`; then say DISCONNECT and close every socket."""
        try:
            if self._pull_only():
                self._run_inline()
            else:
                self._run_threaded()
        finally:
            self._close()

    # ------------------------------------------------------------------ jobs

    def _pull_only(self) -> bool:
        return not self.service_endpoints

    def _open_pull(self) -> zmq.Socket[bytes]:
        pull = self._ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        # Prefetch little: jobs queued here are lost if this worker dies.
        pull.setsockopt(zmq.RCVHWM, _JOBS_RCVHWM)
        for endpoint in self.connect:
            pull.connect(endpoint)
        self._pull = pull
        return pull

    def _send_result(self, reply_to: str, frames: list[bytes]) -> None:
        if not reply_to:
            log.warning("dropping the result of a job without a reply-to endpoint")
            return
        sock = self._results.get(reply_to)
        if sock is not None:
            self._results.move_to_end(reply_to)
        else:
            while len(self._results) >= _MAX_REPLY_TO:  # a pool long gone, most likely
                _, oldest = self._results.popitem(last=False)
                oldest.close()  # LINGER 2 s: results already queued still get out
            sock = self._ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 2000)
            sock.setsockopt(zmq.SNDHWM, _RESULT_HWM)
            try:
                sock.connect(reply_to)
            except zmq.ZMQError as exc:
                sock.close(0)
                log.warning("cannot connect to reply-to %r: %s; result dropped", reply_to, exc)
                return
            self._results[reply_to] = sock
        try:
            send_frames(sock, frames, zmq.NOBLOCK)
        except zmq.Again:
            log.warning("result queue to %s full; result dropped", reply_to)

    def _handle_job_frames(self, frames: list[bytes]) -> wp.Request | wp.Requests | None:
        try:
            msg = wp.parse(frames)
        except wp.ProtocolError as exc:
            log.warning("dropping a bad message on the job socket: %s", exc)
            return None
        if not isinstance(msg, wp.Request | wp.Requests):
            log.warning("dropping an unexpected %s on the job socket", type(msg).__name__)
            return None
        return msg

    def _serve_job(self, frames: list[bytes]) -> None:
        msg = self._handle_job_frames(frames)
        if isinstance(msg, wp.Request):
            self._send_result(msg.reply_to, wp.encode_answer(run_function(self.functions, msg)))
            self.jobs_done += 1
        elif msg is not None:
            self._serve_batch(msg)

    def _serve_batch(self, batch: wp.Requests) -> None:
        """Run a batch's jobs; answer them together, in one ``REPLIES``, when done.

        After a job that took more than _SLOW_JOB seconds, the answers waiting are
        sent at once: an answer waits for at most the one job after it.
        """
        answers: list[wp.Reply | wp.Error] = []
        functions, monotonic = self.functions, time.monotonic
        try:
            for request in batch.jobs:
                started = monotonic()
                answers.append(run_function(functions, request))
                self.jobs_done += 1
                if monotonic() - started > _SLOW_JOB:
                    self._send_answers(batch.reply_to, answers)
                    answers = []
        finally:  # even when a function raised SystemExit: the answers already made go out
            if answers:
                self._send_answers(batch.reply_to, answers)

    def _send_answers(self, reply_to: str, answers: list[wp.Reply | wp.Error]) -> None:
        try:
            frames = wp.encode_answers(answers)
        except wp.ProtocolError:  # a result too large for a batch record (4 GiB): alone, then
            for answer in answers:
                self._send_result(reply_to, wp.encode_answer(answer))
            return
        self._send_result(reply_to, frames)

    def _serve_queued_job(self, pull: zmq.Socket[bytes]) -> bool:
        """Serve the next job already queued on ``pull``; False when there is none."""
        try:
            frames = recv_frames(pull, zmq.NOBLOCK)
        except zmq.Again:
            return False
        self._serve_job(frames)
        return True

    def _run_inline(self) -> None:
        pull = self._open_pull()
        while not self._stop.is_set():
            if not pull.poll(int(_MAX_POLL * 1000)):
                continue
            # Drain what is queued before polling again.
            for _ in range(1000):
                if not self._serve_queued_job(pull) or self._stop.is_set():
                    break
        self._drain_pull()

    def _leave_pools(self, pull: zmq.Socket[bytes]) -> list[list[bytes]]:
        """Take no more jobs; return those already queued on ``pull``.

        They are read first: libzmq discards what is still queued on a pipe when
        its endpoint is disconnected.
        """
        held = []
        while True:
            try:
                held.append(recv_frames(pull, zmq.NOBLOCK))
            except zmq.Again:
                break
        for endpoint in self.connect:
            try:
                pull.disconnect(endpoint)
            except zmq.ZMQError:
                pass
        return held

    def _drain_pull(self) -> None:
        """On a graceful stop, stop taking jobs and finish those already queued here."""
        if self._pull is not None:
            for frames in self._leave_pools(self._pull):
                self._serve_job(frames)

    # ------------------------------------------------------------------ services

    def _connect_link(self, link: _ServiceLink, now: float) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(link.endpoint)
        link.sock = sock
        link.last_seen = now
        link.next_heartbeat = now + self.heartbeat
        ready = wp.encode_ready(sorted(self.functions), round(self.heartbeat * 1000), self.info)
        send_frames(sock, ready)

    def _reset_link(self, link: _ServiceLink, now: float, *, backoff: bool) -> None:
        if link.sock is not None:
            link.sock.close(0)
            link.sock = None
        if backoff:
            link.backoff = min(max(link.backoff * 2, self.heartbeat), 32 * self.heartbeat)
            link.reconnect_at = now + link.backoff * random.uniform(0.8, 1.2)
        else:
            link.reconnect_at = now

    def _run_threaded(self) -> None:
        pull = self._open_pull() if self.connect else None
        now = time.monotonic()
        self._links = [_ServiceLink(endpoint) for endpoint in self.service_endpoints]
        for link in self._links:
            self._connect_link(link, now)

        # The helper thread runs one function at a time and hands the frames back.
        done_addr = f"inproc://takefive-worker-{id(self)}"
        done = self._ctx.socket(zmq.PULL)
        done.bind(done_addr)
        jobs: deque[_Job] = deque()
        handoff: queue.SimpleQueue[wp.Request | None] = queue.SimpleQueue()
        current: _Job | None = None
        pull_open = pull is not None

        def helper() -> None:
            out = self._ctx.socket(zmq.PUSH)
            out.connect(done_addr)
            try:
                while (request := handoff.get()) is not None:
                    try:
                        answer = run_function(self.functions, request)
                    except BaseException as exc:  # SystemExit & co.: this thread goes on
                        log.warning("job %s raised %r", request.job_id.decode(), exc)
                        answer = wp.Error(request.job_id, "failed", f"{type(exc).__name__}: {exc}")
                    send_frames(out, wp.encode_answer(answer))
            finally:
                out.close(0)

        thread = threading.Thread(target=helper, name="takefive-worker-job", daemon=True)
        thread.start()
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping:
                    # Graceful stop: take no more jobs, tell each dispatcher DISCONNECT as
                    # soon as it has no answer to wait for (its requests queued here are
                    # dropped: it retries or fails them), finish the pool jobs received.
                    if pull is not None and pull_open:
                        for frames in self._leave_pools(pull):
                            jobs.extend(self._pool_jobs(frames))
                        pull_open = False
                    for link in self._links:
                        if current is None or current.link is not link:
                            self._close_link(link)
                while current is None and jobs:
                    job = jobs.popleft()
                    if job.stale():
                        where = job.link.endpoint if job.link else "?"
                        log.info("dropping a request from a closed connection to %s", where)
                        continue
                    current = job
                    handoff.put(job.request)
                if stopping and current is None:
                    break
                idle = current is None
                poller = zmq.Poller()
                poller.register(done, zmq.POLLIN)
                for link in self._links:
                    if link.sock is not None:
                        poller.register(link.sock, zmq.POLLIN)
                if pull is not None and pull_open and idle and not jobs:
                    poller.register(pull, zmq.POLLIN)
                now = time.monotonic()
                wait = _MAX_POLL
                for link in self._links:
                    due = link.next_heartbeat if link.sock is not None else link.reconnect_at
                    wait = min(wait, max(0.0, due - now))
                events = dict(poller.poll(math.ceil(wait * 1000)))
                now = time.monotonic()

                if done in events:
                    frames = recv_frames(done)
                    assert current is not None
                    finished, current = current, None
                    self.jobs_done += 1
                    done_link = finished.link
                    if done_link is None:
                        self._send_result(finished.request.reply_to, frames)
                    elif not finished.stale() and done_link.sock is not None:
                        send_frames(done_link.sock, frames)
                        done_link.next_heartbeat = now + self.heartbeat
                        done_link.jobs += 1
                    else:
                        log.warning(
                            "connection to dispatcher %s was reset; dropping a result",
                            done_link.endpoint,
                        )
                if pull is not None and pull in events:
                    try:
                        frames = recv_frames(pull, zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                    else:
                        jobs.extend(self._pool_jobs(frames))
                for link in self._links:
                    if link.sock is not None and link.sock in events:
                        self._read_link(link, now, jobs)
                for link in self._links:
                    self._tick_link(link, now, stopping)
        finally:
            handoff.put(None)
            thread.join(timeout=5)
            done.close(0)
            if pull is not None:
                pull.close(0)

    def _pool_jobs(self, frames: list[bytes]) -> list[_Job]:
        """The jobs of a message from a pool: each is answered on its own here."""
        msg = self._handle_job_frames(frames)
        if msg is None:
            return []
        requests = msg.jobs if isinstance(msg, wp.Requests) else (msg,)
        return [_Job(request) for request in requests]

    def _read_link(
        self,
        link: _ServiceLink,
        now: float,
        jobs: deque[_Job],
    ) -> None:
        assert link.sock is not None
        while True:
            try:
                frames = recv_frames(link.sock, zmq.NOBLOCK)
            except zmq.Again:
                return
            link.last_seen = now
            link.backoff = 0.0
            try:
                msg = wp.parse(frames)
            except wp.ProtocolError as exc:
                log.warning("dropping a bad message from %s: %s", link.endpoint, exc)
                continue
            if isinstance(msg, wp.Request):
                jobs.append(_Job(msg, link, link.sock))
            elif isinstance(msg, wp.Heartbeat):
                pass
            elif isinstance(msg, wp.Disconnect):
                log.info("dispatcher %s said DISCONNECT; reconnecting", link.endpoint)
                self._reset_link(link, now, backoff=False)
                return
            else:
                log.warning("dropping an unexpected %s from %s", type(msg).__name__, link.endpoint)

    def _tick_link(self, link: _ServiceLink, now: float, stopping: bool) -> None:
        if link.sock is None:
            if not stopping and now >= link.reconnect_at:
                self._connect_link(link, now)
            return
        if now - link.last_seen > self.heartbeat * self.liveness:
            log.warning(
                "dispatcher %s silent for %.1fs; reconnecting", link.endpoint, now - link.last_seen
            )
            self._reset_link(link, now, backoff=True)
            return
        if now >= link.next_heartbeat:
            send_frames(link.sock, wp.encode_heartbeat())
            link.next_heartbeat = now + self.heartbeat

    def _close_link(self, link: _ServiceLink) -> None:
        """Say DISCONNECT and close the link for good (no reconnecting: we are stopping)."""
        if link.sock is not None:
            try:
                send_frames(link.sock, wp.encode_disconnect(), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            link.sock.setsockopt(zmq.LINGER, 500)
            link.sock.close()
            link.sock = None

    def _close(self) -> None:
        for link in self._links:
            self._close_link(link)
        if self._pull is not None:
            self._pull.close(0)
            self._pull = None
        for sock in self._results.values():
            sock.close()  # LINGER 2 s: results already produced still get out
        self._results.clear()


# ---------------------------------------------------------------------- command line


def load_functions(specs: Sequence[str]) -> dict[str, Function]:
    """``MODULE:FUNC`` or ``NAME=MODULE:FUNC`` -> {name: function}."""
    functions: dict[str, Function] = {}
    for spec in specs:
        name, sep, reference = spec.partition("=")
        if not sep:
            name, reference = "", spec
        obj = load_object(reference)
        if not callable(obj):
            raise ValueError(f"{reference} is not callable")
        if not name:
            name = reference.rpartition(":")[2].rpartition(".")[2]
        wp.check_name(name, "function name")
        if name in functions:
            raise ValueError(f"two functions named {name!r}")
        functions[name] = obj
    return functions


def add_command(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="run Python functions for takefive job pools and services",
        description=(
            "Serve Python functions to job pools (--connect, PUSH/PULL) and service "
            "dispatchers (--service, ROUTER/DEALER with heartbeats). See docs/workers.md."
        ),
    )
    parser.add_argument(
        "functions",
        nargs="+",
        metavar="[NAME=]MODULE:FUNC",
        help="functions to serve; the name defaults to the function's attribute name",
    )
    parser.add_argument(
        "--connect",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="a job pool's job endpoint (repeatable)",
    )
    parser.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="a service dispatcher's endpoint (repeatable)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="heartbeat interval toward dispatchers (default 1.0)",
    )
    parser.add_argument(
        "--liveness",
        type=int,
        default=3,
        help="missed heartbeats before a dispatcher is presumed dead (default 3)",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        functions = load_functions(args.functions)
        worker = Worker(
            functions,
            connect=args.connect,
            services=args.service,
            heartbeat=args.heartbeat,
            liveness=args.liveness,
        )
    except (ImportError, ValueError) as exc:
        log.error("%s", exc)
        return 2

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current job", signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "worker %s serving %s (jobs: %s; services: %s)",
        worker.info,
        ", ".join(sorted(functions)),
        ", ".join(args.connect) or "-",
        ", ".join(args.service) or "-",
    )
    worker.run()
    log.info("worker %s stopped after %d job(s)", worker.info, worker.jobs_done)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    # ``python -m takefive.worker ARGS`` == ``takefive worker ARGS``, without the
    # other subcommands' imports.
    _parser = argparse.ArgumentParser(prog="python -m takefive.worker")
    add_command(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["worker", *sys.argv[1:]])
    logging.basicConfig(
        level=os.environ.get("TAKEFIVE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(main(_args))
