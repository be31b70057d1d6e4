"""examples/job_distributor: the seed's PUSH/PULL job distributor, run as real processes.

Real libzmq sockets over a temporary ipc:// endpoint; the scripts run as the user would run them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "job_distributor"
DISTRIBUTOR = EXAMPLE_DIR / "distributor.py"
CONSUMER = EXAMPLE_DIR / "consumer.py"
DEADLINE = 30.0


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.text().splitlines() if line.startswith(prefix)]

    def received(self) -> list[str]:
        return self.lines("Received: ")

    def wait(self, timeout: float = DEADLINE) -> int:
        return self.popen.wait(timeout=timeout)

    def describe(self) -> str:
        return f"stdout:\n{self.text()}\nstderr:\n{self.err.read_text(errors='replace')}"


@pytest.fixture
def endpoint() -> Iterator[str]:
    # A short path: ipc:// paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="tf-jobs-") as tmp:
        yield f"ipc://{tmp}/jobs"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def _start(script: Path, *args: str) -> Proc:
        n = len(procs)
        out, err = tmp_path / f"{script.stem}-{n}.out", tmp_path / f"{script.stem}-{n}.err"
        with out.open("wb") as fout, err.open("wb") as ferr:
            popen = subprocess.Popen(
                [sys.executable, str(script), *args],
                stdout=fout,
                stderr=ferr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        proc = Proc(popen, out, err)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(timeout=DEADLINE)


def wait_until(condition: Callable[[], bool], what: str, procs: list[Proc]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(p.describe() for p in procs)
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.02)


def assert_clean_exit(proc: Proc) -> None:
    code = proc.wait()
    assert code == 0, proc.describe()
    assert "Traceback" not in proc.err.read_text(), proc.describe()


def test_one_consumer_gets_every_job_in_order(endpoint: str, start: Callable[..., Proc]) -> None:
    count = 25
    consumer = start(CONSUMER, "--endpoint", endpoint, "--count", str(count))
    distributor = start(
        DISTRIBUTOR, "--endpoint", endpoint, "--count", str(count), "--interval", "0.01"
    )
    assert_clean_exit(distributor)
    assert_clean_exit(consumer)  # --count makes it stop by itself
    expected = [f"hello {i}" for i in range(1, count + 1)]
    assert distributor.lines("Sending ") == expected
    assert consumer.received() == expected


def test_two_consumers_share_the_jobs_round_robin(
    endpoint: str, start: Callable[..., Proc]
) -> None:
    count = 40
    consumers = [start(CONSUMER, "--endpoint", endpoint) for _ in range(2)]
    wait_until(
        lambda: all("Waiting for jobs" in c.text() for c in consumers), "consumers", consumers
    )
    distributor = start(
        DISTRIBUTOR,
        "--endpoint",
        endpoint,
        "--count",
        str(count),
        "--interval",
        "0.01",
        "--wait-consumers",
        "2",
    )
    procs = [*consumers, distributor]
    assert_clean_exit(distributor)
    wait_until(
        lambda: sum(len(c.received()) for c in consumers) >= count, "all jobs to arrive", procs
    )
    for consumer in consumers:  # Ctrl-C
        consumer.popen.send_signal(signal.SIGINT)
    for consumer in consumers:
        assert_clean_exit(consumer)
        assert "Interrupted after receiving" in consumer.text()

    got = [job for c in consumers for job in c.received()]
    expected = [f"hello {i}" for i in range(1, count + 1)]
    assert sorted(got, key=lambda s: int(s.split()[1])) == expected  # each job exactly once
    for consumer in consumers:
        jobs = consumer.received()
        assert jobs, f"round robin: a consumer got nothing\n{consumer.describe()}"
        numbers = [int(j.split()[1]) for j in jobs]
        assert numbers == sorted(numbers)  # one PUSH pipe keeps its order


def test_ctrl_c_stops_a_waiting_distributor_and_consumer(
    endpoint: str, start: Callable[..., Proc]
) -> None:
    # The distributor blocks on its first send (no consumer yet) ...
    distributor = start(DISTRIBUTOR, "--endpoint", endpoint, "--interval", "0.01")
    wait_until(lambda: "Distributing jobs" in distributor.text(), "distributor", [distributor])
    distributor.popen.send_signal(signal.SIGINT)
    assert_clean_exit(distributor)
    assert "Interrupted after sending 0 jobs" in distributor.text()

    # ... and a consumer with no distributor just waits, until Ctrl-C.
    consumer = start(CONSUMER, "--endpoint", endpoint)
    wait_until(lambda: "Waiting for jobs" in consumer.text(), "consumer", [consumer])
    consumer.popen.send_signal(signal.SIGINT)
    assert_clean_exit(consumer)
    assert "Interrupted after receiving 0 jobs" in consumer.text()


@pytest.mark.parametrize("script", [DISTRIBUTOR, CONSUMER], ids=["distributor", "consumer"])
def test_bad_arguments_are_rejected(script: Path, start: Callable[..., Proc]) -> None:
    proc = start(script, "--count", "-1")
    assert proc.wait() == 2
    assert "--count must be >= 0" in proc.err.read_text()
