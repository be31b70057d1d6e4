"""``takefive serve MODULE:APP``: the gateway plus N handler processes, one command.

The handlers are ``python -m takefive run MODULE:APP`` processes talking to the gateway
over ``ipc://`` sockets in a private run directory (removed on exit). A handler that dies
is restarted with exponential backoff; SIGINT/SIGTERM stop the handlers first (so they can
finish what they are doing), then the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence

from .config import HandlerRoute, add_arguments, config_from_args
from .server import Gateway, _new_loop_factory

__all__ = ["Supervisor", "add_command", "main"]

log = logging.getLogger("takefive.gateway.serve")


class Supervisor:
    """Keeps ``workers`` copies of ``command`` running until :meth:`stop`."""

    def __init__(self, command: Sequence[str], workers: int = 1, *, min_backoff: float = 0.5,
                 max_backoff: float = 10.0, stable_after: float = 10.0,
                 grace: float = 10.0) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self.command = list(command)
        self.workers = workers
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.grace = grace
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Event | None = None

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._keep(n)) for n in range(self.workers)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values() if p.returncode is None]

    async def _keep(self, number: int) -> None:
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        backoff = self.min_backoff
        while not self._stopping.is_set():
            started = loop.time()
            try:
                process = await asyncio.create_subprocess_exec(*self.command)
            except OSError as exc:
                log.error("cannot start handler %d: %s", number, exc)
                returncode: int | None = None
            else:
                self.processes[number] = process
                log.info("handler %d started (pid %d)", number, process.pid)
                returncode = await process.wait()
            if self._stopping.is_set():
                return
            if loop.time() - started >= self.stable_after:
                backoff = self.min_backoff
            log.warning("handler %d exited (status %s); restarting in %.1f s", number,
                        returncode, backoff)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self.restarts += 1

    async def stop(self) -> None:
        """SIGTERM every handler, SIGKILL what is left after ``grace`` seconds."""
        if self._stopping is not None:
            self._stopping.set()
        running = [p for p in self.processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if running:
            waits = [asyncio.ensure_future(p.wait()) for p in running]
            _, pending = await asyncio.wait(waits, timeout=self.grace)
            for process in running:
                if process.returncode is None:
                    log.warning("handler pid %d ignored SIGTERM; killing it", process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


async def serve(gateway: Gateway, supervisor: Supervisor) -> None:
    """Run the gateway and the handlers until SIGINT/SIGTERM."""
    loop = asyncio.get_running_loop()
    await gateway.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await supervisor.start()
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await supervisor.stop()
        await gateway.stop()


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``takefive serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="serve an app over HTTP: the built-in gateway plus handler processes",
        description="Run the built-in gateway and N `takefive run MODULE:APP` handler "
        "processes connected to it over private ipc:// sockets. Ctrl-C stops everything.",
    )
    parser.add_argument("app", metavar="MODULE:APP",
                        help="e.g. examples/hello.py:app or pkg.web:app")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="handler processes (default 1)")
    add_arguments(parser, handler_routes=False)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.workers < 1:
        log.error("--workers must be at least 1")
        return 2
    run_dir = tempfile.mkdtemp(prefix="takefive-")
    try:
        send_spec = f"ipc://{run_dir}/requests"
        recv_spec = f"ipc://{run_dir}/replies"
        config = config_from_args(args, [HandlerRoute("/", send_spec, recv_spec, args.tnetstring)])
        command = [sys.executable, "-m", "takefive"]
        level = getattr(args, "log_level", None)
        if level:
            command += ["--log-level", level]
        command += ["run", args.app, "--send-spec", send_spec, "--recv-spec", recv_spec]
        log.info("run directory %s", run_dir)
        gateway = Gateway(config)
        supervisor = Supervisor(command, args.workers)
        with asyncio.Runner(loop_factory=_new_loop_factory()) as runner:
            try:
                runner.run(serve(gateway, supervisor))
            except OSError as exc:
                log.error("cannot serve: %s", exc)
                return 1
        return 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        if os.path.exists(run_dir):  # pragma: no cover
            log.warning("could not remove %s", run_dir)
