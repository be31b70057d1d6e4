"""A handler that awaits a takefive service on every request (test_workers_frontend.py).

The handler process holds the dispatcher: it binds TAKEFIVE_TEST_DISPATCHER, and the
test connects `takefive worker` processes to it.
"""

from __future__ import annotations

import os

from takefive import App, Request
from takefive.services import Dispatcher, ServiceError

app = App()
dispatcher: Dispatcher | None = None


@app.on_startup
async def start_dispatcher() -> None:
    global dispatcher
    dispatcher = Dispatcher(os.environ["TAKEFIVE_TEST_DISPATCHER"], timeout=30)


@app.on_shutdown
async def stop_dispatcher() -> None:
    if dispatcher is not None:
        await dispatcher.close()


@app.route("/workers")
def workers(request: Request) -> dict[str, int]:
    assert dispatcher is not None
    return {"workers": len(dispatcher.workers())}


@app.route("/svc/{n:int}")
async def svc(request: Request, n: int) -> dict[str, object]:
    assert dispatcher is not None
    try:
        await dispatcher.call("sleep", 0.02, idempotent=True)  # a slow-ish service
        echoed = await dispatcher.call("echo", {"n": n}, idempotent=True)
        pid = await dispatcher.call("pid", idempotent=True)
    except ServiceError as exc:
        return {"error": str(exc)}
    return {"n": n, "echoed": echoed, "pid": pid}
