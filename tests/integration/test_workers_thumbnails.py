"""examples/thumbnails: upload an image through a real front end; Pillow workers make
the thumbnail over a takefive service; the page serves it back."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

from .harness import Frontend, free_port, http_request, wait_for
from .workerprocs import ROOT

Image = pytest.importorskip("PIL.Image", reason="Pillow is in the dev extra")

APP = f"{ROOT / 'examples' / 'thumbnails' / 'app.py'}:app"
TASK = f"{ROOT / 'examples' / 'thumbnails' / 'tasks.py'}:thumbnail"


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def start_worker(endpoint: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "takefive.worker",
            TASK,
            "--service",
            endpoint,
            "--heartbeat",
            "0.25",
        ],
        cwd=ROOT,
        env={**os.environ, "TAKEFIVE_LOG_LEVEL": "WARNING"},
    )


def test_upload_makes_a_thumbnail(frontend: Frontend) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    frontend.start_handler(APP, env={"THUMBS_DISPATCHER": endpoint}, cwd=ROOT)
    workers = [start_worker(endpoint) for _ in range(2)]
    try:
        wait_for(lambda: _status(frontend, "GET", "/") == 200, 30, what="the thumbnails app")
        picture = Image.new("RGB", (400, 300), (200, 30, 30))
        raw = io.BytesIO()
        picture.save(raw, "PNG")
        body, headers = multipart("image", "red <b>.png", raw.getvalue())
        status, _, page = http_request(
            frontend.http_port, "POST", "/upload", body=body, headers=headers, timeout=60
        )
        assert status == 200, page
        assert b"red &lt;b&gt;.png" in page  # the file name, escaped
        match = re.search(rb'src="(/thumbs/[0-9a-f]{16}\.png)"', page)
        assert match, page
        status, got_headers, png = http_request(
            frontend.http_port, "GET", match.group(1).decode(), timeout=10
        )
        assert status == 200
        assert got_headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(png)) as thumb:
            assert thumb.format == "PNG"
            assert thumb.size == (128, 96)  # aspect ratio kept
            assert thumb.convert("RGB").getpixel((64, 48)) == (200, 30, 30)

        # Not an image: the worker says why, the page answers 400.
        body, headers = multipart("image", "notes.txt", b"just text")
        status, _, page = http_request(
            frontend.http_port, "POST", "/upload", body=body, headers=headers, timeout=60
        )
        assert status == 400 and b"not an image" in page, page
        status, _, _ = http_request(frontend.http_port, "GET", "/thumbs/nope.png")
        assert status == 404
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()


def _status(frontend: Frontend, method: str, path: str) -> int:
    try:
        return http_request(frontend.http_port, method, path, timeout=2)[0]
    except OSError:
        return 0
