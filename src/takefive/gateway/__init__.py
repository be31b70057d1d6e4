"""takefive's built-in HTTP front end: speaks to handlers exactly as Mongrel2 1.12 does.

``takefive gateway`` runs it on its own (handlers connect to its sockets, as they would to
Mongrel2's); ``takefive serve MODULE:APP`` runs it together with handler processes.
See ``docs/gateway.md``.
"""

from __future__ import annotations

import argparse
import logging

from .config import GatewayConfig, HandlerRoute, StaticRoute, add_arguments, config_from_args
from .server import Gateway, run

__all__ = ["Gateway", "GatewayConfig", "HandlerRoute", "StaticRoute", "add_command", "main"]

log = logging.getLogger("takefive.gateway")


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``takefive gateway``."""
    parser = subparsers.add_parser(
        "gateway",
        help="the built-in HTTP front end (Mongrel2-compatible) for handler processes",
        description="Serve HTTP and forward requests to ZeroMQ handlers exactly as Mongrel2 "
        "1.12 does: bind PUSH on --send-spec and SUB on --recv-spec.",
    )
    add_arguments(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    return run(config)
