"""Jobs/s round trip through one Python worker, against a raw pyzmq PUSH/PULL loop.

    python bench/bench_jobs.py [--jobs 50000] [--window 500] [--repeat 3]

Both legs run in this same invocation, on loopback TCP, with the caller in this
process and the worker in a child process, and the same window of jobs in flight:

* ``raw``: a synchronous pyzmq PUSH/PULL caller and a child that ``recv()``s one
  frame and ``send()``s it back: the floor, with no protocol, no encoding, no
  futures;
* ``takefive``: ``JobPool.submit`` (asyncio, a future and a deadline per job,
  batched T5W1 messages, JSON payloads) to one ``takefive worker`` running
  ``echo``, from ``window`` coroutines awaiting one job at a time;
* ``takefive-map``: the same jobs through ``JobPool.map``, in chunks of
  ``--chunk`` jobs (one future per chunk), ``window / chunk`` chunks in flight.

The figures go to stdout as one JSON document; ``ratio`` is takefive/raw and
``map_ratio`` takefive-map/raw (the target is >= 0.7). Best of ``--repeat`` runs
per leg, the legs interleaved. Bounded: every leg has a deadline and the
children are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "examples" / "workers" / "python" / "tasks.py"
DEADLINE = 120.0  # seconds, per leg

RAW_WORKER = """
import sys, zmq
ctx = zmq.Context()
pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
pull.connect(sys.argv[1]); push.connect(sys.argv[2])
recv, send = pull.recv, push.send
while True:
    send(recv(copy=False), copy=False)
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_raw(jobs: int, window: int) -> float:
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for s in (push, pull):
        s.setsockopt(zmq.LINGER, 0)
    jobs_ep = f"tcp://127.0.0.1:{push.bind_to_random_port('tcp://127.0.0.1')}"
    results_ep = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"
    proc = subprocess.Popen([sys.executable, "-c", RAW_WORKER, jobs_ep, results_ep])
    try:
        payload = json.dumps({"i": 12345}).encode()
        # Warm up: the worker is connected once one message comes back.
        push.send(payload)
        if not pull.poll(30_000):
            raise RuntimeError("raw worker did not answer")
        pull.recv()
        deadline = time.monotonic() + DEADLINE
        started = time.perf_counter()
        sent = received = 0
        while received < jobs:
            while sent < jobs and sent - received < window:
                push.send(payload)
                sent += 1
            if not pull.poll(10_000) or time.monotonic() > deadline:
                raise RuntimeError("raw loop stalled")
            pull.recv()
            received += 1
        return jobs / (time.perf_counter() - started)
    finally:
        _stop(proc)
        push.close(0)
        pull.close(0)
        ctx.term()


async def _bench_takefive(jobs: int, window: int, chunk: int) -> float:
    """``chunk`` 0: ``submit`` from ``window`` lanes; else ``map`` in chunks of ``chunk``."""
    from takefive.jobs import JobPool

    async with JobPool(timeout=60) as pool:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
            [
                sys.executable,
                "-m",
                "takefive.worker",
                f"{TASKS}:echo",
                "--connect",
                pool.endpoint,
            ],
            env={**os.environ, "TAKEFIVE_LOG_LEVEL": "WARNING"},
        )
        try:
            await pool.submit("echo", {"i": 0}, timeout=30)  # connected
            payload = {"i": 12345}
            submit, map_ = pool.submit, pool.map
            started = time.perf_counter()

            async def lane(count: int) -> None:
                for _ in range(count):
                    await submit("echo", payload)

            async def map_lane(count: int) -> None:
                while count > 0:
                    await map_("echo", [payload] * min(chunk, count))
                    count -= chunk

            lanes = window // chunk if chunk else window
            counts = [jobs // lanes + (1 if k < jobs % lanes else 0) for k in range(lanes)]
            async with asyncio.timeout(DEADLINE):
                await asyncio.gather(*((map_lane if chunk else lane)(n) for n in counts))
            return jobs / (time.perf_counter() - started)
        finally:
            _stop(proc)


def bench_takefive(jobs: int, window: int, chunk: int = 0) -> float:
    try:
        import uvloop

        return uvloop.run(_bench_takefive(jobs, window, chunk))
    except ImportError:  # pragma: no cover
        return asyncio.run(_bench_takefive(jobs, window, chunk))


def measure(
    jobs: int = 50_000, window: int = 500, repeat: int = 3, chunk: int = 50
) -> dict[str, Any]:
    """Every leg ``repeat`` times, interleaved; the best of each (a JSON-able dict)."""
    raw_runs, takefive_runs, map_runs = [], [], []
    for _ in range(repeat):  # interleaved, so drifting load hits every leg
        raw_runs.append(bench_raw(jobs, window))
        takefive_runs.append(bench_takefive(jobs, window))
        map_runs.append(bench_takefive(jobs, window, chunk))
    raw, tf, tf_map = max(raw_runs), max(takefive_runs), max(map_runs)
    return {
        "benchmark": "jobs_round_trip",
        "description": (
            "jobs/s through one Python worker (echo, JSON), by submit() and by map(), "
            "vs a raw pyzmq PUSH/PULL loop"
        ),
        "jobs": jobs,
        "window": window,
        "repeat": repeat,
        "chunk": chunk,
        "raw_jobs_per_s": round(raw),
        "takefive_jobs_per_s": round(tf),
        "takefive_map_jobs_per_s": round(tf_map),
        "ratio": round(tf / raw, 3),
        "map_ratio": round(tf_map / raw, 3),
        "target_ratio": 0.7,
        "meets_target": tf / raw >= 0.7,
        "map_meets_target": tf_map / raw >= 0.7,
        "raw_runs": [round(r) for r in raw_runs],
        "takefive_runs": [round(r) for r in takefive_runs],
        "takefive_map_runs": [round(r) for r in map_runs],
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "zmq": zmq.zmq_version(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs per run")
    parser.add_argument("--window", type=int, default=500, help="jobs in flight")
    parser.add_argument("--repeat", type=int, default=3, help="runs per leg (best kept)")
    parser.add_argument("--chunk", type=int, default=50, help="jobs per map() call")
    args = parser.parse_args()
    result = measure(args.jobs, args.window, args.repeat, args.chunk)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
