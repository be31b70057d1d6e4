"""Requests for unit tests, built the way a front end sends them: through the wire format."""

from __future__ import annotations

from typing import Any

from takefive.request import Request, request_from
from takefive.wire import encode_request, parse_request

SENDER = "f0e1d2c3-0000-4000-8000-000000000001"


def wire_request(
    method: str = "GET",
    path: str = "/",
    query: str = "",
    headers: dict[str, Any] | None = None,
    body: bytes = b"",
    *,
    version: str = "HTTP/1.1",
    conn_id: int = 5,
    tnetstring: bool = False,
    remote_addr: str = "127.0.0.1",
    host: str = "localhost",
    sender: str = SENDER,
) -> Request:
    """A `Request` decoded from the frame Mongrel2 would send (QUERY only when there is one)."""
    h: dict[str, Any] = {
        "PATH": path,
        "METHOD": method,
        "VERSION": version,
        "URI": f"{path}?{query}" if query else path,
        "PATTERN": "/",
        "URL_SCHEME": "http",
        "REMOTE_ADDR": remote_addr,
        "host": host,
    }
    if query:
        h["QUERY"] = query
    h.update(headers or {})
    frame = encode_request(sender, conn_id, path, h, body, tnetstring_headers=tnetstring)
    return request_from(parse_request(frame))  # as the runner makes them
