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
uvicorn has no front end process), and judges the targets on them (bench/report.py).
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
    pinned to its CPUs, the same for A and B.

    A response with a status >= 400 stops the measurement (a stack that answers wrongly
    has no ratio). Socket errors do not: an overloaded stack that lets some requests
    time out (wrk gives up after 2 s) has its completed requests counted, and the
    errors of each window are kept with the figures.
    """
    for stack in (a, b):
        reason = stack.unavailable()
        if reason:
            raise RuntimeError(f"{stack.name} cannot run here: {reason}")
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
        for level in connections:
            urls = [launch.url + content.PATHS[route] for launch in launches]
            for url in urls:  # both warm, then the pairs
                wrk.run(url, level, warmup, cpus=cpus)
            rps: tuple[list[float], list[float]] = ([], [])
            errors: tuple[list[int], list[int]] = ([], [])
            for n in range(rounds):
                # A B, then B A, ...: a drift of the machine's speed over a pair does not
                # favour the stack measured first
                for side in (0, 1) if n % 2 == 0 else (1, 0):
                    url = urls[side]
                    result = wrk.run(url, level, seconds, cpus=cpus)
                    if result.non2xx:
                        raise RuntimeError(f"errors from {url}: {result.to_json()}")
                    rps[side].append(result.rps)
                    errors[side].append(result.total_socket_errors)
            out["levels"].append(
                {
                    "connections": level,
                    "a_rps": [round(r) for r in rps[0]],
                    "b_rps": [round(r) for r in rps[1]],
                    "a_socket_errors": errors[0],
                    "b_socket_errors": errors[1],
                    **pair_ratios(*rps),
                }
            )
    return out
