"""Route patterns: path -> target, with converted captures.

Two kinds of pattern:

- **Templates** (the default): ``/users/{id:int}``, ``/files/{rest:path}``. A capture is
  ``{name}`` or ``{name:converter}`` with the converters ``str`` (the default: one
  segment, no ``/``), ``int``, ``float``, ``path`` (anything, slashes included) and
  ``uuid``. A template without captures is *static*: found by one dict lookup.
- **Regular expressions**: a compiled ``re.Pattern``, or a string with ``regex=True``.
  The whole path must match (``re.fullmatch``); named groups become the captures
  (as ``str``, ``None`` for a group that did not take part).

Static routes win; then the other routes are tried in the order they were added.
Trailing slashes matter: ``/users`` and ``/users/`` are different paths.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["CONVERTERS", "Converter", "Route", "Router", "register_converter"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Converter:
    """A capture type: the regex it matches and how to turn the match into a value."""

    regex: str
    convert: Callable[[str], Any]
    to_string: Callable[[Any], str] = str


def _float_to_string(value: Any) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


CONVERTERS: dict[str, Converter] = {
    "str": Converter(r"[^/]+", str),
    "int": Converter(r"[0-9]+", int),
    "float": Converter(r"[0-9]+(?:\.[0-9]+)?", float, _float_to_string),
    "path": Converter(r".*", str),
    "uuid": Converter(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
    ),
}


def register_converter(
    name: str,
    regex: str,
    convert: Callable[[str], Any],
    to_string: Callable[[Any], str] = str,
) -> None:
    """Add a converter usable as ``{param:name}`` in routes added afterwards.

    ``convert`` may raise ``ValueError`` to reject a match (the route then does not
    match). ``regex`` must not contain capturing groups (use ``(?:...)``).
    """
    if not name.isidentifier():
        raise ValueError(f"converter name {name!r} must be an identifier")
    if re.compile(regex).groups:
        raise ValueError(f"converter regex {regex!r} must not have capturing groups")
    CONVERTERS[name] = Converter(regex, convert, to_string)


_PARAM_RE = re.compile(r"\{([^{}:]*)(?::([^{}]*))?\}")


class Route(Generic[T]):
    """One pattern and its target."""

    __slots__ = ("_converters", "_format", "_regex", "key", "name", "pattern", "static", "target")

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        target: T,
        *,
        regex: bool = False,
        name: str | None = None,
    ) -> None:
        self.target = target
        self.name = name
        self._converters: dict[str, Converter] = {}
        self._format: str | None = None
        self.key: tuple[Any, ...]
        if isinstance(pattern, re.Pattern):
            self.pattern = pattern.pattern
            self._regex: re.Pattern[str] | None = pattern
            self.static = False
            self.key = ("regex", pattern.pattern, pattern.flags)
        elif regex:
            self.pattern = pattern
            try:
                self._regex = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid route regex {pattern!r}: {exc}") from None
            self.static = False
            self.key = ("regex", pattern, self._regex.flags)
        else:
            if not isinstance(pattern, str) or not pattern.startswith("/"):
                raise ValueError(f"route pattern {pattern!r} must start with '/'")
            self.pattern = pattern
            self._regex, self._format = self._compile_template(pattern)
            self.static = self._regex is None
            self.key = ("template", self._template_key(pattern))

    def _compile_template(self, pattern: str) -> tuple[re.Pattern[str] | None, str | None]:
        if "{" in _PARAM_RE.sub("", pattern) or "}" in _PARAM_RE.sub("", pattern):
            raise ValueError(f"route {pattern!r}: unbalanced or malformed '{{...}}'")
        parts: list[str] = []
        fmt: list[str] = []
        pos = 0
        for match in _PARAM_RE.finditer(pattern):
            name, conv_name = match.group(1), match.group(2) or "str"
            if not name.isidentifier():
                raise ValueError(f"route {pattern!r}: {name!r} is not a valid parameter name")
            if name in self._converters:
                raise ValueError(f"route {pattern!r}: parameter {name!r} appears twice")
            converter = CONVERTERS.get(conv_name)
            if converter is None:
                raise ValueError(
                    f"route {pattern!r}: unknown converter {conv_name!r} "
                    f"(known: {', '.join(sorted(CONVERTERS))})"
                )
            literal = pattern[pos : match.start()]
            parts.append(re.escape(literal))
            fmt.append(literal)
            parts.append(f"(?P<{name}>{converter.regex})")
            fmt.append("{" + name + "}")
            self._converters[name] = converter
            pos = match.end()
        rest = pattern[pos:]
        if not self._converters:
            return None, None
        parts.append(re.escape(rest))
        fmt.append(rest)
        return re.compile("".join(parts), re.DOTALL), "".join(fmt)

    @staticmethod
    def _template_key(pattern: str) -> str:
        # /users/{id:int} and /users/{user:int} are the same route.
        return _PARAM_RE.sub(lambda m: "{:" + (m.group(2) or "str") + "}", pattern)

    def match(self, path: str) -> dict[str, Any] | None:
        """The converted captures if ``path`` matches, else ``None``."""
        if self.static:
            return {} if path == self.pattern else None
        assert self._regex is not None
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        values = found.groupdict()
        converters = self._converters
        if not converters:
            return values
        try:
            return {name: converters[name].convert(value) for name, value in values.items()}
        except (ValueError, OverflowError):
            return None

    def url(self, **params: Any) -> str:
        """Build a path for this template route from parameter values."""
        if self.static:
            if params:
                raise ValueError(f"route {self.pattern!r} takes no parameters")
            return self.pattern
        if self._format is None:
            raise ValueError(f"cannot build a URL for regex route {self.pattern!r}")
        missing = set(self._converters) - set(params)
        extra = set(params) - set(self._converters)
        if missing or extra:
            raise ValueError(
                f"route {self.pattern!r} needs parameters {sorted(self._converters)}, "
                f"got {sorted(params)}"
            )
        strings = {name: conv.to_string(params[name]) for name, conv in self._converters.items()}
        path = self._format.format(**strings)
        if self.match(path) is None:
            raise ValueError(f"parameters {params!r} do not fit route {self.pattern!r}")
        return path

    def __repr__(self) -> str:
        return f"Route({self.pattern!r})"


class Router(Generic[T]):
    """Finds the target of a path. Knows nothing of HTTP."""

    def __init__(self) -> None:
        self._static: dict[str, Route[T]] = {}
        self._dynamic: list[Route[T]] = []
        self._by_key: dict[tuple[Any, ...], Route[T]] = {}
        self._by_name: dict[str, Route[T]] = {}
        #: The routes without parameters by path, for a caller's own fast path: the live
        #: table (typed read-only: add routes with :meth:`add`). :meth:`match` looks here
        #: first.
        self.static: Mapping[str, Route[T]] = self._static

    def add(
        self,
        pattern: str | re.Pattern[str],
        target: T,
        *,
        regex: bool = False,
        name: str | None = None,
    ) -> Route[T]:
        """Add a route; a pattern already present raises ``ValueError``."""
        route = Route(pattern, target, regex=regex, name=name)
        if route.key in self._by_key:
            raise ValueError(f"route {route.pattern!r} is already defined")
        if name is not None:
            if name in self._by_name:
                raise ValueError(f"a route named {name!r} is already defined")
            self._by_name[name] = route
        self._by_key[route.key] = route
        if route.static:
            self._static[route.pattern] = route
        else:
            self._dynamic.append(route)
        return route

    def get(
        self, pattern: str | re.Pattern[str], *, regex: bool = False
    ) -> Route[T] | None:
        """The route added with this same pattern, if any."""
        probe: Route[None] = Route(pattern, None, regex=regex)
        return self._by_key.get(probe.key)

    def match(self, path: str) -> tuple[Route[T], dict[str, Any]] | None:
        """The first route matching ``path`` and its converted captures."""
        route = self._static.get(path)
        if route is not None:
            return route, {}
        for route in self._dynamic:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def match_all(self, path: str) -> Iterator[tuple[Route[T], dict[str, Any]]]:
        """Every route matching ``path``, in priority order."""
        route = self._static.get(path)
        if route is not None:
            yield route, {}
        for route in self._dynamic:
            params = route.match(path)
            if params is not None:
                yield route, params

    def url_for(self, name: str, **params: Any) -> str:
        """The path of the route called ``name`` with these parameters."""
        try:
            route = self._by_name[name]
        except KeyError:
            raise KeyError(f"no route named {name!r}") from None
        return route.url(**params)

    def __iter__(self) -> Iterator[Route[T]]:
        yield from self._static.values()
        yield from self._dynamic

    def __len__(self) -> int:
        return len(self._static) + len(self._dynamic)
