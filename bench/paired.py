"""A paired measurement of two stacks: both up at once, measured in turns, A B B A ...

On a noisy machine (a shared VM whose speed drifts by 30-40% over minutes) the ratio of two
stacks measured minutes apart carries the drift. Here both stacks run side by side (the idle
one costs nothing) and wrk drives them in alternation with short windows, A B then B A, so
each pair of windows sees nearly the same machine and neither stack is always measured
first; the figure is the median of the per-pair ratios, with their spread. A tool to
check a borderline ratio, e.g. the floor:

    python -m bench paired --stacks raw-m2,takefive-m2-1 --route hello --rounds 5

The full run ends with these for the floor (raw-m2 and takefive-m2-1 on /hello, pinned
with bench/placement.py's ``front_end_alone``: Mongrel2 on one CPU, the handler and wrk
on the other) and for the lowest cell of each other stack-vs-stack target (not pinned:
most of those pairs include uvicorn, which has no front end process to give a CPU of its
own), and judges the targets on them (bench/report.py).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import content, wrk

if TYPE_CHECKING:  # the stacks need psutil (the bench extra); pair_ratios does not
    from bench.placement import Placement
    from bench.stackdefs import Launch, Stack


def pair_ratios(a_rps: list[float], b_rps: list[float]) -> dict[str, Any]:
    """B/A per pair of windows: the median, the lowest and the highest, and every one."""
    if len(a_rps) != len(b_rps) or not a_rps:
        raise ValueError("one B window per A window, at least one pair")
    ratios = [b / a for a, b in zip(a_rps, b_rps, strict=True) if a > 0]
    if not ratios:
        raise ValueError("stack A answered nothing")
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "ratios": [round(r, 4) for r in ratios],
    }


def _start(stack: Stack, stop: ExitStack) -> Launch:
    from bench.procs import ProcessGroup
    from bench.stackdefs import Launch, sanity_check, wait_ready

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-paired-{stack.name}-"))
    stop.callback(shutil.rmtree, workdir, ignore_errors=True)
    group = ProcessGroup(workdir)
    stop.callback(group.stop)
    launch = Launch(group, workdir)
    stack.start(launch)
    wait_ready(launch)
    sanity_check(launch, stack.handlers)
    return launch


def window_seconds(seconds: float) -> int:
    """What wrk runs for a window of ``seconds`` (whole seconds, at least 1)."""
    return max(1, round(seconds))


def _cpu_seconds(launch: Launch) -> dict[str, float]:
    """CPU time (user + system, all threads) of every process of a stack, by name."""
    import psutil

    out: dict[str, float] = {}
    for name, process in launch.group.targets():
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        out[name] = times.user + times.system
    return out


def cpu_per_request(windows: list[dict[str, float]]) -> dict[str, float]:
    """Each process's median over the windows of its CPU microseconds per request."""
    names = sorted({name for window in windows for name in window})
    return {
        name: round(statistics.median(w[name] for w in windows if name in w), 2) for name in names
    }


def measure(
    a: Stack,
    b: Stack,
    route: str,
    connections: tuple[int, ...],
    rounds: int,
    seconds: float,
    warmup: float = 2.0,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """``rounds`` pairs of ``seconds`` windows per connection level; B's ratio to A.

    With a ``placement`` (bench/placement.py), both stacks' processes and wrk are
    pinned to its CPUs, the same for A and B; both stacks must have a front end
    process (Mongrel2 or the gateway) to give its CPU to.

    Each window also measures the CPU time of every process of the measured stack:
    ``a_cpu_us`` / ``b_cpu_us`` are each process's median microseconds per request.

    A response with a status >= 400 stops the measurement (a stack that answers wrongly
    has no ratio). Socket errors do not: an overloaded stack that lets some requests
    time out (wrk gives up after 2 s) has its completed requests counted, and the
    errors of each window are kept with the figures.
    """
    for stack in (a, b):
        if placement is not None and not stack.handlers:  # the ZeroMQ stacks have one
            raise RuntimeError(
                f"{stack.name} has no front end process to give a CPU of its own: "
                "measure it without pinning"
            )
        reason = stack.unavailable()
        if reason:
            raise RuntimeError(f"{stack.name} cannot run here: {reason}")
    if placement is not None:
        from bench.placement import command_prefix

        command_prefix(placement.others)  # taskset is there, before anything starts
    seconds = window_seconds(seconds)
    out: dict[str, Any] = {
        "a": a.name,
        "b": b.name,
        "route": route,
        "rounds": rounds,
        "seconds": seconds,
        "placement": placement.to_json() if placement else None,
        "levels": [],
    }
    cpus = placement.others if placement else None
    with ExitStack() as stop:
        launches = (_start(a, stop), _start(b, stop))
        if placement is not None:
            from bench.placement import pin

            for launch in launches:
                pin(launch.group.targets(), placement)
                launch.group.check_alive()
        for level in connections:
            urls = [launch.url + content.PATHS[route] for launch in launches]
            for url in urls:  # both warm, then the pairs
                wrk.run(url, level, warmup, cpus=cpus)
            rps: tuple[list[float], list[float]] = ([], [])
            errors: tuple[list[int], list[int]] = ([], [])
            cpu: tuple[list[dict[str, float]], list[dict[str, float]]] = ([], [])
            for n in range(rounds):
                # A B, then B A, ...: a drift of the machine's speed over a pair does not
                # favour the stack measured first
                for side in (0, 1) if n % 2 == 0 else (1, 0):
                    url = urls[side]
                    before = _cpu_seconds(launches[side])
                    result = wrk.run(url, level, seconds, cpus=cpus)
                    after = _cpu_seconds(launches[side])
                    if result.non2xx:
                        raise RuntimeError(f"errors from {url}: {result.to_json()}")
                    rps[side].append(result.rps)
                    errors[side].append(result.total_socket_errors)
                    if result.requests:
                        cpu[side].append(
                            {
                                name: (after[name] - before[name]) / result.requests * 1e6
                                for name in after
                                if name in before
                            }
                        )
            out["levels"].append(
                {
                    "connections": level,
                    "a_rps": [round(r) for r in rps[0]],
                    "b_rps": [round(r) for r in rps[1]],
                    "a_socket_errors": errors[0],
                    "b_socket_errors": errors[1],
                    "a_cpu_us": cpu_per_request(cpu[0]),
                    "b_cpu_us": cpu_per_request(cpu[1]),
                    **pair_ratios(*rps),
                }
            )
    return out
