"""Run the real Mongrel2 web server in front of takefive handlers.

Three layers:

* :class:`Mongrel2Config` (with :class:`HandlerRoute`) describes one Mongrel2 server and
  renders a ``mongrel2.conf`` that ``m2sh load`` accepts. Everything is validated when the
  object is built, with a message that names the bad field.
* :class:`Mongrel2Server` owns a *site directory*: it writes the config there, loads it into
  ``config.sqlite`` with ``m2sh``, starts ``mongrel2`` in the foreground with the site
  directory as its working directory (and chroot), waits until it serves, and stops it.
* ``takefive mongrel2 up`` / ``takefive mongrel2 down``: a detached Mongrel2 plus one
  ``takefive run`` handler process, for development.

Facts this module relies on (Mongrel2 1.12, measured; see docs/mongrel2.md):

* Paths in the config are relative to ``chroot="./"``, i.e. to the site directory. As root,
  Mongrel2 chroots there and switches to the *owner* of the directory, so ``run/``, ``logs/``
  and ``tmp/`` must be writable by that owner: :meth:`Mongrel2Server.prepare` chowns them.
  As non-root the chroot fails and Mongrel2 runs in "test mode" (error log on stderr, paths
  relative to the working directory, which is the same directory).
* Relative ``ipc://`` specs are relative to the site directory either way; handlers outside
  must connect to the absolute path (:meth:`Mongrel2Server.connect_spec`).
* A port that is taken makes Mongrel2 exit with "Can't announce on TCP port"; a ZeroMQ spec
  that is taken makes it retry "Failed to bind ... socket" forever while serving HTTP.
* A stale ``run/mongrel2.pid`` whose PID was reused makes it refuse to start.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid as uuid_module
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = [
    "HandlerRoute",
    "Mongrel2Config",
    "Mongrel2Error",
    "Mongrel2NotFound",
    "Mongrel2Server",
    "add_command",
    "find_binaries",
]

log = logging.getLogger(__name__)

Protocol = Literal["json", "tnetstring"]

_UUID_RE = re.compile(r"[A-Za-z0-9-]{1,128}\Z")
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_SETTING_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+\Z")
_TCP_SPEC_RE = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(?P<port>[0-9]{1,5})\Z")
#: Characters Mongrel2's config parser cannot take inside a quoted string.
_BAD_CHARS_RE = re.compile(r'["\\\x00-\x1f\x7f]')

#: Text Mongrel2 logs once it has bound its ZeroMQ sockets and is serving.
_SUB_BOUND = "Binding listener SUB socket {spec}"
_BIND_FAILED = "Failed to bind"
_ANNOUNCE_FAILED = "Can't announce"

DEBIAN_PACKAGE = "mongrel2-core"


class Mongrel2Error(RuntimeError):
    """Mongrel2 could not be configured, loaded, started or stopped.

    ``log`` holds what Mongrel2 (or m2sh) printed; ``address_in_use`` is true when the
    failure was a taken TCP port or ZeroMQ endpoint (a retry on other ports may work).
    """

    def __init__(self, message: str, *, log: str = "", address_in_use: bool = False) -> None:
        if log:
            message = f"{message}\n--- mongrel2 output ---\n{_tail(log)}"
        super().__init__(message)
        self.log = log
        self.address_in_use = address_in_use


class Mongrel2NotFound(Mongrel2Error):
    """The ``mongrel2`` or ``m2sh`` binary is not installed."""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def find_binaries() -> tuple[str, str]:
    """Return the paths of ``mongrel2`` and ``m2sh``, or raise :class:`Mongrel2NotFound`."""
    found = {name: shutil.which(name) for name in ("mongrel2", "m2sh")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise Mongrel2NotFound(
            f"{' and '.join(missing)} not found on PATH: install Mongrel2 "
            f"(Debian/Ubuntu: apt-get install {DEBIAN_PACKAGE})"
        )
    mongrel2, m2sh = found["mongrel2"], found["m2sh"]
    assert mongrel2 is not None and m2sh is not None
    return mongrel2, m2sh


# --------------------------------------------------------------------------- validation


def _check_text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {type(value).__name__}")
    if _BAD_CHARS_RE.search(value):
        raise ValueError(
            f"{field} {value!r} may not contain quotes, backslashes or control characters"
        )
    return value


def _check_port(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer, not {value!r}")
    if not 1 <= value <= 65535:
        raise ValueError(f"{field} must be between 1 and 65535, not {value}")
    return value


def _check_uuid(field: str, value: object) -> str:
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise ValueError(
            f"{field} {value!r} must be 1-128 characters from A-Z, a-z, 0-9 and '-' "
            "(Mongrel2 rejects responses addressed to anything else)"
        )
    return value


def _check_prefix(field: str, value: object) -> str:
    prefix = _check_text(field, value)
    if not prefix.startswith("/"):
        raise ValueError(f"{field} {prefix!r} must start with '/'")
    return prefix


def _check_spec(field: str, value: object) -> str:
    spec = _check_text(field, value)
    if spec.startswith("tcp://"):
        match = _TCP_SPEC_RE.match(spec)
        if not match:
            raise ValueError(f"{field} {spec!r} must look like tcp://HOST:PORT")
        _check_port(f"{field} port", int(match["port"]))
        return spec
    if spec.startswith("ipc://"):
        if len(spec) == len("ipc://") or " " in spec:
            raise ValueError(f"{field} {spec!r} must name a socket file, e.g. ipc://run/send")
        return spec
    raise ValueError(f"{field} {spec!r} must be a tcp:// or ipc:// ZeroMQ endpoint")


def _check_relative_dir(field: str, value: object) -> str:
    path = _check_text(field, value)
    parts = Path(path).parts
    if not path or Path(path).is_absolute() or ".." in parts:
        raise ValueError(
            f"{field} {path!r} must be a relative path inside the site directory "
            "(Mongrel2 chroots there)"
        )
    return path.rstrip("/") + "/"


def _quote(value: str) -> str:
    # Values are validated: no quotes, backslashes or control characters.
    return f'"{value}"'


# --------------------------------------------------------------------------- config model


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerRoute:
    """Route URL ``prefix`` to a ZeroMQ handler.

    Mongrel2 binds PUSH on ``send_spec`` (requests go out there) and SUB on ``recv_spec``
    (responses come in there). ``send_ident`` is the identity of the PUSH socket; it
    defaults to the server's uuid. ``protocol="tnetstring"`` makes Mongrel2 encode request
    headers as a tnetstring dict instead of JSON.
    """

    prefix: str
    send_spec: str
    recv_spec: str
    send_ident: str | None = None
    protocol: Protocol = "json"
    recv_ident: str = ""

    def __post_init__(self) -> None:
        _check_prefix("route prefix", self.prefix)
        _check_spec("send_spec", self.send_spec)
        _check_spec("recv_spec", self.recv_spec)
        if self.send_spec == self.recv_spec:
            raise ValueError(f"send_spec and recv_spec are both {self.send_spec!r}")
        if self.send_ident is not None:
            _check_uuid("send_ident", self.send_ident)
        if self.recv_ident:
            _check_uuid("recv_ident", self.recv_ident)
        if self.protocol not in ("json", "tnetstring"):
            raise ValueError(f"protocol must be 'json' or 'tnetstring', not {self.protocol!r}")

    def _handler_key(self) -> tuple[str, str, str | None, str, str]:
        return (self.send_spec, self.recv_spec, self.send_ident, self.protocol, self.recv_ident)


@dataclasses.dataclass(frozen=True, slots=True)
class Mongrel2Config:
    """One Mongrel2 server: where it listens, what it routes where, and its limits.

    ``static_dirs`` maps URL prefixes to directories relative to the site directory.
    ``content_length`` is ``limits.content_length`` (bodies above it go to
    ``upload_temp_store``, or get 413 when that is ``None``); ``None`` keeps Mongrel2's
    default (20,480 bytes). Log, pid and upload paths are inside the chroot (the site
    directory). ``settings`` adds or overrides any other Mongrel2 setting.
    """

    uuid: str
    host: str = "127.0.0.1"
    port: int = 6767
    handlers: Sequence[HandlerRoute] = ()
    static_dirs: Mapping[str, str] = dataclasses.field(default_factory=dict)
    content_length: int | None = None
    upload_temp_store: str | None = "/tmp/upload.XXXXXX"
    access_log: str = "/logs/access.log"
    error_log: str = "/logs/error.log"
    pid_file: str = "/run/mongrel2.pid"
    name: str = "main"
    default_host: str = "localhost"
    settings: Mapping[str, int | str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_uuid("server uuid", self.uuid)
        _check_text("host", self.host)
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(
                f"host {self.host!r} must be an IP address to bind to, e.g. 127.0.0.1"
            ) from None
        _check_port("port", self.port)
        handlers = tuple(self.handlers)
        for route in handlers:
            if not isinstance(route, HandlerRoute):
                raise ValueError(f"handlers must be HandlerRoute objects, not {route!r}")
        object.__setattr__(self, "handlers", handlers)
        static = dict(self.static_dirs)
        object.__setattr__(self, "static_dirs", static)
        prefixes = [r.prefix for r in handlers]
        prefixes += [_check_prefix("static prefix", p) for p in static]
        dupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if dupes:
            raise ValueError(f"route prefix {dupes[0]!r} is used more than once")
        for directory in static.values():
            _check_relative_dir("static directory", directory)
        self._check_specs(handlers)
        if self.content_length is not None and (
            isinstance(self.content_length, bool)
            or not isinstance(self.content_length, int)
            or self.content_length < 1
        ):
            raise ValueError(
                f"content_length must be a positive integer, not {self.content_length!r}"
            )
        if self.upload_temp_store is not None:
            _check_text("upload_temp_store", self.upload_temp_store)
            if not self.upload_temp_store.endswith("XXXXXX"):
                raise ValueError(
                    f"upload_temp_store {self.upload_temp_store!r} must end in XXXXXX "
                    "(a mkstemp template, e.g. /tmp/upload.XXXXXX)"
                )
        for field in ("access_log", "error_log", "pid_file"):
            path = _check_text(field, getattr(self, field))
            if not path.startswith("/"):
                raise ValueError(
                    f"{field} {path!r} must be an absolute path inside the chroot, e.g. /logs/x"
                )
        if not _NAME_RE.match(_check_text("name", self.name)):
            raise ValueError(f"name {self.name!r} must be a short word")
        _check_text("default_host", self.default_host)
        settings = dict(self.settings)
        for key, value in settings.items():
            if not isinstance(key, str) or not _SETTING_RE.match(key):
                raise ValueError(f"setting name {key!r} must look like 'limits.buffer_size'")
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"setting {key!r} must be an integer or a string, not {value!r}")
            if isinstance(value, str):
                _check_text(f"setting {key!r}", value)
        object.__setattr__(self, "settings", settings)

    def _check_specs(self, handlers: tuple[HandlerRoute, ...]) -> None:
        owners: dict[str, tuple[str, tuple[str, str, str | None, str, str]]] = {}
        for route in handlers:
            key = route._handler_key()
            for role, spec in (("send_spec", route.send_spec), ("recv_spec", route.recv_spec)):
                seen = owners.get(spec)
                if seen is not None and (seen[0] != role or seen[1] != key):
                    raise ValueError(
                        f"ZeroMQ endpoint {spec!r} is used by two different handlers; "
                        "give each handler its own send_spec and recv_spec"
                    )
                owners[spec] = (role, key)
                match = _TCP_SPEC_RE.match(spec)
                if (
                    match
                    and int(match["port"]) == self.port
                    and _same_host(match["host"], self.host)
                ):
                    raise ValueError(f"{role} {spec!r} uses the HTTP port {self.port}")

    def all_settings(self) -> dict[str, int | str]:
        """The ``settings`` dict written to the config."""
        settings: dict[str, int | str] = {"server.daemonize": 0}
        if self.content_length is not None:
            settings["limits.content_length"] = self.content_length
        if self.upload_temp_store is not None:
            settings["upload.temp_store"] = self.upload_temp_store
        settings.update(self.settings)
        return settings

    def render(self) -> str:
        """The text of a ``mongrel2.conf`` for ``m2sh load``."""
        lines = ["# Generated by takefive.mongrel2; edits are overwritten.", ""]
        handler_names: dict[tuple[str, str, str | None, str, str], str] = {}
        routes: list[tuple[str, str]] = []
        for route in self.handlers:
            key = route._handler_key()
            if key not in handler_names:
                var = handler_names[key] = f"handler_{len(handler_names) + 1}"
                lines.append(
                    f"{var} = Handler("
                    f"send_spec={_quote(route.send_spec)}, "
                    f"send_ident={_quote(route.send_ident or self.uuid)}, "
                    f"recv_spec={_quote(route.recv_spec)}, "
                    f"recv_ident={_quote(route.recv_ident)}, "
                    f"protocol={_quote(route.protocol)})"
                )
            routes.append((route.prefix, handler_names[key]))
        for number, (prefix, directory) in enumerate(self.static_dirs.items(), 1):
            var = f"dir_{number}"
            base = _check_relative_dir("static directory", directory)
            lines.append(
                f"{var} = Dir(base={_quote(base)}, "
                'index_file="index.html", default_ctype="application/octet-stream")'
            )
            routes.append((prefix, var))
        server_fields = [
            f"{field}={_quote(text)}"
            for field, text in (
                ("uuid", self.uuid),
                ("chroot", "./"),
                ("access_log", self.access_log),
                ("error_log", self.error_log),
                ("pid_file", self.pid_file),
                ("default_host", self.default_host),
                ("name", self.name),
                ("bind_addr", self.host),
            )
        ]
        server_fields.append(f"port={self.port}")
        route_lines = ",\n".join(f"            {_quote(p)}: {var}" for p, var in routes)
        server_fields.append(
            "hosts=[\n"
            f'        Host(name={_quote(self.default_host)}, matching="(.*)", routes={{\n'
            f"{route_lines}\n"
            "        })\n"
            "    ]"
        )
        lines.append("")
        lines.append(f"{self.name} = Server(")
        lines.append(",\n".join(f"    {f}" for f in server_fields))
        lines.append(")")
        lines.append("")
        settings = [
            f"    {_quote(k)}: {v if isinstance(v, int) else _quote(v)}"
            for k, v in self.all_settings().items()
        ]
        lines.append("settings = {")
        lines.append(",\n".join(settings))
        lines.append("}")
        lines.append("")
        lines.append(f"servers = [{self.name}]")
        lines.append("")
        return "\n".join(lines)


def _same_host(spec_host: str, bind_host: str) -> bool:
    spec_host = spec_host.strip("[]")
    if spec_host in ("*", "0.0.0.0", "::") or bind_host in ("0.0.0.0", "::"):
        return True
    if spec_host == "localhost":
        spec_host = "127.0.0.1"
    try:
        return ipaddress.ip_address(spec_host) == ipaddress.ip_address(bind_host)
    except ValueError:
        return False


# --------------------------------------------------------------------------- the process


def _port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Mongrel2Server:
    """One Mongrel2 process serving ``config`` from ``site_dir``.

    ``with Mongrel2Server(dir, config) as server:`` prepares, starts, waits until ready
    and stops on exit. Step by step: :meth:`prepare`, :meth:`start`, :meth:`wait_ready`,
    :meth:`stop`.
    """

    CONFIG_FILE = "mongrel2.conf"
    DB_FILE = "config.sqlite"
    #: Mongrel2's stdout and stderr (everything it logs before the chroot, or all of it
    #: in non-root "test mode").
    OUTPUT_LOG = "logs/mongrel2.out"

    def __init__(
        self,
        site_dir: str | os.PathLike[str],
        config: Mongrel2Config,
        *,
        mongrel2_bin: str | None = None,
        m2sh_bin: str | None = None,
    ) -> None:
        self.site_dir = Path(site_dir).absolute()
        self.config = config
        self._bins = (mongrel2_bin, m2sh_bin)
        self.process: subprocess.Popen[bytes] | None = None
        self._offsets = (0, 0)

    # -- paths

    @property
    def output_log(self) -> Path:
        return self.site_dir / self.OUTPUT_LOG

    @property
    def error_log(self) -> Path:
        return self.site_dir / self.config.error_log.lstrip("/")

    @property
    def pid_file(self) -> Path:
        return self.site_dir / self.config.pid_file.lstrip("/")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def url(self, path: str = "/") -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.config.port}{path}"

    def connect_spec(self, spec: str) -> str:
        """The endpoint a handler outside the site directory connects to for ``spec``.

        Relative ``ipc://`` paths are relative to the site directory (Mongrel2's
        working directory and chroot); other specs are returned unchanged.
        """
        if spec.startswith("ipc://") and not spec.startswith("ipc:///"):
            return "ipc://" + str(self.site_dir / spec[len("ipc://") :])
        return spec

    def _binaries(self) -> tuple[str, str]:
        mongrel2, m2sh = self._bins
        if mongrel2 is None or m2sh is None:
            found = find_binaries()
            mongrel2 = mongrel2 or found[0]
            m2sh = m2sh or found[1]
        return mongrel2, m2sh

    # -- lifecycle

    def prepare(self) -> None:
        """Create the site directory, write and load the config, remove a stale pid file."""
        _, m2sh = self._binaries()
        self.site_dir.mkdir(parents=True, exist_ok=True)
        made = [self.site_dir / name for name in ("run", "logs", "tmp")]
        made += [self.site_dir / d for d in self.config.static_dirs.values()]
        for name in (self.config.access_log, self.config.error_log, self.config.pid_file):
            made.append((self.site_dir / name.lstrip("/")).parent)
        if self.config.upload_temp_store is not None:
            made.append((self.site_dir / self.config.upload_temp_store.lstrip("/")).parent)
        for directory in made:
            directory.mkdir(parents=True, exist_ok=True)
        self._fix_owner(made)
        if self.process is None or self.process.poll() is not None:
            self.pid_file.unlink(missing_ok=True)
        (self.site_dir / self.CONFIG_FILE).write_text(self.config.render(), encoding="utf-8")
        env = dict(os.environ)
        env.setdefault("LOGNAME", "takefive")
        try:
            result = subprocess.run(
                [m2sh, "load", "-config", self.CONFIG_FILE, "-db", self.DB_FILE],
                cwd=self.site_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Mongrel2Error("m2sh load did not finish within 60 s") from exc
        output = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0 or "[ERROR]" in output:
            raise Mongrel2Error(
                f"m2sh load -config {self.site_dir / self.CONFIG_FILE} failed "
                f"(exit status {result.returncode})",
                log=output,
            )
        self._fix_owner([self.site_dir / self.DB_FILE])

    def _fix_owner(self, paths: Sequence[Path]) -> None:
        # As root, Mongrel2 chroots into the site directory and switches to its owner,
        # who must be able to write the logs, the pid file and the uploads.
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return
        owner = self.site_dir.stat()
        for path in paths:
            st = path.stat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(path, owner.st_uid, owner.st_gid)

    def start(self, *, detach: bool = False) -> None:
        """Spawn ``mongrel2 config.sqlite UUID`` in the foreground (no daemonizing).

        ``detach=True`` puts it in its own session so it outlives this process's
        terminal and signals (``takefive mongrel2 up``).
        """
        if self.process is not None and self.process.poll() is None:
            raise Mongrel2Error(f"mongrel2 is already running (pid {self.process.pid})")
        mongrel2, _ = self._binaries()
        if not (self.site_dir / self.DB_FILE).exists():
            raise Mongrel2Error(f"{self.site_dir / self.DB_FILE} does not exist: call prepare()")
        self.pid_file.unlink(missing_ok=True)
        self.output_log.parent.mkdir(parents=True, exist_ok=True)
        self._offsets = (_size(self.output_log), _size(self.error_log))
        with self.output_log.open("ab") as out:
            self.process = subprocess.Popen(
                [mongrel2, self.DB_FILE, self.config.uuid],
                cwd=self.site_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        log.info(
            "mongrel2 %s started (pid %d) on %s", self.config.uuid, self.process.pid, self.url()
        )

    def log_text(self) -> str:
        """What Mongrel2 logged since the last :meth:`start` (output and error log)."""
        output = _read_from(self.output_log, self._offsets[0])
        errors = _read_from(self.error_log, self._offsets[1])
        if self.error_log == self.output_log:
            return output
        return output + errors

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Return once Mongrel2 serves HTTP and has bound every handler's sockets.

        Raises :class:`Mongrel2Error` (after stopping the process) if it exits, cannot
        bind a ZeroMQ endpoint, or is not ready within ``timeout`` seconds.
        """
        process = self.process
        if process is None:
            raise Mongrel2Error("mongrel2 was not started")
        markers = [_SUB_BOUND.format(spec=r.recv_spec) for r in self.config.handlers]
        connect_host = self.config.host
        if connect_host in ("0.0.0.0", "::"):
            connect_host = "127.0.0.1" if connect_host == "0.0.0.0" else "::1"
        deadline = time.monotonic() + timeout
        while True:
            status = process.poll()
            if status is not None:
                text = self.log_text()
                raise Mongrel2Error(
                    f"mongrel2 exited with status {status} before it was ready ({self.site_dir})",
                    log=text,
                    address_in_use=_ANNOUNCE_FAILED in text,
                )
            text = self.log_text()
            if _BIND_FAILED in text:
                self.stop()
                raise Mongrel2Error(
                    "mongrel2 could not bind a handler's ZeroMQ endpoint (in use?)",
                    log=text,
                    address_in_use=True,
                )
            if all(m in text for m in markers) and _port_open(connect_host, self.config.port):
                # The port may belong to someone else for a moment: make sure we did not
                # lose the race for it.
                if process.poll() is None and _ANNOUNCE_FAILED not in self.log_text():
                    return
            if time.monotonic() > deadline:
                text = self.log_text()
                self.stop()
                raise Mongrel2Error(
                    f"mongrel2 was not ready on {self.url()} within {timeout:g} s", log=text
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (graceful), then SIGKILL after ``timeout`` seconds. Returns the status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mongrel2 pid %d ignored SIGINT for %g s: kill", process.pid, timeout)
                process.kill()
                process.wait()
        self.pid_file.unlink(missing_ok=True)
        return process.returncode

    def __enter__(self) -> Mongrel2Server:
        self.prepare()
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI

MONGREL2_PID = "run/takefive-mongrel2.pid"
HANDLER_PID = "run/takefive-handler.pid"
HANDLER_LOG = "logs/handler.log"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Our own child (when called in-process) would linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_pid(pid: int, sig: signal.Signals, timeout: float) -> bool:
    """Signal ``pid``, wait up to ``timeout`` s, then SIGKILL. False if it was not running."""
    if not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            log.warning("pid %d ignored %s for %g s: killing", pid, sig.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    return True


def _down(site: Path, timeout: float) -> list[str]:
    stopped = []
    for name, path, sig in (
        ("handler", site / HANDLER_PID, signal.SIGTERM),
        ("mongrel2", site / MONGREL2_PID, signal.SIGINT),
    ):
        pid = _read_pid(path)
        if pid is not None and _stop_pid(pid, sig, timeout):
            stopped.append(f"{name} (pid {pid})")
        path.unlink(missing_ok=True)
    (site / "run" / "mongrel2.pid").unlink(missing_ok=True)
    return stopped


def _cmd_up(args: argparse.Namespace) -> int:
    site = Path(args.dir).absolute()
    for path in (site / MONGREL2_PID, site / HANDLER_PID):
        pid = _read_pid(path)
        if pid is not None and _pid_alive(pid):
            print(
                f"takefive mongrel2: already running in {site} (pid {pid}); "
                f"run `takefive mongrel2 down --dir {args.dir}` first",
                file=sys.stderr,
            )
            return 1
    try:
        static = dict(_parse_static(s) for s in args.static)
        config = Mongrel2Config(
            uuid=args.uuid or str(uuid_module.uuid4()),
            host=args.host,
            port=args.port,
            handlers=[
                HandlerRoute(
                    "/",
                    args.send_spec,
                    args.recv_spec,
                    protocol="tnetstring" if args.tnetstring else "json",
                )
            ],
            static_dirs=static,
            content_length=args.content_length,
        )
    except ValueError as exc:
        print(f"takefive mongrel2: {exc}", file=sys.stderr)
        return 2
    server = Mongrel2Server(site, config)
    try:
        server.prepare()
        server.start(detach=True)
        assert server.process is not None
        (site / MONGREL2_PID).write_text(f"{server.process.pid}\n")
        server.wait_ready(args.timeout)
    except Mongrel2Error as exc:
        _down(site, 5.0)
        print(f"takefive mongrel2: {exc}", file=sys.stderr)
        return 1

    command = [
        sys.executable, "-m", "takefive", "run", args.app,
        "--send-spec", server.connect_spec(args.send_spec),
        "--recv-spec", server.connect_spec(args.recv_spec),
    ]  # fmt: skip
    handler_log = site / HANDLER_LOG
    with handler_log.open("ab") as out:
        handler = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (site / HANDLER_PID).write_text(f"{handler.pid}\n")
    # A handler that cannot import the app dies at once: say so instead of leaving a
    # server that hangs every request.
    grace = time.monotonic() + args.handler_grace
    while time.monotonic() < grace:
        if handler.poll() is not None:
            _down(site, 5.0)
            print(
                f"takefive mongrel2: the handler exited with status {handler.returncode}:\n"
                f"{_tail(handler_log.read_text(errors='replace'))}",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
    print(
        f"Mongrel2 serving {server.url()} (pid {server.process.pid}), "
        f"handler {args.app} (pid {handler.pid}); logs in {site / 'logs'}.\n"
        f"Stop with: takefive mongrel2 down --dir {args.dir}"
    )
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    site = Path(args.dir).absolute()
    stopped = _down(site, args.timeout)
    if stopped:
        print(f"stopped {', '.join(stopped)}")
    else:
        print(f"nothing running in {site}")
    return 0


def _parse_static(value: str) -> tuple[str, str]:
    prefix, sep, directory = value.partition("=")
    if not sep:
        raise ValueError(f"--static takes PREFIX=DIR, e.g. /static/=static, not {value!r}")
    return prefix, directory


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``takefive mongrel2 up|down``."""
    parser = subparsers.add_parser(
        "mongrel2",
        help="run the Mongrel2 web server in front of a handler",
        description="Start or stop a Mongrel2 server (Debian: mongrel2-core) and one "
        "`takefive run` handler process behind it.",
    )
    actions = parser.add_subparsers(dest="mongrel2_command", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="configure and start Mongrel2 and the handler (detached)")
    up.add_argument("--app", required=True, help="MODULE:APP to serve")
    up.add_argument("--dir", default="./run/mongrel2", help="site directory (default %(default)s)")
    up.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    up.add_argument("--port", type=int, default=6767, help="HTTP port (%(default)s)")
    up.add_argument("--send-spec", default="tcp://127.0.0.1:9997", help="PUSH to handlers")
    up.add_argument("--recv-spec", default="tcp://127.0.0.1:9996", help="SUB from handlers")
    up.add_argument("--tnetstring", action="store_true", help="tnetstring request headers")
    up.add_argument("--uuid", default=None, help="server uuid (default: a random one)")
    up.add_argument("--content-length", type=int, default=None, help="limits.content_length")
    up.add_argument(
        "--static", action="append", default=[], metavar="PREFIX=DIR",
        help="serve DIR (relative to --dir) under PREFIX, e.g. /static/=static",
    )  # fmt: skip
    up.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for Mongrel2")
    up.add_argument(
        "--handler-grace", type=float, default=1.0,
        help="seconds to watch the handler for an early exit (%(default)s)",
    )  # fmt: skip
    up.set_defaults(func=_cmd_up)

    down = actions.add_parser("down", help="stop what `up` started")
    down.add_argument("--dir", default="./run/mongrel2", help="site directory (%(default)s)")
    down.add_argument("--timeout", type=float, default=10.0, help="seconds before SIGKILL")
    down.set_defaults(func=_cmd_down)
