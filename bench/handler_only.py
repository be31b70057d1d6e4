"""The handler-only figure: requests/s through one handler process, no HTTP at all.

N pre-built Mongrel2 request frames (``GET /hello``, headers as Mongrel2 sends them)
are pushed by a C program (bench/feeder.c, built on first use with gcc and libzmq;
a pyzmq fallback when there is no compiler) into the handler's PULL socket; responses
are counted on a SUB bound at its recv_spec. The same stream goes through
bench/raw_handler.py (the raw pyzmq loop) and through one ``takefive run`` process,
in PAIRS pairs of alternating order; the figure is the median pair's ratio.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("feeder.c")
SENDER = "f0e1d2c3-b4a5-4697-8899-aabbccddeeff"
CONNECTIONS = 50
#: Requests in flight at most (as with many HTTP clients); keeps every queue under its HWM.
WINDOW = 1000


def build_frames(count: int, path: str = "/hello") -> list[bytes]:
    """``count`` request frames for ``path`` on CONNECTIONS keep-alive connections."""
    from takefive import wire

    headers = {
        "PATH": path,
        "x-forwarded-for": "127.0.0.1",
        "host": "127.0.0.1:6767",
        "METHOD": "GET",
        "VERSION": "HTTP/1.1",
        "URI": path,
        "PATTERN": "/",
        "URL_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
    }
    distinct = [wire.encode_request(SENDER, i, path, headers) for i in range(CONNECTIONS)]
    return [distinct[i % CONNECTIONS] for i in range(count)]


def write_frames(frames: list[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        for frame in frames:
            f.write(struct.pack(">I", len(frame)))
            f.write(frame)


def feeder_binary() -> tuple[list[str], str]:
    """The feeder command and its description: the C one if it builds, else pyzmq."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc:
        digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
        exe = Path(tempfile.gettempdir()) / f"takefive-bench-feeder-{digest}"
        if not exe.exists():
            tmp = exe.with_suffix(f".{os.getpid()}")
            done = subprocess.run(
                [gcc, "-O2", "-o", str(tmp), str(SOURCE), "-lzmq"], capture_output=True, text=True
            )
            if done.returncode == 0:
                tmp.replace(exe)
        if exe.exists():
            return [str(exe)], "a C feeder (bench/feeder.c, libzmq)"
    return [sys.executable, "-m", "bench.handler_only", "feed"], "a pyzmq feeder (no C compiler)"


def _readline(stream: Any, timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().decode() if ready else ""


#: The takefive app each kind of handler serves (the bench app's plain ``def`` handlers,
#: and the same handlers as ``async def``).
APPS = {
    "takefive": "bench.stacks.takefive_app:app",
    "takefive_async": "bench.stacks.takefive_app:app_async",
}


def run_one(kind: str, frames_file: Path, messages: int, workdir: Path) -> dict[str, Any]:
    """Feed ``messages`` frames through one ``kind`` handler ("raw" or an APPS key)."""
    import json

    from bench.procs import ProcessGroup, Sampler
    from bench.stackdefs import _handler_argv, _raw_argv, tcp_spec

    send_spec, recv_spec = tcp_spec(), tcp_spec()
    feeder, _ = feeder_binary()
    timeout = 20 + messages / 5000
    group = ProcessGroup(workdir)
    proc = subprocess.Popen(
        [*feeder, str(frames_file), send_spec, recv_spec, f"{timeout:.0f}", str(WINDOW)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        argv = (
            _raw_argv(send_spec, recv_spec)
            if kind == "raw"
            else _handler_argv(APPS[kind], send_spec, recv_spec)
        )
        group.spawn("handler", argv)
        line = _readline(proc.stdout, 30)
        if line.strip() != "READY":
            proc.kill()
            out, err = proc.communicate()
            return {
                "error": f"feeder not ready: {line}{out.decode()} {err.decode()}".strip()
                + "\n"
                + group.procs[0].log_tail()
            }
        with Sampler(group.targets) as sampler:
            try:
                out, err = proc.communicate(timeout=timeout + 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        stats = {p.name: p for p in sampler.results()}
        if "handler" in stats:
            result["handler_cpu_pct"] = round(stats["handler"].cpu_pct, 1)
            result["handler_peak_rss_mb"] = round(stats["handler"].peak_rss_mb, 1)
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        group.stop()


#: Runs of the raw loop and of takefive, in alternating order: one run of each varies by
#: 20-40% on a small VM, so the figure is the median of the pairs' ratios.
PAIRS = 5


def measure(messages: int = 200_000, pairs: int = PAIRS) -> dict[str, Any]:
    from bench.stackdefs import by_name

    out: dict[str, Any] = {"messages": messages, "ratio": None, "route": "hello", "pairs": []}
    _, out["feeder"] = feeder_binary()
    workdir = Path(tempfile.mkdtemp(prefix="bench-handler-only-"))
    try:
        frames_file = workdir / "frames.bin"
        write_frames(build_frames(messages), frames_file)
        reason = by_name()["takefive-m2-1"].unavailable()
        if reason and "mongrel2" not in reason:
            out["reason"] = f"takefive handler not available: {reason}"
            return out
        # Warm-up of each handler is part of the probe; the figures are from the timed part.
        for i in range(pairs):
            order = ("raw", "takefive") if i % 2 == 0 else ("takefive", "raw")
            runs = {kind: run_one(kind, frames_file, messages, workdir) for kind in order}
            raw_rate = runs["raw"].get("msgs_per_s")
            tf_rate = runs["takefive"].get("msgs_per_s")
            complete = not any(run.get("timed_out") for run in runs.values())
            if not (raw_rate and tf_rate and complete):
                out["reason"] = f"a handler did not answer every message: {runs}"
                return out
            pair = {"raw": runs["raw"], "takefive": runs["takefive"], "ratio": tf_rate / raw_rate}
            out["pairs"].append(pair)
            print(
                f"  pair {i + 1}/{pairs}: raw pyzmq loop {raw_rate:,.0f} msgs/s, "
                f"takefive {tf_rate:,.0f} msgs/s -> {pair['ratio']:.2f}x",
                flush=True,
            )
        median = sorted(out["pairs"], key=lambda pair: pair["ratio"])[(pairs - 1) // 2]
        out.update(raw=median["raw"], takefive=median["takefive"], ratio=median["ratio"])
        print(f"  median of {pairs} pairs: {out['ratio']:.2f}x", flush=True)
        # For the record (not a target): the same handler written as ``async def``.
        out["takefive_async"] = run_one("takefive_async", frames_file, messages, workdir)
        async_rate = out["takefive_async"].get("msgs_per_s")
        if async_rate and not out["takefive_async"].get("timed_out"):
            out["async_ratio"] = async_rate / median["raw"]["msgs_per_s"]
            print(
                f"  takefive with an async def handler {async_rate:,.0f} msgs/s"
                f" -> {out['async_ratio']:.2f}x (against the median pair's raw loop)",
                flush=True,
            )
        return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- pyzmq feeder


def feed(frames_file: str, push_spec: str, sub_spec: str, timeout: float, window: int) -> int:
    """The pyzmq version of bench/feeder.c (same protocol, same output)."""
    import json

    import zmq

    data = Path(frames_file).read_bytes()
    frames, pos = [], 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        frames.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    ctx = zmq.Context()
    push, sub = ctx.socket(zmq.PUSH), ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    push.bind(push_spec)
    sub.bind(sub_spec)
    deadline = time.monotonic() + timeout
    ready = False
    while not ready and time.monotonic() < deadline:
        try:
            push.send(frames[0], zmq.NOBLOCK)
        except zmq.Again:
            pass
        if sub.poll(100):
            sub.recv()
            ready = True
    if not ready:
        print(json.dumps({"error": f"no reply to the probe within {timeout:.0f} s"}))
        return 1
    settle = time.monotonic() + 0.3
    while time.monotonic() < settle:
        while sub.poll(50):
            sub.recv()
    print("READY", flush=True)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(push, zmq.POLLOUT)
    sent = received = 0
    count = len(frames)
    start = last = time.monotonic()
    deadline = start + timeout
    while received < count and time.monotonic() < deadline and time.monotonic() - last < 2.0:
        poller.modify(push, zmq.POLLOUT if sent < count and sent - received < window else 0)
        events = dict(poller.poll(100))
        if events.get(push):
            try:
                for _ in range(1000):
                    if sent == count or sent - received >= window:
                        break
                    push.send(frames[sent], zmq.NOBLOCK)
                    sent += 1
            except zmq.Again:
                pass
        if events.get(sub):
            try:
                while True:
                    sub.recv(zmq.NOBLOCK)
                    received += 1
            except zmq.Again:
                pass
            last = time.monotonic()
    seconds = last - start
    print(
        json.dumps(
            {
                "messages": count,
                "sent": sent,
                "received": received,
                "seconds": seconds,
                "msgs_per_s": received / seconds if seconds > 0 else 0.0,
                "window": window,
                "timed_out": received < count,
            }
        ),
        flush=True,
    )
    ctx.destroy(linger=0)
    return 0 if received == count else 1


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "feed":
        sys.exit(feed(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])))
    sys.exit("usage: python -m bench.handler_only feed FRAMES PUSH_SPEC SUB_SPEC TIMEOUT WINDOW")
