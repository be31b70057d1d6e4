"""The soak run: a bounded number of requests against one stack, watching RSS.

RSS of every process is sampled after a short warm-up (start), at the half-way mark
(after the first million of 2,000,000) and at the end; the figure is the growth from
the mark to the end, which leaves out the start-up growth (imports, caches, buffers)
and keeps what a leak would add. wrk runs in chunks of at most 10 s, sized so that one
ends right at the mark; the run stops at ``--requests`` or ``--time-limit``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import content, wrk
from bench.procs import ProcessGroup, StackFailed, rss_now
from bench.report import summarize_soak
from bench.stackdefs import Launch, Stack, sanity_check, wait_ready
from bench.suite import RESULTS_DIR, say, timestamp


def _chunk(done: int, target: int, rate: float | None, limit_left: float) -> float:
    if rate is None or rate <= 0:
        return max(1.0, min(5.0, limit_left))
    seconds = (target - done) / rate
    return max(1.0, min(10.0, round(seconds), limit_left))


def run(
    stack: Stack, requests: int, route: str, connections: int, time_limit: float
) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {
        "kind": "soak",
        "started": started.isoformat(timespec="seconds"),
        "stack": stack.name,
        "stack_label": stack.label,
        "route": route,
        "connections": connections,
        "requests_target": requests,
        "mark_requests": requests // 2,
        "time_limit_s": time_limit,
        "requests_done": 0,
        "seconds": 0.0,
        "processes": [],
        "max_growth": None,
        "max_growth_process": None,
    }
    reason = stack.unavailable()
    if reason:
        result["error"] = f"not available: {reason}"
        say(f"soak: {stack.name} not available: {reason}")
        return result
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-soak-{stack.name}-"))
    group = ProcessGroup(workdir)
    launch = Launch(group, workdir)
    url = launch.url + content.PATHS[route]
    try:
        stack.start(launch)
        wait_ready(launch)
        sanity_check(launch, stack.handlers)
        wrk.run(url, connections, 2.0)  # warm-up, not counted
        time.sleep(0.5)
        start = rss_now(group)
        say(f"soak: {stack.label}, {requests:,} requests of /{route} at c={connections}; "
            f"RSS at start: {_fmt(start)}")  # fmt: skip
        mark: dict[str, float] | None = None
        done = non2xx = socket_errors = 0
        rate: float | None = None
        t0 = time.monotonic()
        while done < requests:
            left = time_limit - (time.monotonic() - t0)
            if left < 1:
                say("soak: time limit reached")
                break
            target = result["mark_requests"] if mark is None else requests
            seconds = _chunk(done, target, rate, left)
            chunk = wrk.run(url, connections, seconds)
            group.check_alive()
            done += chunk.requests
            non2xx += chunk.non2xx
            socket_errors += chunk.total_socket_errors
            rate = chunk.rps
            if mark is None and done >= result["mark_requests"]:
                mark = rss_now(group)
                result["mark_done"] = done
                say(f"soak: {done:,} requests; RSS {_fmt(mark)}")
        end = rss_now(group)
        elapsed = time.monotonic() - t0
        say(f"soak: {done:,} requests in {elapsed:.0f} s; RSS at end: {_fmt(end)}")
        rows, worst, worst_name = summarize_soak(start, mark, end)
        result.update(
            requests_done=done, seconds=round(elapsed, 1), rps_avg=round(done / elapsed, 1),
            non2xx=non2xx, socket_errors=socket_errors, processes=rows,
            max_growth=worst, max_growth_process=worst_name, complete=done >= requests,
            process_list=[p.describe() for p in group.procs],
        )  # fmt: skip
    except (StackFailed, wrk.WrkError, OSError) as exc:
        result["error"] = str(exc)[:2000]
        say(f"soak: FAILED: {exc}")
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _fmt(rss: dict[str, float]) -> str:
    return ", ".join(f"{name} {mb:.1f} MiB" for name, mb in rss.items())


def save(result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = timestamp(dt.datetime.fromisoformat(result["started"]))
    path = RESULTS_DIR / f"{stamp}-soak.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if result.get("max_growth") is not None:
        verdict = "flat" if result["max_growth"] < 0.05 else "GROWING"
        say(f"soak: largest growth {100 * result['max_growth']:+.2f}% "
            f"({result['max_growth_process']}): {verdict}")  # fmt: skip
    return path
