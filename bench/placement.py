"""Pinning a stack's processes and wrk to CPUs, so that paired windows see one machine.

With three busy processes (wrk, the front end, a handler) on two cores, where the
scheduler puts each of them decides much of a window's throughput. On the 2-vCPU VM the
suite is developed on, 1 s windows of the same stack ranged 21,000-48,000 requests/s;
in full runs the per-pair ratios of the floor (5 s windows, not pinned) had standard
deviations of 0.03-0.24 per level, pinned (2 s windows) 0.03-0.10, and each stack gave
7-22% less throughput than in its back-to-back cells.

:func:`front_end_alone` is that placement: the front end (Mongrel2 or the built-in
gateway) gets a CPU of its own, as it would in production, and the handlers and the
load generator share the rest. On two CPUs the front end's CPU is the bottleneck
(Mongrel2 spends about twice the handler's CPU per request), and a handler's cost shows
through the latency it adds, less than in proportion (the raw handler slowed from 12 to
16.5 us of CPU per request read 0.90x against itself); the paired windows therefore
also report each process's CPU per request (bench/paired.py). A pair is only pinned when
both stacks have a front end process: a single-process server (uvicorn) would get one
CPU of two.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

FRONT_ENDS = ("mongrel2", "gateway")


@dataclass(frozen=True)
class Placement:
    """The CPUs of the front-end process, and those of every other process and of wrk."""

    front_end: frozenset[int]
    others: frozenset[int]

    def __post_init__(self) -> None:
        if not self.front_end or not self.others:
            raise ValueError("a placement needs at least one CPU on each side")

    def cpus_for(self, process_name: str) -> frozenset[int]:
        """``mongrel2`` and ``gateway`` (and their children) -> front_end; the rest -> others."""
        base = process_name.split(".", 1)[0]
        return self.front_end if base in FRONT_ENDS else self.others

    def to_json(self) -> dict[str, Any]:
        return {"front_end": sorted(self.front_end), "others_and_wrk": sorted(self.others)}


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def front_end_alone(cpus: Collection[int] | None = None) -> Placement | None:
    """The first CPU for the front end, the others for the rest; None below two CPUs
    (or where CPU affinity cannot be set: Linux only)."""
    if cpus is None and not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if len(allowed) < 2:
        return None
    return Placement(frozenset(allowed[:1]), frozenset(allowed[1:]))


def pin(targets: Iterable[tuple[str, psutil.Process]], placement: Placement) -> None:
    """Pin every thread of each ``(name, process)`` (``ProcessGroup.targets()``).

    Threads started later inherit their creator's CPUs. A process that exits meanwhile
    is left alone; any other failure (no permission, a CPU that does not exist) raises.
    """
    import psutil

    for name, process in targets:
        cpus = placement.cpus_for(name)
        try:
            threads = process.threads()
        except psutil.NoSuchProcess:
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread.id, cpus)
            except ProcessLookupError:  # that thread ended
                continue


def command_prefix(cpus: Collection[int]) -> list[str]:
    """``taskset -c N,...``: a command started through it runs on those CPUs only."""
    exe = shutil.which("taskset")
    if exe is None:
        raise RuntimeError("taskset (Debian package util-linux) is needed to pin wrk")
    return [exe, "-c", _cpu_list(cpus)]
