"""The stacks the suite measures: how to start each one, and whether it can start here.

Every stack serves :mod:`bench.content`'s three routes on a free loopback port. A
stack whose pieces are missing (a package, a binary, a takefive module that is not in
the checkout yet) reports ``not available: <reason>`` instead of being measured.
"""

from __future__ import annotations

import http.client
import importlib
import importlib.util
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import content
from bench.procs import ProcessGroup, StackFailed

PY = sys.executable
BASELINE = "uvicorn-starlette"
FLOOR = "raw-m2"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tcp_spec() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@dataclass
class Launch:
    """What a stack's starter gets: its process group and its own scratch directory."""

    group: ProcessGroup
    workdir: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Stack:
    name: str
    label: str
    kind: str  # "peer", "takefive" or "floor"
    packages: tuple[str, ...]
    modules: tuple[str, ...]  # must be importable (find_spec) for the stack to run
    binaries: tuple[str, ...]
    start: Callable[[Launch], None]
    handlers: int = 0  # handler processes (ZeroMQ stacks)
    description: str = ""

    def unavailable(self) -> str | None:
        """Why this stack cannot run here, or None."""
        for binary in self.binaries:
            if shutil.which(binary) is None:
                return f"{binary} is not installed"
        for module in self.modules:
            try:
                found = importlib.util.find_spec(module)
            except (ImportError, ValueError) as exc:
                return f"{module} cannot be imported ({exc})"
            if found is None:
                return f"{module} is not in this checkout/venv yet"
        if self.kind == "takefive":
            try:
                importlib.import_module("bench.stacks.takefive_app")
            except Exception as exc:  # an API that does not match yet
                return f"bench.stacks.takefive_app does not import: {exc!r}"
        return None


# --------------------------------------------------------------------------- starters


def _handler_argv(app: str, send_spec: str, recv_spec: str) -> list[str]:
    return [
        PY,
        "-m",
        "takefive",
        "--log-level",
        "WARNING",
        "run",
        app,
        "--send-spec",
        send_spec,
        "--recv-spec",
        recv_spec,
    ]


def _raw_argv(send_spec: str, recv_spec: str) -> list[str]:
    return [PY, "-m", "bench.raw_handler", send_spec, recv_spec]


def _start_mongrel2(launch: Launch, send_spec: str, recv_spec: str) -> None:
    from takefive.mongrel2 import HandlerRoute, Mongrel2Config, Mongrel2Error, Mongrel2Server

    config = Mongrel2Config(
        uuid=str(uuid.uuid4()),
        host="127.0.0.1",
        port=launch.port,
        handlers=[HandlerRoute("/", send_spec, recv_spec)],
        # About 100 bytes a request: the scratch directory is deleted after the stack.
        access_log="/logs/access.log",
    )
    server = Mongrel2Server(launch.workdir / "mongrel2", config)
    try:
        server.prepare()
        server.start()
        server.wait_ready(timeout=20)
    except Mongrel2Error as exc:
        server.stop()
        raise StackFailed(f"mongrel2 did not start: {exc}") from exc
    assert server.pid is not None
    launch.group.adopt(
        "mongrel2",
        server.pid,
        ["mongrel2", server.DB_FILE, config.uuid],
        stop=server.stop,
        log_path=server.output_log,
    )


def mongrel2_stack(handlers: int, raw: bool = False) -> Callable[[Launch], None]:
    def start(launch: Launch) -> None:
        send_spec, recv_spec = tcp_spec(), tcp_spec()
        _start_mongrel2(launch, send_spec, recv_spec)
        for n in range(1, handlers + 1):
            argv = (
                _raw_argv(send_spec, recv_spec)
                if raw
                else _handler_argv("bench.stacks.takefive_app:app", send_spec, recv_spec)
            )
            launch.group.spawn(f"handler{n}", argv)

    return start


def _gateway_argv(port: int, send_spec: str, recv_spec: str) -> list[str]:
    from takefive import cli

    options = [
        "--listen", f"127.0.0.1:{port}", "--send-spec", send_spec, "--recv-spec", recv_spec,
        "--no-access-log",
    ]  # fmt: skip
    if "takefive.gateway" in cli.COMMAND_MODULES:
        return [PY, "-m", "takefive", "--log-level", "WARNING", "gateway", *options]
    return [PY, "-m", "takefive.gateway", *options]


def gateway_stack(handlers: int) -> Callable[[Launch], None]:
    def start(launch: Launch) -> None:
        send_spec, recv_spec = tcp_spec(), tcp_spec()
        launch.group.spawn("gateway", _gateway_argv(launch.port, send_spec, recv_spec))
        for n in range(1, handlers + 1):
            launch.group.spawn(
                f"handler{n}",
                _handler_argv("bench.stacks.takefive_app:app", send_spec, recv_spec),
            )

    return start


def _start_uvicorn(launch: Launch) -> None:
    launch.group.spawn(
        "uvicorn",
        [
            PY,
            "-m",
            "uvicorn",
            "bench.stacks.starlette_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(launch.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ],
    )


def _start_aiohttp(launch: Launch) -> None:
    launch.group.spawn(
        "aiohttp", [PY, "-m", "bench.stacks.aiohttp_app", "--port", str(launch.port)]
    )


def _start_granian(launch: Launch) -> None:
    granian = str(Path(PY).with_name("granian"))
    launch.group.spawn(
        "granian",
        [
            granian,
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(launch.port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "bench.stacks.starlette_app:app",
        ],
    )


_TAKEFIVE_MODULES = ("takefive.app", "takefive.runner", "takefive.request", "takefive.response")
_TAKEFIVE_PACKAGES = ("takefive", "pyzmq", "orjson", "jinja2", "uvloop")


def all_stacks() -> list[Stack]:
    stacks = [
        Stack(
            BASELINE,
            "uvicorn + Starlette",
            "peer",
            ("uvicorn", "starlette", "uvloop", "httptools", "jinja2"),
            ("uvicorn", "starlette", "uvloop", "httptools"),
            (),
            _start_uvicorn,
            description="uvicorn (uvloop, httptools, no access log), 1 process",
        ),
        Stack(
            "aiohttp",
            "aiohttp",
            "peer",
            ("aiohttp", "uvloop", "jinja2"),
            ("aiohttp", "uvloop"),
            (),
            _start_aiohttp,
            description="aiohttp.web on uvloop, no access log, Jinja2 called directly",
        ),
        Stack(
            "granian-starlette",
            "granian + Starlette",
            "peer",
            ("granian", "starlette", "uvloop", "jinja2"),
            ("granian", "starlette"),
            (),
            _start_granian,
            description="granian ASGI, 1 worker, uvloop",
        ),
        Stack(
            FLOOR,
            "raw pyzmq + Mongrel2",
            "floor",
            ("pyzmq",),
            ("zmq", "takefive.mongrel2"),
            ("mongrel2", "m2sh"),
            mongrel2_stack(1, raw=True),
            handlers=1,
            description="Mongrel2 + bench/raw_handler.py: synchronous pyzmq, precomputed answers",
        ),
    ]
    for n in (1, 2):
        stacks.append(
            Stack(
                f"takefive-m2-{n}",
                f"takefive + Mongrel2, {n} handler{'s' * (n > 1)}",
                "takefive",
                _TAKEFIVE_PACKAGES,
                (*_TAKEFIVE_MODULES, "takefive.mongrel2"),
                ("mongrel2", "m2sh"),
                mongrel2_stack(n),
                handlers=n,
                description=f"Mongrel2 + {n} `takefive run` process{'es' * (n > 1)}",
            )
        )
    for n in (1, 2):
        stacks.append(
            Stack(
                f"takefive-gw-{n}",
                f"takefive + gateway, {n} handler{'s' * (n > 1)}",
                "takefive",
                (*_TAKEFIVE_PACKAGES, "httptools"),
                (*_TAKEFIVE_MODULES, "takefive.gateway"),
                (),
                gateway_stack(n),
                handlers=n,
                description=f"`takefive gateway` + {n} `takefive run` process{'es' * (n > 1)}",
            )
        )
    return stacks


def by_name() -> dict[str, Stack]:
    return {s.name: s for s in all_stacks()}


# --------------------------------------------------------------------------- checks


def get(url: str, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(launch: Launch, timeout: float = 30.0) -> None:
    """Poll GET /hello until it answers 200 (every process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        launch.group.check_alive()
        try:
            status, _, _ = get(launch.url, content.PATHS["hello"], timeout=1.0)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise StackFailed(f"no 200 from {launch.url}/hello within {timeout:g} s (last: {last})")


def sanity_check(launch: Launch, handlers: int = 1) -> None:
    """Every route answers 200 with the expected body (a few times, to reach every handler)."""
    for route in content.ROUTES:
        for _ in range(max(2, 2 * handlers)):
            status, headers, body = get(launch.url, content.PATHS[route])
            if status != 200:
                raise StackFailed(
                    f"GET {content.PATHS[route]}: status {status}, body {body[:200]!r}"
                )
            if not content.body_matches(route, body):
                raise StackFailed(
                    f"GET {content.PATHS[route]}: unexpected body "
                    f"({len(body)} bytes): {body[:200]!r}"
                )
            ctype = headers.get("content-type", "")
            if not ctype.startswith(content.CONTENT_TYPES[route]):
                raise StackFailed(f"GET {content.PATHS[route]}: content-type {ctype!r}")
