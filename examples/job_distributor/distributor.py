#!/usr/bin/env python3
"""A simple job distributor: a ZeroMQ PUSH socket deals jobs round robin to the connected consumers.

    python distributor.py                      # one "hello N" job a second, forever
    python distributor.py --count 10 --interval 0.1

Start one or more ``consumer.py`` processes (before or after this one) and watch the jobs spread
over them. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

DEFAULT_ENDPOINT = "ipc:///tmp/takefive-hellostream"
#: How long (ms) a blocking call waits before giving Python a chance to handle Ctrl-C.
_TICK_MS = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send a job every --interval seconds over PUSH.")
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help="where to bind the PUSH socket"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="stop after sending this many jobs (default: never)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between two jobs (default: 1)"
    )
    parser.add_argument(
        "--wait-consumers",
        type=int,
        default=0,
        metavar="N",
        help="wait until N consumers have connected before sending the first job",
    )
    parser.add_argument("--message", default="hello", help="job text; a sequence number is added")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    if args.interval < 0:
        parser.error("--interval must be >= 0")
    if args.wait_consumers < 0:
        parser.error("--wait-consumers must be >= 0")
    return args


def wait_for_consumers(sock: zmq.Socket[bytes], wanted: int) -> None:
    """Block until ``wanted`` peers have connected to the bound socket."""
    monitor = sock.get_monitor_socket(zmq.EVENT_ACCEPTED)
    try:
        connected = 0
        while connected < wanted:
            if monitor.poll(_TICK_MS):
                event = recv_monitor_message(monitor)
                if event["event"] == zmq.EVENT_ACCEPTED:
                    connected += 1
                    print(f"Consumer {connected} of {wanted} connected", flush=True)
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def send(sock: zmq.Socket[bytes], data: bytes) -> None:
    # A PUSH socket with no consumer blocks: wait in short ticks so Ctrl-C works.
    while not sock.poll(_TICK_MS, zmq.POLLOUT):
        pass
    sock.send(data)


def run(args: argparse.Namespace) -> int:
    ctx = zmq.Context()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.PUSH)
    # On a normal exit, give queued jobs up to 5 s to reach their consumers.
    linger_ms = 5000
    sent = 0
    try:
        sock.bind(args.endpoint)
        print(f"Distributing jobs on {args.endpoint}", flush=True)
        if args.wait_consumers:
            wait_for_consumers(sock, args.wait_consumers)
        next_at = time.monotonic()
        while not args.count or sent < args.count:
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            job = f"{args.message} {sent + 1}"
            send(sock, job.encode())
            sent += 1
            print(f"Sending {job}", flush=True)
            next_at += args.interval
    except KeyboardInterrupt:
        print(f"Interrupted after sending {sent} jobs", flush=True)
        linger_ms = 0
    except zmq.ZMQError as exc:
        print(f"distributor: {args.endpoint}: {exc}", file=sys.stderr)
        linger_ms = 0
        return 1
    finally:
        sock.close(linger=linger_ms)
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
