"""Running wrk and reading what it prints.

wrk is run with ``-t1 --latency -s bench/wrk.lua``; the Lua script adds one line
``WRK_JSON {...}`` with exact counters and latency percentiles in microseconds.
:func:`parse_output` prefers that line and falls back to wrk's human-readable text
(``Requests/sec:``, ``Latency Distribution``, ``Socket errors:``, ``Non-2xx or 3xx``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WRK_LUA = Path(__file__).with_name("wrk.lua")
JSON_PREFIX = "WRK_JSON "

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER_UNIT = re.compile(r"^([0-9.]+)\s*(us|ms|s|m|h)$")
_COUNT_SUFFIX = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


class WrkError(RuntimeError):
    """wrk did not run, or printed nothing this module can read."""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    max_ms: float | None = None
    non2xx: int = 0
    socket_errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )

    @property
    def total_socket_errors(self) -> int:
        return sum(self.socket_errors.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["socket_errors_total"] = self.total_socket_errors
        return data


def parse_duration(text: str) -> float:
    """``'471.00us'`` -> 0.000471 (seconds)."""
    match = _NUMBER_UNIT.match(text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _parse_json_line(line: str) -> WrkResult:
    data = json.loads(line[len(JSON_PREFIX) :])
    duration = data["duration_us"] / 1e6
    lat = data["latency_us"]
    err = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=duration,
        rps=data["requests"] / duration if duration > 0 else 0.0,
        p50_ms=lat["p50"] / 1e3,
        p99_ms=lat["p99"] / 1e3,
        mean_ms=lat["mean"] / 1e3,
        max_ms=lat["max"] / 1e3,
        non2xx=int(err["status"]),
        socket_errors={k: int(err[k]) for k in ("connect", "read", "write", "timeout")},
    )


def _parse_text(text: str) -> WrkResult:
    rps_match = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", text, re.M)
    if not rps_match or not total:
        raise WrkError(f"cannot read wrk output:\n{text[-2000:]}")
    percentiles: dict[str, float] = {}
    for pct, value in re.findall(r"^\s+(\d+)%\s+([0-9.]+\w+)\s*$", text, re.M):
        percentiles[pct] = parse_duration(value) * 1e3
    latency = re.search(r"^\s+Latency\s+([0-9.]+\w+)\s+([0-9.]+\w+)\s+([0-9.]+\w+)", text, re.M)
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        errors = dict(zip(errors, map(int, sock.groups()), strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=parse_duration(total.group(2)),
        rps=float(rps_match.group(1)),
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
        mean_ms=parse_duration(latency.group(1)) * 1e3 if latency else None,
        max_ms=parse_duration(latency.group(3)) * 1e3 if latency else None,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=errors,
    )


def parse_output(text: str) -> WrkResult:
    """Read one wrk run's stdout."""
    for line in text.splitlines():
        if line.startswith(JSON_PREFIX):
            return _parse_json_line(line)
    return _parse_text(text)


def wrk_path() -> str | None:
    return shutil.which("wrk")


def command(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    cpus: Collection[int] | None = None,
) -> list[str]:
    """wrk's command line; with ``cpus``, run through ``taskset`` on those CPUs only."""
    exe = wrk_path()
    if exe is None:
        raise WrkError("wrk is not installed (Debian package 'wrk')")
    prefix: list[str] = []
    if cpus is not None:
        from bench.placement import command_prefix

        prefix = command_prefix(cpus)
    return [
        *prefix,
        exe,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "2s",
        "--latency",
        "-s",
        str(WRK_LUA),
        url,
    ]


def run(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    cpus: Collection[int] | None = None,
) -> WrkResult:
    """Run wrk once (bounded: ``duration`` plus a 30 s safety margin), on ``cpus`` if given."""
    cmd = command(url, connections, duration, threads, cpus)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip()[:500]}")
    return parse_output(done.stdout)
