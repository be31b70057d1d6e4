"""Multi-valued mappings used by requests and responses.

- :class:`MultiDict`: read-only, multi-valued (query arguments, form fields).
- :class:`RequestHeaders`: a read-only, case-insensitive, multi-valued *view* of the
  headers dict Mongrel2 sends (no copy: requests stay cheap to build).
- :class:`ResponseHeaders`: an ordered, mutable, case-insensitive list of
  ``(name, value)`` pairs that keeps the names as written (several ``Set-Cookie``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, overload

__all__ = ["MultiDict", "RequestHeaders", "ResponseHeaders"]

V = TypeVar("V")
D = TypeVar("D")


class MultiDict(Mapping[str, V]):
    """A read-only mapping where a key may have several values.

    ``md[key]`` and ``md.get(key)`` give the *first* value, ``md.getlist(key)`` all of
    them in order; ``md.multi_items()`` lists every ``(key, value)`` pair.
    """

    __slots__ = ("_dict", "_items")

    def __init__(self, items: Iterable[tuple[str, V]] | Mapping[str, V] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        self._items: list[tuple[str, V]] = pairs
        self._dict: dict[str, list[V]] = {}
        for key, value in pairs:
            self._dict.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> V:
        return self._dict[key][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def getlist(self, key: str) -> list[V]:
        """All values of ``key`` in order (an empty list when absent)."""
        return list(self._dict.get(key, ()))

    def multi_items(self) -> list[tuple[str, V]]:
        """Every ``(key, value)`` pair, in the order they came."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MultiDict):
            return sorted(self._items, key=repr) == sorted(other._items, key=repr)
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:  # pragma: no cover - mutable-looking mapping
        raise TypeError("unhashable type: 'MultiDict'")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class RequestHeaders(Mapping[str, str]):
    """Case-insensitive, multi-valued HTTP request headers.

    A view over the dict Mongrel2 sends: its lower-case keys are the HTTP headers,
    its upper-case keys (``METHOD``, ``PATH``, ...) are Mongrel2's own and are not
    part of this mapping. ``headers["Accept"]`` gives the first value of a repeated
    header, ``headers.getlist("Accept")`` all of them.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, str | list[str]]) -> None:
        self._raw = raw

    def __getitem__(self, name: str) -> str:
        value = self._raw[name.lower()]
        if isinstance(value, str):
            return value
        if not value:
            raise KeyError(name)
        return value[0]

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str) -> str: ...
    @overload
    def get(self, name: str, /, default: D) -> str | D: ...

    def get(self, name: str, /, default: object = None) -> object:
        value = self._raw.get(name.lower())
        if value is None:
            return default
        if isinstance(value, str):
            return value
        return value[0] if value else default

    def getlist(self, name: str) -> list[str]:
        """All values of header ``name`` (an empty list when absent)."""
        value = self._raw.get(name.lower())
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._raw

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._raw if not key.isupper())

    def __len__(self) -> int:
        return sum(1 for key in self._raw if not key.isupper())

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair; a repeated header gives several pairs."""
        pairs: list[tuple[str, str]] = []
        for key, value in self._raw.items():
            if key.isupper():
                continue
            if isinstance(value, str):
                pairs.append((key, value))
            else:
                pairs.extend((key, v) for v in value)
        return pairs

    def __repr__(self) -> str:
        return f"RequestHeaders({self.multi_items()!r})"


_BAD_NAME_RE = re.compile(r"[\x00-\x20:\x7f]")
_BAD_VALUE_RE = re.compile(r"[\r\n\x00]")
#: Header names already checked (bounded: names come from code, rarely from data).
_GOOD_NAMES: set[str] = set()


def _check_header(name: str, value: str) -> None:
    if name not in _GOOD_NAMES:
        if not name or _BAD_NAME_RE.search(name):
            raise ValueError(f"invalid header name {name!r}")
        if len(_GOOD_NAMES) < 1024:
            _GOOD_NAMES.add(name)
    if _BAD_VALUE_RE.search(value):
        raise ValueError(f"header {name!r}: value must not contain CR, LF or NUL")


_new = object.__new__


class ResponseHeaders:
    """Ordered, mutable, case-insensitive response headers; names keep their case.

    ``headers["X"] = v`` replaces every ``X`` header, ``headers.add("Set-Cookie", v)``
    appends one more. Names and values are checked: no CR/LF (header injection).
    """

    __slots__ = ("_items",)

    def __init__(
        self, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
    ) -> None:
        self._items: list[tuple[str, str]] = []
        if headers is None:
            return
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def _one(cls, value: str) -> ResponseHeaders:
        """``Content-Type: value`` alone, for a value already checked (the fast path)."""
        headers = _new(cls)
        headers._items = [("Content-Type", value)]
        return headers

    def add(self, name: str, value: str) -> None:
        """Append one header, keeping any others of the same name."""
        value = str(value)
        _check_header(name, value)
        self._items.append((name, value))

    def __setitem__(self, name: str, value: str) -> None:
        value = str(value)
        _check_header(name, value)
        lower = name.lower()
        items = self._items
        for i, (key, _) in enumerate(items):
            if key.lower() == lower:
                items[i] = (name, value)
                self._items = [
                    item for j, item in enumerate(items) if j <= i or item[0].lower() != lower
                ]
                return
        items.append((name, value))

    def setdefault(self, name: str, value: str) -> str:
        current = self.get(name)
        if current is None:
            self.add(name, value)
            return value
        return current

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self._items if key.lower() == lower]

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        kept = [item for item in self._items if item[0].lower() != lower]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def pop(self, name: str, default: str | None = None) -> str | None:
        value = self.get(name)
        if value is None:
            return default
        del self[name]
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order (repeated names included)."""
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResponseHeaders):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._items!r})"
