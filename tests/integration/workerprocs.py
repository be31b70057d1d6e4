"""Start the example workers (Python, C, Ruby) as real processes, for the worker tests.

The C worker is built with ``make -C examples/workers/c`` (idempotent); the Ruby one
needs Debian's ruby-ffi-rzmq. A worker that cannot be built or run skips its tests,
or FAILS them when CI=true.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ROOT / "examples" / "workers"
TASKS = WORKERS / "python" / "tasks.py"
LANGUAGES = ["python", "c", "ruby"]


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@functools.cache
def _build_c() -> str | None:
    proc = subprocess.run(
        ["make", "-s", "-C", str(WORKERS / "c")], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        return f"make -C examples/workers/c failed:\n{proc.stdout}{proc.stderr}"
    return None


@functools.cache
def _check_ruby() -> str | None:
    try:
        proc = subprocess.run(
            ["ruby", "-e", 'require "ffi-rzmq"; require "json"'],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        return "ruby is not installed (apt-get install ruby-ffi-rzmq)"
    if proc.returncode != 0:
        return f"ruby cannot load ffi-rzmq (apt-get install ruby-ffi-rzmq): {proc.stderr}"
    return None


def require(language: str) -> None:
    """Skip (or fail under CI) when ``language``'s worker cannot run here."""
    problem = {"python": lambda: None, "c": _build_c, "ruby": _check_ruby}[language]()
    if problem:
        _unavailable(problem)


def command(
    language: str,
    *,
    connect: tuple[str, ...] = (),
    service: tuple[str, ...] = (),
    heartbeat: float = 0.25,
) -> list[str]:
    if language == "python":
        names = ("echo", "pid", "sleep", "fail")
        cmd = [sys.executable, "-m", "takefive.worker", *(f"{TASKS}:{n}" for n in names)]
    elif language == "c":
        cmd = [str(WORKERS / "c" / "worker")]
    elif language == "ruby":
        cmd = ["ruby", str(WORKERS / "ruby" / "worker.rb")]
    else:  # pragma: no cover
        raise ValueError(language)
    for endpoint in connect:
        cmd += ["--connect", endpoint]
    for endpoint in service:
        cmd += ["--service", endpoint]
    return [*cmd, "--heartbeat", str(heartbeat)]


class WorkerProcs:
    """Worker processes started by one test; all stopped (and logs kept) at teardown."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, language: str, **kw: object) -> subprocess.Popen[bytes]:
        require(language)
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            command(language, **kw),  # type: ignore[arg-type]
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "TAKEFIVE_LOG_LEVEL": "WARNING"},
        )
        self.procs.append((proc, log))
        return proc

    def logs(self) -> str:
        out = []
        for proc, log in self.procs:
            log.seek(0)
            out.append(f"--- worker pid {proc.pid} rc={proc.returncode}\n{log.read().decode()}")
        return "\n".join(out)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc, _ in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(name="worker_procs")
def worker_procs_fixture(request: pytest.FixtureRequest) -> Iterator[WorkerProcs]:
    procs = WorkerProcs()
    yield procs
    procs.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(procs.logs())
    for _, log in procs.procs:
        log.close()


def pid_of(info: str) -> int:
    """``python/1234@host`` -> 1234 (the worker-info convention of the examples)."""
    return int(info.split("/", 1)[1].split("@", 1)[0])
