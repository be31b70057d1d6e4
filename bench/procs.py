"""Processes of a stack: start them with logs, watch them, sample RSS and CPU, stop them.

Every process a stack starts is a named :class:`Proc`; its children (granian's worker,
for instance) are found through psutil and sampled too. :class:`Sampler` runs in a
thread during a measured window and reports, per process, the peak RSS seen and the
CPU used as a percentage of one core (100 = one core busy all the window; this
machine has ``os.cpu_count()`` cores).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent


class StackFailed(RuntimeError):
    """A stack could not be started or answered wrongly."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None
    pid: int
    log_path: Path | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "cmdline": self.argv}

    def log_tail(self, size: int = 1500) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-size:]
        return data.decode("utf-8", "replace")


class ProcessGroup:
    """The processes of one stack, stopped together (children first)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self._stoppers: list[Callable[[], object]] = []

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(name, list(argv), popen, popen.pid, log_path)
        self.procs.append(proc)
        return proc

    def adopt(
        self,
        name: str,
        pid: int,
        argv: Sequence[str],
        stop: Callable[[], object] | None = None,
        log_path: Path | None = None,
    ) -> Proc:
        """Track a process started by someone else (e.g. Mongrel2 via takefive.mongrel2)."""
        proc = Proc(name, list(argv), None, pid, log_path)
        self.procs.append(proc)
        if stop is not None:
            self._stoppers.append(stop)
        return proc

    def check_alive(self) -> None:
        for proc in self.procs:
            code = proc.popen.poll() if proc.popen is not None else None
            if proc.popen is None and not psutil.pid_exists(proc.pid):
                code = -1
            if code is not None:
                raise StackFailed(f"{proc.name} exited ({code}):\n{proc.log_tail()}")

    def targets(self) -> list[tuple[str, psutil.Process]]:
        """Every live process of the stack, children included, with a display name."""
        found: list[tuple[str, psutil.Process]] = []
        for proc in self.procs:
            try:
                top = psutil.Process(proc.pid)
                found.append((proc.name, top))
                for n, child in enumerate(top.children(recursive=True), 1):
                    found.append((f"{proc.name}.child{n}", child))
            except psutil.Error:
                continue
        return found

    def stop(self, timeout: float = 5.0) -> None:
        """SIGINT, then SIGTERM, then SIGKILL, each with a deadline; never raises."""
        for stopper in reversed(self._stoppers):
            try:
                stopper()
            except Exception:
                pass
        popens = [p.popen for p in self.procs if p.popen is not None and p.popen.poll() is None]
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            alive = [p for p in popens if p.poll() is None]
            if not alive:
                break
            for p in alive:
                try:
                    # Each process leads its own session: signal its whole group (children too).
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            for p in alive:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        self._stoppers.clear()


@dataclass
class ProcStats:
    name: str
    pid: int
    peak_rss_mb: float
    cpu_pct: float

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "cpu_pct": round(self.cpu_pct, 1),
        }


@dataclass
class _Track:
    name: str
    process: psutil.Process
    cpu_start: float
    peak_rss: int = 0
    cpu_last: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class Sampler:
    """Samples RSS every ``interval`` seconds and CPU over the window, in a thread."""

    def __init__(
        self, targets: Callable[[], list[tuple[str, psutil.Process]]], interval: float = 0.1
    ) -> None:
        self._targets = targets
        self.interval = interval
        self._tracks: dict[int, _Track] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._external: list[ProcStats] = []
        self.started = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _refresh(self) -> None:
        for name, process in self._targets():
            if process.pid in self._tracks:
                continue
            try:
                cpu = _cpu(process)
            except psutil.Error:
                continue
            self._tracks[process.pid] = _Track(name, process, cpu, cpu_last=cpu)

    def _sample(self) -> None:
        for track in self._tracks.values():
            try:
                with track.process.oneshot():
                    track.peak_rss = max(track.peak_rss, track.process.memory_info().rss)
                    track.cpu_last = _cpu(track.process)
            except psutil.Error:
                continue  # exited: keep the last figures

    def _loop(self) -> None:
        ticks = 0
        while not self._stop.wait(self.interval):
            ticks += 1
            if ticks % 10 == 0:
                self._refresh()
            self._sample()

    def start(self) -> None:
        self.started = time.monotonic()
        self._refresh()
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._sample()
        self.elapsed = time.monotonic() - self.started

    def add_cpu(self, name: str, pid: int, cpu_seconds: float, max_rss_kb: int) -> None:
        """Figures of a process measured another way (wrk, from its rusage)."""
        self._external.append(
            ProcStats(name, pid, max_rss_kb / 1024, 100.0 * cpu_seconds / max(self.elapsed, 1e-9))
        )

    def results(self) -> list[ProcStats]:
        wall = max(self.elapsed, 1e-9)
        stats = [
            ProcStats(
                t.name, t.process.pid, t.peak_rss / 2**20, 100.0 * (t.cpu_last - t.cpu_start) / wall
            )
            for t in self._tracks.values()
        ]
        return stats + self._external


def rss_now(group: ProcessGroup) -> dict[str, float]:
    """Current RSS (MiB) of every process of a group, by name."""
    out: dict[str, float] = {}
    for name, process in group.targets():
        try:
            out[name] = process.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return out


def run_measured(
    argv: Sequence[str], name: str, sampler: Sampler, timeout: float
) -> tuple[int, str, str]:
    """Run a load generator (wrk, the feeder) to completion inside a sampled window.

    Its own CPU time and peak RSS come from its rusage (exact, even though it has exited
    by the time the window closes). Returns (exit status, stdout, stderr).
    """
    base = Path(tempfile.gettempdir()) / f"bench-{os.getpid()}-{name}"
    out_path, err_path = base.with_suffix(".out"), base.with_suffix(".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    sampler.start()
    deadline = time.monotonic() + timeout
    status = None
    rusage = None
    while time.monotonic() < deadline:
        pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    else:
        popen.kill()
        _, status, rusage = os.wait4(popen.pid, 0)
    popen.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    if rusage is not None:
        sampler.add_cpu(name, popen.pid, rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss)
    stdout = out_path.read_text("utf-8", "replace")
    stderr = err_path.read_text("utf-8", "replace")
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return popen.returncode, stdout, stderr
