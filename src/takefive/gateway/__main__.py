"""``python -m takefive.gateway``: the same as ``takefive gateway``."""

from __future__ import annotations

import argparse
import logging
import sys

from . import add_command


def _main() -> int:
    parser = argparse.ArgumentParser(prog="python -m takefive.gateway")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command")
    add_command(sub)
    args = parser.parse_args(["gateway", *sys.argv[1:]])
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(_main())
