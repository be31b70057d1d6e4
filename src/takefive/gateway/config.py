"""Gateway configuration: listen address, routes, limits and timeouts, and their CLI flags.

Every limit and timeout lives here with its default; ``docs/gateway.md`` lists them
with the flag that changes each one.
"""

from __future__ import annotations

import argparse
import uuid as uuid_mod
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "GatewayConfig",
    "HandlerRoute",
    "StaticRoute",
    "add_arguments",
    "config_from_args",
    "parse_listen",
    "parse_route",
    "parse_size",
    "parse_static",
]

_DEFAULT_SEND_SPEC = "tcp://127.0.0.1:9997"
_DEFAULT_RECV_SPEC = "tcp://127.0.0.1:9996"


@dataclass(frozen=True, slots=True)
class HandlerRoute:
    """Requests whose path starts with ``prefix`` go to the handlers on these sockets."""

    prefix: str
    send_spec: str
    recv_spec: str
    tnetstring: bool = False


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """Requests whose path starts with ``prefix`` are files under ``directory``."""

    prefix: str
    directory: Path
    index_file: str = "index.html"


Route = HandlerRoute | StaticRoute


@dataclass(slots=True)
class GatewayConfig:
    """Everything the gateway needs. Sizes in bytes, times in seconds."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Front end UUID: the sender in every request, the SUB subscription for replies.
    uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    routes: list[Route] = field(default_factory=list)
    #: Request line + headers; over it: 431.
    max_header_size: int = 64 * 1024
    #: Number of header lines; over it: 431.
    max_header_count: int = 100
    #: Request body (and one WebSocket message); over it: 413 (WebSocket: close 1009).
    max_body_size: int = 10 * 1024 * 1024
    #: The whole request head must arrive within this time after its first byte; else 408.
    header_timeout: float = 10.0
    #: Longest pause between two pieces of a request body; else 408.
    body_timeout: float = 30.0
    #: An idle keep-alive connection is closed after this time.
    keepalive_timeout: float = 60.0
    #: A handler must start its reply within this time; else 504 and a disconnect message.
    request_timeout: float = 60.0
    #: A request no handler takes within this time (none connected, or all full): 503.
    queue_timeout: float = 3.0
    #: A client that does not read what handlers send for it is dropped past this buffer.
    max_write_buffer: int = 64 * 1024 * 1024
    #: Pipelined requests read ahead per connection before the gateway stops reading.
    max_pipeline: int = 16
    #: Log one line per request to the ``takefive.gateway.access`` logger.
    access_log: bool = True
    #: listen(2) backlog.
    backlog: int = 1024

    def __post_init__(self) -> None:
        if not self.routes:
            self.routes = [HandlerRoute("/", _DEFAULT_SEND_SPEC, _DEFAULT_RECV_SPEC)]


# --------------------------------------------------------------------------- parsing


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[::1]:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def parse_route(value: str, *, tnetstring: bool = False) -> HandlerRoute:
    """``PREFIX=SEND_SPEC,RECV_SPEC[,tnetstring|json]``."""
    prefix, sep, specs = value.partition("=")
    parts = specs.split(",")
    if not sep or not prefix.startswith("/") or len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(
            f"--route wants PREFIX=SEND_SPEC,RECV_SPEC[,tnetstring], got {value!r}"
        )
    if len(parts) == 3:
        if parts[2] not in ("tnetstring", "json"):
            raise argparse.ArgumentTypeError(
                f"route protocol must be json or tnetstring: {value!r}"
            )
        tnetstring = parts[2] == "tnetstring"
    return HandlerRoute(prefix, parts[0], parts[1], tnetstring)


def parse_static(value: str) -> StaticRoute:
    """``PREFIX=DIR``; the directory must exist."""
    prefix, sep, directory = value.partition("=")
    if not sep or not prefix.startswith("/") or not directory:
        raise argparse.ArgumentTypeError(f"--static wants PREFIX=DIR, got {value!r}")
    path = Path(directory)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"--static: {directory!r} is not a directory")
    return StaticRoute(prefix, path)


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(value: str) -> int:
    """``65536``, ``64k``, ``10M``, ``1GiB``."""
    text = value.strip().lower()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits):].strip()
    if not digits.isdigit() or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (e.g. 65536, 64k, 10M)")
    return int(digits) * _UNITS[unit]


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {value!r}")
    return number


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser, *, handler_routes: bool = True) -> None:
    """The flags shared by ``takefive gateway`` and ``takefive serve``."""
    d = GatewayConfig(routes=[HandlerRoute("/", "", "")])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8000),
                        metavar="HOST:PORT",
                        help="address to serve HTTP on (default 127.0.0.1:8000)")
    if handler_routes:
        parser.add_argument("--send-spec", default=_DEFAULT_SEND_SPEC,
                            help="PUSH socket for requests of the default route '/' "
                            f"(default {_DEFAULT_SEND_SPEC})")
        parser.add_argument("--recv-spec", default=_DEFAULT_RECV_SPEC,
                            help="SUB socket for replies of the default route "
                            f"(default {_DEFAULT_RECV_SPEC})")
        parser.add_argument("--route", action="append", default=[], metavar="PREFIX=SEND,RECV",
                            help="another handler group for a path prefix; "
                            "append ',tnetstring' for tnetstring headers (repeatable)")
        parser.add_argument("--uuid", default=None,
                            help="front end UUID handlers reply to (default: a random one)")
    parser.add_argument("--tnetstring", action="store_true",
                        help="send headers as tnetstrings instead of JSON (every route)")
    parser.add_argument("--static", action="append", default=[], type=parse_static,
                        metavar="PREFIX=DIR", help="serve files under DIR for PREFIX (repeatable)")
    parser.add_argument("--max-header-size", type=parse_size, default=d.max_header_size,
                        metavar="SIZE",
                        help=f"request head limit, else 431 (default {d.max_header_size})")
    parser.add_argument("--max-body-size", type=parse_size, default=d.max_body_size,
                        metavar="SIZE",
                        help=f"request body limit, else 413 (default {d.max_body_size})")
    parser.add_argument("--header-timeout", type=_positive_float, default=d.header_timeout,
                        metavar="SECONDS", help=f"time to send a request head, else 408 "
                        f"(default {d.header_timeout})")
    parser.add_argument("--body-timeout", type=_positive_float, default=d.body_timeout,
                        metavar="SECONDS", help=f"longest pause inside a request body, else 408 "
                        f"(default {d.body_timeout})")
    parser.add_argument("--keepalive-timeout", type=_positive_float, default=d.keepalive_timeout,
                        metavar="SECONDS",
                        help="idle keep-alive connections are closed after this "
                        f"(default {d.keepalive_timeout})")
    parser.add_argument("--request-timeout", type=_positive_float, default=d.request_timeout,
                        metavar="SECONDS", help=f"time for a handler to start replying, else 504 "
                        f"(default {d.request_timeout})")
    parser.add_argument("--queue-timeout", type=_positive_float, default=d.queue_timeout,
                        metavar="SECONDS",
                        help="time for some handler to take a request, else 503 "
                        f"(default {d.queue_timeout})")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log a line per request")


def config_from_args(args: argparse.Namespace, routes: list[Route] | None = None) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from flags added by :func:`add_arguments`."""
    if routes is None:
        tnet = bool(args.tnetstring)
        routes = [HandlerRoute("/", args.send_spec, args.recv_spec, tnet)]
        routes += [parse_route(r, tnetstring=tnet) for r in args.route]
    routes = routes + list(args.static)
    host, port = args.listen
    config = GatewayConfig(
        host=host,
        port=port,
        routes=routes,
        max_header_size=args.max_header_size,
        max_body_size=args.max_body_size,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        request_timeout=args.request_timeout,
        queue_timeout=args.queue_timeout,
        access_log=args.access_log,
    )
    if getattr(args, "uuid", None):
        config.uuid = args.uuid
    return config
