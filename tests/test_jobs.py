"""takefive.jobs: JobPool and BlockingJobPool against real sockets and in-process workers."""

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
from takefive.jobs import BlockingJobPool, JobError, JobPool, JobTimeout
from workerthreads import Workers, workers_fixture  # noqa: F401


def jobs_of(frames: list[bytes]) -> list[wp.Request]:
    """The jobs of one message from a pool: a REQUEST, or a REQUESTS batch."""
    msg = wp.parse(frames)
    if isinstance(msg, wp.Requests):
        return list(msg.jobs)
    assert isinstance(msg, wp.Request), msg
    return [msg]


def one_job(frames: list[bytes]) -> wp.Request:
    (job,) = jobs_of(frames)
    return job


def _fail(payload: Any) -> Any:
    raise ValueError(f"bad {payload}")


async def test_jobs_spread_round_robin_over_three_workers(workers: Workers) -> None:
    async with JobPool() as pool:
        for k in range(3):
            workers.start({"who": lambda _p, k=k: k}, connect=[pool.endpoint])
        # Wait until all three are connected: each has answered at least once.
        deadline = time.monotonic() + 10
        seen: set[int] = set()
        while len(seen) < 3:
            assert time.monotonic() < deadline, f"only workers {seen} connected"
            seen.update(await asyncio.gather(*(pool.submit("who", timeout=5) for _ in range(30))))
        results = await asyncio.gather(*(pool.submit("who", i, timeout=10) for i in range(300)))
        counts = [results.count(k) for k in range(3)]
        assert sum(counts) == 300
        assert min(counts) >= 50, counts  # round robin: roughly 100 each


async def test_results_and_errors(workers: Workers) -> None:
    async with JobPool() as pool:
        workers.start({"echo": lambda p: p, "fail": _fail}, connect=[pool.endpoint])
        assert await pool.submit("echo", {"a": [1, "é"]}, timeout=10) == {"a": [1, "é"]}
        assert await pool.submit("echo", b"\x00\xff", encoding="raw", timeout=5) == b"\x00\xff"
        assert await pool.submit("echo", {"b": b"\x01"}, encoding="msgpack", timeout=5) == {
            "b": b"\x01"
        }
        with pytest.raises(JobError, match=r"\[failed\]: ValueError: bad 7") as failed:
            await pool.submit("fail", 7, timeout=5)
        assert failed.value.code == "failed"
        with pytest.raises(JobError, match="no function 'nope' here") as unknown:
            await pool.submit("nope", timeout=5)
        assert unknown.value.code == "unknown"
        assert pool.pending == 0


async def test_timeout_when_no_worker_is_connected() -> None:
    async with JobPool() as pool:
        started = time.monotonic()
        with pytest.raises(JobTimeout, match="no worker connected") as info:
            await pool.submit("echo", 1, timeout=0.3)
        assert info.value.code == "timeout"
        assert time.monotonic() - started < 5
        assert pool.pending == 0


async def test_timeout_when_the_worker_never_answers() -> None:
    """A PULL socket that takes the job and never answers = a worker that died with it."""
    async with JobPool() as pool:
        ctx = zmq.Context()
        sink = ctx.socket(zmq.PULL)
        sink.connect(pool.endpoint)
        try:
            with pytest.raises(JobTimeout, match="may have died with it"):
                await pool.submit("echo", 1, timeout=0.5)
            request = one_job(sink.recv_multipart())  # the job did go out
            assert request.reply_to == pool.results_endpoint
        finally:
            sink.close(0)
            ctx.term()


async def test_bad_and_late_results_are_dropped(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "takefive.jobs")
    async with JobPool() as pool:
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(pool.results_endpoint)
        try:
            workers.start({"echo": lambda p: p}, connect=[pool.endpoint])
            assert await pool.submit("echo", 1, timeout=10) == 1  # the receiver runs
            push.send_multipart([b"junk"])
            push.send_multipart(wp.encode_reply(b"no-such-job", b"1"))
            push.send_multipart(wp.encode_heartbeat())
            assert await pool.submit("echo", 2, timeout=10) == 2
            deadline = time.monotonic() + 5
            while "unexpected Heartbeat" not in caplog.text:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert "bad message" in caplog.text
            assert "late result of job no-such-job" in caplog.text
        finally:
            push.close(0)
            ctx.term()


async def test_bad_reply_payload_is_a_clear_error() -> None:
    async with JobPool() as pool:
        ctx = zmq.Context()
        pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
        pull.connect(pool.endpoint)
        push.connect(pool.results_endpoint)
        try:
            task = asyncio.ensure_future(pool.submit("echo", 1, timeout=10))
            request = one_job(await asyncio.to_thread(pull.recv_multipart))
            push.send_multipart(wp.encode_reply(request.job_id, b"{not json", "json"))
            with pytest.raises(JobError, match="cannot be decoded") as info:
                await task
            assert info.value.code == "bad-reply"
        finally:
            pull.close(0)
            push.close(0)
            ctx.term()


async def test_close_fails_pending_jobs() -> None:
    pool = JobPool()
    task = asyncio.ensure_future(pool.submit("echo", 1, timeout=30))
    await asyncio.sleep(0.05)
    await pool.close()
    with pytest.raises(JobError, match="closed"):
        await task
    with pytest.raises(JobError, match="closed"):
        await pool.submit("echo", 1)


async def test_unencodable_payload_is_refused_before_sending() -> None:
    async with JobPool() as pool:
        with pytest.raises(wp.EncodingError):
            await pool.submit("echo", object())
        with pytest.raises(wp.ProtocolError, match="invalid job name"):
            await pool.submit("bad name", 1)


def test_blocking_pool_from_a_plain_script(workers: Workers) -> None:
    with BlockingJobPool(timeout=10) as pool:
        workers.start({"double": lambda p: p * 2}, connect=[pool.endpoint])
        assert [pool.submit("double", i) for i in range(20)] == [2 * i for i in range(20)]
        with pytest.raises(JobError, match="no function"):
            pool.submit("triple", 1)


def test_blocking_pool_after_close_says_closed() -> None:
    pool = BlockingJobPool(timeout=1)
    pool.close()
    pool.close()  # again: nothing happens
    with pytest.raises(JobError, match="closed") as info:
        pool.submit("echo", 1)
    assert info.value.code == "closed"


# ---------------------------------------------------------------------- a broken pool fails fast


class _Sink:
    """A PULL socket standing in for a worker that takes jobs and never answers."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PULL)
        self.sock.connect(endpoint)

    async def take(self, count: int = 1) -> list[wp.Request]:
        """The next ``count`` jobs sent (batched or not)."""
        self.sock.setsockopt(zmq.RCVTIMEO, 10_000)
        jobs: list[wp.Request] = []
        while len(jobs) < count:
            jobs += jobs_of(await asyncio.to_thread(self.sock.recv_multipart))
        assert len(jobs) == count, jobs
        return jobs

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


async def _fails_broken(aw: Any, *match: str) -> JobError:
    """``aw`` fails with JobError(code="broken") long before the job's own 60 s timeout."""
    with pytest.raises(JobError) as info:
        await asyncio.wait_for(aw, 15)
    assert info.value.code == "broken", info.value
    assert not isinstance(info.value, JobTimeout)
    for text in ("is broken", "create a new JobPool", *match):
        assert text in str(info.value)
    return info.value


async def test_a_receiver_that_dies_fails_pending_and_later_jobs_at_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, "takefive.jobs")
    pool = JobPool(timeout=60)
    sink = _Sink(pool.endpoint)
    die = asyncio.Event()

    async def failing_read(*args: Any, **kwargs: Any) -> list[bytes]:
        await die.wait()
        raise RuntimeError("injected read failure")

    monkeypatch.setattr(pool._results, "recv_multipart", failing_read)
    try:
        jobs = [asyncio.ensure_future(pool.submit("echo", i)) for i in range(3)]
        await sink.take(3)  # all three went out and wait for a result
        assert pool.pending == 3 and not pool.broken
        die.set()
        for job in jobs:
            error = await _fails_broken(job, "receiver task failed", "injected read failure")
            assert isinstance(error.__cause__, RuntimeError)
        assert pool.pending == 0 and pool.broken
        # Logged once, with the traceback of the cause.
        [record] = [r for r in caplog.records if "is broken" in r.getMessage()]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None and record.exc_info[1] is error.__cause__
        assert "failing_read" in caplog.text  # the traceback
        # Later submits fail at once with the same clear error.
        await _fails_broken(pool.submit("echo", 4), "injected read failure")
    finally:
        await pool.close()
        sink.close()
    with pytest.raises(JobError) as closed:
        await pool.submit("echo", 5)
    assert closed.value.code == "closed"


async def test_a_terminated_context_breaks_the_pool_and_term_completes() -> None:
    ctx = zmq.asyncio.Context()
    pool = JobPool(timeout=60, context=ctx)
    sink = _Sink(pool.endpoint)
    term = threading.Thread(target=ctx.term, daemon=True)
    try:
        job = asyncio.ensure_future(pool.submit("echo", 1))
        await sink.take()  # the job is out; the receiver waits for its result
        term.start()  # as a shutdown elsewhere in the process would
        await _fails_broken(job, "Context was terminated")
        await _fails_broken(pool.submit("echo", 2), "Context was terminated")
        # The pool closed its sockets, which term() was waiting for.
        await asyncio.to_thread(term.join, 10)
        assert not term.is_alive()
    finally:
        await pool.close()
        sink.close()


async def test_a_failed_send_breaks_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "takefive.jobs")
    pool = JobPool(timeout=60)
    sink = _Sink(pool.endpoint)

    dead_ctx = zmq.Context()
    dead = dead_ctx.socket(zmq.PUSH)  # a real socket that is gone: sends raise ENOTSOCK
    dead.close(0)
    dead_ctx.term()
    try:
        job = asyncio.ensure_future(pool.submit("echo", 1))
        await sink.take()
        pool._jobs_out = dead
        await _fails_broken(
            pool.submit("echo", 2), "sending a job failed", "Socket operation on non-socket"
        )
        await _fails_broken(job, "sending a job failed")
        await _fails_broken(pool.submit("echo", 3), "sending a job failed")
        assert "sending a job failed" in caplog.text
    finally:
        await pool.close()
        sink.close()


async def test_a_cancelled_receiver_breaks_the_pool(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "takefive.jobs")
    async with JobPool(timeout=60) as pool:
        sink = _Sink(pool.endpoint)
        try:
            job = asyncio.ensure_future(pool.submit("echo", 1))
            await sink.take()
            assert pool._receiver is not None
            pool._receiver.cancel()  # by something other than close()
            await _fails_broken(job, "receiver task was cancelled")
            await _fails_broken(pool.submit("echo", 2), "receiver task was cancelled")
            assert "receiver task was cancelled" in caplog.text
        finally:
            sink.close()


async def test_a_bug_handling_one_result_does_not_stop_the_pool(
    workers: Workers, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.ERROR, "takefive.jobs")
    async with JobPool() as pool:
        handle = pool._on_result

        def buggy(frames: list[bytes]) -> None:
            if frames == [b"trigger"]:
                raise KeyError("a bug")
            handle(frames)

        monkeypatch.setattr(pool, "_on_result", buggy)
        ctx = zmq.Context()
        push = ctx.socket(zmq.PUSH)
        push.connect(pool.results_endpoint)
        try:
            workers.start({"echo": lambda p: p}, connect=[pool.endpoint])
            assert await pool.submit("echo", 1, timeout=10) == 1
            push.send_multipart([b"trigger"])
            deadline = time.monotonic() + 5
            while "error handling a result" not in caplog.text:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert await pool.submit("echo", 2, timeout=10) == 2
            assert not pool.broken
        finally:
            push.close(0)
            ctx.term()


async def test_close_after_the_receiver_failed_does_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = JobPool(timeout=60)

    async def failing_read(*args: Any, **kwargs: Any) -> list[bytes]:
        raise RuntimeError("injected")

    monkeypatch.setattr(pool._results, "recv_multipart", failing_read)
    await _fails_broken(pool.submit("echo", 1), "injected")
    await pool.close()
    await pool.close()


# ---------------------------------------------------------------------- batches


class _Taker:
    """A PULL standing in for a worker (the test reads what the pool sends) and a PUSH
    to answer on the pool's results endpoint."""

    def __init__(self, pool: JobPool) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.pull = self.ctx.socket(zmq.PULL)
        self.push = self.ctx.socket(zmq.PUSH)
        self.pull.connect(pool.endpoint)
        self.push.connect(pool.results_endpoint)

    async def messages(self, jobs: int) -> list[list[bytes]]:
        """Messages until ``jobs`` jobs have arrived."""
        out: list[list[bytes]] = []
        while sum(len(jobs_of(m)) for m in out) < jobs:
            assert await asyncio.to_thread(self.pull.poll, 10_000), "no more jobs came"
            out.append(self.pull.recv_multipart())
        return out

    def close(self) -> None:
        self.ctx.destroy(0)


async def _connected(pool: JobPool, taker: _Taker) -> None:
    """One job through, answered by hand: the taker's PULL is connected."""
    task = asyncio.ensure_future(pool.submit("echo", 0, timeout=10))
    (msg,) = await taker.messages(1)
    taker.push.send_multipart(wp.encode_reply(one_job(msg).job_id, b"0"))
    assert await task == 0


async def test_jobs_submitted_together_go_in_batches_of_at_most_batch() -> None:
    async with JobPool(batch=16) as pool:
        taker = _Taker(pool)
        try:
            await _connected(pool, taker)
            tasks = [asyncio.ensure_future(pool.submit("echo", i, timeout=10)) for i in range(40)]
            messages = await taker.messages(40)
            assert [m[1] for m in messages] == [wp.REQUESTS] * 3
            assert [len(jobs_of(m)) for m in messages] == [16, 16, 8]
            jobs = [job for m in messages for job in jobs_of(m)]
            assert [wp.decode_payload(j.payload) for j in jobs] == list(range(40))
            # Answered in any grouping: one REPLIES for some, single REPLY/ERROR for others.
            records = [
                wp.encode_answer_record(wp.Reply(j.job_id, "json", j.payload)) for j in jobs[:30]
            ]
            taker.push.send_multipart(wp.encode_replies(records))
            for job in jobs[30:39]:
                taker.push.send_multipart(wp.encode_reply(job.job_id, job.payload))
            taker.push.send_multipart(wp.encode_error(jobs[39].job_id, "failed", "no"))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert results[:39] == list(range(39))
            assert isinstance(results[39], JobError) and results[39].code == "failed"
            assert pool.pending == 0
        finally:
            taker.close()


async def test_batch_1_sends_single_requests() -> None:
    async with JobPool(batch=1) as pool:
        taker = _Taker(pool)
        try:
            await _connected(pool, taker)
            tasks = [asyncio.ensure_future(pool.submit("echo", i, timeout=10)) for i in range(5)]
            messages = await taker.messages(5)
            assert [m[1] for m in messages] == [wp.REQUEST] * 5
            for m in messages:
                job = one_job(m)
                taker.push.send_multipart(wp.encode_reply(job.job_id, job.payload))
            assert await asyncio.gather(*tasks) == list(range(5))
        finally:
            taker.close()


async def test_a_large_job_goes_alone() -> None:
    async with JobPool() as pool:
        taker = _Taker(pool)
        try:
            await _connected(pool, taker)
            big = b"x" * (300 * 1024)
            tasks = [
                asyncio.ensure_future(pool.submit("echo", 1, timeout=10)),
                asyncio.ensure_future(pool.submit("echo", big, encoding="raw", timeout=10)),
                asyncio.ensure_future(pool.submit("echo", 2, timeout=10)),
            ]
            messages = await taker.messages(3)
            sizes = [[len(j.payload) for j in jobs_of(m)] for m in messages]
            assert sizes == [[1], [len(big)], [1]]
            for task in tasks:
                task.cancel()
        finally:
            taker.close()


@pytest.mark.parametrize("batch", [1, 16])
async def test_a_job_waiting_for_a_worker_is_not_overtaken_by_later_ones(batch: int) -> None:
    """A job sent before any worker connected goes out first once one does; a later
    job's send must not leave it waiting, unseen, until its timeout."""
    async with JobPool(batch=batch) as pool:
        first = asyncio.ensure_future(pool.submit("echo", 1, timeout=10))
        deadline = time.monotonic() + 10
        while not pool._unsent:  # its message waits for a worker
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        taker = _Taker(pool)
        try:
            # Until the worker is connected, without a turn of the loop in between:
            # reading the socket's events takes its wake-up, as any send on it does.
            deadline = time.monotonic() + 10
            while not pool._jobs_out.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
                assert time.monotonic() < deadline, "the worker never connected"
                time.sleep(0.01)  # noqa: ASYNC251 - on purpose: no turn of the loop
            second = asyncio.ensure_future(pool.submit("echo", 2, timeout=10))
            jobs = [job for m in await taker.messages(2) for job in jobs_of(m)]
            assert [job.payload for job in jobs] == [b"1", b"2"]
            for job in jobs:
                taker.push.send_multipart(wp.encode_reply(job.job_id, job.payload))
            assert [await first, await second] == [1, 2]
            assert pool.pending == 0 and not pool._unsent
        finally:
            taker.close()


def test_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        JobPool(batch=0)


# ---------------------------------------------------------------------- map


async def test_map_runs_every_payload_and_keeps_the_order(workers: Workers) -> None:
    async with JobPool() as pool:
        for _ in range(2):
            workers.start({"square": lambda p: p * p}, connect=[pool.endpoint])
        assert await pool.map("square", range(1000), timeout=20) == [i * i for i in range(1000)]
        assert await pool.map("square", [], timeout=1) == []
        assert pool.pending == 0


async def test_map_errors_raise_the_first_or_stand_in_place(workers: Workers) -> None:
    async with JobPool() as pool:
        workers.start({"fail": _fail, "echo": lambda p: p}, connect=[pool.endpoint])
        assert await pool.submit("echo", 0, timeout=10) == 0
        with pytest.raises(JobError, match=r"\[failed\]: ValueError: bad 1") as failed:
            await pool.map("fail", [1, 2], timeout=10)
        assert failed.value.code == "failed"
        results = await pool.map("fail", [3, 4], timeout=10, return_exceptions=True)
        assert [str(r).rsplit(": ", 1)[-1] for r in results] == ["bad 3", "bad 4"]
        assert all(isinstance(r, JobError) for r in results)
        with pytest.raises(JobError, match="no function 'nope' here"):
            await pool.map("nope", [1])
        assert pool.pending == 0


async def test_map_times_out_saying_how_many_got_no_answer() -> None:
    async with JobPool() as pool:
        taker = _Taker(pool)
        try:
            await _connected(pool, taker)
            task = asyncio.ensure_future(pool.map("echo", range(5), timeout=1.0))
            jobs = [job for m in await taker.messages(5) for job in jobs_of(m)]
            for job in jobs[:3]:  # three answered, two never
                taker.push.send_multipart(wp.encode_reply(job.job_id, job.payload))
            started = time.monotonic()
            with pytest.raises(JobTimeout, match="2 of 5 jobs") as info:
                await task
            assert info.value.code == "timeout" and info.value.job_id == jobs[3].job_id
            assert time.monotonic() - started < 5
            assert pool.pending == 0
        finally:
            taker.close()


async def test_map_refuses_bad_payloads_before_sending_any_and_fails_on_close() -> None:
    pool = JobPool()
    with pytest.raises(wp.EncodingError):
        await pool.map("echo", [1, object()])
    assert pool.pending == 0
    task = asyncio.ensure_future(pool.map("echo", range(3), timeout=30))
    await asyncio.sleep(0.05)
    assert pool.pending == 3
    await pool.close()
    with pytest.raises(JobError, match="closed"):
        await task
    with pytest.raises(JobError, match="closed"):
        await pool.map("echo", [1])


def test_blocking_pool_map(workers: Workers) -> None:
    with BlockingJobPool(timeout=10) as pool:
        workers.start({"double": lambda p: p * 2}, connect=[pool.endpoint])
        assert pool.map("double", range(50)) == [2 * i for i in range(50)]


async def test_a_map_on_a_pool_that_breaks_half_way_holds_no_jobs_back() -> None:
    pool = JobPool(timeout=60)
    sink = _Sink(pool.endpoint)
    dead_ctx = zmq.Context()
    dead = dead_ctx.socket(zmq.PUSH)
    dead.close(0)
    dead_ctx.term()
    try:
        pool._jobs_out = dead  # the first flush (16 jobs) fails and breaks the pool
        await _fails_broken(pool.map("echo", range(40)), "sending a job failed")
        await asyncio.sleep(0)  # a flush scheduled before the break runs now
        assert pool._outgoing == [] and pool._outgoing_ids == [] and pool.pending == 0
    finally:
        await pool.close()
        sink.close()
