"""takefive.jobs: JobPool and BlockingJobPool against real sockets and in-process workers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import zmq

from takefive import workproto as wp
from takefive.jobs import BlockingJobPool, JobError, JobPool, JobTimeout
from workerthreads import Workers, workers_fixture  # noqa: F401


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
            frames = sink.recv_multipart()  # the job did go out
            request = wp.parse(frames)
            assert isinstance(request, wp.Request)
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
            request = wp.parse(await asyncio.to_thread(pull.recv_multipart))
            assert isinstance(request, wp.Request)
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
