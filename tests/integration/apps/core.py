"""The app the core acceptance suite (tests/integration/test_core.py) runs in handler processes."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from takefive import App, Handler, HTTPError, Request, Response

app = App()

#: (sender, conn_id) of held connections and of disconnects seen by this process.
held: list[tuple[str, str]] = []
disconnects: list[tuple[str, str]] = []


@app.route("/hello")
def hello(request: Request) -> Response:
    return Response(b"Hello, World!", content_type="text/plain")


@app.route("/echo", methods=["GET", "POST", "PUT"])
def echo(request: Request) -> dict[str, Any]:
    info: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": {k: request.query.getlist(k) for k in request.query},
        "version": request.version,
        "remote_addr": request.remote_addr,
        "content_type": request.content_type,
        "body_len": len(request.body),
        "body_sha256": hashlib.sha256(request.body).hexdigest(),
        "cookies": request.cookies,
        "x_dup": request.headers.getlist("x-dup"),
        "pid": os.getpid(),
    }
    if request.content_type.startswith("application/json"):
        info["json"] = request.json()
    if request.content_type.startswith(("application/x-www-form-urlencoded", "multipart/")):
        form = request.form()
        info["form"] = {k: [str(v) for v in form.getlist(k)] for k in form}
    return info


@app.route("/users/{user_id:int}")
class User(Handler):
    def get(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "type": type(user_id).__name__}

    async def delete(self, user_id: int) -> Response:
        await asyncio.sleep(0)
        return Response(status=204)


@app.route("/only-get", methods=["GET"])
def only_get(request: Request) -> str:
    return "got it"


@app.route("/boom")
def boom(request: Request) -> str:
    raise RuntimeError("secret internal detail")


@app.route("/teapot")
def teapot(request: Request) -> str:
    raise HTTPError(418, "short and stout")


@app.route("/cookies/set")
def set_cookies(request: Request) -> Response:
    response = Response(b"set")
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@app.route("/slow")
async def slow(request: Request) -> dict[str, Any]:
    await asyncio.sleep(0.05)
    return {"n": request.query.get("n"), "pid": os.getpid()}


sleeping: list[str] = []


@app.route("/sleep")
async def sleep(request: Request) -> str:
    """Sleep ``s`` seconds (for the graceful shutdown test); /sleeping tells who sleeps."""
    sleeping.append(request.conn_id)
    try:
        await asyncio.sleep(float(request.query.get("s", "1")))
    finally:
        sleeping.remove(request.conn_id)
    return "rested"


@app.route("/sleeping")
def sleeping_count(request: Request) -> str:
    return str(len(sleeping))


@app.route("/pid")
def pid(request: Request) -> str:
    return str(os.getpid())


@app.route("/hold")
def hold(request: Request) -> object:
    held.append((request.sender, request.conn_id))
    return app.hold()


@app.route("/held")
def held_list(request: Request) -> list[list[str]]:
    return [list(item) for item in held]


@app.route("/disconnects")
def disconnect_list(request: Request) -> list[list[str]]:
    return [list(item) for item in disconnects]


@app.route("/release", methods=["POST"])
def release(request: Request) -> str:
    """Answer every held connection with the posted body (long-poll push)."""
    by_sender: dict[str, list[str]] = {}
    for sender, conn_id in held:
        by_sender.setdefault(sender, []).append(conn_id)
    for sender, conn_ids in by_sender.items():
        app.deliver(sender, conn_ids, Response(request.body, content_type="text/plain").render())
    count = len(held)
    held.clear()
    return str(count)


@app.on_disconnect
def gone(sender: str, conn_id: str) -> None:
    disconnects.append((sender, conn_id))
