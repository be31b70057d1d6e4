"""Gateway configuration from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from takefive.gateway.config import (
    GatewayConfig,
    HandlerRoute,
    StaticRoute,
    add_arguments,
    config_from_args,
    parse_listen,
    parse_route,
    parse_size,
)


def parse(argv: list[str]) -> GatewayConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_defaults() -> None:
    config = parse([])
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.routes == [HandlerRoute("/", "tcp://127.0.0.1:9997", "tcp://127.0.0.1:9996")]
    assert config.queue_timeout < 5
    assert GatewayConfig().routes  # a default route even when built directly


def test_everything(tmp_path: Path) -> None:
    config = parse([
        "--listen", "0.0.0.0:9000", "--send-spec", "ipc://a", "--recv-spec", "ipc://b",
        "--route", "/api/=ipc://c,ipc://d", "--route", "/t/=ipc://e,ipc://f,tnetstring",
        "--static", f"/static/={tmp_path}", "--max-body-size", "2M", "--max-header-size", "8k",
        "--request-timeout", "5", "--queue-timeout", "1.5", "--no-access-log", "--uuid", "abc-1",
    ])
    assert (config.host, config.port, config.uuid) == ("0.0.0.0", 9000, "abc-1")
    assert config.routes == [
        HandlerRoute("/", "ipc://a", "ipc://b"), HandlerRoute("/api/", "ipc://c", "ipc://d"),
        HandlerRoute("/t/", "ipc://e", "ipc://f", True), StaticRoute("/static/", tmp_path)]
    assert config.max_body_size == 2 * 1024 * 1024 and config.max_header_size == 8192
    assert config.request_timeout == 5 and config.queue_timeout == 1.5
    assert not config.access_log


def test_tnetstring_everywhere() -> None:
    config = parse(["--tnetstring", "--route", "/x/=ipc://c,ipc://d"])
    assert all(isinstance(r, HandlerRoute) and r.tnetstring for r in config.routes)


@pytest.mark.parametrize("value", ["nope", "1.2.3.4", "host:99999", "h:x"])
def test_bad_listen(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_listen(value)


def test_listen_forms() -> None:
    assert parse_listen(":80") == ("127.0.0.1", 80)
    assert parse_listen("[::1]:8080") == ("::1", 8080)


@pytest.mark.parametrize("value", ["api=a,b", "/x=a", "/x=a,b,xml", "/x=,b"])
def test_bad_route(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_route(value)


def test_sizes() -> None:
    assert parse_size("100") == 100 and parse_size("64k") == 65536 and parse_size("1GiB") == 2**30
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_bad_values_exit_with_usage(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv in (["--static", f"/s/={tmp_path}/missing"], ["--request-timeout", "0"],
                 ["--max-body-size", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
