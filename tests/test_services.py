"""takefive.services: the dispatcher against real sockets, in-process workers and
hand-driven DEALER sockets that misbehave on purpose (silent, dead, confused)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive.services import (
    BlockingDispatcher,
    Dispatcher,
    ServiceError,
    ServiceTimeout,
    WorkerLost,
)
from workerthreads import Workers, workers_fixture  # noqa: F401


class RawWorker:
    """A DEALER driven by hand: the test decides what it says and when."""

    def __init__(self, endpoint: str, services: tuple[str, ...] = ("echo",), hb_ms: int = 100):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sock.send_multipart(wp.encode_ready(services, hb_ms, "raw"))

    async def next(self, kind: type[wp.WorkMessage], wait: float = 5.0) -> wp.WorkMessage:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.sock.poll(0):
                msg = wp.parse(self.sock.recv_multipart())
                if isinstance(msg, kind):
                    return msg
            else:
                await asyncio.sleep(0.005)
        raise AssertionError(f"no {kind.__name__} within {wait}s")

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


async def test_calls_are_balanced_over_ready_workers(workers: Workers) -> None:
    async with Dispatcher(timeout=10) as d:
        for k in range(3):
            workers.start({"who": lambda _p, k=k: (time.sleep(0.002), k)[1]}, services=[d.endpoint])
        await d.wait_for_workers(3, "who")
        results = await asyncio.gather(*(d.call("who", i) for i in range(150)))
        counts = [results.count(k) for k in range(3)]
        assert sum(counts) == 150 and min(counts) >= 20, counts


async def test_results_errors_and_encodings(workers: Workers) -> None:
    async with Dispatcher(timeout=10) as d:

        def fail(p: Any) -> Any:
            raise KeyError(p)

        workers.start({"echo": lambda p: p, "fail": fail}, services=[d.endpoint])
        assert await d.call("echo", [1, {"x": None}]) == [1, {"x": None}]
        assert await d.call("echo", b"\x00", encoding="raw") == b"\x00"
        assert await d.call("echo", {"k": b"v"}, encoding="msgpack") == {"k": b"v"}
        with pytest.raises(ServiceError, match=r"\[failed\]: KeyError: 'boom'") as info:
            await d.call("fail", "boom")
        assert info.value.code == "failed"
        [status] = d.workers()
        assert status.services == ("echo", "fail") and status.job_id is None


async def test_a_call_waits_for_a_worker_then_runs(workers: Workers) -> None:
    async with Dispatcher(timeout=10) as d:
        task = asyncio.ensure_future(d.call("echo", "queued"))
        await asyncio.sleep(0.1)
        assert not task.done()
        workers.start({"echo": lambda p: p}, services=[d.endpoint])
        assert await task == "queued"


async def test_no_worker_for_the_service_times_out(workers: Workers) -> None:
    async with Dispatcher() as d:
        workers.start({"echo": lambda p: p}, services=[d.endpoint])
        await d.wait_for_workers(1)
        with pytest.raises(ServiceTimeout, match="no worker for 'other' became ready") as info:
            await d.call("other", 1, timeout=0.3)
        assert info.value.code == "timeout"


async def test_silent_worker_non_idempotent_call_fails_with_worker_lost() -> None:
    async with Dispatcher(timeout=10) as d:
        raw = RawWorker(d.endpoint)
        try:
            await d.wait_for_workers(1)
            started = time.monotonic()
            task = asyncio.ensure_future(d.call("echo", 1))
            request = await raw.next(wp.Request)
            assert isinstance(request, wp.Request) and request.name == "echo"
            # ... and the worker goes silent (hung, or dead with its TCP connection up).
            with pytest.raises(WorkerLost, match="not idempotent, so it was not retried") as info:
                await task
            assert info.value.code == "worker-lost"
            assert time.monotonic() - started < 5  # noticed by heartbeat, not the 10 s timeout
            assert d.workers() == []
        finally:
            raw.close()


async def test_silent_worker_idempotent_call_is_retried_elsewhere(workers: Workers) -> None:
    async with Dispatcher(timeout=10) as d:
        raw = RawWorker(d.endpoint)
        try:
            await d.wait_for_workers(1)
            task = asyncio.ensure_future(d.call("echo", "again", idempotent=True))
            await raw.next(wp.Request)
            workers.start({"echo": lambda p: p}, services=[d.endpoint])
            assert await task == "again"
        finally:
            raw.close()


async def test_idempotent_call_fails_when_retries_run_out() -> None:
    async with Dispatcher(timeout=10) as d:
        raw1, raw2 = RawWorker(d.endpoint), RawWorker(d.endpoint)
        try:
            await d.wait_for_workers(2)
            task = asyncio.ensure_future(d.call("echo", 1, idempotent=True, retries=1))
            # It goes to one of them, then (retry) to the other; both stay silent.
            with pytest.raises(WorkerLost, match=r"no retries left after 2 attempt\(s\)"):
                await task
        finally:
            raw1.close()
            raw2.close()


async def test_worker_disconnect_while_busy_fails_the_call_at_once() -> None:
    async with Dispatcher(timeout=10) as d:
        raw = RawWorker(d.endpoint, hb_ms=5000)  # heartbeat alone would take 15 s
        try:
            await d.wait_for_workers(1)
            task = asyncio.ensure_future(d.call("echo", 1))
            await raw.next(wp.Request)
            raw.sock.send_multipart(wp.encode_disconnect())
            with pytest.raises(WorkerLost, match="disconnected"):
                await asyncio.wait_for(task, 5)
        finally:
            raw.close()


async def test_late_reply_is_dropped_and_the_worker_is_ready_again() -> None:
    async with Dispatcher() as d:
        raw = RawWorker(d.endpoint)
        try:
            await d.wait_for_workers(1)
            task = asyncio.ensure_future(d.call("echo", 1, timeout=0.3))
            request = await raw.next(wp.Request)
            assert isinstance(request, wp.Request)
            for _ in range(3):
                raw.sock.send_multipart(wp.encode_heartbeat())
                await asyncio.sleep(0.1)
            with pytest.raises(ServiceTimeout, match="still running on worker raw"):
                await task
            raw.sock.send_multipart(wp.encode_reply(request.job_id, b"1"))
            task2 = asyncio.ensure_future(d.call("echo", 2, timeout=5))
            second = await raw.next(wp.Request)
            assert isinstance(second, wp.Request) and second.payload == b"2"
            raw.sock.send_multipart(wp.encode_reply(second.job_id, b'"two"'))
            assert await task2 == "two"
        finally:
            raw.close()


async def test_unknown_and_bad_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "takefive.services")
    async with Dispatcher() as d:
        ctx = zmq.Context()
        stranger = ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(d.endpoint)
        try:
            stranger.send_multipart([b"T5W1"])
            stranger.send_multipart([b"nonsense", b"x"])
            stranger.send_multipart(wp.encode_heartbeat())
            # An unknown worker that heartbeats is told to say READY again.
            assert await asyncio.to_thread(stranger.poll, 5000)
            assert wp.parse(stranger.recv_multipart()) == wp.Disconnect()
            assert "dropping a bad message" in caplog.text
            stranger.send_multipart(wp.encode_reply(b"x1", b"1"))
            assert await asyncio.to_thread(stranger.poll, 5000)
            assert wp.parse(stranger.recv_multipart()) == wp.Disconnect()
            assert d.workers() == []
        finally:
            stranger.close(0)
            ctx.term()


async def test_close_fails_pending_calls_and_tells_workers() -> None:
    d = Dispatcher()
    raw = RawWorker(d.endpoint)
    try:
        await d.wait_for_workers(1)
        busy = asyncio.ensure_future(d.call("echo", 1, timeout=10))
        queued = asyncio.ensure_future(d.call("echo", 2, timeout=10))
        await raw.next(wp.Request)
        await d.close()
        for task in (busy, queued):
            with pytest.raises(ServiceError, match="closed"):
                await task
        await raw.next(wp.Disconnect)
        with pytest.raises(ServiceError, match="closed"):
            await d.call("echo", 3)
    finally:
        raw.close()


def test_blocking_dispatcher_from_a_plain_script(workers: Workers) -> None:
    with BlockingDispatcher(timeout=10) as d:
        workers.start({"square": lambda p: p * p}, services=[d.endpoint])
        d.wait_for_workers(1, "square")
        assert [d.call("square", i) for i in range(10)] == [i * i for i in range(10)]
        assert d.workers()[0].services == ("square",)
        with pytest.raises(ServiceTimeout):
            d.call("cube", 1, timeout=0.2)


def test_blocking_dispatcher_after_close_says_closed() -> None:
    d = BlockingDispatcher(timeout=1)
    d.close()
    d.close()  # again: nothing happens
    for method in (lambda: d.call("echo", 1), d.workers, lambda: d.wait_for_workers(1)):
        with pytest.raises(ServiceError, match="closed") as info:
            method()
        assert info.value.code == "closed"


async def test_calls_that_time_out_or_are_cancelled_in_the_queue_are_not_kept() -> None:
    async with Dispatcher() as d:
        for _ in range(50):
            with pytest.raises(ServiceTimeout):
                await d.call("nobody", "x" * 1000, timeout=0.01)
        tasks = [asyncio.ensure_future(d.call("nobody", i, timeout=60)) for i in range(50)]
        await asyncio.sleep(0.05)
        assert d.queued == 50
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert d.queued == 0  # the 100 calls that ended are not kept, with their payloads


async def test_any_message_even_a_bad_one_is_a_sign_of_life() -> None:
    async with Dispatcher() as d:
        raw = RawWorker(d.endpoint, hb_ms=100)  # presumed dead after 0.3 s of silence
        try:
            await d.wait_for_workers(1)
            for _ in range(40):  # 2 s of junk, no heartbeat
                raw.sock.send_multipart([b"T5W1", b"JUNK"])
                await asyncio.sleep(0.05)
            assert len(d.workers()) == 1
        finally:
            raw.close()


# ------------------------------------------------------------- a broken dispatcher fails fast


async def _fails_broken(aw: Any, *match: str) -> ServiceError:
    """``aw`` fails with ServiceError(code="broken") long before the call's 60 s timeout."""
    with pytest.raises(ServiceError) as info:
        await asyncio.wait_for(aw, 15)
    assert info.value.code == "broken", info.value
    assert not isinstance(info.value, ServiceTimeout | WorkerLost)
    for text in ("is broken", "create a new Dispatcher", *match):
        assert text in str(info.value)
    return info.value


async def _busy_and_queued(d: Dispatcher, raw: RawWorker) -> list[asyncio.Future[Any]]:
    """One call running on ``raw`` (which never answers) and one waiting in the queue."""
    await d.wait_for_workers(1)
    busy = asyncio.ensure_future(d.call("echo", 1))
    await raw.next(wp.Request)
    queued = asyncio.ensure_future(d.call("nobody", 2))
    for _ in range(1000):  # polls for up to 5 s
        if d.queued:
            break
        await asyncio.sleep(0.005)
    assert d.queued == 1
    return [busy, queued]


async def test_a_receive_task_that_dies_fails_pending_and_later_calls_at_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, "takefive.services")
    d = Dispatcher(timeout=60)
    real_read = d._router.recv_multipart
    die = asyncio.Event()

    async def read_until_told_to_fail(*args: Any, **kwargs: Any) -> list[bytes]:
        recv = asyncio.ensure_future(real_read(*args, **kwargs))
        dying = asyncio.ensure_future(die.wait())
        await asyncio.wait({recv, dying}, return_when=asyncio.FIRST_COMPLETED)
        dying.cancel()
        if recv.done():
            return recv.result()
        recv.cancel()
        raise RuntimeError("injected read failure")

    monkeypatch.setattr(d._router, "recv_multipart", read_until_told_to_fail)
    raw = RawWorker(d.endpoint, hb_ms=5000)
    try:
        calls = await _busy_and_queued(d, raw)
        die.set()
        for call in calls:
            error = await _fails_broken(call, "receive task failed", "injected read failure")
            assert isinstance(error.__cause__, RuntimeError)
        assert d.broken and d.queued == 0 and d.workers() == []
        [record] = [r for r in caplog.records if "is broken" in r.getMessage()]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and record.exc_info[1] is error.__cause__
        assert "read_until_told_to_fail" in caplog.text  # the traceback
        await _fails_broken(d.call("echo", 3), "injected read failure")
        await _fails_broken(d.wait_for_workers(1), "injected read failure")
    finally:
        await d.close()
        await d.close()
        raw.close()
    with pytest.raises(ServiceError) as closed:
        await d.call("echo", 4)
    assert closed.value.code == "closed"


async def test_a_terminated_context_breaks_the_dispatcher_and_term_completes() -> None:
    ctx = zmq.asyncio.Context()
    d = Dispatcher(timeout=60, context=ctx)
    raw = RawWorker(d.endpoint, hb_ms=5000)
    term = threading.Thread(target=ctx.term, daemon=True)
    try:
        calls = await _busy_and_queued(d, raw)
        term.start()  # as a shutdown elsewhere in the process would
        for call in calls:
            await _fails_broken(call, "Context was terminated")
        await _fails_broken(d.call("echo", 3), "Context was terminated")
        await asyncio.to_thread(term.join, 10)  # the dispatcher closed its socket
        assert not term.is_alive()
    finally:
        await d.close()
        raw.close()


async def test_a_heartbeat_task_that_dies_breaks_the_dispatcher(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, "takefive.services")
    d = Dispatcher(timeout=60)
    raw = RawWorker(d.endpoint, hb_ms=100)
    try:
        calls = await _busy_and_queued(d, raw)

        def buggy_send(*args: Any) -> bool:
            raise RuntimeError("a bug in the heartbeat")

        monkeypatch.setattr(d, "_send", buggy_send)  # the next heartbeat to raw fails
        for call in calls:
            await _fails_broken(call, "heartbeat task failed", "a bug in the heartbeat")
        await _fails_broken(d.call("echo", 3), "heartbeat task failed")
        assert "buggy_send" in caplog.text  # the traceback
    finally:
        await d.close()
        raw.close()


async def test_a_cancelled_task_breaks_the_dispatcher(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "takefive.services")
    async with Dispatcher(timeout=60) as d:
        raw = RawWorker(d.endpoint, hb_ms=5000)
        try:
            calls = await _busy_and_queued(d, raw)
            d._tasks[0].cancel()  # by something other than close()
            for call in calls:
                await _fails_broken(call, "receive task was cancelled")
            assert "receive task was cancelled" in caplog.text
        finally:
            raw.close()


async def test_a_heartbeat_waiting_unread_at_the_deadline_keeps_the_worker() -> None:
    """The worker's heartbeat has reached the dispatcher's socket, but the timer that
    checks deadlines runs before the reader: the worker has not been silent (seen in CI:
    a Ruby worker lost twice in a row mid-call on a loaded machine)."""
    async with Dispatcher(timeout=10) as d:
        raw = RawWorker(d.endpoint, hb_ms=100)
        try:
            await d.wait_for_workers(1)
            (worker,) = d._workers.values()
            raw.sock.send_multipart(wp.encode_heartbeat())
            time.sleep(0.2)  # noqa: ASYNC251 (the loop is held: the heartbeat waits unread)
            now = time.monotonic()
            worker.expires = now - 0.01  # what its deadline was before that heartbeat
            assert not d._expire(worker, now)
            assert d.workers() and worker.expires > now
            # Really silent: forgotten.
            assert d._expire(worker, worker.expires + 0.01)
            assert not d.workers()
        finally:
            raw.close()


async def test_a_failed_send_to_a_worker_that_answered_and_left_keeps_the_answer() -> None:
    """The worker answers, says DISCONNECT and closes at once; before the dispatcher reads
    that, a heartbeat to it fails. The answer waiting unread is the call's result, not
    WorkerLost (seen in CI with the C worker stopping gracefully mid-call)."""
    async with Dispatcher(timeout=10) as d:
        raw = RawWorker(d.endpoint, hb_ms=5000)
        try:
            await d.wait_for_workers(1)
            task = asyncio.ensure_future(d.call("echo", 7))
            request = await raw.next(wp.Request)
            assert isinstance(request, wp.Request)
            (worker,) = d._workers.values()
            raw.sock.send_multipart(wp.encode_reply(request.job_id, b"7"))
            raw.sock.send_multipart(wp.encode_disconnect())
        finally:
            raw.close()
        # The event loop is held (no await): the answer reaches the dispatcher's socket
        # but is not read, as when its heartbeat task runs first.
        time.sleep(0.3)  # noqa: ASYNC251 (holding the loop is the point)
        d._unreachable(worker)  # what the heartbeat task does when the send fails
        assert await asyncio.wait_for(task, 5) == 7
        assert not d.workers()
