"""The same job and service cases against the Python, C and Ruby example workers."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from takefive.jobs import JobError, JobPool, JobTimeout
from takefive.services import Dispatcher, ServiceError, ServiceTimeout, WorkerLost

from .workerprocs import LANGUAGES, WorkerProcs, pid_of, worker_procs_fixture  # noqa: F401

pytestmark = pytest.mark.parametrize("language", LANGUAGES)


async def _all_connected(pool: JobPool, pids: set[int], count: int) -> None:
    """Jobs go only to connected workers: wait until each of ``count`` has answered."""
    deadline = time.monotonic() + 20
    while len(pids) < count:
        assert time.monotonic() < deadline, f"only {len(pids)} of {count} workers connected"
        pids.update(await asyncio.gather(*(pool.submit("pid", timeout=10) for _ in range(20))))


async def test_jobs_spread_over_three_workers(language: str, worker_procs: WorkerProcs) -> None:
    async with JobPool() as pool:
        procs = [worker_procs.start(language, connect=(pool.endpoint,)) for _ in range(3)]
        seen: set[int] = set()
        await _all_connected(pool, seen, 3)
        assert seen == {p.pid for p in procs}
        pids = await asyncio.gather(*(pool.submit("pid", i, timeout=20) for i in range(300)))
        counts = [pids.count(p.pid) for p in procs]
        assert sum(counts) == 300 and min(counts) >= 50, counts  # round robin


async def test_job_results_and_errors(language: str, worker_procs: WorkerProcs) -> None:
    async with JobPool(timeout=20) as pool:
        worker_procs.start(language, connect=(pool.endpoint,))
        assert await pool.submit("echo", {"a": [1, "é", None]}) == {"a": [1, "é", None]}
        assert await pool.submit("echo", b"\x00\xff", encoding="raw") == b"\x00\xff"
        assert await pool.submit("echo", {"b": b"\x01"}, encoding="msgpack") == {"b": b"\x01"}
        assert await pool.submit("sleep", 0.05) == 0.05
        with pytest.raises(JobError, match="failed on purpose") as failed:
            await pool.submit("fail", 1)
        assert failed.value.code == "failed"
        with pytest.raises(JobError, match="non-negative number") as bad:
            await pool.submit("sleep", "soon")
        assert bad.value.code == "failed"
        with pytest.raises(JobError, match="no function 'nope' here") as unknown:
            await pool.submit("nope", 1)
        assert unknown.value.code == "unknown"


async def test_job_worker_killed_mid_job_times_out_clearly(
    language: str, worker_procs: WorkerProcs
) -> None:
    async with JobPool() as pool:
        proc = worker_procs.start(language, connect=(pool.endpoint,))
        await _all_connected(pool, set(), 1)
        task = asyncio.ensure_future(pool.submit("sleep", 5, timeout=1.5))
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(JobTimeout, match="may have died with it") as info:
            await task
        assert info.value.code == "timeout"
        assert time.monotonic() - started < 5


async def test_services_balance_and_answer(language: str, worker_procs: WorkerProcs) -> None:
    async with Dispatcher(timeout=20) as d:
        procs = [worker_procs.start(language, service=(d.endpoint,)) for _ in range(3)]
        found = await d.wait_for_workers(3, "echo", timeout=20)
        assert {pid_of(w.info) for w in found} == {p.pid for p in procs}
        assert {w.services for w in found} == {("echo", "fail", "pid", "sleep")}
        pids = await asyncio.gather(*(d.call("pid", i) for i in range(90)))
        assert set(pids) == {p.pid for p in procs}
        assert await d.call("echo", [1, 2]) == [1, 2]
        assert await d.call("echo", b"\x00", encoding="raw") == b"\x00"
        assert await d.call("echo", {"k": b"v"}, encoding="msgpack") == {"k": b"v"}
        with pytest.raises(ServiceError, match="failed on purpose"):
            await d.call("fail")
        # A job of 6 heartbeat intervals: the worker heartbeats while busy.
        assert await d.call("sleep", 1.5) == 1.5


async def test_service_worker_killed_mid_call(language: str, worker_procs: WorkerProcs) -> None:
    async with Dispatcher(timeout=20) as d:
        for _ in range(3):
            worker_procs.start(language, service=(d.endpoint,))
        await d.wait_for_workers(3, timeout=20)
        once = asyncio.ensure_future(d.call("sleep", 3))
        again = asyncio.ensure_future(d.call("sleep", 1, idempotent=True))
        deadline = time.monotonic() + 10
        while len(busy := [w for w in d.workers() if w.job_id]) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        started = time.monotonic()
        for w in busy:
            os.kill(pid_of(w.info), signal.SIGKILL)
        with pytest.raises(WorkerLost, match="not idempotent, so it was not retried"):
            await once
        assert time.monotonic() - started < 2.5  # noticed, not waited out
        assert await again == 1  # retried on the third worker
        assert len(d.workers()) == 1


async def test_graceful_stop_and_dispatcher_restart(
    language: str, worker_procs: WorkerProcs
) -> None:
    d = Dispatcher(timeout=20)
    endpoint = d.endpoint
    try:
        proc = worker_procs.start(language, service=(endpoint,))
        await d.wait_for_workers(1, timeout=20)
        # The dispatcher goes away (DISCONNECT) and comes back on the same endpoint:
        # the worker says READY to the new one.
        await d.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                d = Dispatcher(endpoint, timeout=20)
                break
            except Exception:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        await d.wait_for_workers(1, timeout=20)
        assert await d.call("pid") == proc.pid
        # SIGTERM: the worker says DISCONNECT and exits 0; no heartbeat timeout needed.
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        deadline = time.monotonic() + 5
        while d.workers():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        with pytest.raises(ServiceTimeout, match="no worker for 'pid' became ready"):
            await d.call("pid", timeout=0.3)
    finally:
        await d.close()


async def test_graceful_stop_serves_the_jobs_already_queued(
    language: str, worker_procs: WorkerProcs
) -> None:
    # SIGTERM while jobs wait in the worker's PULL queue: it must read and run them
    # before it disconnects (libzmq discards what is queued on a disconnected pipe).
    jobs = 12
    async with JobPool(timeout=20) as pool:
        proc = worker_procs.start(language, connect=(pool.endpoint,))
        await _all_connected(pool, set(), 1)
        tasks = [asyncio.ensure_future(pool.submit("sleep", 0.2 + i / 1000)) for i in range(jobs)]
        # The worker runs one job at a time: once two are answered, the others have
        # been on the loopback long enough to be queued in its PULL socket.
        deadline = time.monotonic() + 20
        while sum(t.done() for t in tasks) < 2:
            assert time.monotonic() < deadline, "the worker answered no job"
            await asyncio.sleep(0.01)
        assert sum(t.done() for t in tasks) < jobs - 2, "the queue drained too fast to test"
        proc.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    lost = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert not lost, f"jobs {lost} lost on a graceful stop: {results[lost[0]]!r}"
    assert results == [0.2 + i / 1000 for i in range(jobs)]


async def test_graceful_stop_mid_call_answers_it_then_disconnects(
    language: str, worker_procs: WorkerProcs
) -> None:
    # One worker serving a dispatcher and a pool: SIGTERM while it runs a service call
    # and pool jobs wait in its PULL queue. The call is answered (no WorkerLost), the
    # dispatcher is told DISCONNECT, and the queued pool jobs are run too.
    async with Dispatcher(timeout=20) as d, JobPool(timeout=20) as pool:
        proc = worker_procs.start(language, connect=(pool.endpoint,), service=(d.endpoint,))
        await d.wait_for_workers(1, timeout=20)
        await _all_connected(pool, set(), 1)
        call = asyncio.ensure_future(d.call("sleep", 0.5))
        deadline = time.monotonic() + 20
        while not any(w.job_id for w in d.workers()):
            assert time.monotonic() < deadline, "the call never started"
            await asyncio.sleep(0.01)
        tasks = [asyncio.ensure_future(pool.submit("echo", i)) for i in range(10)]
        # One loop turn: each submit hands its job to the PUSH socket on its first step.
        # The jobs reach the busy worker's PULL queue during the rest of the 0.5 s call.
        await asyncio.sleep(0)
        proc.send_signal(signal.SIGTERM)
        assert await call == 0.5
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        deadline = time.monotonic() + 5
        while d.workers():  # the dispatcher forgets it (DISCONNECT)
            assert time.monotonic() < deadline, d.workers()
            await asyncio.sleep(0.01)
    assert results == list(range(10))
