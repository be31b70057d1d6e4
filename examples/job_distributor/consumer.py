#!/usr/bin/env python3
"""A simple consumer: a ZeroMQ PULL socket that prints every job the distributor sends it.

    python consumer.py                 # until Ctrl-C
    python consumer.py --count 5       # stop after five jobs

Start several and each gets its share of the jobs, round robin.
"""

from __future__ import annotations

import argparse
import signal
import sys

import zmq

DEFAULT_ENDPOINT = "ipc:///tmp/takefive-hellostream"
#: How long (ms) a blocking call waits before giving Python a chance to handle Ctrl-C.
_TICK_MS = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print the jobs a distributor PUSHes to us.")
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help="the distributor's endpoint to connect to"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="stop after receiving this many jobs (default: never)"
    )
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.PULL)
    received = 0
    try:
        # connect() succeeds even before the distributor binds: ZeroMQ keeps retrying.
        sock.connect(args.endpoint)
        print(f"Waiting for jobs from {args.endpoint}", flush=True)
        while not args.count or received < args.count:
            if not sock.poll(_TICK_MS):
                continue
            job = sock.recv()
            received += 1
            print(f"Received: {job.decode(errors='replace')}", flush=True)
    except KeyboardInterrupt:
        print(f"Interrupted after receiving {received} jobs", flush=True)
    except zmq.ZMQError as exc:
        print(f"consumer: {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close(linger=0)
        ctx.term()
    return 0


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C (and kill) stop cleanly, even when a shell started us in the background
    # with SIGINT ignored.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
