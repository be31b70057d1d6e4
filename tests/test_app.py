"""takefive.app: dispatch, every status path, push API, hooks."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from typing import Any

import pytest

from factories import SENDER, wire_request
from takefive import (
    HOLD,
    App,
    Handler,
    HTTPError,
    JSONResponse,
    PlainTextResponse,
    Request,
    Response,
)

make = wire_request


class Collector:
    """An Outbox that records what the app delivers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    def deliver(self, sender: str, conn_ids: Sequence[str], data: bytes) -> None:
        self.sent.append((sender, list(conn_ids), data))


def run(app: App, request: Request) -> Response:
    response = asyncio.run(app.handle(request))
    assert response is not None
    return response


def call(app: App, method: str = "GET", path: str = "/", **kw: Any) -> Response:
    return run(app, make(method, path, **kw))


@pytest.fixture
def app() -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        return "index"

    @app.route("/echo", methods=["POST", "PUT"])
    async def echo(request: Request) -> Response:
        return Response(request.body, content_type=request.headers.get("content-type"))

    @app.route("/echo", methods=["DELETE"])
    def echo_delete(request: Request) -> Response:
        return Response(status=204)

    @app.route("/users/{id:int}", name="user")
    class User(Handler):
        async def get(self, id: int) -> dict[str, Any]:
            return {"id": id, "type": type(id).__name__}

        def delete(self, id: int) -> Response:
            return Response(status=204)

    @app.route(r"^/files/(?P<name>.+)$", regex=True)
    def files(request: Request, name: str) -> str:
        return f"file {name}"

    @app.route(re.compile(r"/re/(?P<n>\d+)"))
    def compiled(request: Request, n: str) -> dict[str, str]:
        return {"n": n, "param": request.path_params["n"]}

    @app.route("/json", methods=["POST"])
    def post_json(request: Request) -> Any:
        return request.json()

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("secret internals")

    @app.route("/teapot")
    def teapot(request: Request) -> str:
        raise HTTPError(418, "short and stout", {"X-Tea": "earl grey"})

    @app.route("/none")
    def returns_none(request: Request) -> None:
        return None

    @app.route("/bytes")
    def returns_bytes(request: Request) -> bytes:
        return b"\x00\x01"

    @app.route("/list")
    def returns_list(request: Request) -> list[int]:
        return [1, 2]

    return app


def test_function_route(app: App) -> None:
    r = call(app, "GET", "/")
    assert (r.status, r.body) == (200, b"index")


def test_function_route_several_methods_and_merging(app: App) -> None:
    r = call(app, "POST", "/echo", body=b"hi", headers={"content-type": "text/x"})
    assert (r.status, r.body, r.content_type) == (200, b"hi", "text/x")
    assert call(app, "PUT", "/echo", body=b"p").body == b"p"
    assert call(app, "DELETE", "/echo").status == 204
    r = call(app, "GET", "/echo")
    assert r.status == 405
    assert r.headers["Allow"] == "PUT, POST, DELETE, OPTIONS" or set(
        r.headers["Allow"].split(", ")
    ) == {"POST", "PUT", "DELETE", "OPTIONS"}


def test_handler_class_route_with_converted_params(app: App) -> None:
    r = call(app, "GET", "/users/12")
    assert r.status == 200
    assert r.body == b'{"id":12,"type":"int"}'
    assert call(app, "DELETE", "/users/12").status == 204


def test_404(app: App) -> None:
    r = call(app, "GET", "/nowhere")
    assert (r.status, r.body) == (404, b"Not Found\n")
    assert call(app, "GET", "/users/abc").status == 404


def test_405_lists_allowed_methods(app: App) -> None:
    r = call(app, "POST", "/users/1")
    assert r.status == 405
    assert r.headers["Allow"] == "GET, HEAD, DELETE, OPTIONS"
    r = call(app, "POST", "/")
    assert (r.status, r.headers["Allow"]) == (405, "GET, HEAD, OPTIONS")


def test_head_falls_back_to_get_and_render_drops_body(app: App) -> None:
    r = call(app, "HEAD", "/users/3")
    assert r.status == 200
    data = r.render(head=True)
    assert data.endswith(b"\r\n\r\n")
    assert f"Content-Length: {len(r.body)}".encode() in data


def test_options_automatic(app: App) -> None:
    r = call(app, "OPTIONS", "/users/3")
    assert r.status == 204
    assert r.headers["Allow"] == "GET, HEAD, DELETE, OPTIONS"
    r = call(app, "OPTIONS", "/")
    assert r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_regex_routes(app: App) -> None:
    assert call(app, "GET", "/files/a/b%20c.txt").body == b"file a/b c.txt"
    assert call(app, "GET", "/re/77").body == b'{"n":"77","param":"77"}'
    assert call(app, "GET", "/re/77x").status == 404


def test_http_error(app: App) -> None:
    r = call(app, "GET", "/teapot")
    assert (r.status, r.body, r.headers["X-Tea"]) == (418, b"short and stout\n", "earl grey")


def test_invalid_json_is_400(app: App) -> None:
    r = call(app, "POST", "/json", body=b"{nope")
    assert r.status == 400
    assert b"invalid JSON" in r.body
    assert call(app, "POST", "/json", body=b'{"a":1}').body == b'{"a":1}'


def test_500_hides_traceback_and_logs_it(app: App, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="takefive.app"):
        r = call(app, "GET", "/boom")
    assert r.status == 500
    assert r.body == b"500 Internal Server Error\n"
    assert b"secret" not in r.body and b"Traceback" not in r.body
    records = [rec for rec in caplog.records if rec.name == "takefive.app"]
    assert records and records[0].exc_info is not None
    assert "GET /boom" in records[0].getMessage()
    assert "secret internals" in caplog.text


def test_500_with_debug_shows_traceback(app: App) -> None:
    app.debug = True
    r = call(app, "GET", "/boom")
    assert r.status == 500
    assert b"Traceback" in r.body and b"RuntimeError: secret internals" in r.body


def test_return_value_conversion(app: App) -> None:
    assert call(app, "GET", "/bytes").body == b"\x00\x01"
    assert call(app, "GET", "/list").body == b"[1,2]"
    r = call(app, "GET", "/none")
    assert r.status == 500  # returning None is a bug, logged with a clear message


def test_returning_none_logs_a_clear_message(app: App, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="takefive.app"):
        call(app, "GET", "/none")
    assert "app.hold()" in caplog.text


def test_cookies_round_trip() -> None:
    app = App()

    @app.route("/login", methods=["POST"])
    def login(request: Request) -> Response:
        r = Response("ok")
        r.set_cookie("sid", 'v a;l"ue', httponly=True)
        r.set_cookie("theme", "dark")
        return r

    @app.route("/me")
    def me(request: Request) -> dict[str, str]:
        return request.cookies

    r = call(app, "POST", "/login")
    pairs = [v.split(";", 1)[0] for v in r.headers.getlist("Set-Cookie")]
    assert len(pairs) == 2
    r = call(app, "GET", "/me", headers={"cookie": "; ".join(pairs)})
    assert r.body == b'{"sid":"v a;l\\"ue","theme":"dark"}'


def test_http10_keep_alive_gets_connection_header() -> None:
    app = App()
    app.add_route("/", lambda request: "x")
    r = call(app, "GET", "/", version="HTTP/1.0", headers={"connection": "keep-alive"})
    assert r.headers["Connection"] == "keep-alive"
    r = call(app, "GET", "/", version="HTTP/1.0")
    assert "Connection" not in r.headers
    assert b"Connection: close" in r.render(keep_alive=False)
    r = call(app, "GET", "/", version="HTTP/1.1")
    assert "Connection" not in r.headers


def test_control_messages_and_partial_uploads_are_not_dispatched() -> None:
    app = App()
    app.add_route("/", lambda request: "x", methods=["POST"])
    assert asyncio.run(app.handle(make("JSON", "@*", body=b'{"type":"credits"}'))) is None
    start = make("POST", "/", headers={"x-mongrel2-upload-start": "/tmp/upload.1"})
    assert asyncio.run(app.handle(start)) is None
    done = make(
        "POST",
        "/",
        headers={"x-mongrel2-upload-start": "/tmp/u", "x-mongrel2-upload-done": "/tmp/u"},
    )
    assert run(app, done).body == b"x"


def test_a_client_request_with_method_json_or_xml_is_answered() -> None:
    """Front end control messages come on '@' paths; a client can send any method
    (Mongrel2 passes 'JSON / HTTP/1.1' on as METHOD JSON, path /): it gets an answer."""
    app = App()
    app.add_route("/", lambda request: "x")
    for method in ("JSON", "XML"):
        response = asyncio.run(app.handle(make(method, "/")))
        assert response is not None and response.status == 405
        response = asyncio.run(app.handle(make(method, "/nowhere")))
        assert response is not None and response.status == 404
        assert asyncio.run(app.handle(make(method, "@*", body=b"{}"))) is None


def test_route_registration_errors() -> None:
    app = App()

    class H(Handler):
        def get(self) -> str:
            return "h"

    with pytest.raises(ValueError, match="methods"):
        app.add_route("/h", H, methods=["GET"])
    app.add_route("/h", H)
    with pytest.raises(ValueError):
        app.add_route("/h", lambda request: "f")
    with pytest.raises(TypeError):
        app.add_route("/x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list"):
        app.add_route("/x", lambda request: "f", methods="GET")
    app.add_route("/f", lambda request: "f")
    with pytest.raises(ValueError, match="GET"):
        app.add_route("/f", lambda request: "g")


def test_first_route_without_method_falls_through_to_next() -> None:
    app = App()
    app.add_route("/items/new", lambda request: "form")
    app.add_route("/items/{name}", lambda request, name: f"created {name}", methods=["POST"])
    assert call(app, "GET", "/items/new").body == b"form"
    assert call(app, "POST", "/items/new").body == b"created new"
    r = call(app, "PUT", "/items/new")
    assert r.status == 405
    assert r.headers["Allow"] == "GET, HEAD, POST, OPTIONS"


def test_url_for(app: App) -> None:
    assert app.url_for("user", id=9) == "/users/9"


def test_error_response_override() -> None:
    class MyApp(App):
        def error_response(self, request: Request, error: HTTPError) -> Response:
            return JSONResponse({"error": error.detail}, error.status, error.headers)

    app = MyApp()
    r = call(app, "GET", "/missing")
    assert (r.status, r.body) == (404, b'{"error":"Not Found"}')

    class Broken(App):
        def error_response(self, request: Request, error: HTTPError) -> Response:
            raise RuntimeError("broken")

    r = call(Broken(), "GET", "/missing")
    assert (r.status, r.body) == (404, b"404 Not Found\n")


# --------------------------------------------------------------------------- push API


def test_deliver_close_and_reply_need_an_outbox() -> None:
    app = App()
    with pytest.raises(RuntimeError, match="no outbox attached"):
        app.deliver(SENDER, "1", b"x")
    with pytest.raises(RuntimeError, match="no outbox attached"):
        app.close(SENDER, ["1"])


def test_deliver_and_close() -> None:
    app = App()
    box = Collector()
    app.attach(box)
    app.deliver(SENDER, "1", b"one")
    app.deliver(SENDER, ["2", "3"], b"many")
    app.deliver(SENDER, 4, bytearray(b"int"))
    app.deliver(SENDER, [], b"nobody")
    app.close(SENDER, ("5", "6"))
    assert box.sent == [
        (SENDER, ["1"], b"one"),
        (SENDER, ["2", "3"], b"many"),
        (SENDER, ["4"], b"int"),
        (SENDER, ["5", "6"], b""),
    ]


def test_long_polling_with_hold_and_reply() -> None:
    app = App()
    box = Collector()
    app.attach(box)
    waiting: list[Request] = []

    @app.route("/wait")
    def wait(request: Request) -> Any:
        waiting.append(request)
        return app.hold()

    @app.route("/publish", methods=["POST"])
    def publish(request: Request) -> str:
        while waiting:
            app.reply(waiting.pop(), PlainTextResponse(request.body.decode()))
        return "sent"

    async def scenario() -> None:
        assert await app.handle(make("GET", "/wait", conn_id=1)) is None
        held = make("GET", "/wait", conn_id=2, version="HTTP/1.0")
        assert await app.handle(held) is None
        assert len(waiting) == 2
        r = await app.handle(make("POST", "/publish", body=b"news", conn_id=3))
        assert r is not None and r.body == b"sent"

    asyncio.run(scenario())
    (s1, ids1, d1), (s2, ids2, d2), (s3, ids3, d3) = box.sent
    # LIFO pop: the HTTP/1.0 one first, then closed since it was not keep-alive.
    assert ids1 == ["2"] and d1.endswith(b"\r\n\r\nnews") and b"Connection: close" in d1
    assert (ids2, d2) == (["2"], b"")
    assert ids3 == ["1"] and b"Connection" not in d3 and d3.endswith(b"news")
    assert s1 == s2 == s3 == SENDER
    assert HOLD is app.hold()
    assert repr(HOLD) == "HOLD"


def test_reply_head_request_has_no_body() -> None:
    app = App()
    box = Collector()
    app.attach(box)
    app.reply(make("HEAD", "/"), "body")
    ((_, _, data),) = box.sent
    assert data.endswith(b"Content-Length: 4\r\n\r\n")


# --------------------------------------------------------------------------- hooks


def test_startup_shutdown_and_disconnect_hooks(caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    events: list[Any] = []

    @app.on_startup
    def start_sync() -> None:
        events.append("start1")

    @app.on_startup
    async def start_async() -> None:
        await asyncio.sleep(0)
        events.append("start2")

    @app.on_shutdown
    def stop_broken() -> None:
        raise RuntimeError("stop failed")

    @app.on_shutdown
    async def stop_async() -> None:
        events.append("stop")

    @app.on_disconnect
    def gone_broken(sender: str, conn_id: str) -> None:
        raise ValueError("hook failed")

    @app.on_disconnect
    async def gone(sender: str, conn_id: str) -> None:
        events.append(("gone", sender, conn_id))

    async def scenario() -> None:
        await app.startup()
        await app.disconnected(SENDER, "9")
        await app.shutdown()

    with caplog.at_level(logging.ERROR, logger="takefive.app"):
        asyncio.run(scenario())
    assert events == ["start1", "start2", ("gone", SENDER, "9"), "stop"]
    assert "stop failed" in caplog.text and "hook failed" in caplog.text
    assert start_sync.__name__ == "start_sync"  # decorators return the function


def test_startup_failure_propagates() -> None:
    app = App()

    @app.on_startup
    def fail() -> None:
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        asyncio.run(app.startup())


def test_request_app_is_set() -> None:
    app = App()
    seen: list[Any] = []
    app.add_route("/", lambda request: seen.append(request.app) or "x")
    call(app, "GET", "/")
    assert seen == [app]


def test_handle_never_raises_on_odd_requests() -> None:
    app = App()
    app.add_route("/", lambda request: "x")
    for method in ("BREW", "get", ""):
        r = call(app, method, "/")
        assert r.status in (200, 405)
    assert call(app, "GET", "/%ZZ").status == 404


# --------------------------------------------------------------------------- the direct call


class _Later:
    """An awaitable that is not a coroutine (what a library might return)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return self.value


def test_function_handlers_called_directly_answer_as_through_the_endpoint() -> None:
    """App.handle calls a routed function itself; the answers are the endpoint's."""
    app = App()

    @app.route("/sync/{n:int}")
    def sync(request: Request, n: int) -> str:
        return f"sync {n + 1}"

    @app.route("/async")
    async def coro(request: Request) -> Response:
        return PlainTextResponse("async")

    @app.route("/awaitable")
    def awaitable(request: Request) -> _Later:
        return _Later({"later": True})

    @app.route("/hold")
    async def held(request: Request) -> object:
        return HOLD

    @app.route("/teapot")
    def teapot(request: Request) -> str:
        raise HTTPError(418, "short and stout")

    @app.route("/none")
    def none(request: Request) -> None:
        return None

    def answer(method: str, path: str) -> tuple[int, bytes]:
        response = run(app, make(method, path))
        return response.status, response.body

    assert answer("GET", "/sync/41") == (200, b"sync 42")
    assert answer("GET", "/async") == (200, b"async")
    assert answer("GET", "/awaitable") == (200, b'{"later":true}')
    assert answer("GET", "/teapot") == (418, b"short and stout\n")
    assert answer("GET", "/none") == (500, b"500 Internal Server Error\n")
    assert answer("HEAD", "/sync/1") == (200, b"sync 2")  # through the endpoint
    assert answer("POST", "/async")[0] == 405
    request = make("GET", "/hold")
    assert asyncio.run(app.handle(request)) is None
    request = make("GET", "/sync/7")
    run(app, request)
    assert request.path_params == {"n": 7}


# --------------------------------------------------------------------------- start / finish


def test_start_answers_plain_functions_at_once_and_leaves_the_rest_to_finish() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    app = App()

    @app.route("/plain")
    def plain(request: Request) -> str:
        var.set("plain")
        return "plain"

    @app.route("/hold")
    def hold(request: Request) -> object:
        return HOLD

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise ValueError("no")

    @app.route("/teapot")
    def teapot(request: Request) -> str:
        raise HTTPError(418)

    @app.route("/async")
    async def not_plain(request: Request) -> str:
        return "async " + var.get()

    @app.route("/returns-awaitable")
    def returns_awaitable(request: Request) -> Any:
        var.set("set before the await")
        return not_plain(request)

    answered = app.start(make("GET", "/plain"))
    assert isinstance(answered, Response) and answered.body == b"plain"
    assert var.get() == "unset"  # the handler ran in a context of its own
    assert app.start(make("GET", "/hold")) is None
    assert app.start(make("GET", "/boom")).status == 500  # type: ignore[union-attr]
    assert app.start(make("GET", "/teapot")).status == 418  # type: ignore[union-attr]
    assert app.start(make("GET", "/nowhere")).status == 404  # type: ignore[union-attr]
    assert app.start(make("POST", "/plain")).status == 405  # type: ignore[union-attr]
    keep = app.start(
        make("GET", "/plain", version="HTTP/1.0", headers={"connection": "keep-alive"})
    )
    assert keep.headers["Connection"] == "keep-alive"  # type: ignore[union-attr]

    request = make("GET", "/async")
    pending = app.start(request)
    assert type(pending) is tuple
    awaitable, context = pending
    assert context is None  # await it in a fresh task's context
    assert asyncio.run(app.finish(request, awaitable)).body == b"async unset"  # type: ignore[union-attr]

    request = make("GET", "/returns-awaitable")
    pending = app.start(request)
    assert type(pending) is tuple and pending[1] is not None

    async def in_its_context() -> Response | None:
        awaitable, context = pending
        return await asyncio.get_running_loop().create_task(
            app.finish(request, awaitable), context=context
        )

    assert asyncio.run(in_its_context()).body == b"async set before the await"  # type: ignore[union-attr]


def test_handle_keeps_the_context_of_a_plain_handler_that_returns_an_awaitable() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    app = App()

    async def later() -> str:
        return var.get()

    @app.route("/")
    def index(request: Request) -> Any:
        var.set("set by the plain part")
        return later()

    assert call(app).body == b"set by the plain part"


def test_a_plain_handler_raising_cancelled_error_is_a_500() -> None:
    app = App()

    @app.route("/")
    def index(request: Request) -> str:
        raise asyncio.CancelledError

    assert call(app).status == 500


def test_finish_turns_errors_into_responses() -> None:
    app = App()

    @app.route("/boom")
    async def boom(request: Request) -> str:
        raise ValueError("no")

    @app.route("/gone")
    async def gone(request: Request) -> str:
        raise HTTPError(410)

    @app.route("/none")
    async def none(request: Request) -> None:
        return None

    for path, status in (("/boom", 500), ("/gone", 410), ("/none", 500)):
        request = make("GET", path)
        pending = app.start(request)
        assert type(pending) is tuple
        assert asyncio.run(app.finish(request, pending[0])).status == status  # type: ignore[union-attr]


def test_a_plain_function_on_a_later_route_answers_too() -> None:
    """POST /x: the static route /x has no POST; the template route /{name} after it
    does, with a plain function (called at once, as on its first route)."""
    app = App()

    @app.route("/x")
    def get_x(request: Request) -> str:
        return "get x"

    @app.route("/{name}", methods=["POST"])
    def post_any(request: Request, name: str) -> str:
        return f"post {name}"

    assert call(app, "GET", "/x").body == b"get x"
    assert call(app, "POST", "/x").body == b"post x"
    assert call(app, "POST", "/y").body == b"post y"
    assert call(app, "PUT", "/x").status == 405
    answered = app.start(make("POST", "/x"))
    assert isinstance(answered, Response) and answered.body == b"post x"


def test_a_plain_function_on_a_later_route_is_answered_like_on_its_first() -> None:
    """A stray CancelledError is a 500 (not a request left unanswered), and a capture
    may be called ``fn`` (no clash with a helper's own argument), on any route."""
    app = App()

    @app.route("/fn")
    def static(request: Request) -> str:
        return "static"

    @app.route("/{fn}", methods=["POST"])
    def post(request: Request, fn: str) -> str:
        if fn == "cancel":
            raise asyncio.CancelledError
        return f"post {fn}"

    @app.route("/cancel")
    def cancel_get(request: Request) -> str:
        return "get"

    assert call(app, "POST", "/fn").body == b"post fn"  # a later route for POST
    assert call(app, "POST", "/other").body == b"post other"  # its first route
    assert call(app, "POST", "/cancel").status == 500  # a later route, CancelledError


def test_a_handler_keeping_an_http10_connection_says_so() -> None:
    """HTTP/1.0 without Connection: keep-alive closes, unless the handler keeps it: then
    the answer must say keep-alive (an HTTP/1.0 client would wait for the close)."""
    app = App()

    @app.route("/keep")
    def keep(request: Request) -> Response:
        request.keep_alive = True
        return PlainTextResponse("kept")

    @app.route("/plain")
    def plain(request: Request) -> Response:
        return PlainTextResponse("closed")

    request = make("GET", "/keep", version="HTTP/1.0")
    kept = app.start(request)
    assert isinstance(kept, Response) and request.keep_alive
    assert kept.headers.get("Connection") == "keep-alive"
    closed = app.start(make("GET", "/plain", version="HTTP/1.0"))
    assert isinstance(closed, Response) and "Connection" not in closed.headers
    answered = app.start(make("GET", "/plain"))  # HTTP/1.1: nothing added
    assert isinstance(answered, Response) and answered.length_prefix() is not None


def test_a_router_put_in_place_later_is_the_one_used() -> None:
    """The static-route shortcut reads the app's router of the moment."""
    from takefive.routing import Router

    app = App()
    app.add_route("/a", lambda request: "old")
    app.router = Router()
    app.add_route("/b", lambda request: "new")
    old = app.start(make("GET", "/a"))
    new = app.start(make("GET", "/b"))
    assert isinstance(old, Response) and old.status == 404
    assert isinstance(new, Response) and new.body == b"new"
