"""``python -m bench profile``: py-spy flame graphs of a stack's Python processes under load.

Starts the stack, warms it up, then runs wrk for ``duration`` seconds while
``py-spy record`` samples every Python process of the stack (Mongrel2 is C and is
left out). The graphs go to bench/results/profile-<stack>-<process>-<date>.svg.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import content, wrk
from bench.procs import ProcessGroup, StackFailed
from bench.stackdefs import PY, Launch, Stack, sanity_check, wait_ready
from bench.suite import RESULTS_DIR, say, timestamp


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(PY).with_name("py-spy")) if Path(PY).with_name("py-spy").exists() else None
    )


def run(stack: Stack, route: str, connections: int, duration: float, rate: int,
        fmt: str) -> list[Path]:  # fmt: skip
    exe = py_spy()
    if exe is None:
        say("py-spy is not installed: .venv/bin/pip install py-spy")
        return []
    reason = stack.unavailable()
    if reason:
        say(f"{stack.name}: not available: {reason}")
        return []
    stamp = timestamp(dt.datetime.now(dt.UTC))
    suffix = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[fmt]
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-profile-{stack.name}-"))
    group = ProcessGroup(workdir)
    launch = Launch(group, workdir)
    outputs: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        stack.start(launch)
        wait_ready(launch)
        sanity_check(launch, stack.handlers)
        url = launch.url + content.PATHS[route]
        wrk.run(url, connections, 2.0)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        for name, process in group.targets():
            if "python" not in " ".join(process.cmdline()[:1]) and name != "granian.child1":
                continue
            out = RESULTS_DIR / f"profile-{stack.name}-{name}-{stamp}.{suffix}"
            spies.append(subprocess.Popen(
                [exe, "record", "--pid", str(process.pid), "--duration", str(round(duration)),
                 "--rate", str(rate), "--format", fmt, "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ))  # fmt: skip
            outputs.append(out)
        result = wrk.run(url, connections, duration)
        say(f"{stack.name} /{route} c={connections}: {result.rps:,.0f} req/s while profiled")
        for spy in spies:
            try:
                _, err = spy.communicate(timeout=duration + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy.returncode != 0:
                say(f"py-spy exited {spy.returncode}: {err.decode(errors='replace')[-500:]}")
    except (StackFailed, wrk.WrkError, OSError) as exc:
        say(f"{stack.name}: FAILED: {exc}")
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return [p for p in outputs if p.exists()]
