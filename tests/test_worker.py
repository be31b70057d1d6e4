"""takefive.worker: the Python worker loop and the ``takefive worker`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from takefive import worker as worker_module
from takefive import workproto as wp
from takefive.jobs import BlockingJobPool, JobPool
from takefive.services import Dispatcher, ServiceError
from takefive.worker import Worker, add_command, load_functions, run_function

TASKS = str(Path(__file__).parents[1] / "examples/workers/python/tasks.py")


def test_run_function_replies_and_errors() -> None:
    functions = {"echo": lambda p: p, "bytes": lambda p: b"x", "boom": lambda p: 1 / 0}

    def req(name: str, payload: bytes = b"1", enc: str = "json") -> wp.WorkMessage:
        return run_function(functions, wp.Request(b"j1", name, enc, payload))

    assert req("echo", b'{"a":1}') == wp.Reply(b"j1", "json", b'{"a":1}')
    assert req("bytes") == wp.Reply(b"j1", "raw", b"x")
    packed = wp.encode_payload({"a": 1}, "msgpack")
    assert req("echo", packed, "msgpack") == wp.Reply(b"j1", "msgpack", packed)
    boom = req("boom")
    assert isinstance(boom, wp.Error) and boom.code == "failed"
    assert "ZeroDivisionError" in boom.message
    unknown = req("nope")
    assert isinstance(unknown, wp.Error) and unknown.code == "unknown"
    assert "known: boom, bytes, echo" in unknown.message
    bad = req("echo", b"{", "json")
    assert isinstance(bad, wp.Error) and bad.code == "bad-request"
    bad_enc = req("echo", b"1", "xml")
    assert isinstance(bad_enc, wp.Error) and bad_enc.code == "bad-request"


def test_run_function_awaits_coroutine_functions() -> None:
    async def slow_double(p: int) -> int:
        await asyncio.sleep(0)
        return p * 2

    reply = run_function({"d": slow_double}, wp.Request(b"j", "d", "json", b"21"))
    assert reply == wp.Reply(b"j", "json", b"42")


def test_unencodable_result_is_an_error() -> None:
    reply = run_function({"o": lambda p: object()}, wp.Request(b"j", "o", "json", b"1"))
    assert isinstance(reply, wp.Error) and "cannot encode the result" in reply.message


def test_load_functions() -> None:
    functions = load_functions([f"{TASKS}:echo", f"twice={TASKS}:pid"])
    assert sorted(functions) == ["echo", "twice"]
    with pytest.raises(ValueError, match="two functions named 'echo'"):
        load_functions([f"{TASKS}:echo", f"{TASKS}:echo"])
    with pytest.raises(ValueError, match="not callable"):
        load_functions([f"{TASKS}:__doc__"])
    with pytest.raises(ImportError):
        load_functions(["no_such_module_xyz:f"])


def test_worker_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="at least one function"):
        Worker({}, connect=["tcp://127.0.0.1:1"])
    with pytest.raises(ValueError, match="--connect or --service"):
        Worker({"f": print})
    with pytest.raises(wp.ProtocolError, match="invalid function name"):
        Worker({"bad name": print}, connect=["tcp://127.0.0.1:1"])


def test_command_line_parser() -> None:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["worker", "m:f", "n=m:g", "--connect", "tcp://a:1", "--service", "tcp://b:2"]
    )
    assert args.functions == ["m:f", "n=m:g"]
    assert args.connect == ["tcp://a:1"] and args.service == ["tcp://b:2"]
    assert args.heartbeat == 1.0 and callable(args.func)


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.term()


class FakePool:
    """What a job pool binds: a PUSH for jobs and a PULL for results, on free ports."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.push, self.results = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        for sock in (self.push, self.results):
            sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.push.bind_to_random_port('tcp://127.0.0.1')}"
        port = self.results.bind_to_random_port("tcp://127.0.0.1")
        self.reply_to = f"tcp://127.0.0.1:{port}"

    def close(self) -> None:
        self.push.close(0)
        self.results.close(0)


@pytest.fixture
def pool(ctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[FakePool]:
    fake = FakePool(ctx)
    yield fake
    fake.close()


def start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def recv(sock: zmq.Socket[bytes], timeout: float = 5.0) -> list[bytes]:
    assert sock.poll(int(timeout * 1000)), "nothing received"
    return sock.recv_multipart()


def worker_on_a_bare_router(
    ctx: zmq.Context[zmq.Socket[bytes]], functions: dict[str, Any], **kw: Any
) -> tuple[zmq.Socket[bytes], Worker, threading.Thread]:
    """A ROUTER driven by the test, and a started service worker connected to it."""
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    worker = Worker(
        functions,
        services=[f"tcp://127.0.0.1:{port}"],
        context=zmq.Context(),
        info=f"test-{id(router)}",
        **kw,
    )
    return router, worker, start(worker)


def test_worker_says_ready_heartbeats_and_reconnects_when_the_dispatcher_is_silent(
    ctx: zmq.Context[zmq.Socket[bytes]],
) -> None:
    router, worker, thread = worker_on_a_bare_router(
        ctx, {"echo": lambda p: p}, heartbeat=0.05, liveness=6
    )
    try:
        # (Only messages from this worker count: a stray process elsewhere may
        # reconnect to a port this router reuses.)
        while True:
            first_id, *frames = recv(router)
            ready = wp.parse(frames)
            if isinstance(ready, wp.Ready) and ready.info == worker.info:
                break
        assert ready == wp.Ready(50, worker.info, ("echo",))
        # The dispatcher never answers: the worker heartbeats, then gives up on this
        # connection and says READY again from a new one.
        kinds = []
        while True:
            identity, *frames = recv(router)
            msg = wp.parse(frames)
            if isinstance(msg, wp.Ready) and msg.info == worker.info:
                assert identity != first_id
                break
            if identity == first_id:
                kinds.append(type(msg).__name__)
        assert "Heartbeat" in kinds
        # A request on the new connection is served; the reply comes back on it.
        router.send_multipart([identity, *wp.encode_request(b"j1", "echo", b"[1]")])
        while True:
            _, *frames = recv(router)
            reply = wp.parse(frames)
            if not isinstance(reply, wp.Heartbeat):
                break
        assert reply == wp.Reply(b"j1", "json", b"[1]")
        # DISCONNECT from the dispatcher: the worker reconnects and says READY at once.
        router.send_multipart([identity, *wp.encode_disconnect()])
        router.send_multipart([identity, b"junk"])
        while not isinstance(wp.parse(recv(router)[1:]), wp.Ready):
            pass
    finally:
        worker.stop()
        thread.join(timeout=5)
        router.close(0)
    assert not thread.is_alive()


async def test_heartbeats_go_on_during_a_long_job() -> None:
    async with Dispatcher(timeout=10, liveness=5) as d:
        worker = Worker(
            {"nap": lambda p: time.sleep(p) or "rested"},
            services=[d.endpoint],
            heartbeat=0.2,
            context=zmq.Context(),
        )
        thread = start(worker)
        try:
            await d.wait_for_workers(1)
            # 15 heartbeat intervals, 3 x liveness: without heartbeats during the job it
            # would be "lost" (liveness 5, not 3: a loaded machine can miss a beat or two).
            assert await d.call("nap", 3.0) == "rested"
        finally:
            worker.stop()
            await asyncio.to_thread(thread.join, 5)


async def test_graceful_stop_finishes_the_job_and_says_disconnect() -> None:
    async with Dispatcher(timeout=10) as d:
        worker = Worker(
            {"nap": lambda p: time.sleep(p) or p},
            services=[d.endpoint],
            heartbeat=0.2,
            context=zmq.Context(),
        )
        thread = start(worker)
        await d.wait_for_workers(1)
        task = asyncio.ensure_future(d.call("nap", 0.3))
        while not any(w.job_id for w in d.workers()):  # noqa: ASYNC110 - polling the dispatcher
            await asyncio.sleep(0.01)
        worker.stop()
        assert await task == 0.3
        await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()
        deadline = time.monotonic() + 5
        while d.workers():  # DISCONNECT, not a heartbeat timeout
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)


def test_jobs_worker_drops_bad_messages_and_serves_good_ones(pool: FakePool) -> None:
    worker = Worker({"echo": lambda p: p}, connect=[pool.endpoint], context=zmq.Context())
    thread = start(worker)
    try:
        pool.push.send_multipart([b"junk"])
        pool.push.send_multipart(wp.encode_heartbeat())
        pool.push.send_multipart(wp.encode_request(b"j", "echo", b"7", reply_to=""))  # none
        pool.push.send_multipart(wp.encode_request(b"j2", "echo", b"8", reply_to=pool.reply_to))
        assert wp.parse(recv(pool.results)) == wp.Reply(b"j2", "json", b"8")
    finally:
        worker.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert worker.jobs_done == 2


def test_a_batch_is_answered_in_one_replies_and_sooner_after_a_slow_job(
    pool: FakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def slow(p: object) -> object:
        time.sleep(0.05)
        return p

    worker = Worker(
        {"echo": lambda p: p, "slow": slow, "big": lambda n: "x" * n},
        connect=[pool.endpoint],
        context=zmq.Context(),
    )
    thread = start(worker)
    try:

        def batch(*jobs: tuple[bytes, str, bytes]) -> None:
            records = [wp.encode_job(j, name, payload) for j, name, payload in jobs]
            pool.push.send_multipart(wp.encode_requests(records, pool.reply_to))

        def answers() -> list[tuple[bytes, object]]:
            msg = wp.parse(recv(pool.results))
            found = msg.answers if isinstance(msg, wp.Replies) else (msg,)
            return [(a.job_id, wp.reply_value(a, "x", wp.WorkError)) for a in found]

        batch((b"a", "echo", b"1"), (b"b", "echo", b"2"), (b"c", "echo", b"3"))
        assert answers() == [(b"a", 1), (b"b", 2), (b"c", 3)]  # one REPLIES
        batch((b"d", "echo", b"4"), (b"e", "slow", b"5"), (b"f", "echo", b"6"))
        assert answers() == [(b"d", 4), (b"e", 5)]  # sent as soon as the slow job was done
        assert answers() == [(b"f", 6)]
        # A result too large for a batch record goes alone, as a REPLY.
        monkeypatch.setattr(wp, "_MAX_DATA_LENGTH", 100)
        batch((b"g", "big", b"10"), (b"h", "big", b"200"))
        assert answers() == [(b"g", "x" * 10)]
        assert answers() == [(b"h", "x" * 200)]
    finally:
        worker.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert worker.jobs_done == 8


def test_a_function_raising_systemexit_in_a_batch_lets_the_answers_before_it_out(
    pool: FakePool,
) -> None:
    def leave(p: object) -> object:
        raise SystemExit(3)

    worker = Worker(
        {"echo": lambda p: p, "leave": leave},
        connect=[pool.endpoint],
        context=zmq.Context(),
    )
    exits: list[SystemExit] = []

    def run() -> None:
        try:
            worker.run()
        except SystemExit as exc:
            exits.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        records = [wp.encode_job(b"a", "echo", b"1"), wp.encode_job(b"b", "leave", b"2")]
        pool.push.send_multipart(wp.encode_requests(records, pool.reply_to))
        assert wp.parse(recv(pool.results)) == wp.Replies((wp.Reply(b"a", "json", b"1"),))
        thread.join(timeout=5)
        assert not thread.is_alive()  # SystemExit ends the worker, as it always did
        assert [e.code for e in exits] == [3]
    finally:
        worker.stop()
        thread.join(timeout=5)


async def test_a_function_that_raises_systemexit_does_not_wedge_a_service_worker() -> None:
    def leave(code: int) -> None:
        sys.exit(code)

    async with Dispatcher(timeout=5) as d:
        worker = Worker(
            {"leave": leave, "echo": lambda p: p},
            services=[d.endpoint],
            heartbeat=0.2,
            context=zmq.Context(),
        )
        thread = start(worker)
        try:
            await d.wait_for_workers(1)
            with pytest.raises(ServiceError, match=r"\[failed\]: SystemExit: 3") as info:
                await d.call("leave", 3)
            assert info.value.code == "failed"
            assert await d.call("echo", "still here") == "still here"
        finally:
            worker.stop()
            await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()


@pytest.mark.parametrize("with_services", [False, True], ids=["inline", "threaded"])
async def test_graceful_stop_finishes_the_pool_jobs_the_worker_holds(with_services: bool) -> None:
    """PUSH handed these jobs to this worker only: a graceful stop must run them all
    (jobs only: inline; with --service links: in the helper thread)."""
    started = threading.Event()

    def nap(p: int) -> int:
        started.set()
        time.sleep(0.1)
        return p

    async with JobPool(timeout=20) as pool, Dispatcher() as d:
        worker = Worker(
            {"nap": nap},
            connect=[pool.endpoint],
            services=[d.endpoint] if with_services else [],
            heartbeat=0.2,
            context=zmq.Context(),
        )
        thread = start(worker)
        try:
            if with_services:
                await d.wait_for_workers(1)
            jobs = [asyncio.ensure_future(pool.submit("nap", i)) for i in range(5)]
            assert await asyncio.to_thread(started.wait, 10)
            worker.stop()
            assert await asyncio.gather(*jobs) == [0, 1, 2, 3, 4]
        finally:
            worker.stop()
            await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()


def test_a_result_is_never_sent_on_a_newer_connection_than_its_request(
    ctx: zmq.Context[zmq.Socket[bytes]],
) -> None:
    router, worker, thread = worker_on_a_bare_router(
        ctx, {"nap": lambda p: time.sleep(p) or "late"}, heartbeat=0.1, liveness=50
    )

    def next_from_worker() -> tuple[bytes, wp.WorkMessage]:
        while True:
            identity, *frames = recv(router)
            msg = wp.parse(frames)
            if not isinstance(msg, wp.Heartbeat):
                return identity, msg

    try:
        while True:  # only this worker's READY counts (see the test above)
            first_id, ready = next_from_worker()
            if isinstance(ready, wp.Ready) and ready.info == worker.info:
                break
        router.send_multipart([first_id, *wp.encode_request(b"j1", "nap", b"0.5")])
        router.send_multipart([first_id, *wp.encode_request(b"j2", "nap", b"0")])  # queued
        router.send_multipart([first_id, *wp.encode_disconnect()])
        second_id, ready = next_from_worker()
        assert isinstance(ready, wp.Ready) and second_id != first_id
        # j1 finishes after the reconnect: its answer belongs to the closed connection.
        router.send_multipart([second_id, *wp.encode_request(b"j3", "nap", b"0.6")])
        identity, answer = next_from_worker()
        assert (identity, answer) == (second_id, wp.Reply(b"j3", "json", b'"late"'))
    finally:
        worker.stop()
        thread.join(timeout=5)
        router.close(0)
    assert not thread.is_alive()


def test_the_worker_keeps_a_bounded_number_of_reply_to_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "_MAX_REPLY_TO", 2)
    pools = [BlockingJobPool(timeout=10) for _ in range(4)]
    worker = Worker(
        {"echo": lambda p: p}, connect=[p.endpoint for p in pools], context=zmq.Context()
    )
    thread = start(worker)
    try:
        for _ in range(2):
            for i, pool in enumerate(pools):
                assert pool.submit("echo", i) == i
                assert len(worker._results) <= 2
    finally:
        worker.stop()
        thread.join(timeout=5)
        for pool in pools:
            pool.close()
    assert not thread.is_alive()
