"""The application: routes, dispatch, errors, and pushing data to connections.

:meth:`App.handle` turns a :class:`~takefive.request.Request` into a
:class:`~takefive.response.Response` and never raises. It knows no ZeroMQ: the
runner feeds it requests, sends what it returns, and attaches an :class:`Outbox`
through which :meth:`App.deliver` and :meth:`App.close` reach connections later.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import Context, copy_context
from typing import Any, Protocol, TypeVar

from takefive.handler import _PLAIN_RESULTS, HOLD, Endpoint, Handler, _Hold, call
from takefive.request import Request
from takefive.response import HTTPError, PlainTextResponse, Response, to_response
from takefive.routing import Router
from takefive.websocket import (
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    WebSocketHandler,
)
from takefive.wire import _CONTROL_METHODS

__all__ = ["HOLD", "App", "Outbox", "Pending"]

logger = logging.getLogger("takefive.app")

F = TypeVar("F", bound=Callable[..., Any])
W = TypeVar("W", bound=type[WebSocketHandler])

#: Front end messages that are not requests for a route (credits, disconnects, ...).
_SPECIAL_METHODS = _CONTROL_METHODS | {"WEBSOCKET", "WEBSOCKET_HANDSHAKE"}


class Outbox(Protocol):
    """Where :meth:`App.deliver` sends bytes; the runner implements it over ZeroMQ.

    ``deliver`` must send in call order on the same channel as the responses the
    runner sends, so a pushed message never overtakes an earlier response.
    """

    def deliver(self, sender: str, conn_ids: Sequence[str], data: bytes) -> None: ...


#: What :meth:`App.start` leaves to :meth:`App.finish`: an awaitable, and the context
#: to await it in (``None``: a copy of the caller's, as a new task gets; else the one a
#: plain function that returned an awaitable ran in, so its request stays in it).
Pending = tuple[Awaitable[Any], Context | None]


def _ids(conn_ids: str | int | Iterable[str | int]) -> list[str]:
    if isinstance(conn_ids, str | int):
        return [str(conn_ids)]
    return [str(c) for c in conn_ids]


class App:
    """A takefive application.

    ``debug=True`` puts the traceback of an unhandled exception in the 500 body
    (never do that in production). Errors are always logged on ``takefive.app``.
    """

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug
        self.router: Router[Endpoint] = Router()
        self.websocket_router: Router[type[WebSocketHandler]] = Router()
        self.outbox: Outbox | None = None
        self._startup: list[Callable[[], Any]] = []
        self._shutdown: list[Callable[[], Any]] = []
        self._disconnect: list[Callable[[str, str], Any]] = []

    # ----------------------------------------------------------------- routes

    def add_route(
        self,
        pattern: str | re.Pattern[str],
        target: Callable[..., Any] | type[Handler],
        methods: Iterable[str] | None = None,
        *,
        regex: bool = False,
        name: str | None = None,
    ) -> None:
        """Route ``pattern`` to a :class:`Handler` subclass or a function.

        A function is called as ``fn(request, **captures)`` for ``methods``
        (default ``["GET"]``; HEAD follows GET, OPTIONS is answered automatically).
        Several functions may share a pattern with different methods. A Handler
        class answers the methods it defines and takes no ``methods``.
        """
        if isinstance(target, type) and issubclass(target, Handler):
            if methods is not None:
                raise ValueError("a Handler class answers the methods it defines: drop methods=")
            self.router.add(pattern, Endpoint(target), regex=regex, name=name)
            return
        if isinstance(target, type) and issubclass(target, WebSocketHandler):
            raise TypeError("route WebSocketHandler classes with app.websocket()")
        if not callable(target):
            raise TypeError(f"route target must be callable, not {type(target).__name__}")
        if isinstance(methods, str):
            raise TypeError('methods must be a list, e.g. methods=["GET", "POST"]')
        wanted = [m.upper() for m in (methods if methods is not None else ["GET"])]
        existing = self.router.get(pattern, regex=regex)
        if existing is not None:
            if name is not None and existing.name != name:
                raise ValueError(f"route {existing.pattern!r} already exists with another name")
            existing.target.add_function(target, wanted)
            return
        endpoint = Endpoint()
        endpoint.add_function(target, wanted)
        self.router.add(pattern, endpoint, regex=regex, name=name)

    def route(
        self,
        pattern: str | re.Pattern[str],
        methods: Iterable[str] | None = None,
        *,
        regex: bool = False,
        name: str | None = None,
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`add_route`; returns the target unchanged."""

        def decorator(target: F) -> F:
            self.add_route(pattern, target, methods, regex=regex, name=name)
            return target

        return decorator

    def websocket(
        self, pattern: str | re.Pattern[str], *, regex: bool = False, name: str | None = None
    ) -> Callable[[W], W]:
        """Decorator routing a :class:`WebSocketHandler` subclass."""

        def decorator(cls: W) -> W:
            if not (isinstance(cls, type) and issubclass(cls, WebSocketHandler)):
                raise TypeError("app.websocket() takes a WebSocketHandler subclass")
            self.websocket_router.add(pattern, cls, regex=regex, name=name)
            return cls

        return decorator

    def url_for(self, name: str, **params: Any) -> str:
        """The path of the route called ``name``, e.g. ``app.url_for("user", id=3)``."""
        return self.router.url_for(name, **params)

    @staticmethod
    def hold() -> _Hold:
        """Return this from a handler to answer later (see :meth:`reply`)."""
        return HOLD

    # ----------------------------------------------------------------- dispatch

    async def handle(self, request: Request) -> Response | None:
        """Answer ``request``. Never raises (except ``asyncio.CancelledError``).

        Returns ``None`` when nothing is to be sent now: the handler held the
        connection (:data:`HOLD`), it is a WebSocket message, or a front end
        control message (``METHOD`` JSON) that is not a request.
        """
        started = self.start(request)
        if not isinstance(started, tuple):
            return started
        awaitable, context = started
        if context is None:
            return await self.finish(request, awaitable)
        # a plain handler returned an awaitable: the rest runs in the handler's context
        return await asyncio.get_running_loop().create_task(
            self.finish(request, awaitable), context=context
        )

    def start(self, request: Request) -> Response | Pending | None:
        """The part of :meth:`handle` that needs no ``await``; never raises.

        Routes ``request`` and calls its handler. A plain function runs at once, in a
        context of its own (:mod:`contextvars`), and its result is the answer: no task,
        no coroutine, the runner sends it inline. Anything that must be awaited (an
        ``async def`` handler, a :class:`Handler` class, a WebSocket message) comes
        back as a :data:`Pending` ``(awaitable, context)`` for :meth:`finish`, which the
        runner awaits in a task (in ``context`` when it is not ``None``).
        """
        request.app = self
        method = request.method
        # The common case first: a static route (the router tries those first too) for
        # a request that is not a front end's own message; found once, used as found.
        route = self.router.static.get(request.path)
        if (
            route is None
            or method in _SPECIAL_METHODS
            or "x-mongrel2-upload-start" in request._raw
        ):
            return self._start_routed(request)
        fn = route.target.plain.get(method)
        if fn is None:  # async def, a Handler class, HEAD via GET, OPTIONS, 405
            try:
                return self._start_other(request, (route, {}))
            except Exception as exc:
                return self._failed(request, exc)
        return self._call_plain(request, fn, None)

    def _start_routed(self, request: Request) -> Response | Pending | None:
        """:meth:`start` for a front end's own message, an upload, or a path that is no
        static route."""
        method = request.method
        raw = request._raw
        try:
            if method in _SPECIAL_METHODS:
                if method not in _CONTROL_METHODS:
                    return self._handle_websocket(request), None
                if request.message.is_control:
                    logger.debug("ignoring %s message from %s", method, request.sender)
                    return None
                # else a client sent this method on an HTTP path: routed (404 or 405)
            if "x-mongrel2-upload-start" in raw and "x-mongrel2-upload-done" not in raw:
                return None  # the same request comes again when the upload is done
            found = self.router.match(request.path)
            if found is None:
                return self._start_other(request, found)
            route, params = found
            fn = route.target.plain.get(method)
            if fn is None:  # no plain function for this method on the first route
                return self._start_other(request, found)
            request._path_params = params
        except Exception as exc:
            return self._failed(request, exc)
        return self._call_plain(request, fn, params)

    def _call_plain(
        self, request: Request, fn: Callable[..., Any], params: dict[str, Any] | None
    ) -> Response | Pending | None:
        """Call a plain function handler at once, in a context of its own (what it sets
        in context variables stays with this request); its errors are handled there too.
        ``params`` are the route's captures (``None`` or empty: none)."""
        context = copy_context()
        try:
            result = context.run(fn, request, **params) if params else context.run(fn, request)
            if isinstance(result, Response) and not request._http10:
                return result  # the common case: nothing to add (see _complete)
            if not isinstance(result, _PLAIN_RESULTS) and inspect.isawaitable(result):
                return result, context
            return context.run(self._answer, request, result)
        # CancelledError here is no cancellation of ours (no task runs a plain handler):
        # e.g. .result() of a cancelled future. An error like any other.
        except (Exception, asyncio.CancelledError) as exc:
            return context.run(self._failed, request, exc)

    def _start_other(
        self, request: Request, found: tuple[Any, dict[str, Any]] | None
    ) -> Response | Pending | None:
        """:meth:`start` for anything but a plain function routed for the method: an
        ``async def`` function, a Handler class, HEAD via GET, OPTIONS, 404, 405."""
        method = request.method
        if found is None or method not in found[0].target.allowed:
            found = self._fallback_match(request, found)
        route, params = found
        request._path_params = params
        endpoint = route.target
        fn = endpoint.functions.get(method)
        if fn is None:  # a Handler class, HEAD via GET, OPTIONS, 405
            return endpoint(self, request, method, params), None
        if method in endpoint.awaiting:  # async def: calling it runs none of its code
            return (fn(request, **params) if params else fn(request)), None
        # a plain function on a later route (the first lacks the method)
        return self._call_plain(request, fn, params)

    async def finish(self, request: Request, awaitable: Awaitable[Any]) -> Response | None:
        """Await what :meth:`start` could not finish; never raises (but cancellation)."""
        try:
            return self._answer(request, await awaitable)
        except Exception as exc:
            return self._failed(request, exc)

    def _answer(self, request: Request, result: Any) -> Response | None:
        """A handler's result as the response to send (``None`` for :data:`HOLD`)."""
        if result is HOLD:
            return None
        return self._complete(
            request, result if isinstance(result, Response) else to_response(result)
        )

    def _failed(self, request: Request, error: BaseException) -> Response:
        """The response for an exception from routing or a handler (called in ``except``)."""
        if isinstance(error, HTTPError):
            response = self._error_response(request, error)
        else:
            response = self._server_error(request)
        return self._complete(request, response)

    @staticmethod
    def _complete(request: Request, response: Response) -> Response:
        if request._http10 and request.keep_alive:
            response.headers.setdefault("Connection", "keep-alive")
        return response

    def _fallback_match(
        self, request: Request, first: tuple[Any, dict[str, Any]] | None
    ) -> tuple[Any, dict[str, Any]]:
        """No route, or the first route lacks the method: look further, else 404/405."""
        path = request.path
        if first is None:
            if self.websocket_router.match(path) is not None:
                raise HTTPError(426, "this is a WebSocket endpoint", {"Upgrade": "websocket"})
            raise HTTPError(404)
        allowed: set[str] = set()
        for route, params in self.router.match_all(path):
            if request.method in route.target.allowed:
                return route, params
            allowed.update(route.target.allowed)
        from takefive.handler import allow_header

        raise HTTPError(405, headers={"Allow": allow_header(allowed)})

    def error_response(self, request: Request, error: HTTPError) -> Response:
        """The response for an :class:`HTTPError`; override in a subclass to customise."""
        return error.to_response()

    def _error_response(self, request: Request, error: HTTPError) -> Response:
        try:
            return self.error_response(request, error)
        except Exception:
            logger.exception("error_response failed for %s", error)
            return PlainTextResponse(f"{error.status} {error.detail}\n", error.status)

    def _server_error(self, request: Request) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.raw_path)
        if self.debug:
            body = "500 Internal Server Error\n\n" + traceback.format_exc()
        else:
            body = "500 Internal Server Error\n"
        return PlainTextResponse(body, 500)

    async def _handle_websocket(self, request: Request) -> _Hold:
        """Serve a WebSocket handshake or message; it answers by itself (HOLD)."""
        found = self.websocket_router.match(request.path)
        if request.method == "WEBSOCKET_HANDSHAKE":
            if found is None:
                raise HTTPError(404)
            route, params = found
            request._path_params = params
            await route.target(self, request)._handshake()
            return HOLD
        if found is None:
            logger.warning("WebSocket message for unrouted path %r: closing", request.path)
            handler = WebSocketHandler(self, request)
            handler.close(POLICY_VIOLATION)
            return HOLD
        route, params = found
        cls = route.target
        request._path_params = params
        handler = cls(self, request)
        try:
            await handler._message(request._m2("FLAGS"))
        except Exception:
            logger.exception("WebSocket handler %s failed", cls.__name__)
            handler.close(INTERNAL_ERROR)
        return HOLD

    # ----------------------------------------------------------------- pushing

    def attach(self, outbox: Outbox) -> None:
        """Connect the app to the runner's :class:`Outbox` (done by the runner)."""
        self.outbox = outbox

    def deliver(self, sender: str, conn_ids: str | int | Iterable[str | int], data: bytes) -> None:
        """Send raw bytes to one connection or several of front end ``sender``."""
        outbox = self.outbox
        if outbox is None:
            raise RuntimeError(
                "no outbox attached: app.deliver/close/reply work in a runner "
                "(takefive run) or after app.attach(outbox)"
            )
        ids = _ids(conn_ids)
        if ids:
            outbox.deliver(sender, ids, bytes(data))

    def close(self, sender: str, conn_ids: str | int | Iterable[str | int]) -> None:
        """Close connections (an empty delivery)."""
        self.deliver(sender, conn_ids, b"")

    def reply(
        self, request: Request, response: Response | str | bytes | dict[str, Any] | list[Any]
    ) -> None:
        """Answer a held ``request`` now: render, deliver, close if not keep-alive."""
        resp = self._complete(request, to_response(response))
        data = resp.render(head=request.method == "HEAD", keep_alive=request.keep_alive)
        self.deliver(request.sender, request.conn_id, data)
        if not request.keep_alive:
            self.close(request.sender, request.conn_id)

    # ----------------------------------------------------------------- lifecycle hooks

    def on_startup(self, fn: F) -> F:
        """Register ``fn()`` (plain or async) to run when the runner starts."""
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: F) -> F:
        """Register ``fn()`` (plain or async) to run when the runner stops."""
        self._shutdown.append(fn)
        return fn

    def on_disconnect(self, fn: F) -> F:
        """Register ``fn(sender, conn_id)`` (plain or async), called when a client goes."""
        self._disconnect.append(fn)
        return fn

    async def startup(self) -> None:
        """Run the startup hooks in order; an exception propagates (startup failed)."""
        for fn in self._startup:
            await call(fn)

    async def shutdown(self) -> None:
        """Run every shutdown hook; exceptions are logged, not raised."""
        for fn in self._shutdown:
            try:
                await call(fn)
            except Exception:
                logger.exception("shutdown hook %r failed", fn)

    async def disconnected(self, sender: str, conn_id: str) -> None:
        """Tell the disconnect hooks that ``conn_id`` of ``sender`` has gone."""
        for fn in self._disconnect:
            try:
                await call(fn, sender, conn_id)
            except Exception:
                logger.exception("disconnect hook %r failed", fn)
