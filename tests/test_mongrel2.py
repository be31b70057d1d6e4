"""Unit tests of takefive.mongrel2: config model, rendering, validation, CLI parsing.

Starting real Mongrel2 (prepare/start/wait_ready/stop, up/down) is tested in
tests/integration/test_mongrel2_wire.py.
"""

from __future__ import annotations

import argparse
import re

import pytest

from takefive import mongrel2
from takefive.mongrel2 import HandlerRoute, Mongrel2Config, Mongrel2Server

SEND = "tcp://127.0.0.1:9997"
RECV = "tcp://127.0.0.1:9996"


def config(**kw: object) -> Mongrel2Config:
    base: dict[str, object] = {
        "uuid": "site-1",
        "handlers": [HandlerRoute("/", SEND, RECV)],
    }
    base.update(kw)
    return Mongrel2Config(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rendering


def test_render_minimal_shape() -> None:
    text = config().render()
    assert (
        'handler_1 = Handler(send_spec="tcp://127.0.0.1:9997", send_ident="site-1", '
        'recv_spec="tcp://127.0.0.1:9996", recv_ident="", protocol="json")'
    ) in text
    for line in (
        'uuid="site-1"',
        'chroot="./"',
        'access_log="/logs/access.log"',
        'error_log="/logs/error.log"',
        'pid_file="/run/mongrel2.pid"',
        'default_host="localhost"',
        'name="main"',
        'bind_addr="127.0.0.1"',
        "port=6767",
        'Host(name="localhost", matching="(.*)", routes={',
        '"/": handler_1',
        '"server.daemonize": 0',
        '"upload.temp_store": "/tmp/upload.XXXXXX"',
        "servers = [main]",
    ):
        assert line in text, line
    assert "limits.content_length" not in text


def test_render_has_no_trailing_commas_m2sh_rejects() -> None:
    text = config(
        static_dirs={"/static/": "static"},
        content_length=1000,
        settings={"limits.buffer_size": 8192},
    ).render()
    # m2sh's parser fails on "x,\n}" and "x,\n)" and "x,\n]".
    assert not re.search(r",\s*[}\])]", text)


def test_render_options() -> None:
    text = config(
        host="0.0.0.0",
        port=8080,
        handlers=[
            HandlerRoute("/", SEND, RECV, protocol="tnetstring", send_ident="other-ident"),
            HandlerRoute("/api/", "ipc://run/send", "ipc://run/recv"),
        ],
        static_dirs={"/static/": "public/assets"},
        content_length=1000,
        upload_temp_store=None,
        access_log="/logs/a.log",
        settings={"limits.buffer_size": 8192, "superpoll.hot_dividend": "4"},
    ).render()
    assert 'send_ident="other-ident"' in text
    assert 'protocol="tnetstring"' in text
    assert 'handler_2 = Handler(send_spec="ipc://run/send"' in text
    assert '"/api/": handler_2' in text
    assert 'dir_1 = Dir(base="public/assets/"' in text
    assert '"/static/": dir_1' in text
    assert '"limits.content_length": 1000' in text
    assert "upload.temp_store" not in text
    assert '"limits.buffer_size": 8192' in text
    assert '"superpoll.hot_dividend": "4"' in text
    assert 'bind_addr="0.0.0.0"' in text
    assert "port=8080" in text
    assert 'access_log="/logs/a.log"' in text


def test_same_handler_on_two_prefixes_is_declared_once() -> None:
    text = config(
        handlers=[HandlerRoute("/a/", SEND, RECV), HandlerRoute("/b/", SEND, RECV)]
    ).render()
    assert text.count("Handler(") == 1
    assert '"/a/": handler_1' in text and '"/b/": handler_1' in text


def test_settings_override_defaults() -> None:
    cfg = config(content_length=5, settings={"limits.content_length": 7, "upload.stream": 1})
    assert cfg.all_settings() == {
        "server.daemonize": 0,
        "limits.content_length": 7,
        "upload.temp_store": "/tmp/upload.XXXXXX",
        "upload.stream": 1,
    }


def test_config_is_frozen_and_copies_its_inputs() -> None:
    handlers = [HandlerRoute("/", SEND, RECV)]
    static = {"/s/": "s"}
    cfg = config(handlers=handlers, static_dirs=static)
    handlers.append(HandlerRoute("/x/", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"))
    static["/t/"] = "t"
    assert len(cfg.handlers) == 1
    assert dict(cfg.static_dirs) == {"/s/": "s"}
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"uuid": "bad uuid"}, "server uuid"),
        ({"uuid": "tab\there"}, "server uuid"),
        ({"uuid": "ünï"}, "server uuid"),
        ({"uuid": ""}, "server uuid"),
        ({"uuid": "a_b"}, "A-Z, a-z, 0-9 and '-'"),
        ({"uuid": 12}, "server uuid"),
        ({"port": 0}, "port must be between 1 and 65535"),
        ({"port": 65536}, "port must be between 1 and 65535"),
        ({"port": "80"}, "port must be an integer"),
        ({"port": True}, "port must be an integer"),
        ({"host": "localhost"}, "must be an IP address"),
        ({"host": 'a"b'}, "quotes"),
        ({"content_length": 0}, "content_length must be a positive integer"),
        ({"content_length": "10"}, "content_length must be a positive integer"),
        ({"upload_temp_store": "/tmp/upload"}, "must end in XXXXXX"),
        ({"access_log": "logs/a.log"}, "absolute path inside the chroot"),
        ({"error_log": '/logs/"x'}, "quotes"),
        ({"static_dirs": {"/s/": "/etc"}}, "relative path inside the site directory"),
        ({"static_dirs": {"/s/": "../up"}}, "relative path inside the site directory"),
        ({"static_dirs": {"s/": "s"}}, "must start with '/'"),
        ({"static_dirs": {"/": "s"}}, "used more than once"),
        ({"settings": {"Bad Name": 1}}, "setting name"),
        ({"settings": {"limits.x": 1.5}}, "integer or a string"),
        ({"settings": {"limits.x": True}}, "integer or a string"),
        ({"settings": {"limits.x": "a\nb"}}, "control characters"),
        ({"name": "two words"}, "short word"),
        ({"handlers": ["not a route"]}, "HandlerRoute"),
        (
            {"handlers": [HandlerRoute("/", SEND, RECV), HandlerRoute("/", SEND, RECV)]},
            "used more than once",
        ),
        (
            {"handlers": [HandlerRoute("/", "tcp://127.0.0.1:6767", RECV)]},
            "uses the HTTP port 6767",
        ),
        (
            {
                "handlers": [
                    HandlerRoute("/", SEND, RECV),
                    HandlerRoute("/b/", SEND, "tcp://127.0.0.1:1"),
                ]
            },
            "used by two different handlers",
        ),
        (
            {"handlers": [HandlerRoute("/", SEND, RECV), HandlerRoute("/b/", RECV, SEND)]},
            "used by two different handlers",
        ),
        (
            {
                "handlers": [
                    HandlerRoute("/", SEND, RECV),
                    HandlerRoute("/b/", SEND, RECV, protocol="tnetstring"),
                ]
            },
            "used by two different handlers",
        ),
    ],
)
def test_config_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config(**kw)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("api", SEND, RECV), {}, "must start with '/'"),
        (("/", "tcp://127.0.0.1", RECV), {}, "tcp://HOST:PORT"),
        (("/", "tcp://127.0.0.1:0", RECV), {}, "between 1 and 65535"),
        (("/", "tcp://127.0.0.1:99999", RECV), {}, "between 1 and 65535"),
        (("/", "udp://127.0.0.1:1", RECV), {}, "tcp:// or ipc://"),
        (("/", "ipc://", RECV), {}, "socket file"),
        (("/", SEND, SEND), {}, "both"),
        (("/", SEND, RECV), {"send_ident": "no spaces"}, "send_ident"),
        (("/", SEND, RECV), {"protocol": "xml"}, "'json' or 'tnetstring'"),
        (('/"', SEND, RECV), {}, "quotes"),
        (("/\n", SEND, RECV), {}, "control characters"),
    ],
)
def test_handler_route_validation(
    args: tuple[str, str, str], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        HandlerRoute(*args, **kwargs)  # type: ignore[arg-type]


def test_ipv6_and_bracketed_specs_are_accepted() -> None:
    cfg = config(host="::1", handlers=[HandlerRoute("/", "tcp://[::1]:9997", "tcp://[::1]:9996")])
    assert 'bind_addr="::1"' in cfg.render()
    assert Mongrel2Server("/tmp/x", cfg).url("/a") == "http://[::1]:6767/a"


def test_spec_on_the_http_port_of_another_address_is_allowed() -> None:
    config(handlers=[HandlerRoute("/", "tcp://127.0.0.2:6767", RECV)])


# --------------------------------------------------------------------------- server helpers


def test_server_paths_and_connect_spec(tmp_path: object) -> None:
    server = Mongrel2Server("relative/site", config())
    assert server.site_dir.is_absolute()
    assert server.connect_spec("ipc://run/send") == f"ipc://{server.site_dir}/run/send"
    assert server.connect_spec("ipc:///abs/send") == "ipc:///abs/send"
    assert server.connect_spec(SEND) == SEND
    assert server.pid_file == server.site_dir / "run" / "mongrel2.pid"
    assert server.error_log == server.site_dir / "logs" / "error.log"
    assert server.url() == "http://127.0.0.1:6767/"
    assert server.pid is None
    assert server.stop() is None


def test_missing_binaries_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(mongrel2.Mongrel2NotFound, match="apt-get install mongrel2-core"):
        mongrel2.find_binaries()


def test_error_carries_the_log_tail() -> None:
    log = "\n".join(f"line {n}" for n in range(100))
    error = mongrel2.Mongrel2Error("it broke", log=log, address_in_use=True)
    assert error.address_in_use
    assert error.log == log
    assert "it broke" in str(error)
    assert "line 99" in str(error) and "line 10\n" not in str(error)


def test_start_without_prepare_is_a_clear_error(tmp_path: object) -> None:
    server = Mongrel2Server(
        str(tmp_path), config(), mongrel2_bin="/bin/false", m2sh_bin="/bin/false"
    )
    with pytest.raises(mongrel2.Mongrel2Error, match="call prepare"):
        server.start()
    with pytest.raises(mongrel2.Mongrel2Error, match="was not started"):
        server.wait_ready(0.1)


# --------------------------------------------------------------------------- CLI


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    mongrel2.add_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_up_defaults() -> None:
    args = parse(["mongrel2", "up", "--app", "hello:app"])
    assert args.func is mongrel2._cmd_up
    assert (args.app, args.dir, args.host, args.port) == (
        "hello:app",
        "./run/mongrel2",
        "127.0.0.1",
        6767,
    )
    assert (args.send_spec, args.recv_spec, args.tnetstring) == (SEND, RECV, False)


def test_cli_up_options_and_down() -> None:
    args = parse(
        [
            "mongrel2", "up", "--app", "m:app", "--dir", "d", "--port", "7000",
            "--tnetstring", "--static", "/s/=static", "--content-length", "99",
        ]
    )  # fmt: skip
    assert (args.dir, args.port, args.tnetstring, args.static) == ("d", 7000, True, ["/s/=static"])
    assert args.content_length == 99
    down = parse(["mongrel2", "down", "--dir", "d"])
    assert down.func is mongrel2._cmd_down and down.dir == "d"


def test_cli_up_rejects_a_bad_config(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["mongrel2", "up", "--app", "m:app", "--dir", str(tmp_path), "--port", "0"])
    assert args.func(args) == 2
    assert "port must be between 1 and 65535" in capsys.readouterr().err


def test_cli_is_registered() -> None:
    from takefive import cli

    assert "takefive.mongrel2" in cli.COMMAND_MODULES
