"""`takefive serve MODULE:APP`: gateway + handler processes in one command (the quick start)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def get(port: int, path: str = "/", timeout: float = 2) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_hello(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if get(port) == (200, b"Hello, World!"):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "takefive serve did not answer"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "takefive", "serve", "examples/hello.py:app",
             "--listen", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, port, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for child in children(proc.pid):
            os.kill(child, signal.SIGKILL)


def test_serve_hello_restart_and_clean_exit(served: tuple[subprocess.Popen[bytes], int, Path]
                                            ) -> None:
    proc, port, log_path = served
    wait_hello(port)
    deadline = time.monotonic() + 10
    while len(children(proc.pid)) < 2:
        assert time.monotonic() < deadline, "two handler processes expected"
        time.sleep(0.05)
    match = re.search(r"run directory (\S+)", log_path.read_text())
    assert match
    run_dir = Path(match.group(1))
    assert run_dir.is_dir()

    # A handler that dies is replaced; the other keeps serving meanwhile.
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    # (a request already queued to the victim is lost, as with Mongrel2: retry)
    wait_hello(port)
    deadline = time.monotonic() + 15
    while True:
        kids = children(proc.pid)
        if len(kids) == 2 and victim not in kids:
            break
        assert time.monotonic() < deadline, f"handler not restarted: {kids}"
        time.sleep(0.05)
    wait_hello(port)

    # SIGTERM: handlers stop, the gateway stops, the run directory is removed.
    kids = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists() or "zombie" in Path(
            f"/proc/{kid}/status").read_text(errors="replace").lower()
    assert not run_dir.exists()
    assert "restarting" in log_path.read_text()


def test_serve_bad_app_reports_and_keeps_retrying_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "takefive", "serve", "no_such_module_xyz:app",
         "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:  # the gateway answers 503 (no handler) instead of hanging
            try:
                started = time.monotonic()
                status, _ = get(port, timeout=10)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 503
        assert time.monotonic() - started < 5
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert b"no_such_module_xyz" in out
