"""takefive._sync: the event loop thread behind BlockingJobPool and BlockingDispatcher."""

from __future__ import annotations

import asyncio
import threading

import pytest

from takefive._sync import Deadlines, LoopStopped, LoopThread


def test_run_returns_results_and_raises_errors() -> None:
    lt = LoopThread()
    try:

        async def double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        async def boom() -> None:
            raise KeyError("x")

        assert lt.run(double(21)) == 42
        with pytest.raises(KeyError):
            lt.run(boom())
    finally:
        lt.stop()


def test_stop_ends_a_run_still_waiting_instead_of_leaving_it_hanging() -> None:
    lt = LoopThread()
    started = threading.Event()
    outcome: list[BaseException | str] = []

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    def caller() -> None:
        try:
            lt.run(forever())
            outcome.append("returned")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    assert started.wait(10)
    lt.stop()
    thread.join(10)
    assert not thread.is_alive(), "run() still waits on a stopped loop"
    assert len(outcome) == 1 and isinstance(outcome[0], LoopStopped)


def test_run_after_stop_raises_and_stop_twice_is_fine() -> None:
    lt = LoopThread()
    lt.stop()
    lt.stop()

    async def nothing() -> None:
        pass

    coro = nothing()
    with pytest.raises(LoopStopped):
        lt.run(coro)
    assert coro.cr_frame is None  # closed, not left "never awaited"


async def test_deadlines_fail_each_future_at_its_own_deadline_with_one_timer() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    late, soon, kept = loop.create_future(), loop.create_future(), loop.create_future()
    started = loop.time()
    deadlines.add("late", late, 0.3, loop)
    deadlines.add("soon", soon, 0.1, loop)  # earlier than the timer: it is re-armed
    deadlines.add("kept", kept, 0.2, loop)
    deadlines.discard("kept")  # answered in time
    with pytest.raises(TimeoutError):
        await soon
    assert loop.time() - started >= 0.1 - Deadlines.SLACK
    assert not late.done() and len(deadlines) == 1
    with pytest.raises(TimeoutError):
        await late
    assert loop.time() - started >= 0.3 - Deadlines.SLACK
    await asyncio.sleep(0.05)
    assert not kept.done() and len(deadlines) == 0
    done = loop.create_future()
    done.set_result(1)
    deadlines.add("done", done, 0.01, loop)  # a future done already is left alone
    await asyncio.sleep(0.05)
    assert done.result() == 1


async def test_deadlines_close_forgets_them_all() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines()
    fut = loop.create_future()
    deadlines.add("a", fut, 0.05, loop)
    deadlines.close()
    await asyncio.sleep(0.1)
    assert not fut.done() and len(deadlines) == 0
