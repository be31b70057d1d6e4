"""takefive._sync: the event loop thread behind BlockingJobPool and BlockingDispatcher."""

from __future__ import annotations

import asyncio
import threading

import pytest

from takefive._sync import LoopStopped, LoopThread


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
