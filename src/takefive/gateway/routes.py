"""The route table: path prefixes to handler groups or static directories.

Like Mongrel2's routes for one host: the longest matching prefix wins. A prefix
matches the raw (not percent-decoded) request path, character for character:
``/api`` matches ``/api``, ``/api/x`` and ``/apix``; write ``/api/`` to mean a folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["RouteTable"]

T = TypeVar("T")


class RouteTable(Generic[T]):
    """Maps path prefixes to targets; :meth:`match` returns the longest matching prefix."""

    __slots__ = ("_entries", "_root")

    def __init__(self, entries: Iterable[tuple[str, T]] = ()) -> None:
        self._entries: list[tuple[str, T]] = []
        self._root: T | None = None
        for prefix, target in entries:
            self.add(prefix, target)

    def add(self, prefix: str, target: T) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        if any(p == prefix for p, _ in self._entries):
            raise ValueError(f"route prefix {prefix!r} given twice")
        self._entries.append((prefix, target))
        # Longest first, so the first match is the most specific one.
        self._entries.sort(key=lambda entry: len(entry[0]), reverse=True)
        # Fast path: a table holding only '/' needs no search at all.
        self._root = target if len(self._entries) == 1 and prefix == "/" else None

    def match(self, path: str) -> tuple[str, T] | None:
        """``(prefix, target)`` for the longest prefix of ``path``, or ``None``."""
        if self._root is not None:
            return "/", self._root
        for entry in self._entries:
            if path.startswith(entry[0]):
                return entry
        return None

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
