"""CPU per message of the handler's own work, in process, with no sockets.

Feeds pre-built Mongrel2 frames through exactly what the runner does for each one
(parse, Request, App.handle, render, encode) and reports microseconds per message.
A tool for optimising the hot path, not a benchmark figure.

Run: ``python -m bench.inprocess [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

from bench.handler_only import build_frames
from bench.stacks.takefive_app import app
from takefive.runner import HandlerServer


class _NullOutbox:
    def __init__(self) -> None:
        self.sent = 0

    def deliver(self, sender: str, conn_ids: object, data: bytes) -> None:
        self.sent += 1


async def _run(frames: list[bytes]) -> float:
    server = HandlerServer(app)
    sink = _NullSocket()
    start = time.perf_counter()
    for frame in frames:
        server._dispatch(frame, sink)  # type: ignore[arg-type]
        if server._tasks:
            await asyncio.sleep(0)
    if server._tasks:
        await asyncio.gather(*server._tasks)
    elapsed = time.perf_counter() - start
    assert sink.sent == len(frames), (sink.sent, len(frames))
    return elapsed


class _NullSocket:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: bytes, copy: bool = True) -> None:
        self.sent += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    frames = build_frames(args.messages, args.path)
    if args.profile:
        cProfile.runctx("asyncio.run(_run(frames))", globals(), locals(), "/tmp/inprocess.prof")
        pstats.Stats("/tmp/inprocess.prof").sort_stats("tottime").print_stats(25)
        return
    elapsed = asyncio.run(_run(frames))
    print(f"{args.path}: {elapsed / len(frames) * 1e6:.2f} us/message, "
          f"{len(frames) / elapsed:,.0f} messages/s")


if __name__ == "__main__":
    main()
