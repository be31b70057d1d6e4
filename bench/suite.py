"""The measurement run: start each stack, check it, drive it with wrk, record everything."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import content, report, wrk
from bench.procs import REPO, ProcessGroup, Sampler, StackFailed, run_measured
from bench.stackdefs import BASELINE, Launch, Stack, sanity_check, wait_ready

RESULTS_DIR = REPO / "bench" / "results"
DOCS_MD = REPO / "docs" / "performance.md"
DOCS_PNG = REPO / "docs" / "performance.png"


@dataclass
class Settings:
    warmup_s: float = 3.0
    duration_s: float = 10.0
    connections: tuple[int, ...] = (50, 200)
    routes: tuple[str, ...] = content.ROUTES
    wrk_threads: int = 1
    quick: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "connections": list(self.connections),
            "routes": list(self.routes),
            "wrk_threads": self.wrk_threads,
        }

    def stack_seconds(self) -> float:
        """Load-generation time for one stack (start-up and checks add a few seconds)."""
        return len(self.routes) * len(self.connections) * (self.warmup_s + self.duration_s)


Log = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import zmq

        libzmq: str | None = zmq.zmq_version()
    except ImportError:
        libzmq = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "libzmq": libzmq,
        "wrk": _first_line(["wrk", "-v"]),
        "mongrel2": _first_line(["dpkg-query", "-W", "-f", "${Version}", "mongrel2-core"]),
    }


# --------------------------------------------------------------------------- one stack


def _run_wrk(
    launch: Launch,
    route: str,
    connections: int,
    seconds: float,
    threads: int,
    sampler: Sampler | None,
) -> wrk.WrkResult:
    url = launch.url + content.PATHS[route]
    argv = wrk.command(url, connections, seconds, threads)
    if sampler is None:
        sampler = Sampler(list)  # nothing to sample (warm-up)
    status, out, err = run_measured(argv, "wrk", sampler, timeout=seconds + 30)
    if status != 0:
        raise StackFailed(f"wrk exited {status}: {err.strip()[:500]}")
    return wrk.parse_output(out)


def measure_stack(stack: Stack, settings: Settings, log: Log = say) -> dict[str, Any]:
    """Start, check, measure and stop one stack. Never raises for a stack's own failure."""
    entry: dict[str, Any] = {
        "name": stack.name,
        "label": stack.label,
        "kind": stack.kind,
        "description": stack.description,
        "handlers": stack.handlers,
        "packages": {p: version(p) for p in stack.packages},
        "status": "ok",
        "processes": [],
        "results": [],
    }
    reason = stack.unavailable()
    if reason:
        log(f"  {stack.name}: not available: {reason}")
        entry.update(status="not available", reason=reason, results=[])
        return entry
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{stack.name}-"))
    group = ProcessGroup(workdir)
    launch = Launch(group, workdir)
    try:
        stack.start(launch)
        wait_ready(launch)
        sanity_check(launch, stack.handlers)
        entry["processes"] = [p.describe() for p in group.procs]
        log(
            f"  {stack.name}: up on {launch.url}, responses checked "
            f"({', '.join(f'{p.name}={p.pid}' for p in group.procs)})"
        )
        for route in settings.routes:
            for level in settings.connections:
                if settings.warmup_s > 0:
                    _run_wrk(launch, route, level, settings.warmup_s, settings.wrk_threads, None)
                sampler = Sampler(group.targets)
                result = _run_wrk(
                    launch, route, level, settings.duration_s, settings.wrk_threads, sampler
                )
                group.check_alive()
                record = {
                    "route": route,
                    "connections": level,
                    **result.to_json(),
                    "processes": [p.to_json() for p in sampler.results()],
                }
                entry["results"].append(record)
                log(
                    f"    {route:5s} c={level:<4d} {result.rps:>10,.0f} req/s  "
                    f"p50 {result.p50_ms or 0:.2f} ms  p99 {result.p99_ms or 0:.2f} ms  "
                    f"errors {result.non2xx}/{result.total_socket_errors}  "
                    + "  ".join(f"{p.name} {p.cpu_pct:.0f}%" for p in sampler.results())
                )
    except (StackFailed, wrk.WrkError, OSError) as exc:
        log(f"  {stack.name}: FAILED: {exc}")
        entry.update(status="failed", reason=str(exc).strip()[:2000])
    except Exception as exc:  # one stack's bug must not cost the other stacks' figures
        log(f"  {stack.name}: FAILED: {exc!r}")
        entry.update(status="failed", reason=repr(exc)[:2000])
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return entry


# --------------------------------------------------------------------------- the run


def timestamp(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%d-%H%M%S")


def run_suite(
    stacks: Sequence[Stack],
    settings: Settings,
    *,
    handler_only: dict[str, Any] | Callable[[], dict[str, Any]] | None,
    jobs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    floor_paired: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    lowest_paired: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    log: Log = say,
) -> dict[str, Any]:
    """Every stack, then the handler-only figure, the paired windows and the jobs round
    trip. ``lowest_paired(data)`` measures again, in paired windows, the lowest cell of
    each stack-vs-stack target (``report.paired_targets``) once the stacks are done."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    data: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "quick": settings.quick,
        "settings": settings.to_json(),
        "machine": machine_info(),
        "baseline": BASELINE,
        "stacks": [],
        "handler_only": None,
        "jobs": None,
        "floor_paired": None,
        "lowest_paired": None,
    }
    data["machine"]["packages"] = {
        p: version(p)
        for p in (
            "takefive",
            "pyzmq",
            "orjson",
            "jinja2",
            "uvloop",
            "httptools",
            "starlette",
            "uvicorn",
            "aiohttp",
            "granian",
            "psutil",
            "matplotlib",
        )
    }
    for stack in stacks:
        log(f"{stack.label} [{stack.name}]")
        data["stacks"].append(measure_stack(stack, settings, log))
    if callable(handler_only):
        log("handler only (ZeroMQ in/out, no HTTP)")
        data["handler_only"] = handler_only()
    else:
        data["handler_only"] = handler_only
    if callable(floor_paired):
        log("the floor, paired (raw pyzmq + Mongrel2 and takefive + Mongrel2 in turns)")
        try:
            data["floor_paired"] = floor_paired()
        except Exception as exc:  # a stack that cannot start: reported, the run goes on
            data["floor_paired"] = {"reason": f"{type(exc).__name__}: {exc}"}
    else:
        data["floor_paired"] = floor_paired
    if lowest_paired is not None:
        log("the lowest cell of each stack-vs-stack target, paired")
        report.compute_ratios(data)
        data["lowest_paired"] = lowest_paired(data)
    if callable(jobs):
        log("jobs round trip (JobPool and one Python worker vs a raw PUSH/PULL loop)")
        data["jobs"] = jobs()
    else:
        data["jobs"] = jobs
    data["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data["seconds"] = round(time.monotonic() - t0, 1)
    report.compute_ratios(data)
    return data


def latest(pattern: str, directory: Path = RESULTS_DIR) -> Path | None:
    files = sorted(directory.glob(pattern))
    return files[-1] if files else None


def latest_soak(directory: Path = RESULTS_DIR) -> dict[str, Any] | None:
    path = latest("*-soak.json", directory)
    if path is None:
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def save(data: dict[str, Any], *, docs: bool, log: Log = say) -> Path:
    """Write results/<date>.json and .png; with ``docs``, docs/performance.md and .png."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(dt.datetime.fromisoformat(data["started"]))
    soak = latest_soak()
    data["targets"] = report.evaluate_targets(data, soak)
    json_path = RESULTS_DIR / f"{stamp}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    pngs = [RESULTS_DIR / f"{stamp}.png"]
    if docs:
        pngs.append(DOCS_PNG)
    try:
        report.write_chart(data, pngs)
    except Exception as exc:  # a chart is not worth losing the figures for
        log(f"chart not written: {exc!r}")
    if docs:
        report.write_docs(DOCS_MD, data, soak)
        log(f"wrote {DOCS_MD.relative_to(REPO)} and {DOCS_PNG.relative_to(REPO)}")
    log(f"wrote {json_path.relative_to(REPO)} and {pngs[0].relative_to(REPO)}")
    return json_path
