"""takefive.request: Request built from real wire messages."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factories import wire_request
from takefive.request import (
    Request,
    UploadFile,
    parse_cookie_header,
    unquote_cookie_value,
)
from takefive.response import HTTPError, Response, quote_cookie_value
from takefive.wire import encode_request, parse_request

SENDER = "54c6755b-9628-40a4-9a2d-cc82a816345e"

# The request captured from Mongrel2 1.12 (shared notes).
CAPTURED = (
    b'54c6755b-9628-40a4-9a2d-cc82a816345e 7 /hello 254:{"PATH":"/hello","x-forwarded-for":'
    b'"127.0.0.1","accept":"*/*","user-agent":"curl/7.88.1","host":"127.0.0.1:6767","METHOD":'
    b'"GET","VERSION":"HTTP/1.1","URI":"/hello?a=1&b=two","QUERY":"a=1&b=two","PATTERN":"/",'
    b'"URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"},0:,'
)


make = functools.partial(
    wire_request, conn_id=42, remote_addr="10.0.0.9", host="example.test", sender=SENDER
)


def test_captured_mongrel2_request() -> None:
    req = Request(parse_request(CAPTURED))
    assert req.method == "GET"
    assert req.path == "/hello" == req.raw_path
    assert req.uri == "/hello?a=1&b=two"
    assert req.query_string == "a=1&b=two"
    assert req.query.get("a") == "1"
    assert req.query["b"] == "two"
    assert req.version == "HTTP/1.1"
    assert req.url_scheme == "http"
    assert req.sender == SENDER
    assert req.conn_id == "7"
    assert req.remote_addr == "127.0.0.1"
    assert req.headers["User-Agent"] == "curl/7.88.1"
    assert req.host == "127.0.0.1:6767"
    assert req.url == "http://127.0.0.1:6767/hello?a=1&b=two"
    assert req.pattern == "/"
    assert req.body == b""
    assert req.keep_alive is True
    assert req.path_params == {}


def test_path_params_and_state_are_dicts_of_their_own_made_when_asked_for() -> None:
    first, second = wire_request(), wire_request()
    assert first._path_params is None and first._state is None  # nothing made yet
    first.state["user"] = "ann"
    first.path_params["id"] = 3
    assert first.state == {"user": "ann"} and first.path_params == {"id": 3}
    assert second.state == {} and second.path_params == {}
    assert first.state is not second.state and first.path_params is not second.path_params
    second.path_params = {"x": "y"}
    second.state = {"z": 1}
    assert (second.path_params, second.state) == ({"x": "y"}, {"z": 1})


@pytest.mark.parametrize("tnet", [False, True])
def test_json_and_tnetstring_headers_give_the_same_request(tnet: bool) -> None:
    req = make("POST", "/x", "q=1", {"x-dup": ["a", "b"]}, b"data", tnetstring=tnet)
    assert req.method == "POST"
    assert req.headers.getlist("X-Dup") == ["a", "b"]
    assert req.headers["x-dup"] == "a"
    assert req.body == b"data"
    assert req.query.getlist("q") == ["1"]


def test_path_is_percent_decoded_raw_path_is_not() -> None:
    req = make(path="/a%20b/caf%C3%A9/x%2Fy", query="z=1")
    assert req.path == "/a b/café/x/y"
    assert req.raw_path == "/a%20b/caf%C3%A9/x%2Fy"
    assert req.uri == "/a%20b/caf%C3%A9/x%2Fy?z=1"


def test_invalid_utf8_percent_escape_is_kept_reversibly() -> None:
    req = make(path="/bad%FF")
    assert req.path.encode("utf-8", "surrogateescape") == b"/bad\xff"


def test_uri_is_rebuilt_without_uri_key() -> None:
    frame = encode_request(SENDER, 1, "/p", {"METHOD": "GET", "PATH": "/p", "QUERY": "a=1"})
    req = Request(parse_request(frame))
    assert req.uri == "/p?a=1"
    assert req.version == "HTTP/1.1"
    assert req.remote_addr == ""


def test_query_multi_values_and_blanks() -> None:
    req = make(query="a=1&a=2&b=&c=x%20y&d=%E2%82%AC+z")
    assert req.query.get("a") == "1"
    assert req.query.getlist("a") == ["1", "2"]
    assert req.query["b"] == ""
    assert req.query["c"] == "x y"
    assert req.query["d"] == "€ z"
    assert req.query.get("missing") is None
    assert req.query.getlist("missing") == []
    assert ("a", "2") in req.query.multi_items()
    assert make().query == {}


def test_headers_case_insensitive_and_exclude_mongrel2_keys() -> None:
    req = make(headers={"content-type": "text/plain", "accept": ["a/b", "c/d"]})
    assert req.headers["Content-Type"] == "text/plain"
    assert req.headers.get("CONTENT-TYPE") == "text/plain"
    assert "ACCEPT" in req.headers
    assert req.headers.get("accept") == "a/b"
    assert req.headers.getlist("Accept") == ["a/b", "c/d"]
    assert "METHOD" not in req.headers
    assert req.headers.get("method") is None
    keys = set(req.headers)
    assert "content-type" in keys and "accept" in keys
    assert not any(k.isupper() for k in keys)
    assert len(req.headers) == len(keys)
    assert ("accept", "c/d") in req.headers.multi_items()
    with pytest.raises(KeyError):
        req.headers["x-nope"]


def test_remote_addr_prefers_first_forwarded_for() -> None:
    assert make().remote_addr == "10.0.0.9"
    req = make(headers={"x-forwarded-for": "1.2.3.4, 10.0.0.1"})
    assert req.remote_addr == "1.2.3.4"
    req = make(headers={"x-forwarded-for": ["5.6.7.8", "127.0.0.1"]})
    assert req.remote_addr == "5.6.7.8"
    assert make(headers={"x-forwarded-for": " "}).remote_addr == "10.0.0.9"


@pytest.mark.parametrize(
    ("version", "connection", "expected"),
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Keep-Alive, Close", False),
        ("HTTP/1.1", "keep-alive", True),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "Keep-Alive", True),
        ("HTTP/1.0", "close", False),
        ("HTTP/1.1", "Upgrade", True),
    ],
)
def test_keep_alive(version: str, connection: str | None, expected: bool) -> None:
    headers = {"connection": connection} if connection else {}
    req = make(version=version, headers=headers)
    assert req.keep_alive is expected


def test_keep_alive_can_be_overridden() -> None:
    req = make()
    req.keep_alive = False
    assert req.keep_alive is False


def test_json_body() -> None:
    req = make("POST", body=b'{"a": [1, 2, "x"]}')
    assert req.json() == {"a": [1, 2, "x"]}
    assert req.json() is req.json()  # cached


@pytest.mark.parametrize("body", [b"{bad", b"", b"\xff\xfe", b'{"a":1} trailing'])
def test_invalid_json_is_http_400(body: bytes) -> None:
    req = make("POST", body=body)
    with pytest.raises(HTTPError) as info:
        req.json()
    assert info.value.status == 400
    assert "invalid JSON" in info.value.detail


def test_urlencoded_form() -> None:
    req = make(
        "POST",
        headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
        body=b"name=J%C3%BCrgen&tag=a&tag=b&empty=&plus=a+b",
    )
    form = req.form()
    assert form["name"] == "Jürgen"
    assert form.getlist("tag") == ["a", "b"]
    assert form["empty"] == ""
    assert form["plus"] == "a b"
    assert req.form() is form


def test_urlencoded_form_rejects_bad_utf8() -> None:
    req = make(
        "POST", headers={"content-type": "application/x-www-form-urlencoded"}, body=b"a=\xff"
    )
    with pytest.raises(HTTPError) as info:
        req.form()
    assert info.value.status == 400


def _multipart(boundary: str, parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out += disp.encode() + b"\r\n"
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_form_with_file() -> None:
    boundary = "----takefiveBoundary7MA4YWxk"
    body = _multipart(
        boundary,
        [
            ("title", None, None, "Grüße".encode()),
            ("tag", None, None, b"x"),
            ("tag", None, None, b"y"),
            ("upload", "a.bin", "application/octet-stream", b"\x00\x01\r\n--not-a-boundary\xff"),
        ],
    )
    req = make(
        "POST", headers={"content-type": f"multipart/form-data; boundary={boundary}"}, body=body
    )
    form = req.form()
    assert form["title"] == "Grüße"
    assert form.getlist("tag") == ["x", "y"]
    upload = form["upload"]
    assert isinstance(upload, UploadFile)
    assert upload.filename == "a.bin"
    assert upload.content_type == "application/octet-stream"
    assert upload.data == b"\x00\x01\r\n--not-a-boundary\xff"
    assert len(upload) == len(upload.data)


def test_multipart_without_boundary_is_400() -> None:
    req = make("POST", headers={"content-type": "multipart/form-data"}, body=b"--x--")
    with pytest.raises(HTTPError) as info:
        req.form()
    assert info.value.status == 400


def test_malformed_multipart_is_400() -> None:
    req = make(
        "POST",
        headers={"content-type": "multipart/form-data; boundary=abc"},
        body=b"--abc\r\nno colon header line\r\n\r\ndata\r\n--abc--\r\n",
    )
    with pytest.raises(HTTPError) as info:
        req.form()
    assert info.value.status == 400


def test_form_of_other_content_type_is_415_empty_body_empty_form() -> None:
    assert make("GET").form() == {}
    req = make("POST", headers={"content-type": "application/json"}, body=b"{}")
    with pytest.raises(HTTPError) as info:
        req.form()
    assert info.value.status == 415


def test_cookies() -> None:
    req = make(headers={"cookie": 'a=1; b="x y"; broken; =v; a=2; c=  spaced  '})
    assert req.cookies == {"a": "1", "b": "x y", "c": "spaced"}
    req = make(headers={"cookie": ["s=1", "t=2"]})
    assert req.cookies == {"s": "1", "t": "2"}
    assert make().cookies == {}


def test_cookie_header_parser_is_lenient() -> None:
    assert parse_cookie_header("") == {}
    assert parse_cookie_header(";;;") == {}
    assert parse_cookie_header("k=v=w") == {"k": "v=w"}
    assert unquote_cookie_value('"a\\"b\\\\c"') == 'a"b\\c'
    assert unquote_cookie_value('"') == '"'


@given(st.text())
def test_cookie_value_quoting_round_trips(value: str) -> None:
    quoted = quote_cookie_value(value)
    assert ";" not in quoted and "," not in quoted and "\r" not in quoted
    assert unquote_cookie_value(quoted) == value


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_cookie_round_trip_through_set_cookie_and_cookie_header(value: str) -> None:
    resp = Response()
    resp.set_cookie("session", value)
    resp.set_cookie("other", "1")
    pairs = [h.split(";", 1)[0] for h in resp.headers.getlist("Set-Cookie")]
    req = make(headers={"cookie": "; ".join(pairs)})
    assert req.cookies == {"session": value, "other": "1"}


def test_content_type_and_websocket_flags() -> None:
    req = make(headers={"content-type": "Application/JSON; charset=UTF-8"})
    assert req.content_type == "application/json"
    assert make().content_type == ""
    assert make("WEBSOCKET_HANDSHAKE").is_websocket
    assert make("WEBSOCKET").is_websocket
    assert not make("GET").is_websocket


def test_upload_path_needs_matching_start_and_done() -> None:
    req = make(
        headers={
            "x-mongrel2-upload-start": "/tmp/upload.abc",
            "x-mongrel2-upload-done": "/tmp/upload.abc",
        }
    )
    assert req.upload_path == "/tmp/upload.abc"
    spoofed = make(
        headers={"x-mongrel2-upload-start": "/tmp/a", "x-mongrel2-upload-done": "/etc/passwd"}
    )
    assert spoofed.upload_path is None
    assert make().upload_path is None


def test_method_is_upper_cased_and_defaults() -> None:
    frame = encode_request(SENDER, 1, "/", {"PATH": "/"})
    assert Request(parse_request(frame)).method == "GET"
    assert "Request GET /" in repr(Request(parse_request(frame)))


def test_headers_view_is_built_once_when_asked_and_can_be_replaced() -> None:
    from takefive.datastructures import RequestHeaders

    request = make(headers={"accept": "text/html"})
    assert request._headers is None  # nothing built by the constructor
    headers = request.headers
    assert headers is request.headers  # built once
    assert headers["Accept"] == "text/html" and "METHOD" not in headers
    replacement = RequestHeaders({"accept": "*/*"})
    request.headers = replacement
    assert request.headers is replacement


def test_path_with_list_or_empty_path_key_falls_back() -> None:
    assert make(path="/a%20b").path == "/a b"
    assert make(path="/x", headers={"PATH": ["/from-list"]}).path == "/from-list"
    assert make(path="/msg", headers={"PATH": ""}).path == "/msg"
