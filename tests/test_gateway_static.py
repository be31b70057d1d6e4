"""Static files: safe resolution, conditional and range requests, and serving over HTTP."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from takefive.gateway import GatewayConfig, HandlerRoute, StaticRoute
from takefive.gateway.static import StaticFiles
from test_gateway_connection import GatewayThread, RawHandler, raw_exchange, wait_ready


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"0123456789")
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "sub" / "index.html").write_bytes(b"<p>sub</p>")
    (root / "a b.css").write_bytes(b"body{}")
    (tmp_path / "secret.txt").write_bytes(b"SECRET")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    (root / "inside").symlink_to(root / "hello.txt")
    return root


def test_resolve_inside_and_outside(site: Path) -> None:
    files = StaticFiles(site)
    assert files.resolve("hello.txt") == str(site / "hello.txt")
    assert files.resolve("") == str(site / "index.html")
    assert files.resolve("sub/") == str(site / "sub" / "index.html")
    assert files.resolve("a%20b.css") == str(site / "a b.css")
    assert files.resolve("inside") == str(site / "hello.txt")
    assert files.resolve("nope.txt") == 404
    for attack in ("../secret.txt", "%2e%2e/secret.txt", "%2E%2E%2Fsecret.txt",
                   "sub/../../secret.txt", "..%2fsecret.txt", "escape", "escape_dir/secret.txt"):
        assert files.resolve(attack) == 403, attack
    for bad in ("hello.txt%00.png", "..%5csecret.txt", "%ff.txt"):
        assert files.resolve(bad) == 400, bad


def test_prepare_conditional_and_ranges(site: Path) -> None:
    files = StaticFiles(site)
    full = files.prepare("GET", "hello.txt", {}, True)
    assert full.status == 200 and full.length == 10 and full.path
    head = full.head.decode()
    assert "Content-Length: 10" in head and "Content-Type: text/plain; charset=utf-8" in head
    etag = head.split("ETag: ")[1].split("\r\n")[0]
    last_modified = head.split("Last-Modified: ")[1].split("\r\n")[0]
    assert files.prepare("GET", "hello.txt", {"if-none-match": etag}, True).status == 304
    assert files.prepare("GET", "hello.txt", {"if-none-match": '"other"'}, True).status == 200
    assert files.prepare("GET", "hello.txt", {"if-modified-since": last_modified},
                         True).status == 304
    part = files.prepare("GET", "hello.txt", {"range": "bytes=2-4"}, True)
    assert (part.status, part.offset, part.length) == (206, 2, 3)
    assert b"Content-Range: bytes 2-4/10" in part.head
    assert files.prepare("GET", "hello.txt", {"range": "bytes=-3"}, True).offset == 7
    assert files.prepare("GET", "hello.txt", {"range": "bytes=5-"}, True).length == 5
    unsatisfiable = files.prepare("GET", "hello.txt", {"range": "bytes=50-60"}, True)
    assert unsatisfiable.status == 416 and b"Content-Range: bytes */10" in unsatisfiable.head
    assert files.prepare("GET", "hello.txt", {"range": "bytes=0-1,3-4"}, True).status == 200
    assert files.prepare("GET", "hello.txt", {"range": "bytes=2-4", "if-range": '"old"'},
                         True).status == 200
    head_only = files.prepare("HEAD", "hello.txt", {}, False)
    assert head_only.status == 200 and head_only.path is None
    assert b"Content-Length: 10" in head_only.head and b"Connection: close" in head_only.head
    assert files.prepare("POST", "hello.txt", {}, True).status == 405


@pytest.fixture
def gateway(tmp_path: Path, site: Path) -> Iterator[GatewayThread]:
    specs = (f"ipc://{tmp_path}/send", f"ipc://{tmp_path}/recv")
    handler = RawHandler(*specs)
    config = GatewayConfig(port=0, uuid="gw-static", routes=[
        HandlerRoute("/", *specs), StaticRoute("/static/", site),
        HandlerRoute("/static/dynamic/", *specs)])
    g = GatewayThread(config)
    wait_ready(g.port)
    yield g
    g.stop()
    handler.close()


def test_static_over_http_with_routes(gateway: GatewayThread, site: Path) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    conn.request("GET", "/static/hello.txt")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"0123456789"
    etag = resp.getheader("ETag")
    assert etag and resp.getheader("Last-Modified")
    conn.request("GET", "/static/hello.txt", headers={"If-None-Match": etag})
    resp = conn.getresponse()
    assert resp.status == 304 and resp.read() == b""
    conn.request("GET", "/static/hello.txt", headers={"Range": "bytes=3-5"})
    resp = conn.getresponse()
    assert resp.status == 206 and resp.read() == b"345"
    conn.request("HEAD", "/static/hello.txt")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"" and resp.getheader("Content-Length") == "10"
    conn.request("GET", "/static/")
    assert conn.getresponse().read() == b"<h1>home</h1>"
    # Longest prefix: a handler route inside the static prefix.
    conn.request("GET", "/static/dynamic/x")
    resp = conn.getresponse()
    assert resp.status == 200 and b'"PATTERN": "/static/dynamic/"' in resp.read()
    conn.close()


@pytest.mark.parametrize("path,status", [
    ("/static/../secret.txt", 403), ("/static/%2e%2e/secret.txt", 403),
    ("/static/%2e%2e%2fsecret.txt", 403), ("/static/escape", 403),
    ("/static/hello.txt%00", 400), ("/static/missing", 404),
])
def test_static_refusals_over_http(gateway: GatewayThread, path: str, status: int) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(gateway.port, request.encode())
    assert int(reply[9:12]) == status and b"SECRET" not in reply


def test_big_static_file_streams(gateway: GatewayThread, site: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (site / "big.bin").write_bytes(data)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("GET", "/static/big.bin")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == data
    conn.request("GET", "/static/hello.txt")  # keep-alive still fine after streaming
    assert conn.getresponse().read() == b"0123456789"
    conn.close()
