"""The gateway's route table: longest prefix wins."""

from __future__ import annotations

import pytest

from takefive.gateway.routes import RouteTable


def test_longest_prefix_wins() -> None:
    table = RouteTable([("/", "root"), ("/api/", "api"), ("/api/v2/", "v2"), ("/static", "files")])
    assert table.match("/") == ("/", "root")
    assert table.match("/x") == ("/", "root")
    assert table.match("/api/users") == ("/api/", "api")
    assert table.match("/api/v2/users") == ("/api/v2/", "v2")
    assert table.match("/api") == ("/", "root")
    assert table.match("/static/a.css") == ("/static", "files")
    assert table.match("/staticky") == ("/static", "files")  # plain prefixes, as documented


def test_no_match_without_root() -> None:
    table = RouteTable([("/api/", 1)])
    assert table.match("/other") is None
    assert len(table) == 1


def test_root_only_fast_path_matches_everything() -> None:
    table = RouteTable([("/", "only")])
    assert table.match("/anything/at/all") == ("/", "only")


def test_bad_prefixes_refused() -> None:
    table: RouteTable[int] = RouteTable()
    with pytest.raises(ValueError):
        table.add("api", 1)
    table.add("/a", 1)
    with pytest.raises(ValueError):
        table.add("/a", 2)
