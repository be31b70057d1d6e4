"""Python workers running in threads of the test process (real sockets, real protocol).

Shared by test_jobs.py and test_services.py: ``from workerthreads import Workers,
workers_fixture``, then take the ``workers`` fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from takefive.worker import Worker


class Workers:
    """Workers started by one test, each with its own context; all stopped at teardown."""

    def __init__(self) -> None:
        self.running: list[tuple[Worker, threading.Thread]] = []

    def start(self, functions: dict[str, Callable[[Any], Any]], **kw: Any) -> Worker:
        kw.setdefault("heartbeat", 0.2)  # for --service links; unused by jobs-only workers
        worker = Worker(functions, context=zmq.Context(), **kw)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.running.append((worker, thread))
        return worker

    def stop(self) -> None:
        for worker, _ in self.running:
            worker.stop()
        for _, thread in self.running:
            thread.join(timeout=10)
            assert not thread.is_alive()


@pytest.fixture(name="workers")
def workers_fixture() -> Iterator[Workers]:
    w = Workers()
    yield w
    w.stop()
