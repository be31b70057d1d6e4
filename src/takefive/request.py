"""HTTP requests, built from one Mongrel2 wire message.

Construction only stores the message: the query string, cookies, JSON and form
bodies are parsed the first time they are asked for (and then cached).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import orjson

from takefive.datastructures import MultiDict, RequestHeaders
from takefive.response import HTTPError

if TYPE_CHECKING:
    from takefive.app import App
    from takefive.wire import Message

__all__ = ["FormData", "Request", "UploadFile", "parse_cookie_header", "unquote_cookie_value"]

_MISSING: Any = object()
#: Methods already in upper case (no ``str.upper()`` copy for them).
_UPPER_METHODS = frozenset(
    "GET HEAD POST PUT PATCH DELETE OPTIONS JSON XML WEBSOCKET WEBSOCKET_HANDSHAKE".split()
)

#: Largest multipart body :meth:`Request.form` parses in memory.
MAX_FORM_FIELDS = 1000


class UploadFile:
    """A file field of a multipart form, held in memory."""

    __slots__ = ("content_type", "data", "filename", "headers", "name")

    def __init__(
        self,
        name: str,
        filename: str,
        data: bytes,
        content_type: str | None,
        headers: dict[str, str],
    ) -> None:
        self.name = name
        self.filename = filename
        self.data = data
        self.content_type = content_type
        self.headers = headers

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"UploadFile({self.name!r}, filename={self.filename!r}, {len(self.data)} bytes)"


FormData = MultiDict[str | UploadFile]


class Request:
    """One HTTP request (or WebSocket message) from a front end.

    - ``path`` is percent-decoded (``/a%20b`` -> ``/a b``); ``raw_path`` is the path
      as sent, ``uri`` the whole request target with the query string.
    - ``query`` and ``headers`` are multi-valued: ``.get(name)`` gives the first
      value, ``.getlist(name)`` all of them. Header names are case-insensitive.
    - ``body`` is the raw bytes; ``json()`` and ``form()`` parse it.
    """

    __slots__ = (
        "_cookies",
        "_form",
        "_headers",
        "_http10",
        "_json",
        "_path_params",
        "_query",
        "_raw",
        "_state",
        "app",
        "body",
        "conn_id",
        "keep_alive",
        "message",
        "method",
        "path",
        "sender",
    )

    def __init__(self, message: Message) -> None:
        # The hot path: what every request needs (its method, its path for routing,
        # whether to keep the connection), the rest (headers, query, cookies, bodies)
        # built the first time it is asked for.
        self.message = message
        self._raw = raw = message.headers
        self._headers: RequestHeaders | None = None
        method = raw.get("METHOD")
        if type(method) is not str or method not in _UPPER_METHODS:
            method = method.upper() if isinstance(method, str) else "GET"
        self.method: str = method
        path = raw.get("PATH")
        if type(path) is not str or not path or "%" in path:
            path = self._decoded_path()
        #: The percent-decoded path (``%2F`` becomes ``/`` too); routing uses this.
        self.path: str = path
        #: Whether the connection stays open after the response. HTTP/1.1: yes unless
        #: ``Connection: close``; HTTP/1.0: only with ``Connection: keep-alive``. A
        #: handler may set it to ``False`` to close the connection after its response.
        self._http10 = http10 = raw.get("VERSION") == "HTTP/1.0"
        self.keep_alive: bool = not http10 if "connection" not in raw else self._keeps_alive()
        self.sender: str = message.sender
        self.conn_id: str = message.conn_id
        self.body: bytes = message.body
        self._path_params: dict[str, Any] | None = None  # {} when first asked for
        #: The :class:`~takefive.app.App` handling this request (set by ``App.handle``).
        self.app: App | None = None
        self._state: dict[str, Any] | None = None  # {} when first asked for
        self._query: MultiDict[str] | None = None
        self._cookies: dict[str, str] | None = None
        self._json: Any = _MISSING
        self._form: FormData | None = None

    @property
    def path_params(self) -> dict[str, Any]:
        """Values captured by the route pattern, converted (filled by routing)."""
        params = self._path_params
        if params is None:
            params = self._path_params = {}
        return params

    @path_params.setter
    def path_params(self, value: dict[str, Any]) -> None:
        self._path_params = value

    @property
    def state(self) -> dict[str, Any]:
        """Free-form per-request storage for handlers and hooks."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        self._state = value

    @property
    def headers(self) -> RequestHeaders:
        """The HTTP headers: case-insensitive, multi-valued (a view, built when asked)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = RequestHeaders(self._raw)
        return headers

    @headers.setter
    def headers(self, value: RequestHeaders) -> None:
        self._headers = value

    # ----------------------------------------------------------------- Mongrel2 keys

    def _m2(self, key: str, default: str = "") -> str:
        value = self._raw.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value:
            return value[0]
        return default

    @property
    def raw_path(self) -> str:
        """The path as the client sent it (still percent-encoded, no query)."""
        return self._m2("PATH") or self.message.path

    def _decoded_path(self) -> str:
        raw = self._raw.get("PATH")
        if type(raw) is not str or not raw:
            raw = self.raw_path
        return unquote(raw, errors="surrogateescape") if "%" in raw else raw

    @property
    def uri(self) -> str:
        """The request target as sent: path and query string."""
        uri = self._m2("URI")
        if uri:
            return uri
        qs = self.query_string
        return f"{self.raw_path}?{qs}" if qs else self.raw_path

    @property
    def query_string(self) -> str:
        return self._m2("QUERY")

    @property
    def version(self) -> str:
        """``"HTTP/1.1"`` or ``"HTTP/1.0"``."""
        return self._m2("VERSION", "HTTP/1.1")

    @property
    def url_scheme(self) -> str:
        return self._m2("URL_SCHEME", "http")

    @property
    def pattern(self) -> str:
        """The Mongrel2 route pattern that sent the request here."""
        return self._m2("PATTERN")

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def url(self) -> str:
        """The full URL as the client asked for it (scheme, host, uri)."""
        return f"{self.url_scheme}://{self.host}{self.uri}"

    @property
    def remote_addr(self) -> str:
        """The first ``X-Forwarded-For`` address, else the peer address."""
        forwarded = self.headers.get("x-forwarded-for")
        if forwarded:
            first = forwarded.split(",", 1)[0].strip()
            if first:
                return first
        return self._m2("REMOTE_ADDR")

    def _keeps_alive(self) -> bool:
        """``keep_alive`` for a request with a Connection header."""
        if self._http10:
            return "keep-alive" in self._connection_tokens()
        return "close" not in self._connection_tokens()

    def _connection_tokens(self) -> set[str]:
        tokens: set[str] = set()
        for value in self.headers.getlist("connection"):
            tokens.update(t.strip().lower() for t in value.split(","))
        return tokens

    # ----------------------------------------------------------------- lazily parsed

    @property
    def query(self) -> MultiDict[str]:
        """Query arguments: ``request.query.get("a")``, ``request.query.getlist("a")``."""
        query = self._query
        if query is None:
            qs = self.query_string
            query = MultiDict(parse_qsl(qs, keep_blank_values=True) if qs else ())
            self._query = query
        return query

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent by the client (the first one wins for a repeated name)."""
        cookies = self._cookies
        if cookies is None:
            cookies = {}
            for header in self.headers.getlist("cookie"):
                for key, value in parse_cookie_header(header).items():
                    cookies.setdefault(key, value)
            self._cookies = cookies
        return cookies

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-case, without parameters (``""`` if none)."""
        value = self.headers.get("content-type", "")
        return value.split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        """The body decoded as JSON; an invalid body raises ``HTTPError(400)``."""
        if self._json is _MISSING:
            try:
                self._json = orjson.loads(self.body)
            except orjson.JSONDecodeError as exc:
                raise HTTPError(400, f"invalid JSON body: {exc}") from None
        return self._json

    def form(self) -> FormData:
        """The fields of an urlencoded or multipart form body.

        Text fields are ``str``, files :class:`UploadFile`. An empty body gives an
        empty form; another content type raises ``HTTPError(415)``, a malformed body
        ``HTTPError(400)``.
        """
        if self._form is None:
            self._form = self._parse_form()
        return self._form

    def _parse_form(self) -> FormData:
        ctype = self.content_type
        if ctype == "application/x-www-form-urlencoded":
            try:
                text = self.body.decode("utf-8")
                pairs = parse_qsl(
                    text, keep_blank_values=True, strict_parsing=False,
                    max_num_fields=MAX_FORM_FIELDS,
                )
            except (UnicodeDecodeError, ValueError) as exc:
                raise HTTPError(400, f"invalid form body: {exc}") from None
            return MultiDict[str | UploadFile](pairs)
        if ctype == "multipart/form-data":
            return _parse_multipart(self.headers.get("content-type", ""), self.body)
        if not self.body:
            return MultiDict[str | UploadFile]()
        raise HTTPError(415, f"cannot read a form from a {ctype or 'untyped'} body")

    # ----------------------------------------------------------------- WebSocket / uploads

    @property
    def is_websocket(self) -> bool:
        """True for Mongrel2's WebSocket handshake and message requests."""
        return self.method in ("WEBSOCKET", "WEBSOCKET_HANDSHAKE")

    @property
    def upload_path(self) -> str | None:
        """Mongrel2's temp file for a large upload (``x-mongrel2-upload-done``), if any.

        The path is relative to Mongrel2's chroot. Check it is the one announced in
        ``x-mongrel2-upload-start`` before trusting it.
        """
        done = self.headers.get("x-mongrel2-upload-done")
        start = self.headers.get("x-mongrel2-upload-start")
        if done and done == start:
            return done
        return None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path} conn={self.sender}:{self.conn_id}>"


def _request_from() -> Callable[[Message], Request]:
    """``Request`` itself, or its C version when the C speedups are in use (see
    :mod:`takefive.wire`) and Request has the slots the C code fills (checked, with the
    class layout, by ``setup_request``)."""
    from takefive import wire

    speedups = wire._speedups
    if speedups is None or set(speedups.request_slots()) != set(Request.__slots__):
        return Request
    try:
        speedups.setup_request(Request, wire.Message, _UPPER_METHODS, _MISSING)
    except TypeError:
        return Request
    build: Callable[[Message], Request] = speedups.request_from
    return build


#: ``request_from(message)`` is ``Request(message)``; with the C speedups a common
#: request (an upper-case method, a path without '%', no Connection header) is built
#: without calling ``__init__``. The runner makes its requests with it.
request_from = _request_from()


# --------------------------------------------------------------------------- cookies

_COOKIE_ESCAPE_RE = re.compile(r"\\(?:([0-3][0-7]{2})|(.))", re.DOTALL)


def unquote_cookie_value(value: str) -> str:
    """Undo :func:`takefive.response.quote_cookie_value` (a no-op on plain values)."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    inner = value[1:-1]
    if "\\" not in inner:
        return inner
    out = bytearray()
    pos = 0
    for match in _COOKIE_ESCAPE_RE.finditer(inner):
        out += inner[pos : match.start()].encode("utf-8", "surrogateescape")
        octal, char = match.groups()
        if octal is not None:
            out.append(int(octal, 8))
        else:
            out += char.encode("utf-8", "surrogateescape")
        pos = match.end()
    out += inner[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "surrogateescape")


def parse_cookie_header(header: str) -> dict[str, str]:
    """Parse a ``Cookie`` header leniently (a malformed pair is skipped, not fatal)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        cookies.setdefault(key, unquote_cookie_value(value.strip()))
    return cookies


# --------------------------------------------------------------------------- multipart


def _parse_multipart(content_type: str, body: bytes) -> FormData:
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPError(400, "multipart form without a boundary")

    fields: list[tuple[str, str | UploadFile]] = []
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["data"] = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] = state.get("field", b"") + data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] = state.get("value", b"") + data[start:end]

    def on_header_end() -> None:
        name = state.pop("field", b"").decode("latin-1").lower()
        state["headers"][name] = state.pop("value", b"").decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        headers: dict[str, str] = state["headers"]
        disposition, options = parse_options_header(headers.get("content-disposition", ""))
        if disposition != b"form-data" or b"name" not in options:
            raise HTTPError(400, "multipart part without a form-data name")
        name = options[b"name"].decode("utf-8", "replace")
        data = bytes(state["data"])
        if b"filename" in options:
            filename = options[b"filename"].decode("utf-8", "replace")
            fields.append(
                (name, UploadFile(name, filename, data, headers.get("content-type"), headers))
            )
        else:
            charset = "utf-8"
            try:
                fields.append((name, data.decode(charset)))
            except UnicodeDecodeError:
                raise HTTPError(400, f"form field {name!r} is not valid UTF-8") from None
        if len(fields) > MAX_FORM_FIELDS:
            raise HTTPError(400, f"more than {MAX_FORM_FIELDS} form fields")

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise HTTPError(400, f"invalid multipart body: {exc}") from None
    return MultiDict(fields)
