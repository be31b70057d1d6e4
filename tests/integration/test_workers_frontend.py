"""A handler awaiting a service while 200 concurrent HTTP requests come through a
real front end (Mongrel2, and the built-in gateway): every one is answered."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .harness import Frontend, free_port, http_request, wait_for
from .workerprocs import WorkerProcs, worker_procs_fixture  # noqa: F401

CONCURRENT = 200


def test_handler_awaits_a_service_under_200_concurrent_requests(
    frontend: Frontend, worker_procs: WorkerProcs
) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    frontend.start_handler("workers_service_app:app", env={"TAKEFIVE_TEST_DISPATCHER": endpoint})
    procs = [worker_procs.start("python", service=(endpoint,)) for _ in range(3)]

    def all_workers_ready() -> bool:
        try:
            status, _, body = http_request(frontend.http_port, "GET", "/workers", timeout=2)
        except OSError:
            return False
        return status == 200 and json.loads(body)["workers"] == 3

    wait_for(all_workers_ready, 30, what="the handler and its 3 workers")

    def one(n: int) -> tuple[int, Any]:
        status, _, body = http_request(frontend.http_port, "GET", f"/svc/{n}", timeout=60)
        return status, json.loads(body)

    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(one, range(CONCURRENT)))
    elapsed = time.monotonic() - started

    for n, (status, body) in enumerate(answers):
        assert status == 200, (n, body)
        assert body["n"] == n and body["echoed"] == {"n": n}, body
    used = {body["pid"] for _, body in answers}
    assert used <= {p.pid for p in procs} and len(used) >= 2, used
    assert elapsed < 60
