"""HTTP responses, rendered to complete HTTP/1.1 bytes.

:meth:`Response.render` is what the runner sends to the front end: the status line
with its reason phrase, the headers, a ``Content-Length`` computed from the body,
and the body. Mongrel2 passes those bytes to the client untouched.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import re
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import quote

import orjson

from takefive import wire
from takefive.datastructures import ResponseHeaders, _check_header

__all__ = [
    "HTMLResponse",
    "HTTPError",
    "JSONResponse",
    "PlainTextResponse",
    "RedirectResponse",
    "Response",
    "chunk",
    "last_chunk",
    "reason_phrase",
    "to_response",
]

Body = bytes | bytearray | memoryview | str | dict[str, Any] | list[Any] | None
HeadersInit = Mapping[str, str] | Iterable[tuple[str, str]] | None

_REASONS: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    code: f"HTTP/1.1 {code} {phrase}\r\n".encode("ascii") for code, phrase in _REASONS.items()
}
#: Statuses that never carry a body nor a Content-Length.
_NO_BODY = frozenset([*range(100, 200), 204, 304])

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"
CONTENT_TYPE = "Content-Type"

#: Content-Type values that passed the header checks (bounded: types come from code).
_CHECKED_TYPES: set[str] = {TEXT, HTML, JSON, OCTETS}
_content_type_only = ResponseHeaders._one
#: Rendered ``status line [+ Content-Type] + "Content-Length: "`` of the responses whose
#: headers are their Content-Type alone, keyed by (status, content type); None for the
#: statuses that have no body. Bounded, and holds only immutable strings and bytes.
_PREFIXES: dict[tuple[int, str | None], bytes | None] = {}
_PREFIXES_MAX = 256
_UNKNOWN = b"(not cached)"  # the value no prefix can have


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` (``"Unknown"`` for unregistered codes)."""
    return _REASONS.get(status, "Unknown")


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("ascii")
    return line


def _check_status(status: int) -> int:
    if status in _STATUS_LINES and type(status) is int:
        return status
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
        raise ValueError(f"HTTP status must be an int from 100 to 999, not {status!r}")
    return status


def _json_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"cannot encode response body as JSON: {exc}") from None


def _encode_header_block(lines: list[str]) -> bytes:
    text = "".join(lines)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- cookies

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Characters a cookie value may hold without quoting.
_COOKIE_SAFE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:]*\Z")
_COOKIE_QUOTED_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~: ()/<=>?@[]{}"
)
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def quote_cookie_value(value: str) -> str:
    """Quote a cookie value the way :mod:`http.cookies` does (octal escapes in quotes).

    :func:`takefive.request.unquote_cookie_value` reverses it.
    """
    if _COOKIE_SAFE_RE.match(value):
        return value
    out = ['"']
    for char in value:
        if char in _COOKIE_QUOTED_SAFE:
            out.append(char)
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogateescape"))
    out.append('"')
    return "".join(out)


def _format_expires(expires: _dt.datetime | int | float | str) -> str:
    if isinstance(expires, str):
        return expires
    if isinstance(expires, _dt.datetime):
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=_dt.UTC)
        return email.utils.format_datetime(expires.astimezone(_dt.UTC), usegmt=True)
    return email.utils.formatdate(time.time() + expires, usegmt=True)


def format_set_cookie(
    key: str,
    value: str = "",
    *,
    max_age: int | None = None,
    expires: _dt.datetime | int | float | str | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = False,
    samesite: Literal["lax", "strict", "none"] | None = "lax",
) -> str:
    """The value of one ``Set-Cookie`` header."""
    if not _TOKEN_RE.match(key):
        raise ValueError(f"invalid cookie name {key!r}")
    parts = [f"{key}={quote_cookie_value(value)}"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if expires is not None:
        parts.append(f"Expires={_format_expires(expires)}")
    if path is not None:
        parts.append(f"Path={path}")
    if domain is not None:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        try:
            parts.append(f"SameSite={_SAMESITE[samesite.lower()]}")
        except KeyError:
            raise ValueError(
                f"samesite must be 'lax', 'strict' or 'none', not {samesite!r}"
            ) from None
    header = "; ".join(parts)
    if any(c in header for c in "\r\n\0"):
        raise ValueError("cookie attributes must not contain CR, LF or NUL")
    return header


# --------------------------------------------------------------------------- responses


# With the C speedups, Response's slots and its common construction are in C
# (``_speedups.ResponseBase``): the Python constructors below stay the reference and
# still do everything else (see _use_c_constructor at the end of this section).
_speedups = wire._speedups
if TYPE_CHECKING or _speedups is None:
    _ResponseBase = object
else:
    _ResponseBase = _speedups.ResponseBase


class Response(_ResponseBase):
    """An HTTP response.

    ``body`` may be ``bytes``, ``str`` (UTF-8, ``text/plain`` by default), or a
    ``dict``/``list`` (JSON through orjson, ``application/json``). ``content_type``
    overrides the default ``Content-Type``. ``headers`` may be a mapping or a list of
    ``(name, value)`` pairs (repeat a name for several values).
    """

    # Until someone asks for ``headers``, a response whose only header is its
    # Content-Type keeps just that (``_ctype``, checked) and ``_headers`` is None: most
    # responses never build a ResponseHeaders, and render from a cached prefix.
    __slots__ = ("_ctype", "_headers", "body", "status") if _ResponseBase is object else ()
    _ctype: str | None
    _headers: ResponseHeaders | None
    body: bytes
    status: int

    #: Content type used for a ``str`` body when none is given.
    text_type: ClassVar[str] = TEXT

    def __init__(
        self,
        body: Body = b"",
        status: int = 200,
        headers: HeadersInit = None,
        content_type: str | None = None,
    ) -> None:
        self.status = status if type(status) is int and status in _STATUS_LINES else (
            _check_status(status)
        )
        if headers is not None:
            self._headers = ResponseHeaders(headers)
            self._ctype = None
        # The common bodies inline; the rest (and the errors) in _encode.
        if type(body) is str:
            data = body.encode("utf-8", "surrogateescape")
            default_type: str | None = self.text_type
        elif type(body) is bytes:
            data = body
            default_type = OCTETS if body else None
        else:
            data, default_type = self._encode(body)
        self.body = data
        if headers is None:  # fast path: nothing to replace
            ctype = content_type if content_type is not None else default_type
            self._headers = None
            if ctype is None or (type(ctype) is str and ctype in _CHECKED_TYPES):
                self._ctype = ctype
            elif type(ctype) is str:
                _check_header(CONTENT_TYPE, ctype)
                self._ctype = ctype
                if len(_CHECKED_TYPES) < 256 and len(ctype) < 256:
                    _CHECKED_TYPES.add(ctype)
            else:  # a str subclass or another object: as a header value (str() of it)
                self._headers = ResponseHeaders(((CONTENT_TYPE, ctype),))
                self._ctype = None
            return
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        elif default_type is not None and "content-type" not in self.headers:
            self.headers.add("Content-Type", default_type)

    def _encode(self, body: Body) -> tuple[bytes, str | None]:
        if isinstance(body, bytes):
            return body, (OCTETS if body else None)
        if isinstance(body, str):
            return body.encode("utf-8", "surrogateescape"), self.text_type
        if isinstance(body, dict | list):
            return _json_bytes(body), JSON
        if body is None:
            return b"", None
        if isinstance(body, bytearray | memoryview):
            data = bytes(body)
            return data, (OCTETS if data else None)
        raise TypeError(
            f"response body must be bytes, str, dict or list, not {type(body).__name__}"
        )

    @property
    def headers(self) -> ResponseHeaders:
        """The response headers (Content-Length is computed when rendering)."""
        headers = self._headers
        if headers is None:
            ctype = self._ctype
            headers = _content_type_only(ctype) if ctype is not None else ResponseHeaders()
            self._headers = headers
        return headers

    @headers.setter
    def headers(self, value: ResponseHeaders) -> None:
        self._headers = value

    @property
    def content_type(self) -> str | None:
        if self._headers is None:
            return self._ctype
        return self._headers.get("content-type")

    # ----------------------------------------------------------------- cookies

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: _dt.datetime | int | float | str | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Add a ``Set-Cookie`` header. ``expires`` is a datetime (naive means UTC),
        seconds from now, or a preformatted string."""
        self.headers.add(
            "Set-Cookie",
            format_set_cookie(
                key,
                value,
                max_age=max_age,
                expires=expires,
                path=path,
                domain=domain,
                secure=secure,
                httponly=httponly,
                samesite=samesite,
            ),
        )

    def delete_cookie(
        self,
        key: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Tell the client to drop cookie ``key`` (same path and domain as when set)."""
        self.set_cookie(
            key,
            "",
            max_age=0,
            expires="Thu, 01 Jan 1970 00:00:00 GMT",
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )

    # ----------------------------------------------------------------- rendering

    def render(self, *, head: bool = False, keep_alive: bool = True) -> bytes:
        """The complete HTTP/1.1 response.

        ``Content-Length`` is always computed from the body (one set by hand is
        replaced), also for ``head=True`` where the body itself is left out. 1xx, 204
        and 304 responses get neither body nor ``Content-Length``. With a
        ``Transfer-Encoding`` header the body (if any) is sent as the first chunk and
        no ``Content-Length`` is added. ``keep_alive=False`` adds ``Connection: close``.
        """
        body = self.body
        prefix = self.length_prefix(head, keep_alive)
        if prefix is not None:
            return b"%b%d\r\n\r\n%b" % (prefix, len(body), body)
        status = self.status
        lines: list[str] = []
        chunked = False
        for name, value in self.headers._items:
            lower = name.lower()
            if lower == "content-length":
                continue
            if lower == "connection" and not keep_alive:
                continue
            if lower == "transfer-encoding":
                chunked = True
            lines.append(f"{name}: {value}\r\n")
        if status in _NO_BODY:
            body = b""
        elif chunked:
            body = chunk(body)
        else:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if not keep_alive:
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        if head:
            body = b""
        return b"".join((_status_line(status), _encode_header_block(lines), body))

    def length_prefix(self, head: bool = False, keep_alive: bool = True) -> bytes | None:
        """The rendered response up to the value of its Content-Length, when that and
        the body are all the rest: ``render()`` is then ``prefix + b"%d\\r\\n\\r\\n"
        % len(body) + body``. None when the response needs the general rendering (other
        headers, ``head``, no ``keep_alive``, a status without a body).

        The runner's hot path hands the prefix and the body to
        :func:`takefive.wire.encode_sized_reply`, which makes the frame in one copy.
        """
        if head or not keep_alive or self._headers is not None:
            return None
        ctype = self._ctype
        key = (self.status, ctype)
        prefix = _PREFIXES.get(key, _UNKNOWN)
        if prefix is _UNKNOWN:
            prefix = _length_prefix(*key)
            # Bounded: at most _PREFIXES_MAX entries, none with a long content type.
            if len(_PREFIXES) < _PREFIXES_MAX and (ctype is None or len(ctype) < 256):
                _PREFIXES[key] = prefix
        return prefix

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.status} {self.content_type or '-'} "
            f"{len(self.body)} bytes>"
        )


def _length_prefix(status: int, content_type: str | None) -> bytes | None:
    if status in _NO_BODY:
        return None
    lines = [f"Content-Type: {content_type}\r\n"] if content_type is not None else []
    return _status_line(status) + _encode_header_block(lines) + b"Content-Length: "


class JSONResponse(Response):
    """Any orjson-serialisable value as ``application/json`` (a ``str`` too)."""

    __slots__ = ()

    def __init__(
        self,
        content: Any,
        status: int = 200,
        headers: HeadersInit = None,
        content_type: str | None = None,
    ) -> None:
        data = _json_bytes(content)
        if headers is None and content_type is None and type(status) is int and (
            status in _STATUS_LINES
        ):  # the common case, without the general constructor
            self.status = status
            self.body = data
            self._headers = None
            self._ctype = JSON
            return
        super().__init__(data, status, headers, content_type or JSON)


class _TextResponse(Response):
    """A text response whose Content-Type is the class's ``text_type``."""

    __slots__ = ()

    def __init__(
        self,
        content: str | bytes = "",
        status: int = 200,
        headers: HeadersInit = None,
        content_type: str | None = None,
    ) -> None:
        kind = self.text_type
        if (
            type(content) is str
            and headers is None
            and content_type is None
            and type(status) is int
            and status in _STATUS_LINES
        ):  # the common case, without the general constructor
            self.status = status
            self.body = content.encode("utf-8", "surrogateescape")
            self._headers = None
            self._ctype = kind
            return
        _response_init(self, content, status, headers, content_type or kind)


#: The Python constructors, the reference for the C one (which calls them for all but
#: the common case). _text_init calls _response_init, not ``super().__init__``: with
#: the C speedups that would be the C constructor, which hands text responses back here.
_response_init = Response.__init__
_text_init = _TextResponse.__init__


def _use_c_constructor() -> None:
    """With the C speedups: Response and the text responses use ResponseBase's
    constructor (from their base), which does the common construction in C and calls
    _response_init or _text_init for the rest. JSONResponse and RedirectResponse keep
    their own, which call it through ``super().__init__``."""
    if _speedups is None:
        return
    _speedups.setup_response_init(
        _response_init, _text_init, _TextResponse, _STATUS_LINES, _CHECKED_TYPES, OCTETS
    )
    del Response.__init__
    del _TextResponse.__init__


_use_c_constructor()


class HTMLResponse(_TextResponse):
    """A ``text/html; charset=utf-8`` response."""

    __slots__ = ()
    text_type = HTML


class PlainTextResponse(_TextResponse):
    """A ``text/plain; charset=utf-8`` response."""

    __slots__ = ()
    text_type = TEXT


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class RedirectResponse(Response):
    """A redirect to ``url`` (302 by default; 301, 303, 307 and 308 allowed).

    Characters not allowed in a URL (spaces, non-ASCII) are percent-encoded.
    """

    __slots__ = ()

    def __init__(self, url: str, status: int = 302, headers: HeadersInit = None) -> None:
        if status not in _REDIRECTS:
            raise ValueError(f"redirect status must be one of {sorted(_REDIRECTS)}, not {status}")
        super().__init__(b"", status, headers)
        self.headers["Location"] = quote(url, safe=":/%#?=@[]!$&'()*+,;~")


# --------------------------------------------------------------------------- errors


class HTTPError(Exception):
    """Raise it in a handler to answer with ``status``.

    ``detail`` becomes the plain-text body (the reason phrase when omitted);
    ``headers`` are added to the response (e.g. ``WWW-Authenticate``).
    """

    def __init__(
        self, status: int, detail: str | None = None, headers: HeadersInit = None
    ) -> None:
        self.status = _check_status(status)
        self.detail = detail if detail is not None else reason_phrase(status)
        self.headers = headers
        super().__init__(status, self.detail)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def to_response(self) -> Response:
        return PlainTextResponse(self.detail + "\n", self.status, self.headers)


# --------------------------------------------------------------------------- helpers


def to_response(value: object) -> Response:
    """Convert a handler's return value: Response as is; str, bytes, dict, list wrapped."""
    if isinstance(value, Response):
        return value
    if isinstance(value, str | bytes | dict | list | bytearray | memoryview):
        return Response(value)
    if value is None:
        raise TypeError(
            "handler returned None: return a Response (or str, bytes, dict, list), "
            "or app.hold() to answer later"
        )
    raise TypeError(
        f"handler returned {type(value).__name__}: return a Response, str, bytes, dict or list"
    )


def chunk(data: bytes | str) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body (``b""`` for empty data:
    an empty chunk would end the body; use :func:`last_chunk` for that)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if not raw:
        return b""
    return b"%x\r\n%b\r\n" % (len(raw), raw)


def last_chunk() -> bytes:
    """The chunk that ends a chunked body."""
    return b"0\r\n\r\n"
