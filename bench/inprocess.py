"""CPU per message of the handler's own work, in process, with no network.

Feeds pre-built Mongrel2 frames through exactly what the runner does for each one
(parse, Request, App.handle, render, encode, and the send on a real PUB socket to an
inproc SUB, read after the clock stops) and reports microseconds per message.
A tool for optimising the hot path, not a benchmark figure.

Run: ``python -m bench.inprocess [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time

import zmq

from bench.handler_only import build_frames
from bench.stacks.takefive_app import app
from takefive._zmqutil import nowait_socket
from takefive.runner import HandlerServer


async def _run(frames: list[bytes]) -> float:
    server = HandlerServer(app)
    ctx = zmq.Context()
    sink = ctx.socket(zmq.PUB)
    sink.setsockopt(zmq.SNDHWM, 0)
    sink.bind("inproc://takefive-inprocess")
    check = ctx.socket(zmq.SUB)
    check.setsockopt(zmq.RCVHWM, 0)
    check.setsockopt(zmq.SUBSCRIBE, b"")
    check.connect("inproc://takefive-inprocess")
    pub = nowait_socket(sink)
    start = time.perf_counter()
    for frame in frames:
        server._dispatch(frame, pub, pub.send)
        if server._tasks:
            await asyncio.sleep(0)
    if server._tasks:
        await asyncio.gather(*server._tasks)
    elapsed = time.perf_counter() - start
    replies = 0
    while check.poll(0):
        check.recv()
        replies += 1
    assert replies == len(frames), (replies, len(frames))
    check.close(0)
    pub.detach()
    sink.close(0)
    ctx.term()
    return elapsed


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
    print(
        f"{args.path}: {elapsed / len(frames) * 1e6:.2f} us/message, "
        f"{len(frames) / elapsed:,.0f} messages/s"
    )


if __name__ == "__main__":
    main()
