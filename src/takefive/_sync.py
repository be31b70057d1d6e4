"""Asyncio plumbing shared by the workers layer (jobs, services, events).

* :class:`LoopThread`: one event loop in a daemon thread; :meth:`LoopThread.run`
  blocks on a coroutine from any other thread.
* :class:`BlockingClient`: the synchronous face of an async client
  (``BlockingJobPool``, ``BlockingDispatcher``), built on a :class:`LoopThread`.
* :class:`Closing` / :class:`AsyncClosing`: ``with`` / ``async with`` that close.
* :func:`deadline`: a timer that fails a future with :class:`TimeoutError`.
* :func:`why_stopped`: why a client's background task (a receiver) ended, in words.
* :class:`Breakable`: a client that can break for good, and the error its calls get then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from takefive.workproto import WorkError

T = TypeVar("T")

__all__ = [
    "AsyncClosing",
    "BlockingClient",
    "Breakable",
    "Closing",
    "Deadlines",
    "LoopStopped",
    "LoopThread",
    "deadline",
    "why_stopped",
]


class LoopStopped(RuntimeError):
    """:meth:`LoopThread.run` was called after (or raced with) :meth:`LoopThread.stop`."""


class LoopThread:
    """An event loop running in its own daemon thread; :meth:`run` blocks on a coroutine.

    Safe to use from several threads at once. After :meth:`stop` (which may be
    called more than once) :meth:`run` raises :class:`LoopStopped`, and so does a
    :meth:`run` still waiting when :meth:`stop` is called: nothing waits forever.
    """

    def __init__(self, name: str = "takefive-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run called from its own loop")
        with self._lock:  # stop() cannot slip in between the check and the scheduling
            if self._stopped:
                coro.close()
                raise LoopStopped(f"the {self._thread.name} event loop is stopped")
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if not self._stopped:
                raise
            raise LoopStopped(f"the {self._thread.name} event loop was stopped") from None

    def stop(self) -> None:
        """Cancel what still runs on the loop, stop it and close it."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self._thread.is_alive():
            shutdown = asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop)
            try:
                shutdown.result(timeout=5)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_all() -> None:
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def deadline(future: asyncio.Future[Any], seconds: float) -> asyncio.TimerHandle:
    """Fail ``future`` with :class:`TimeoutError` in ``seconds`` unless it is done by then.

    A timer, not ``asyncio.timeout()``: handlers may run their first step outside a
    Task. Cancel the returned handle once the future is done.
    """
    return future.get_loop().call_later(seconds, _expire, future)


class Deadlines:
    """Fail futures with :class:`TimeoutError` at their deadlines, with one timer for all.

    For many futures in flight at once (a job pool's jobs): a dict entry each instead
    of a timer each, about 4,400 fewer instructions per future on uvloop. The timer is
    set for the earliest deadline; a future is failed within 1 ms of its deadline
    (never later than the loop's own timers would). Use from the loop's thread.
    """

    #: Deadlines this close are taken as reached (loops may fire timers this early).
    SLACK = 0.001

    def __init__(self) -> None:
        self._due: dict[object, tuple[float, asyncio.Future[Any]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def __len__(self) -> int:
        return len(self._due)

    def add(
        self,
        key: object,
        future: asyncio.Future[Any],
        seconds: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Fail ``future`` in ``seconds`` unless :meth:`discard` (``key``) comes first."""
        when = loop.time() + seconds
        self._due[key] = (when, future)
        if self._timer is None or when < self._timer_at:
            self._arm(when, loop)

    def discard(self, key: object) -> None:
        self._due.pop(key, None)

    def close(self) -> None:
        """Forget every deadline (the futures are left as they are)."""
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time() + self.SLACK
        due = self._due
        expired = [key for key, (when, _) in due.items() if when <= now]
        for key in expired:
            _, future = due.pop(key)
            if not future.done():
                future.set_exception(TimeoutError())
        if due:
            self._arm(min(when for when, _ in due.values()), loop)


def why_stopped(task: asyncio.Task[Any]) -> tuple[str, BaseException | None]:
    """Why the finished ``task`` stopped, in words, and the exception that stopped it.

    For a client whose background task must run until the client is closed: its
    done callback uses this to fail what waits on it with a clear message.
    """
    if task.cancelled():
        return "was cancelled", None
    exc = task.exception()
    if exc is None:
        return "returned", None
    return f"failed: {type(exc).__name__}: {exc}", exc


class Closing:
    """``with obj: ...`` calls ``obj.close()`` at the end."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing:
    """``async with obj: ...`` awaits ``obj.close()`` at the end."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _AsyncClient(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_AsyncClient)


class BlockingClient(Closing, Generic[C]):
    """An async client (``make()``, called on the loop) driven from synchronous code.

    Its loop runs in a daemon thread, so the client's own tasks (receivers,
    heartbeats) go on between calls; :meth:`_run` may be called from several
    threads at once. After :meth:`close`, :meth:`_run` raises
    ``closed_error()`` (and :meth:`close` again does nothing).
    """

    def __init__(
        self, thread_name: str, make: Callable[[], C], closed_error: Callable[[], Exception]
    ) -> None:
        self._thread = LoopThread(thread_name)
        self._closed_error = closed_error

        async def create() -> C:
            return make()

        try:
            self._client: C = self._thread.run(create())
        except BaseException:
            self._thread.stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._thread.run(coro)
        except LoopStopped:
            raise self._closed_error() from None

    def close(self) -> None:
        try:
            self._thread.run(self._client.close())
        except LoopStopped:
            return  # closed already
        self._thread.stop()


E = TypeVar("E", bound=WorkError)


class Breakable(Generic[E]):
    """A client (job pool, dispatcher) that can stop working for good.

    :meth:`_mark_broken` records why, once, and logs it; from then on every call
    fails with :meth:`_broken_error`, an ``_error_type`` with code ``broken``.
    """

    _error_type: ClassVar[type[WorkError]]
    _broken: tuple[str, BaseException | None] | None = None  # (message, cause)

    @property
    def broken(self) -> bool:
        """True once it stopped working (see the module docs); create a new one."""
        return self._broken is not None

    def _broken_error(self, job_id: bytes = b"") -> E:
        assert self._broken is not None
        message, cause = self._broken
        error = self._error_type(message, code="broken", job_id=job_id)
        error.__cause__ = cause
        error.__suppress_context__ = True
        return error  # type: ignore[return-value]

    def _mark_broken(self, message: str, cause: BaseException | None, log: logging.Logger) -> None:
        """Record why it broke and say so loudly (with the traceback when there is one)."""
        self._broken = (message, cause)
        if cause is None:
            log.warning("%s", message)
        else:
            log.error("%s", message, exc_info=cause)
