"""Class-based handlers (Brubeck/Tornado style) and route endpoints.

A :class:`Handler` subclass defines ``get``, ``post``, ``put``, ``patch``,
``delete``, ``head`` or ``options`` as plain or ``async`` methods; they receive the
route's captures as keyword arguments and return a Response (or str, bytes, dict,
list), :data:`HOLD`, or raise :class:`~takefive.response.HTTPError`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from takefive.response import HTTPError, Response

if TYPE_CHECKING:
    from takefive.app import App
    from takefive.request import Request

__all__ = ["HOLD", "HTTP_METHODS", "Endpoint", "Handler"]

logger = logging.getLogger("takefive.app")

#: The methods a handler class may define (as lower-case method names).
HTTP_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class _Hold:
    """Type of :data:`HOLD`."""

    _instance: ClassVar[_Hold | None] = None

    def __new__(cls) -> _Hold:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "HOLD"


#: Return this from a handler (or ``app.hold()``) to keep the connection and answer
#: later with ``app.reply(request, response)`` / ``app.deliver(...)``.
HOLD: Final = _Hold()


#: Handler results that are answers, never awaitables (subclasses included): for these
#: isinstance() spares inspect.isawaitable() (3,300 instructions for a Response).
_PLAIN_RESULTS = (Response, str, bytes, dict, list, type(None))


async def call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a plain or async function and return its (awaited) result."""
    result = fn(*args, **kwargs)
    if type(result) is CoroutineType:
        return await result
    if not isinstance(result, _PLAIN_RESULTS) and inspect.isawaitable(result):
        return await result
    return result


def _allowed(methods: Iterable[str]) -> frozenset[str]:
    allowed = set(methods)
    if "GET" in allowed:
        allowed.add("HEAD")
    allowed.add("OPTIONS")
    return frozenset(allowed)


def allow_header(allowed: Iterable[str]) -> str:
    order = {m: i for i, m in enumerate(HTTP_METHODS)}
    return ", ".join(sorted(allowed, key=lambda m: (order.get(m, len(order)), m)))


class Handler:
    """Base class for class-based handlers; one instance per request.

    ``self.request`` is the :class:`~takefive.request.Request`, ``self.app`` the
    :class:`~takefive.app.App`. ``prepare()`` runs first (returning a non-``None``
    value answers with it and skips the method), ``on_finish()`` runs last, even after
    an error. Both may be ``async``.
    """

    #: Methods this class answers (computed from the methods it defines).
    allowed_methods: ClassVar[frozenset[str]] = frozenset({"OPTIONS"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.allowed_methods = _allowed(
            m for m in HTTP_METHODS if callable(getattr(cls, m.lower(), None))
        )

    def __init__(self, app: App, request: Request) -> None:
        self.app = app
        self.request = request

    def prepare(self) -> Any:
        """Runs before the method; return a value (e.g. a Response) to answer with it."""
        return None

    def on_finish(self) -> Any:
        """Runs after the method, also when it raised."""
        return None

    async def _dispatch(self, method: str, params: dict[str, Any]) -> Any:
        try:
            result = await call(self.prepare)
            if result is not None:
                return result
            fn = getattr(self, method.lower(), None)
            if fn is None and method == "HEAD":
                fn = getattr(self, "get", None)
            if fn is None:
                if method == "OPTIONS":
                    return _options_response(self.allowed_methods)
                raise HTTPError(405, headers={"Allow": allow_header(self.allowed_methods)})
            return await call(fn, **params)
        finally:
            try:
                await call(self.on_finish)
            except Exception:
                logger.exception("%s.on_finish failed", type(self).__name__)


def _options_response(allowed: Iterable[str]) -> Response:
    return Response(status=204, headers={"Allow": allow_header(allowed)})


class Endpoint:
    """What a route points at: a :class:`Handler` class, or one function per method."""

    __slots__ = ("allow", "allowed", "awaiting", "functions", "handler_class", "plain")

    def __init__(self, handler_class: type[Handler] | None = None) -> None:
        self.handler_class = handler_class
        self.functions: dict[str, Callable[..., Any]] = {}
        #: Methods whose function is a coroutine function (``async def``).
        self.awaiting: frozenset[str] = frozenset()
        #: The other functions, by method: the ones App.start calls at once.
        self.plain: dict[str, Callable[..., Any]] = {}
        self.allowed: frozenset[str] = (
            handler_class.allowed_methods if handler_class is not None else frozenset()
        )
        self.allow = allow_header(self.allowed)

    def add_function(self, fn: Callable[..., Any], methods: Iterable[str]) -> None:
        if self.handler_class is not None:
            raise ValueError("this route already has a Handler class")
        for method in methods:
            method = method.upper()
            if method in self.functions:
                raise ValueError(f"{method} is already routed to {self.functions[method]!r}")
            self.functions[method] = fn
            if inspect.iscoroutinefunction(fn):
                self.awaiting |= {method}
            else:
                self.plain[method] = fn
        self.allowed = _allowed(self.functions)
        self.allow = allow_header(self.allowed)

    async def __call__(
        self, app: App, request: Request, method: str, params: dict[str, Any]
    ) -> Any:
        if self.handler_class is not None:
            return await self.handler_class(app, request)._dispatch(method, params)
        fn = self.functions.get(method)
        if fn is None:
            if method == "HEAD":
                fn = self.functions.get("GET")
            if fn is None:
                if method == "OPTIONS":
                    return _options_response(self.allowed)
                raise HTTPError(405, headers={"Allow": self.allow})
        return await call(fn, request, **params)

    def __repr__(self) -> str:
        target = self.handler_class or self.functions
        return f"Endpoint({target!r})"
