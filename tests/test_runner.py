"""The handler runtime against real libzmq sockets standing in for a front end.

A ``FrontEnd`` here binds PUSH and SUB exactly as Mongrel2 does and speaks the
wire format through ``takefive.wire``; the runner under test is the real one.
"""

from __future__ import annotations

import asyncio
import errno
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio

from takefive import wire
from takefive._zmqutil import nowait_socket
from takefive.app import App
from takefive.request import Request
from takefive.response import Response
from takefive.runner import Endpoint, HandlerServer, endpoints_from

TIMEOUT = 10.0


class FrontEnd:
    """The front end's side of the two sockets: PUSH requests, SUB responses."""

    def __init__(self, context: zmq.asyncio.Context, *, tnetstring: bool = False) -> None:
        self.uuid = str(uuid.uuid4())
        self.tnetstring = tnetstring
        self.push = context.socket(zmq.PUSH)
        self.push.setsockopt(zmq.LINGER, 0)
        port = self.push.bind_to_random_port("tcp://127.0.0.1")
        self.send_spec = f"tcp://127.0.0.1:{port}"
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.uuid.encode())
        port = self.sub.bind_to_random_port("tcp://127.0.0.1")
        self.recv_spec = f"tcp://127.0.0.1:{port}"
        # Like a real front end, keep reading: libzmq attaches a new subscriber connection
        # (and sends its subscription) only when the socket is used.
        self.replies: asyncio.Queue[wire.Reply] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.replies.put_nowait(wire.parse_response(await self.sub.recv()))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.send_spec, self.recv_spec)

    async def request(
        self,
        conn_id: int,
        path: str = "/",
        method: str = "GET",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        version: str = "HTTP/1.1",
    ) -> None:
        head: wire.Headers = {
            "PATH": path,
            "METHOD": method,
            "VERSION": version,
            "URI": path,
            "PATTERN": "/",
            "URL_SCHEME": "http",
            "REMOTE_ADDR": "127.0.0.1",
            "x-forwarded-for": "127.0.0.1",
            "host": "localhost",
        }
        head.update(headers or {})
        await self.push.send(
            wire.encode_request(
                self.uuid, conn_id, path, head, body, tnetstring_headers=self.tnetstring
            )
        )

    async def reply(self) -> wire.Reply:
        return await asyncio.wait_for(self.replies.get(), TIMEOUT)

    def close(self) -> None:
        self.reader.cancel()
        self.push.close()
        self.sub.close()


@pytest.fixture
async def context() -> AsyncIterator[zmq.asyncio.Context]:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
async def front(context: zmq.asyncio.Context) -> AsyncIterator[FrontEnd]:
    fe = FrontEnd(context)
    yield fe
    fe.close()


class Running:
    def __init__(self, server: HandlerServer, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    async def stop(self) -> None:
        self.server.stop()
        await asyncio.wait_for(self.task, TIMEOUT)


async def start(app: App, *endpoints: Endpoint, **options: object) -> Running:
    server = HandlerServer(app, endpoints, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve())
    await asyncio.wait_for(server.wait_ready(), TIMEOUT)
    return Running(server, task)


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds (fails the test after TIMEOUT seconds)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def hello_app() -> App:
    app = App()

    @app.route("/")
    def index(request: Request) -> Response:
        return Response(b"Hello, World!", content_type="text/plain")

    return app


def status_of(data: memoryview | bytes) -> int:
    return int(bytes(data).split(b" ", 2)[1])


async def test_serves_a_request(context: zmq.asyncio.Context, front: FrontEnd) -> None:
    running = await start(hello_app(), front.endpoint, context=context)
    await front.request(7)
    reply = await front.reply()
    assert reply.sender == front.uuid
    assert reply.conn_ids == ["7"]
    assert bytes(reply.body).startswith(b"HTTP/1.1 200 OK\r\n")
    assert bytes(reply.body).endswith(b"\r\n\r\nHello, World!")
    await running.stop()


@pytest.mark.parametrize("io", ["default", "pyzmq"])
async def test_quiet_and_busy_turns_each_serve_every_request(
    context: zmq.asyncio.Context, front: FrontEnd, monkeypatch: pytest.MonkeyPatch, io: str
) -> None:
    """One request at a time (each turn of the reader reads one frame, then finds the
    socket empty), then bursts larger than a turn: every request is answered once,
    with the C reads (the default when built) and with pyzmq's."""
    from takefive import _zmqutil
    from takefive import runner as runner_module

    made: list[object] = []

    def nowait(sock: zmq.Socket[Any]) -> object:
        made.append(
            got := (_zmqutil.nowait_socket if io == "default" else _zmqutil._PyNowait)(sock)
        )
        return got

    monkeypatch.setattr(runner_module, "nowait_socket", nowait)
    running = await start(hello_app(), front.endpoint, context=context)
    for conn_id in range(20):  # one in flight: each turn reads one frame
        await front.request(conn_id)
        assert (await front.reply()).conn_ids == [str(conn_id)]
    for burst in range(3):
        ids = range(1000 * (burst + 1), 1000 * (burst + 1) + 300)
        for conn_id in ids:
            await front.request(conn_id)
        got = [(await front.reply()).conn_ids[0] for _ in ids]
        assert sorted(got, key=int) == [str(i) for i in ids]
    await running.stop()
    kinds = {type(m).__name__ for m in made}
    assert len(made) == 2 and kinds == (
        {"_PyNowait"} if io == "pyzmq" else {"Socket"} if _zmqutil.DIRECT else {"_PyNowait"}
    )
    assert not any(m.attached for m in made)  # type: ignore[attr-defined]  # detached at the end


async def test_tnetstring_headers_are_served_the_same(context: zmq.asyncio.Context) -> None:
    fe_json, fe_tnet = FrontEnd(context), FrontEnd(context, tnetstring=True)
    running = await start(hello_app(), fe_json.endpoint, fe_tnet.endpoint, context=context)
    await fe_json.request(1)
    await fe_tnet.request(1)
    assert bytes((await fe_json.reply()).body) == bytes((await fe_tnet.reply()).body)
    await running.stop()
    fe_json.close()
    fe_tnet.close()


async def test_garbage_is_dropped_and_the_next_request_served(
    context: zmq.asyncio.Context, front: FrontEnd, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start(hello_app(), front.endpoint, context=context)
    for garbage in (b"", b"garbage", b"uuid 1 / 99999999:{}", b"\xff" * 100, b"u 1 / 2:{},0:"):
        await front.push.send(garbage)
    await front.request(3)
    reply = await front.reply()
    assert reply.conn_ids == ["3"] and status_of(reply.body) == 200
    assert caplog.text.count("dropped malformed message") == 5
    await running.stop()


async def test_connection_close_sends_close_after_response(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    running = await start(hello_app(), front.endpoint, context=context)
    await front.request(4, headers={"connection": "close"})
    first, second = await front.reply(), await front.reply()
    assert b"Connection: close" in bytes(first.body)
    assert second.conn_ids == ["4"] and bytes(second.body) == b""
    await front.request(5, version="HTTP/1.0")
    first, second = await front.reply(), await front.reply()
    assert status_of(first.body) == 200 and bytes(second.body) == b""
    await running.stop()


async def test_backpressure_caps_requests_in_flight(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    app = App()
    release = asyncio.Event()
    started: list[int] = []

    @app.route("/slow")
    async def slow(request: Request) -> str:
        started.append(int(request.conn_id))
        await release.wait()
        return "done"

    running = await start(app, front.endpoint, context=context, max_in_flight=3)
    for i in range(10):
        await front.request(i, "/slow")
    await until(lambda: len(started) >= 3)
    await asyncio.sleep(0.2)  # would let more in, were there no cap
    assert len(started) == 3
    assert running.server.in_flight == 3
    release.set()
    replies = [await front.reply() for _ in range(10)]
    assert sorted(int(r.conn_ids[0]) for r in replies) == list(range(10))
    await running.stop()


async def test_graceful_stop_finishes_in_flight_requests(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    app = App()
    entered = asyncio.Event()

    @app.route("/slow")
    async def slow(request: Request) -> str:
        entered.set()
        await asyncio.sleep(0.3)
        return "finished"

    running = await start(app, front.endpoint, context=context, grace=5.0)
    await front.request(1, "/slow")
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    running.server.stop()
    reply = await front.reply()
    assert bytes(reply.body).endswith(b"finished")
    await asyncio.wait_for(running.task, TIMEOUT)


async def test_stop_serves_requests_already_queued(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    """Requests ZeroMQ had already handed to this process are served, not dropped."""
    app = App()
    release = asyncio.Event()
    started: list[str] = []

    @app.route("/slow")
    async def slow(request: Request) -> str:
        started.append(request.conn_id)
        await release.wait()
        return "served"

    running = await start(app, front.endpoint, context=context, max_in_flight=1)
    for i in range(5):
        await front.request(i, "/slow")
    await until(lambda: bool(started))
    await asyncio.sleep(0.2)  # the other four reach this process's queue meanwhile
    assert started == ["0"]
    running.server.stop()
    await asyncio.sleep(0.1)
    release.set()
    replies = [await front.reply() for _ in range(5)]
    assert sorted(r.conn_ids[0] for r in replies) == ["0", "1", "2", "3", "4"]
    assert all(bytes(r.body).endswith(b"served") for r in replies)
    await asyncio.wait_for(running.task, TIMEOUT)


async def test_grace_period_cancels_what_does_not_finish(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    app = App()
    entered = asyncio.Event()

    @app.route("/forever")
    async def forever(request: Request) -> str:
        entered.set()
        await asyncio.sleep(3600)
        return "never"

    running = await start(app, front.endpoint, context=context, grace=0.2)
    await front.request(1, "/forever")
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    await running.stop()  # returns within the grace period, not after an hour


async def test_one_process_serves_two_front_ends(context: zmq.asyncio.Context) -> None:
    first, second = FrontEnd(context), FrontEnd(context)
    running = await start(hello_app(), first.endpoint, second.endpoint, context=context)
    await first.request(1)
    await second.request(2)
    r1, r2 = await first.reply(), await second.reply()
    assert (r1.sender, r1.conn_ids) == (first.uuid, ["1"])
    assert (r2.sender, r2.conn_ids) == (second.uuid, ["2"])
    await running.stop()
    first.close()
    second.close()


async def test_disconnect_reaches_the_app(context: zmq.asyncio.Context, front: FrontEnd) -> None:
    app = hello_app()
    gone: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    @app.on_disconnect
    async def on_gone(sender: str, conn_id: str) -> None:
        await gone.put((sender, conn_id))

    running = await start(app, front.endpoint, context=context)
    await front.push.send(wire.encode_disconnect(front.uuid, 9))
    assert await asyncio.wait_for(gone.get(), TIMEOUT) == (front.uuid, "9")
    await running.stop()


async def test_a_client_method_json_is_a_request_not_a_control_message(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    """Mongrel2 passes a client's 'JSON / HTTP/1.1' on as METHOD JSON on path '/':
    the client gets an answer (405), where it used to wait for ever."""
    app = hello_app()
    running = await start(app, front.endpoint, context=context)
    await front.request(3, "/", method="JSON")
    await front.request(4, "/", method="XML")
    await front.push.send(wire.encode_disconnect(front.uuid, 9))  # no answer for this one
    await front.request(5, "/")
    replies = {r.conn_ids[0]: bytes(r.body) for r in [await front.reply() for _ in range(3)]}
    assert replies["3"].startswith(b"HTTP/1.1 405 ")
    assert replies["4"].startswith(b"HTTP/1.1 405 ")
    assert replies["5"].startswith(b"HTTP/1.1 200 ")
    await running.stop()


async def test_plain_function_handlers_run_inline_each_in_a_context_of_its_own(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    """A plain function handler is answered without a task; context variables set by
    any handler stay with its request."""
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    app = App()
    seen: list[tuple[str, bool]] = []

    @app.route("/sync")
    def sync(request: Request) -> str:
        seen.append((var.get(), asyncio.current_task() is None))
        var.set("sync")
        return "sync"

    @app.route("/async")
    async def not_sync(request: Request) -> str:
        seen.append((var.get(), asyncio.current_task() is None))
        var.set("async")
        await asyncio.sleep(0)
        return "async"

    running = await start(app, front.endpoint, context=context)
    for i, path in enumerate(["/sync", "/sync", "/async", "/sync", "/async"]):
        await front.request(i, path)
        assert bytes((await front.reply()).body).endswith(path[1:].encode())
    assert seen == [
        ("unset", True),
        ("unset", True),
        ("unset", False),
        ("unset", True),
        ("unset", False),
    ]
    assert running.server.in_flight == 0
    await running.stop()


async def test_a_plain_handler_raising_a_base_exception_does_not_stall_the_reader(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    """asyncio.CancelledError (e.g. from .result() on a cancelled future) raised by a plain
    handler is a 500; the requests queued behind it are all answered."""
    app = hello_app()

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise asyncio.CancelledError("from a cancelled future")

    running = await start(app, front.endpoint, context=context)
    await front.request(1, "/boom")
    for i in range(2, 7):
        await front.request(i, "/")
    replies = {r.conn_ids[0]: bytes(r.body) for r in [await front.reply() for _ in range(6)]}
    assert replies["1"].startswith(b"HTTP/1.1 500 ")
    assert all(replies[str(i)].startswith(b"HTTP/1.1 200 ") for i in range(2, 7))
    await running.stop()


def test_eager_starts_on_two_loops_in_two_threads_never_mix() -> None:
    """Each loop's tasks run on that loop's thread, each exactly once."""
    import sys
    import threading

    from takefive.runner import _TaskStarter

    wrong: list[str] = []
    counts: dict[str, int] = {}

    def worker(name: str) -> None:
        async def step(ident: int) -> None:
            if threading.current_thread().name != name:
                wrong.append(f"{name} task {ident} ran on {threading.current_thread().name}")
            counts[name] = counts.get(name, 0) + 1

        async def main() -> None:
            loop = asyncio.get_running_loop()
            starter = _TaskStarter(loop)
            done = loop.create_future()

            def callback() -> None:  # outside any task, like the runner's reader
                for i in range(3000):
                    starter.start(step(i))
                done.set_result(None)

            loop.call_soon(callback)
            await done
            await asyncio.sleep(0.05)

        asyncio.run(main())

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(n,), name=n) for n in ("t1", "t2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(old)
    assert wrong == []
    assert counts == {"t1": 3000, "t2": 3000}


async def test_deliver_pushes_to_other_connections(
    context: zmq.asyncio.Context, front: FrontEnd
) -> None:
    app = App()
    waiting: list[tuple[str, str]] = []

    @app.route("/wait")
    def wait(request: Request) -> None:
        waiting.append((request.sender, request.conn_id))
        return app.hold()

    @app.route("/send", methods=["POST"])
    def send(request: Request) -> str:
        for sender, conn_id in waiting:
            app.deliver(sender, [conn_id], Response(request.body).render())
        return "sent"

    running = await start(app, front.endpoint, context=context)
    for i in (10, 11, 12):
        await front.request(i, "/wait")
    await until(lambda: len(waiting) == 3)
    await front.request(20, "/send", "POST", b"news")
    replies = [await front.reply() for _ in range(4)]
    pushed = sorted(r.conn_ids[0] for r in replies if bytes(r.body).endswith(b"news"))
    assert pushed == ["10", "11", "12"]
    await running.stop()


async def test_handlers_run_as_tasks(context: zmq.asyncio.Context, front: FrontEnd) -> None:
    """asyncio.timeout(), TaskGroup and current_task() need a task, from the first line on."""
    app = App()

    @app.route("/timeout")
    async def with_timeout(request: Request) -> str:
        assert asyncio.current_task() is not None
        async with asyncio.timeout(5):
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0, "child"))
        return f"ok {child.result()}"

    @app.route("/expires")
    async def expires(request: Request) -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "not timed out"

    running = await start(app, front.endpoint, context=context)
    await front.request(1, "/timeout")
    await front.request(2, "/expires")
    replies = {r.conn_ids[0]: bytes(r.body) for r in [await front.reply(), await front.reply()]}
    assert replies["1"].endswith(b"ok child")
    assert replies["2"].endswith(b"timed out")
    await running.stop()


def test_endpoints_pair_up() -> None:
    assert endpoints_from(None, None) == [Endpoint()]
    assert endpoints_from(["a", "b"], ["c", "d"]) == [Endpoint("a", "c"), Endpoint("b", "d")]
    with pytest.raises(ValueError, match="pairs"):
        endpoints_from(["a", "b"], ["c"])


async def test_requests_start_eagerly_as_tasks() -> None:
    """A request's task runs at once, as the current task, in a context of its own;
    one that never waits is done before the reader goes on (on 3.11 as on 3.12)."""
    import contextvars

    from takefive.runner import _TaskStarter

    var: contextvars.ContextVar[int] = contextvars.ContextVar("var", default=0)
    seen: list[tuple[str, object]] = []

    async def quick(i: int) -> None:
        seen.append(("quick", asyncio.current_task() is not None))
        var.set(i)

    async def waits() -> int:
        await asyncio.sleep(0)
        seen.append(("waits", asyncio.current_task() is not None))
        return 7

    loop = asyncio.get_running_loop()
    _start_task = _TaskStarter(loop).start
    started: asyncio.Future[asyncio.Task[None]] = loop.create_future()

    def reader_callback() -> None:  # like the runner's reader: outside any task
        task = _start_task(quick(1))
        seen.append(("done", task.done()))
        seen.append(("leaked", var.get()))
        slow = _start_task(waits())  # type: ignore[arg-type]
        seen.append(("waiting", slow.done()))
        started.set_result(slow)

    loop.call_soon(reader_callback)
    slow = await started
    assert await slow == 7  # type: ignore[comparison-overlap]
    # Inside a task (the runner's drain at shutdown): eager on 3.12, scheduled on 3.11.
    await _start_task(quick(2))
    assert var.get() == 0
    assert seen == [
        ("quick", True),
        ("done", True),
        ("leaked", 0),
        ("waiting", False),
        ("waits", True),
        ("quick", True),
    ]


def body_of(reply: wire.Reply) -> bytes:
    return bytes(reply.body).rpartition(b"\r\n\r\n")[2]


async def burst(front: FrontEnd, *requests: tuple[int, str]) -> None:
    """Send requests so that the handler reads them in one turn: the event loop (the
    handler's too) is blocked while ZeroMQ's threads carry them to its queue."""
    for conn_id, path in requests:
        await front.request(conn_id, path)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop on purpose


def holding_app() -> App:
    app = App()

    @app.route("/a")
    def first(request: Request) -> str:
        return "A"

    @app.route("/push")
    def push(request: Request) -> str:
        app.deliver(request.sender, ["1"], b"B")  # to the connection of /a
        return "C"

    @app.route("/async")
    async def later(request: Request) -> str:
        return "D"

    return app


@pytest.fixture
def always_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every turn counts as slow and holds its replies until it ends."""
    from takefive import runner as runner_module

    monkeypatch.setattr(runner_module, "_SLOW_S", 0.0)
    monkeypatch.setattr(runner_module, "_CORK_S", 60.0)


async def test_held_replies_leave_before_anything_sent_after_them(
    context: zmq.asyncio.Context, front: FrontEnd, always_hold: None
) -> None:
    """A reply held to the end of the turn still leaves before what the process sends
    later in the same turn: a push to its connection, an awaited handler's answer."""
    running = await start(holding_app(), front.endpoint, context=context)
    await burst(front, (9, "/a"))  # a first turn: the reader now holds replies
    assert body_of(await front.reply()) == b"A"
    assert running.server._readers[0].slow
    await burst(front, (1, "/a"), (2, "/push"), (1, "/async"))
    got = [
        (r.conn_ids[0], body_of(r) if r.conn_ids[0] == "2" else bytes(r.body))
        for r in [await front.reply() for _ in range(4)]
    ]
    # C, held in its turn, leaves before D: everything in the order it was made
    assert [(c, b[-1:]) for c, b in got] == [("1", b"A"), ("1", b"B"), ("2", b"C"), ("1", b"D")]
    await running.stop()


async def test_held_replies_all_leave_at_the_end_of_the_turn(
    context: zmq.asyncio.Context, front: FrontEnd, always_hold: None
) -> None:
    running = await start(holding_app(), front.endpoint, context=context)
    await burst(front, (0, "/a"))
    await front.reply()
    await burst(front, *[(n, "/a") for n in range(1, 41)])
    got = [await front.reply() for _ in range(40)]
    assert [r.conn_ids[0] for r in got] == [str(n) for n in range(1, 41)]
    assert {body_of(r) for r in got} == {b"A"}
    await running.stop()


async def test_only_slow_turns_hold_replies(context: zmq.asyncio.Context, front: FrontEnd) -> None:
    """A turn of fast handlers sends each reply at once; after a turn of handlers as slow
    as _SLOW_S a frame, the next turn holds them (and the one after that is fast again)."""
    app = App()

    @app.route("/fast")
    def fast(request: Request) -> str:
        return "fast"

    @app.route("/slow")
    def slow(request: Request) -> str:
        time.sleep(0.002)
        return "slow"

    running = await start(app, front.endpoint, context=context)
    reader = running.server._readers[0]
    for _ in range(20):  # the first turns run cold (and may count as slow)
        await burst(front, *[(n, "/fast") for n in range(5)])
        [await front.reply() for _ in range(5)]
        if not reader.slow:
            break
    assert not reader.slow
    await burst(front, (5, "/slow"), (6, "/slow"))
    [await front.reply() for _ in range(2)]
    assert reader.slow
    await burst(front, *[(n, "/fast") for n in range(7, 40)])
    [await front.reply() for _ in range(33)]
    assert not reader.slow and not reader.held
    await running.stop()


class FlakyPub:
    """A publisher whose send fails on the calls listed in ``fail_on`` (1-based)."""

    def __init__(self, fail_on: set[int], attached: bool = True) -> None:
        self.sent: list[bytes] = []
        self.calls = 0
        self.fail_on = fail_on
        self.attached = attached
        self.owner = None  # never used: a detached publisher must not reach its owner
        self.on_send: Callable[[], None] | None = None

    def send(self, data: bytes) -> None:
        self.calls += 1
        if self.on_send is not None:
            on_send, self.on_send = self.on_send, None
            on_send()
        if self.calls in self.fail_on:
            raise zmq.ZMQError(errno.EINTR)
        self.sent.append(data)


def a_reader(pub: FlakyPub) -> Any:
    from takefive import runner as runner_module

    ctx: zmq.Context[Any] = zmq.Context.instance()
    pull = ctx.socket(zmq.PULL)
    return runner_module._Reader(None, nowait_socket(pull), pub, None)  # type: ignore[arg-type]


def test_a_failed_flush_holds_what_it_did_not_send_first_in_line() -> None:
    pub = FlakyPub(fail_on={2})
    reader = a_reader(pub)
    reader.held += [b"1", b"2", b"3"]
    with pytest.raises(zmq.ZMQError):
        reader.flush()
    assert pub.sent == [b"1"] and reader.held == [b"2", b"3"]
    reader.held.append(b"4")
    reader.flush()
    assert pub.sent == [b"1", b"2", b"3", b"4"] and reader.held == []


def test_a_flush_from_inside_a_send_sends_nothing_twice() -> None:
    """A signal handler that pushes runs a flush while a flush is sending."""
    pub = FlakyPub(fail_on=set())
    reader = a_reader(pub)
    reader.held += [b"1", b"2"]
    pub.on_send = reader.flush  # re-entered during the first send
    reader.flush()
    assert pub.sent == [b"1", b"2"] and reader.held == []


def test_a_large_reply_on_a_detached_publisher_raises_and_touches_nothing() -> None:
    from takefive import runner as runner_module

    pub = FlakyPub(fail_on=set(), attached=False)
    with pytest.raises(zmq.ZMQError) as caught:
        runner_module._publish(pub, b"x" * runner_module._ZERO_COPY_SIZE)  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENOTSOCK and pub.calls == 0
