"""Static files for a ``--static PREFIX=DIR`` route: safe path resolution and the response.

:meth:`StaticFiles.prepare` decides everything (status, head, which bytes of which file)
without touching the network; the connection writes the head and streams the file with
:func:`read_chunks`. Supports ``ETag`` / ``If-None-Match``, ``Last-Modified`` /
``If-Modified-Since`` (304), a single ``Range`` (206, or 416), ``HEAD``, and index files.

Paths are percent-decoded once, then refused (403) if any segment is ``..``, or if the
real path after following symlinks is outside the root; NUL bytes, backslashes and
undecodable bytes are a 400.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote_to_bytes

__all__ = ["StaticFiles", "StaticResponse", "read_chunks"]

_CHUNK = 256 * 1024


@dataclass(slots=True)
class StaticResponse:
    """What to send: ``head`` then ``length`` bytes of ``path`` from ``offset`` (if any)."""

    status: int
    head: bytes
    path: str | None = None
    offset: int = 0
    length: int = 0


_REASONS = {200: "OK", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            416: "Range Not Satisfiable"}


def _error(status: int, keep_alive: bool, extra: str = "") -> StaticResponse:
    body = f"{status} {_REASONS[status]}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}"
        f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
    ).encode()
    return StaticResponse(status, head + body)


def _header(headers: Mapping[str, str | list[str]], name: str) -> str | None:
    value = headers.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


class StaticFiles:
    """Files under one directory."""

    def __init__(self, root: str | os.PathLike[str], index_file: str = "index.html",
                 default_type: str = "application/octet-stream") -> None:
        self.root = os.path.realpath(root)
        self.index_file = index_file
        self.default_type = default_type

    # ------------------------------------------------------------------ paths

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def resolve(self, rel: str) -> str | int:
        """The real path of file ``rel`` (raw, percent-encoded, relative to the root)
        or an HTTP status: 400 (bad bytes), 403 (outside the root), 404 (no such file)."""
        raw = unquote_to_bytes(rel.split("?", 1)[0])
        if b"\0" in raw or b"\\" in raw:
            return 400
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return 400
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts:
            return 403
        real = os.path.realpath(os.path.join(self.root, *parts))
        if not self._inside(real):
            return 403
        if os.path.isdir(real):
            real = os.path.realpath(os.path.join(real, self.index_file))
            if not self._inside(real):
                return 403
        if not os.path.isfile(real):
            return 404
        return real

    # ------------------------------------------------------------------ responses

    def prepare(self, method: str, rel: str, headers: Mapping[str, str | list[str]],
                keep_alive: bool) -> StaticResponse:
        """Everything about the response to ``method rel`` except sending it."""
        if method not in ("GET", "HEAD"):
            return _error(405, keep_alive, "Allow: GET, HEAD\r\n")
        found = self.resolve(rel)
        if isinstance(found, int):
            return _error(found, keep_alive)
        try:
            st = os.stat(found)
        except OSError:
            return _error(404, keep_alive)
        if not stat.S_ISREG(st.st_mode):
            return _error(404, keep_alive)
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        last_modified = formatdate(st.st_mtime, usegmt=True)
        common = f"ETag: {etag}\r\nLast-Modified: {last_modified}\r\nAccept-Ranges: bytes\r\n"
        if not keep_alive:
            common += "Connection: close\r\n"

        if self._not_modified(headers, etag, st.st_mtime):
            head = f"HTTP/1.1 304 Not Modified\r\n{common}\r\n".encode()
            return StaticResponse(304, head)

        ctype = mimetypes.guess_type(found)[0] or self.default_type
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        status, offset, length = 200, 0, size
        range_header = _header(headers, "range")
        extra = ""
        if range_header is not None:
            if_range = _header(headers, "if-range")
            if if_range is None or if_range == etag:
                parsed = _parse_range(range_header, size)
                if parsed is None:
                    return _error(416, keep_alive, f"Content-Range: bytes */{size}\r\n")
                if parsed != (0, size):
                    offset, length = parsed[0], parsed[1] - parsed[0]
                    status = 206
                    extra = f"Content-Range: bytes {offset}-{offset + length - 1}/{size}\r\n"
        reason = "OK" if status == 200 else "Partial Content"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\n{extra}{common}\r\n"
        ).encode()
        if method == "HEAD" or length == 0:
            return StaticResponse(status, head)
        return StaticResponse(status, head, found, offset, length)

    @staticmethod
    def _not_modified(headers: Mapping[str, str | list[str]], etag: str, mtime: float) -> bool:
        inm = _header(headers, "if-none-match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = _header(headers, "if-modified-since")
        if ims is not None:
            try:
                since = parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
            return int(mtime) <= since
        return False


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range as ``(start, end_exclusive)``; ``(0, size)`` to ignore it
    (several ranges, other units, garbage); ``None`` when it cannot be satisfied."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return (0, size)
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return (0, size)
    first, last = first.strip(), last.strip()
    if not first:
        if not last.isdigit():
            return (0, size)
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return (max(0, size - suffix), size)
    if not first.isdigit() or (last and not last.isdigit()):
        return (0, size)
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return (0, size)
    if start >= size:
        return None
    return (start, end)


def read_chunks(path: str | Path, offset: int, length: int, chunk: int = _CHUNK) -> Iterator[bytes]:
    """The bytes ``[offset, offset+length)`` of a file, in chunks (stops early if it shrank)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        left = length
        while left > 0:
            data = handle.read(min(chunk, left))
            if not data:
                return
            left -= len(data)
            yield data
