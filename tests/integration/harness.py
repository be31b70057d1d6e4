"""Helpers for the integration suites: real processes, real sockets, no mocks.

The pytest fixtures in ``conftest.py`` wrap these; import the classes from here for type
hints and for the raw helpers (``RawHandler``, ``RawHTTPClient``, ``http_request``).

Everything that waits polls with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid as uuid_module
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import zmq

from takefive import wire
from takefive.mongrel2 import (
    HandlerRoute,
    Mongrel2Config,
    Mongrel2Error,
    Mongrel2Server,
    find_binaries,
)

INTEGRATION_DIR = Path(__file__).resolve().parent
APPS_DIR = INTEGRATION_DIR / "apps"
REPO_ROOT = INTEGRATION_DIR.parent.parent
SRC_DIR = REPO_ROOT / "src"

#: How many times a start is retried with fresh ports when a port was taken meanwhile.
START_ATTEMPTS = 3


# --------------------------------------------------------------------------- policy


def unavailable(reason: str) -> None:
    """A real component cannot run here: FAIL under CI=true, else skip with the reason."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: required components must run)", pytrace=False)
    pytest.skip(reason)


def require_mongrel2() -> None:
    try:
        find_binaries()
    except Mongrel2Error as exc:
        unavailable(str(exc))


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free TCP ports on ``host`` (bound to port 0, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One free TCP port on ``host``."""
    return free_ports(1, host)[0]


def tcp_spec(port: int, host: str = "127.0.0.1") -> str:
    return f"tcp://{host}:{port}"


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """A subprocess with its output in a log file; restartable; killed at teardown."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> ManagedProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"===== start {self.starts + 1}: {' '.join(self.command)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process else None

    def send_signal(self, sig: int) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit; AssertionError (with the log) after ``timeout``."""
        assert self.process is not None, f"{self.name} was never started"
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:g} s\n{self.log_text()}"
            ) from None

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` (SIGTERM), wait up to ``timeout``, then SIGKILL. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> int | None:
        """SIGKILL at once (a crash)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()

    def restart(self, timeout: float = 5.0) -> ManagedProcess:
        self.stop(timeout)
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> None:
        """Wait until ``text`` appears in the output; fail early if the process exits."""

        def seen() -> bool:
            if text in self.log_text():
                return True
            if not self.alive:
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) before logging {text!r}:\n"
                    f"{self.log_text()}"
                )
            return False

        wait_for(seen, timeout, what=f"{text!r} in the log of {self.name}")


class HandlerProcess(ManagedProcess):
    """``python -m takefive run APP --send-spec S --recv-spec R`` as a subprocess."""


def python_env(
    extra: Mapping[str, str] | None = None, paths: Sequence[Path] = ()
) -> dict[str, str]:
    """The environment for Python subprocesses: test apps and src/ importable, unbuffered."""
    env = dict(os.environ)
    pythonpath = [str(p) for p in (*paths, APPS_DIR, INTEGRATION_DIR, SRC_DIR)]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class HandlerFactory:
    """Starts handler processes; every one is killed by :meth:`close` (fixture teardown)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(
        self,
        app_ref: str,
        send_spec: str,
        recv_spec: str,
        *,
        sender_id: str | None = None,
        extra_args: Sequence[str] = (),
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        python_path: Sequence[Path] = (),
        name: str | None = None,
    ) -> HandlerProcess:
        """Start ``takefive run app_ref`` connected to a front end's specs.

        ``cwd`` defaults to tests/integration/apps/ (which is also on PYTHONPATH, with
        tests/integration/ and src/), so ``hello:app``, ``apps.hello:app`` and
        ``hello.py:app`` all work for a file tests/integration/apps/hello.py.
        """
        command = [
            sys.executable, "-m", "takefive", "run", app_ref,
            "--send-spec", send_spec, "--recv-spec", recv_spec,
        ]  # fmt: skip
        if sender_id is not None:
            command += ["--sender-id", sender_id]
        command += list(extra_args)
        number = len(self.processes) + 1
        name = name or f"handler-{number}"
        process = HandlerProcess(
            name=name,
            command=command,
            cwd=cwd or (APPS_DIR if APPS_DIR.is_dir() else INTEGRATION_DIR),
            env=python_env(env, python_path),
            log_path=self.log_dir / f"{name}.log",
        )
        self.processes.append(process)
        return process.start()  # type: ignore[return-value]

    def spawn(
        self,
        command: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> ManagedProcess:
        """Start any other command (e.g. a worker) under the same teardown guarantee."""
        name = name or f"process-{len(self.processes) + 1}"
        process = ManagedProcess(
            name=name,
            command=list(command),
            cwd=cwd or INTEGRATION_DIR,
            env=python_env(env),
            log_path=self.log_dir / f"{name}.log",
        )
        self.processes.append(process)
        return process.start()

    def close(self, timeout: float = 5.0) -> None:
        """SIGTERM every process at once, wait up to ``timeout``, SIGKILL what is left."""
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if process.process is None:
                continue
            try:
                process.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()

    def report(self) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.pid}, exit {p.returncode}) {p.log_path}\n{p.log_text()}"
            for p in self.processes
        )


# --------------------------------------------------------------------------- front ends


class Frontend(Protocol):
    """What the acceptance suites need from a front end (Mongrel2 or the gateway).

    ``send_spec`` is where handlers connect PULL, ``recv_spec`` where they connect PUB
    (both bound by the front end); ``uuid`` is the sender id in requests it sends.
    """

    kind: str
    host: str
    http_port: int
    send_spec: str
    recv_spec: str
    uuid: str

    def url(self, path: str = "/") -> str: ...

    def start_handler(self, app_ref: str, **kwargs: Any) -> HandlerProcess: ...

    def log_text(self) -> str: ...


@dataclass
class RunningMongrel2:
    """A started Mongrel2 (a :class:`Frontend`); stopped by the factory at teardown."""

    server: Mongrel2Server
    send_spec: str
    recv_spec: str
    handlers: HandlerFactory
    kind: str = "mongrel2"
    extra_routes: list[HandlerRoute] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return self.server.config.uuid

    @property
    def host(self) -> str:
        return self.server.config.host

    @property
    def http_port(self) -> int:
        return self.server.config.port

    @property
    def site_dir(self) -> Path:
        return self.server.site_dir

    def url(self, path: str = "/") -> str:
        return self.server.url(path)

    def start_handler(self, app_ref: str, **kwargs: Any) -> HandlerProcess:
        return self.handlers.start(app_ref, self.send_spec, self.recv_spec, **kwargs)

    def log_text(self) -> str:
        return self.server.log_text()

    def stop(self) -> None:
        self.server.stop()

    def restart(self, timeout: float = 15.0) -> None:
        """Stop and start the same server (same ports, same uuid)."""
        self.server.stop()
        self.server.start()
        self.server.wait_ready(timeout)


class Mongrel2Factory:
    """Starts real Mongrel2 servers on free loopback ports in per-server site dirs."""

    def __init__(self, base_dir: Path, handlers: HandlerFactory) -> None:
        self.base_dir = base_dir
        self.handlers = handlers
        self.servers: list[RunningMongrel2] = []

    def start(
        self,
        *,
        protocol: str = "json",
        tnetstring: bool = False,
        content_length: int | None = None,
        upload_temp_store: str | None = "/tmp/upload.XXXXXX",
        static_dirs: Mapping[str, str] | None = None,
        settings: Mapping[str, int | str] | None = None,
        extra_routes: Callable[[], Sequence[HandlerRoute]] | None = None,
        uuid: str | None = None,
        prefix: str = "/",
        timeout: float = 20.0,
    ) -> RunningMongrel2:
        """Start one Mongrel2 routing ``prefix`` (default everything) to fresh tcp specs.

        ``protocol="tnetstring"`` (or ``tnetstring=True``) for tnetstring headers;
        ``extra_routes`` is called for each attempt to build more routes (use
        :func:`free_port` inside it). Skips (fails under CI) if Mongrel2 cannot run.
        """
        require_mongrel2()
        if tnetstring:
            protocol = "tnetstring"
        number = len(self.servers) + 1
        last: Mongrel2Error | None = None
        for attempt in range(1, START_ATTEMPTS + 1):
            http_port, send_port, recv_port = free_ports(3)
            send_spec, recv_spec = tcp_spec(send_port), tcp_spec(recv_port)
            routes = [HandlerRoute(prefix, send_spec, recv_spec, protocol=protocol)]  # type: ignore[arg-type]
            routes += list(extra_routes() if extra_routes else ())
            config = Mongrel2Config(
                uuid=uuid or f"m2-{number}-{uuid_module.uuid4().hex[:12]}",
                port=http_port,
                handlers=routes,
                static_dirs=dict(static_dirs or {}),
                content_length=content_length,
                upload_temp_store=upload_temp_store,
                settings=dict(settings or {}),
            )
            server = Mongrel2Server(self.base_dir / f"mongrel2-{number}-{attempt}", config)
            running = RunningMongrel2(server, send_spec, recv_spec, self.handlers)
            self.servers.append(running)
            try:
                server.prepare()
                server.start()
                server.wait_ready(timeout)
                return running
            except Mongrel2Error as exc:
                server.stop()
                last = exc
                if not exc.address_in_use:
                    break
        assert last is not None
        unavailable(f"Mongrel2 could not start: {last}")
        raise AssertionError("unreachable")

    def close(self, timeout: float = 10.0) -> None:
        """SIGINT every server at once, then wait (SIGKILL after ``timeout``)."""
        for running in self.servers:
            process = running.server.process
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for running in self.servers:
            process = running.server.process
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.0, deadline - time.monotonic()))
            running.server.stop(timeout=0.0)  # SIGKILL if still running; pid file cleanup

    def report(self) -> str:
        return "\n".join(
            f"----- mongrel2 {m.uuid} on port {m.http_port} ({m.site_dir})\n{m.log_text()}"
            for m in self.servers
        )


#: How the gateway is started (the same flags as ``takefive gateway``).
GATEWAY_COMMAND = [sys.executable, "-m", "takefive.gateway"]


@dataclass
class RunningGateway:
    """The built-in gateway as a :class:`Frontend`."""

    process: ManagedProcess
    host: str
    http_port: int
    send_spec: str
    recv_spec: str
    uuid: str
    handlers: HandlerFactory
    kind: str = "gateway"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.http_port}{path}"

    def start_handler(self, app_ref: str, **kwargs: Any) -> HandlerProcess:
        return self.handlers.start(app_ref, self.send_spec, self.recv_spec, **kwargs)

    def log_text(self) -> str:
        return self.process.log_text()

    def stop(self) -> None:
        self.process.stop()


class GatewayFactory:
    """Starts ``python -m takefive gateway --listen HOST:PORT --send-spec S --recv-spec R``.

    The gateway binds PUSH on ``send_spec`` and SUB on ``recv_spec`` exactly like
    Mongrel2, so the same handlers and tests work behind it.
    """

    def __init__(self, handlers: HandlerFactory) -> None:
        self.handlers = handlers
        self.gateways: list[RunningGateway] = []

    def start(
        self,
        *,
        protocol: str = "json",
        tnetstring: bool = False,
        content_length: int | None = None,
        uuid: str | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
        **mongrel2_only: Any,
    ) -> RunningGateway:
        """Start a gateway on free ports. Takes the Mongrel2 factory's options:
        ``protocol="tnetstring"`` -> ``--tnetstring``, ``content_length`` ->
        ``--max-body-size`` (the gateway answers 413 instead of spooling to a file);
        Mongrel2-only options (``static_dirs``, ``settings``, ...) are ignored.
        """
        flags = list(extra_args)
        if tnetstring or protocol == "tnetstring":
            flags.append("--tnetstring")
        if content_length is not None:
            flags += ["--max-body-size", str(content_length)]
        last_log = ""
        for _attempt in range(START_ATTEMPTS):
            http_port, send_port, recv_port = free_ports(3)
            send_spec, recv_spec = tcp_spec(send_port), tcp_spec(recv_port)
            gateway_uuid = uuid or f"gw-{uuid_module.uuid4().hex[:12]}"
            command = [
                *GATEWAY_COMMAND,
                "--listen", f"127.0.0.1:{http_port}",
                "--send-spec", send_spec, "--recv-spec", recv_spec,
                "--uuid", gateway_uuid, *flags,
            ]  # fmt: skip
            process = self.handlers.spawn(command, name=f"gateway-{len(self.gateways) + 1}")
            gateway = RunningGateway(
                process, "127.0.0.1", http_port, send_spec, recv_spec, gateway_uuid, self.handlers
            )
            self.gateways.append(gateway)
            deadline = time.monotonic() + timeout
            while process.alive and time.monotonic() < deadline:
                if port_open("127.0.0.1", http_port):
                    return gateway
                time.sleep(0.02)
            last_log = process.log_text()
            process.stop()
            if "in use" not in last_log.lower():
                break
        unavailable(f"the takefive gateway could not start:\n{last_log}")
        raise AssertionError("unreachable")

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()


# --------------------------------------------------------------------------- raw ZeroMQ handler


class RawHandler:
    """A minimal handler written with plain pyzmq: PULL from send_spec, XPUB to recv_spec.

    XPUB (not PUB) so :meth:`wait_subscribed` can see the front end's SUB subscription:
    after it, responses are not dropped by the PUB/SUB slow-joiner race.
    """

    def __init__(self, send_spec: str, recv_spec: str, context: zmq.Context[Any] | None = None):
        self.context = context or zmq.Context.instance()
        self.pull = self.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.connect(send_spec)
        self.pub = self.context.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 1000)
        self.pub.connect(recv_spec)
        self.subscribed = False

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        if self.subscribed:
            return
        if not self.pub.poll(int(timeout * 1000)):
            raise AssertionError(f"the front end did not subscribe within {timeout:g} s")
        self.pub.recv()
        self.subscribed = True

    def recv(self, timeout: float = 10.0) -> bytes:
        if not self.pull.poll(int(timeout * 1000)):
            raise AssertionError(f"no request within {timeout:g} s")
        return self.pull.recv()

    def recv_message(self, timeout: float = 10.0) -> wire.Message:
        return wire.parse_request(self.recv(timeout))

    def recv_request(self, timeout: float = 10.0) -> wire.Message:
        """The next message that is not a disconnect notice."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv_message(max(0.01, deadline - time.monotonic()))
            if not message.is_disconnect:
                return message

    def no_message(self, timeout: float = 0.3) -> bool:
        return not self.pull.poll(int(timeout * 1000))

    def send(self, frame: bytes) -> None:
        self.wait_subscribed()
        self.pub.send(frame)

    def reply(self, sender: str, conn_ids: str | int | Sequence[str | int], data: bytes) -> None:
        for frame in wire.encode_response(sender, conn_ids, data):
            self.send(frame)

    def close_connections(self, sender: str, conn_ids: str | int | Sequence[str | int]) -> None:
        for frame in wire.encode_close(sender, conn_ids):
            self.send(frame)

    def close(self) -> None:
        self.pull.close(0)
        self.pub.close(0)

    def __enter__(self) -> RawHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- HTTP clients


def http_request(
    port: int,
    method: str = "GET",
    path: str = "/",
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.msg, response.read()
    finally:
        conn.close()


class RawHTTPClient:
    """A raw-socket HTTP client: send exact bytes, read exact bytes."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise AssertionError(f"connection closed after {len(self.buffer)} of {size} bytes")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before {marker!r}: {self.buffer[:200]!r}")
        index = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:index], self.buffer[index:]
        return data

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        """One HTTP/1.x response with a Content-Length body: (status, headers, body)."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.read_exactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, body

    def read_to_close(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` with no more data."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        self.buffer += chunk
        return chunk == b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawHTTPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def raw_clients(port: int, count: int) -> Iterator[list[RawHTTPClient]]:
    clients = [RawHTTPClient(port) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()
