"""takefive.handler: class-based handlers, hooks, method fallbacks."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from takefive import App, Handler, HTTPError, Request, Response
from takefive.handler import HOLD, Endpoint, allow_header
from takefive.wire import encode_request, parse_request

SENDER = "a1b2c3d4-0000-4000-8000-0000000000aa"


def make(method: str = "GET", path: str = "/", body: bytes = b"") -> Request:
    headers = {"PATH": path, "METHOD": method, "VERSION": "HTTP/1.1", "URI": path}
    return Request(parse_request(encode_request(SENDER, 3, path, headers, body)))


def call(app: App, method: str, path: str, body: bytes = b"") -> Response | None:
    return asyncio.run(app.handle(make(method, path, body)))


def must(response: Response | None) -> Response:
    assert response is not None
    return response


def test_allowed_methods_computed_from_definitions() -> None:
    class Empty(Handler):
        pass

    class Reader(Handler):
        def get(self) -> str:
            return "r"

    class Writer(Reader):
        async def post(self) -> str:
            return "w"

        def head(self) -> Response:
            return Response(status=200)

    assert Empty.allowed_methods == {"OPTIONS"}
    assert Reader.allowed_methods == {"GET", "HEAD", "OPTIONS"}
    assert Writer.allowed_methods == {"GET", "HEAD", "POST", "OPTIONS"}
    assert allow_header(Writer.allowed_methods) == "GET, HEAD, POST, OPTIONS"
    assert allow_header({"BREW", "GET"}) == "GET, BREW"


def test_prepare_on_finish_and_attributes() -> None:
    app = App()
    events: list[Any] = []

    @app.route("/items/{id:int}")
    class Item(Handler):
        async def prepare(self) -> None:
            events.append(("prepare", self.request.path, self.app is app))

        def get(self, id: int) -> dict[str, int]:
            events.append(("get", id))
            return {"id": id}

        async def on_finish(self) -> None:
            await asyncio.sleep(0)
            events.append("finish")

    r = must(call(app, "GET", "/items/4"))
    assert r.body == b'{"id":4}'
    assert events == [("prepare", "/items/4", True), ("get", 4), "finish"]


@pytest.mark.parametrize("is_async", [False, True])
def test_prepare_can_short_circuit(is_async: bool) -> None:
    app = App()
    calls: list[str] = []

    class Guarded(Handler):
        def get(self) -> str:
            calls.append("get")
            return "secret"

        def on_finish(self) -> None:
            calls.append("finish")

    if is_async:

        async def prepare(self: Handler) -> Response | None:
            return Response("denied", status=403)

    else:

        def prepare(self: Handler) -> Response | None:  # type: ignore[misc]
            return Response("denied", status=403)

    Guarded.prepare = prepare  # type: ignore[method-assign]
    app.add_route("/g", Guarded)
    r = must(call(app, "GET", "/g"))
    assert (r.status, r.body) == (403, b"denied")
    assert calls == ["finish"]


def test_http_error_in_prepare_and_on_finish_still_runs() -> None:
    app = App()
    calls: list[str] = []

    @app.route("/auth")
    class Auth(Handler):
        def prepare(self) -> None:
            if "authorization" not in self.request.headers:
                raise HTTPError(401, "login first", {"WWW-Authenticate": 'Bearer realm="x"'})

        def get(self) -> str:
            return "in"

        def on_finish(self) -> None:
            calls.append("finish")

    r = must(call(app, "GET", "/auth"))
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="x"'
    assert calls == ["finish"]


def test_on_finish_runs_after_exception_and_its_own_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    calls: list[str] = []

    @app.route("/x")
    class Broken(Handler):
        def get(self) -> str:
            raise KeyError("oops")

        def on_finish(self) -> None:
            calls.append("finish")
            raise RuntimeError("finish failed")

    with caplog.at_level(logging.ERROR, logger="takefive.app"):
        r = must(call(app, "GET", "/x"))
    assert r.status == 500
    assert calls == ["finish"]
    assert "finish failed" in caplog.text and "oops" in caplog.text


def test_head_uses_head_when_defined_else_get() -> None:
    app = App()

    @app.route("/a")
    class A(Handler):
        def get(self) -> str:
            return "from get"

    @app.route("/b")
    class B(Handler):
        def get(self) -> str:
            return "from get"

        def head(self) -> Response:
            return Response(headers={"X-Head": "1"})

    a = must(call(app, "HEAD", "/a"))
    assert a.body == b"from get"
    assert a.render(head=True).endswith(b"Content-Length: 8\r\n\r\n")
    b = must(call(app, "HEAD", "/b"))
    assert b.headers["X-Head"] == "1"


def test_options_custom_and_automatic() -> None:
    app = App()

    @app.route("/auto")
    class Auto(Handler):
        def put(self) -> str:
            return "p"

    @app.route("/custom")
    class Custom(Handler):
        def options(self) -> Response:
            return Response(status=200, headers={"Allow": "GET", "X-Custom": "y"})

    r = must(call(app, "OPTIONS", "/auto"))
    assert (r.status, r.headers["Allow"]) == (204, "PUT, OPTIONS")
    assert r.render() == b"HTTP/1.1 204 No Content\r\nAllow: PUT, OPTIONS\r\n\r\n"
    r = must(call(app, "OPTIONS", "/custom"))
    assert r.headers["X-Custom"] == "y"
    r = must(call(app, "GET", "/auto"))
    assert (r.status, r.headers["Allow"]) == (405, "PUT, OPTIONS")


def test_handler_may_hold() -> None:
    app = App()

    @app.route("/hold")
    class Holder(Handler):
        async def get(self) -> Any:
            return self.app.hold()

    assert call(app, "GET", "/hold") is None


def test_sync_and_async_methods_with_kwargs() -> None:
    app = App()

    @app.route("/m/{a}/{b:int}")
    class Many(Handler):
        def get(self, a: str, b: int) -> str:
            return f"{a}:{b}"

        async def post(self, **params: Any) -> dict[str, Any]:
            return {"params": params, "body": self.request.body.decode()}

        def patch(self, a: str, b: int) -> bytes:
            return b"patched"

        def put(self, a: str, b: int) -> list[Any]:
            return [a, b]

    assert must(call(app, "GET", "/m/x/2")).body == b"x:2"
    assert must(call(app, "POST", "/m/x/2", b"hi")).body == (
        b'{"params":{"a":"x","b":2},"body":"hi"}'
    )
    assert must(call(app, "PATCH", "/m/x/2")).body == b"patched"
    assert must(call(app, "PUT", "/m/x/2")).body == b'["x",2]'


def test_endpoint_direct_dispatch_405() -> None:
    endpoint = Endpoint()
    endpoint.add_function(lambda request: "g", ["get"])
    assert endpoint.allowed == {"GET", "HEAD", "OPTIONS"}
    app = App()
    with pytest.raises(HTTPError) as info:
        asyncio.run(endpoint(app, make("POST"), "POST", {}))
    assert info.value.status == 405
    with pytest.raises(ValueError):
        Endpoint(type("H", (Handler,), {})).add_function(lambda r: "x", ["GET"])
    assert HOLD is not None


def test_plain_function_returning_an_awaitable_is_awaited() -> None:
    app = App()

    class Later:
        def __await__(self) -> Any:
            yield from asyncio.sleep(0).__await__()
            return "awaited"

    app.add_route("/later", lambda request: Later())

    @app.route("/cls")
    class Cls(Handler):
        def get(self) -> Later:
            return Later()

    assert must(call(app, "GET", "/later")).body == b"awaited"
    assert must(call(app, "GET", "/cls")).body == b"awaited"
