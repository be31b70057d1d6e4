"""takefive.response: rendering checked with httptools' response parser."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from takefive import response as response_module
from takefive.datastructures import ResponseHeaders
from takefive.response import (
    TEXT,
    HTMLResponse,
    HTTPError,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    chunk,
    last_chunk,
    reason_phrase,
    to_response,
)


@dataclass
class Parsed:
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    keep_alive: bool = True
    parser: httptools.HttpResponseParser | None = None

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parse(data: bytes, *, head: bool = False) -> Parsed:
    """Parse one response; for a HEAD response, stop after the headers like a client."""
    result = Parsed()
    parser = httptools.HttpResponseParser(result)
    result.parser = parser
    if head:
        end = data.index(b"\r\n\r\n") + 4
        assert end == len(data), "a HEAD response must end after the headers"
        parser.feed_data(data)
    else:
        parser.feed_data(data)
        assert result.complete, "response incomplete"
    result.status = parser.get_status_code()
    return result


def test_plain_bytes_str_json_bodies() -> None:
    p = parse(Response(b"\x00raw").render())
    assert (p.status, p.body, p.header("content-type")) == (
        200,
        b"\x00raw",
        "application/octet-stream",
    )
    assert p.header("Content-Length") == "4"
    assert p.reason == "OK"

    p = parse(Response("héllo").render())
    assert p.body == "héllo".encode()
    assert p.header("content-type") == "text/plain; charset=utf-8"

    p = parse(Response({"a": [1, 2]}).render())
    assert p.body == b'{"a":[1,2]}'
    assert p.header("content-type") == "application/json"

    p = parse(Response([1, "x"], status=201).render())
    assert (p.status, p.reason, p.body) == (201, "Created", b'[1,"x"]')

    empty = Response()
    assert empty.content_type is None
    assert empty.render() == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert Response(None).body == b""
    assert Response(bytearray(b"ab")).body == b"ab"
    assert Response(memoryview(b"cd")).body == b"cd"


def test_content_type_argument_overrides_default_and_header() -> None:
    r = Response("x", content_type="text/csv", headers={"content-type": "a/b"})
    assert r.headers.getlist("Content-Type") == ["text/csv"]
    r = Response("x", headers={"Content-Type": "text/x-custom"})
    assert r.headers.getlist("content-type") == ["text/x-custom"]


def test_bad_bodies_and_statuses() -> None:
    with pytest.raises(TypeError, match="bytes, str, dict or list"):
        Response(3.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="JSON"):
        Response({"a": object()})
    for status in (99, 1000, "200", True):
        with pytest.raises(ValueError):
            Response(status=status)  # type: ignore[arg-type]


def test_unknown_status_gets_generic_reason() -> None:
    p = parse(Response("x", status=599).render())
    assert (p.status, p.reason) == (599, "Unknown")
    assert reason_phrase(418) == "I'm a Teapot" or reason_phrase(418) == "I'm a teapot"


def test_head_keeps_content_length_but_drops_body() -> None:
    data = Response("hello world").render(head=True)
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length: 11\r\n" in data
    assert b"hello" not in data
    parse(data, head=True)


@pytest.mark.parametrize("status", [100, 101, 103, 204, 304])
def test_no_body_statuses_have_no_content_length(status: int) -> None:
    data = Response(b"ignored", status=status).render()
    assert b"Content-Length" not in data
    assert data.endswith(b"\r\n\r\n")
    assert b"ignored" not in data


def test_connection_close_when_not_keep_alive() -> None:
    r = Response("x", headers={"Connection": "keep-alive"})
    data = r.render(keep_alive=False)
    assert data.count(b"Connection") == 1
    p = parse(data)
    assert p.header("connection") == "close"
    assert not p.keep_alive
    assert parse(Response("x").render()).keep_alive


def test_manual_content_length_is_replaced() -> None:
    r = Response("abc", headers={"Content-Length": "999"})
    p = parse(r.render())
    assert [v for k, v in p.headers if k.lower() == "content-length"] == ["3"]


def test_multi_valued_headers_and_order() -> None:
    r = Response("x", headers=[("X-A", "1"), ("X-B", "2"), ("X-A", "3")])
    p = parse(r.render())
    assert [(k, v) for k, v in p.headers if k.startswith("X-")] == [
        ("X-A", "1"),
        ("X-B", "2"),
        ("X-A", "3"),
    ]
    r.headers["x-a"] = "4"
    assert r.headers.getlist("X-A") == ["4"]
    assert r.headers.items()[0] == ("x-a", "4")
    del r.headers["X-B"]
    assert "X-B" not in r.headers
    with pytest.raises(KeyError):
        del r.headers["X-B"]
    assert r.headers.pop("x-a") == "4"
    assert r.headers.pop("x-a", "gone") == "gone"


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Bad", "a\r\nInjected: 1"), ("X-Bad", "a\nb"), ("Bad Name", "v"), ("", "v"), ("A:B", "v")],
)
def test_header_injection_rejected(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Response(headers={name: value})
    r = Response()
    with pytest.raises(ValueError):
        r.headers.add(name, value)


def test_non_latin1_header_value_is_utf8() -> None:
    r = Response(headers={"X-Name": "€"})
    assert "X-Name: €".encode() in r.render()


def test_set_cookie_attributes() -> None:
    r = Response()
    r.set_cookie(
        "sid",
        "abc",
        max_age=3600,
        expires=dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        path="/app",
        domain="example.test",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    r.set_cookie("theme", "dark", samesite=None, path=None)
    cookies = r.headers.getlist("set-cookie")
    assert cookies == [
        "sid=abc; Max-Age=3600; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Path=/app; "
        "Domain=example.test; Secure; HttpOnly; SameSite=Strict",
        "theme=dark",
    ]
    p = parse(r.render())
    assert [v for k, v in p.headers if k.lower() == "set-cookie"] == cookies


def test_set_cookie_expires_forms_and_errors() -> None:
    r = Response()
    r.set_cookie("a", expires=60)
    r.set_cookie("b", expires=dt.datetime(2030, 1, 1))  # naive = UTC
    r.set_cookie("c", expires="Thu, 01 Jan 2037 00:00:00 GMT")
    a, b, c = r.headers.getlist("Set-Cookie")
    assert "Expires=" in a and a.endswith("GMT; Path=/; SameSite=Lax")
    assert "Expires=Tue, 01 Jan 2030 00:00:00 GMT" in b
    assert "Expires=Thu, 01 Jan 2037 00:00:00 GMT" in c
    with pytest.raises(ValueError, match="cookie name"):
        r.set_cookie("bad name", "x")
    with pytest.raises(ValueError, match="samesite"):
        r.set_cookie("x", "y", samesite="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        r.set_cookie("x", "y", path="/a\r\nX: 1")


def test_delete_cookie() -> None:
    r = Response()
    r.delete_cookie("sid", path="/app")
    (value,) = r.headers.getlist("Set-Cookie")
    assert value.startswith("sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/app")


def test_cookie_value_with_specials_is_quoted() -> None:
    r = Response()
    r.set_cookie("k", 'a; b, "c"')
    (value,) = r.headers.getlist("Set-Cookie")
    assert value.startswith('k="a\\073 b\\054 \\"c\\""')


def test_subclasses() -> None:
    p = parse(JSONResponse("just a string", status=202).render())
    assert (p.status, p.body, p.header("content-type")) == (
        202,
        b'"just a string"',
        "application/json",
    )
    p = parse(HTMLResponse("<p>é</p>").render())
    assert p.header("content-type") == "text/html; charset=utf-8"
    assert p.body == "<p>é</p>".encode()
    p = parse(PlainTextResponse(b"bytes").render())
    assert p.header("content-type") == "text/plain; charset=utf-8"
    assert p.body == b"bytes"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect(status: int) -> None:
    p = parse(RedirectResponse("/new place?q=ü", status).render())
    assert p.status == status
    assert p.header("location") == "/new%20place?q=%C3%BC"
    assert p.header("content-length") == "0"


def test_redirect_default_and_bad_status() -> None:
    assert RedirectResponse("http://x.test/a?b=c#d").status == 302
    assert RedirectResponse("http://x.test/a?b=c#d").headers["Location"] == "http://x.test/a?b=c#d"
    with pytest.raises(ValueError):
        RedirectResponse("/", 200)


def test_http_error() -> None:
    exc = HTTPError(404)
    assert exc.detail == "Not Found"
    assert str(exc) == "404 Not Found"
    p = parse(HTTPError(401, "who?", {"WWW-Authenticate": "Basic"}).to_response().render())
    assert (p.status, p.body) == (401, b"who?\n")
    assert p.header("www-authenticate") == "Basic"
    with pytest.raises(ValueError):
        HTTPError(42)


def test_to_response() -> None:
    r = Response()
    assert to_response(r) is r
    assert to_response("x").body == b"x"
    assert to_response(b"y").body == b"y"
    assert to_response({"a": 1}).content_type == "application/json"
    assert to_response([]).body == b"[]"
    with pytest.raises(TypeError, match="returned None"):
        to_response(None)
    with pytest.raises(TypeError, match="returned int"):
        to_response(3)


def test_chunked_streaming() -> None:
    r = Response("first", headers={"Transfer-Encoding": "chunked"}, content_type="text/plain")
    head = r.render()
    assert b"Content-Length" not in head
    assert chunk("") == b""
    data = head + chunk(b"second") + chunk("third") + last_chunk()
    p = parse(data)
    assert p.body == b"firstsecondthird"
    # An empty chunked response: headers only, then the chunks.
    start = Response(headers={"Transfer-Encoding": "chunked"}).render()
    assert start.endswith(b"\r\n\r\n")
    assert parse(start + last_chunk()).body == b""


def test_repr() -> None:
    assert repr(Response("ab", 201)) == "<Response 201 text/plain; charset=utf-8 2 bytes>"


header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.strip)


@given(
    body=st.binary(max_size=3000),
    status=st.sampled_from([200, 201, 202, 400, 404, 418, 500, 503]),
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    keep_alive=st.booleans(),
)
def test_render_round_trips_through_httptools(
    body: bytes, status: int, headers: list[tuple[str, str]], keep_alive: bool
) -> None:
    response = Response(body, status=status, headers=headers)
    data = response.render(keep_alive=keep_alive)
    p = parse(data)
    assert p.status == status
    assert p.body == body
    assert p.header("content-length") == str(len(body))
    assert p.keep_alive is keep_alive
    got = [(k, v) for k, v in p.headers if k.startswith("X-")]
    assert got == headers
    # HEAD: same head, no body.
    head = response.render(head=True, keep_alive=keep_alive)
    assert data.startswith(head)
    assert len(data) - len(head) == len(body)


@given(st.lists(st.binary(min_size=0, max_size=500), max_size=8))
def test_chunks_round_trip(parts: list[bytes]) -> None:
    data = Response(headers={"Transfer-Encoding": "chunked"}).render()
    data += b"".join(chunk(p) for p in parts) + last_chunk()
    assert parse(data).body == b"".join(parts)


def test_header_checks_apply_to_every_use_of_a_name() -> None:
    r = Response(headers={"X-Ok": "1"})
    r.headers.add("X-Ok", "2")  # cached name, value still checked
    with pytest.raises(ValueError):
        r.headers.add("X-Ok", "bad\r\nvalue")
    with pytest.raises(ValueError):
        r.headers["X-Ok"] = "\n"
    with pytest.raises(ValueError):
        r.headers.add("X-\x7f", "v")


# --------------------------------------------------------------------------- the fast paths


def _fast_path_cases() -> list[Response]:
    return [
        PlainTextResponse("Hello, World!"),
        JSONResponse({"a": 1}),
        HTMLResponse("<p>x</p>", status=404),
        Response(b"raw"),
        Response("text", content_type="text/x-custom"),
        Response(b"", status=204, content_type="text/plain"),
        Response(b"", status=304),
        Response(b"x", headers={"Content-Length": "99"}),
        Response(b"x", headers={"Connection": "keep-alive"}),
        Response(b"x", headers={"Transfer-Encoding": "chunked"}),
        Response(b"x", headers=[("X-A", "1"), ("X-A", "2")]),
        Response("caf\u00e9", content_type="text/plain; name=caf\u00e9"),
        Response(b""),
    ]


def _general(response: Response) -> Response:
    """The same response, made to take the general rendering (its headers asked for)."""
    response.headers  # noqa: B018 - builds the ResponseHeaders: no length prefix from now on
    assert response.length_prefix() is None
    return response


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_the_fast_rendering_is_the_general_one(
    monkeypatch: pytest.MonkeyPatch, head: bool, keep_alive: bool
) -> None:
    reference = [_general(r).render(head=head, keep_alive=keep_alive) for r in _fast_path_cases()]
    monkeypatch.setattr(response_module, "_PREFIXES", {})
    for _ in range(3):  # the first round fills the cache, the next ones use it
        rendered = [r.render(head=head, keep_alive=keep_alive) for r in _fast_path_cases()]
        assert rendered == reference
    if keep_alive and not head:
        assert response_module._PREFIXES  # it was used
    monkeypatch.setattr(response_module, "_PREFIXES_MAX", 0)  # nothing cached: the same
    assert [r.render(head=head, keep_alive=keep_alive) for r in _fast_path_cases()] == reference


def test_render_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(response_module, "_PREFIXES", {})
    for i in range(1000):
        Response(b"x", content_type=f"text/x-{i}").render()
        Response(b"x", headers={f"X-{i}": "v" * 300}).render()
    assert len(response_module._PREFIXES) <= response_module._PREFIXES_MAX
    assert len(response_module._CHECKED_TYPES) <= 256


def test_checked_content_types_are_still_checked() -> None:
    with pytest.raises(ValueError):
        Response("x", content_type="text/plain\r\nX-Injected: 1")
    with pytest.raises(ValueError):
        Response("x", content_type="text/plain\r\nX-Injected: 1")  # not remembered as good
    assert PlainTextResponse("x").headers.items() == [("Content-Type", TEXT)]


@pytest.mark.parametrize("status", [200, 404, 201, 599])
def test_subclass_fast_constructors_match_the_general_one(status: int) -> None:
    from http import HTTPStatus

    from takefive.response import HTML, JSON

    pairs = [
        (PlainTextResponse("héllo\udcff", status), Response("héllo\udcff", status, None, TEXT)),
        (PlainTextResponse("", status), Response("", status, None, TEXT)),
        (HTMLResponse("<b>x</b>", status), Response("<b>x</b>", status, None, HTML)),
        (JSONResponse({"a": [1, 2]}, status), Response(b'{"a":[1,2]}', status, None, JSON)),
        (JSONResponse("text", status), Response(b'"text"', status, None, JSON)),
    ]
    for fast, general in pairs:
        assert (fast.status, fast.body) == (general.status, general.body)
        assert fast.headers == general.headers
        assert fast.render() == general.render()
    enum_status = PlainTextResponse("x", HTTPStatus.OK)
    assert enum_status.status is HTTPStatus.OK
    with pytest.raises(ValueError):
        PlainTextResponse("x", 42)


@pytest.mark.parametrize("head", [False, True])
@pytest.mark.parametrize("keep_alive", [True, False])
def test_length_prefix_is_the_rendered_head_up_to_the_length(head: bool, keep_alive: bool) -> None:
    used = 0
    for r, same in zip(_fast_path_cases(), _fast_path_cases(), strict=True):
        prefix = r.length_prefix(head, keep_alive)
        if prefix is not None:
            used += 1
            assert prefix.endswith(b"Content-Length: ")
            expected = _general(same).render(head=head, keep_alive=keep_alive)
            assert prefix + str(len(r.body)).encode() + b"\r\n\r\n" + r.body == expected
    assert used == (7 if keep_alive and not head else 0)


def test_length_prefixes_of_long_content_types_are_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(response_module, "_PREFIXES", {})
    long_type = "text/x-" + "a" * 10_000
    r = Response(b"x", content_type=long_type)
    assert r.length_prefix() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: " + long_type.encode() + b"\r\nContent-Length: "
    )
    assert not response_module._PREFIXES
    Response(b"x", content_type="text/x-short").length_prefix()
    assert list(response_module._PREFIXES) == [(200, "text/x-short")]


def test_statuses_without_a_body_have_no_length_prefix() -> None:
    for status in (100, 204, 304):
        r = Response(b"", status=status, content_type="text/plain")
        assert r.length_prefix() is None
        assert b"Content-Length" not in r.render()


def test_headers_are_built_when_asked_for_and_then_rendered() -> None:
    r = PlainTextResponse("hi")
    assert r.content_type == TEXT
    assert r.length_prefix() is not None
    r.headers["X-A"] = "1"  # asking for the headers builds them from the Content-Type
    assert r.headers.items() == [("Content-Type", TEXT), ("X-A", "1")]
    assert r.length_prefix() is None  # now rendered from the headers
    assert b"\r\nX-A: 1\r\n" in r.render() and b"Content-Type: " + TEXT.encode() in r.render()
    r.headers = ResponseHeaders([("Content-Type", "text/x-other")])
    assert r.content_type == "text/x-other"
    assert r.render() == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/x-other\r\nContent-Length: 2\r\n\r\nhi"
    )
    empty = Response()
    assert empty.content_type is None and empty.headers.items() == []
    assert empty.render() == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_a_new_content_type_is_checked_once_then_rendered_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from takefive.response import HTML, JSON, OCTETS

    monkeypatch.setattr(response_module, "_CHECKED_TYPES", {TEXT, HTML, JSON, OCTETS})
    monkeypatch.setattr(response_module, "_PREFIXES", {})
    r = Response("x", content_type="text/x-checked-once")
    assert "text/x-checked-once" in response_module._CHECKED_TYPES  # not checked again
    assert r.headers.items() == [("Content-Type", "text/x-checked-once")]
    again = Response("y", content_type="text/x-checked-once")
    assert again.length_prefix() is not None
    assert (200, "text/x-checked-once") in response_module._PREFIXES  # rendered from here on
    assert b"Content-Type: text/x-checked-once\r\nContent-Length: 1\r\n\r\ny" in again.render()


@pytest.mark.parametrize("protocol", range(6))
def test_a_response_pickles_with_every_protocol(protocol: int) -> None:
    import pickle

    response = PlainTextResponse("x", 201)
    twin = pickle.loads(pickle.dumps(response, protocol=protocol))
    assert type(twin) is PlainTextResponse and twin.render() == response.render()
