"""takefive._zmqutil: the pyzmq helpers of the hot paths, and nowait_socket.

nowait_socket has two versions, the C one (takefive._zmqcall, libzmq called from C)
and the pyzmq one; every behaviour is checked on both, over real libzmq sockets.
Under CI the C one must be there.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from takefive import _zmqutil
from takefive._zmqutil import NowaitSocket, nowait_socket

Make = Callable[["zmq.Socket[Any]"], NowaitSocket]

VERSIONS: dict[str, Make] = {"pyzmq": _zmqutil._PyNowait}
if _zmqutil.DIRECT:
    from takefive import _zmqcall

    VERSIONS["C"] = _zmqcall.Socket


@pytest.fixture(params=sorted(VERSIONS))
def make(request: pytest.FixtureRequest) -> Make:
    return VERSIONS[request.param]


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def pair(ctx: zmq.Context[Any]) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://pair")
    b.connect("inproc://pair")
    return a, b


def recv_soon(io: NowaitSocket, timeout: float = 5.0) -> bytes:
    """The next frame, reading until one is there (a send over TCP takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = io.recv()
        if frame is not None:
            return frame
        assert time.monotonic() < deadline, "no frame came"
        time.sleep(0.001)


def test_the_c_version_is_built_under_ci() -> None:
    if os.environ.get("CI"):
        assert _zmqutil.DIRECT, "takefive._zmqcall is not built or could not bind libzmq"
    assert nowait_socket is not None


def test_the_c_version_can_be_turned_off() -> None:
    code = "from takefive import _zmqutil; print(_zmqutil.DIRECT)"
    env = {**os.environ, "TAKEFIVE_NO_EXTENSIONS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_an_empty_socket_reads_none(make: Make, pair: tuple[Any, Any]) -> None:
    _, b = pair
    io = make(b)
    assert io.owner is b
    for _ in range(3):
        assert io.recv() is None


@pytest.mark.parametrize("size", [0, 1, 33, 250, 70_000, 1_000_000])
def test_frames_go_through_whole(make: Make, pair: tuple[Any, Any], size: int) -> None:
    a, b = pair
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    make(a).send(data)
    got = recv_soon(make(b))
    assert type(got) is bytes and got == data


def test_both_versions_read_what_the_other_sent(pair: tuple[Any, Any]) -> None:
    a, b = pair
    for send_with, recv_with in [(x, y) for x in VERSIONS.values() for y in VERSIONS.values()]:
        send_with(a).send(b"one")
        b.send(b"two")
        assert recv_soon(recv_with(b)) == b"one"
        assert recv_soon(make_plain(a)) == b"two"


def make_plain(sock: zmq.Socket[Any]) -> NowaitSocket:
    return _zmqutil._PyNowait(sock)


def test_a_multipart_message_comes_one_frame_per_read(make: Make, pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.send_multipart([b"first", b"", b"third"])
    a.send(b"next")
    io = make(b)
    assert [recv_soon(io) for _ in range(4)] == [b"first", b"", b"third", b"next"]
    assert io.recv() is None


def test_order_is_kept_over_tcp(make: Make, ctx: zmq.Context[Any]) -> None:
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    out, into = make(push), make(pull)
    frames = [b"%d" % i * (i % 50) for i in range(2000)]
    got: list[bytes] = []
    for frame in frames:
        while True:
            try:
                out.send(frame)
                break
            except zmq.Again:  # the peer is still connecting, or the pipe is full
                got += drain(into)
                time.sleep(0.001)
    while len(got) < len(frames):
        got.append(recv_soon(into))
    assert got == frames


def drain(io: NowaitSocket) -> list[bytes]:
    frames = []
    while (frame := io.recv()) is not None:
        frames.append(frame)
    return frames


def test_send_never_blocks(make: Make, ctx: zmq.Context[Any]) -> None:
    """A PUSH with no peer cannot take a message: zmq.Again at once, not a wait."""
    push = ctx.socket(zmq.PUSH)
    push.bind("inproc://nobody")
    started = time.monotonic()
    with pytest.raises(zmq.Again):
        make(push).send(b"x")
    assert time.monotonic() - started < 1


def test_a_pub_socket_past_its_high_water_mark_drops(make: Make, ctx: zmq.Context[Any]) -> None:
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.sndhwm, sub.rcvhwm = 10, 10
    pub.bind("inproc://pub")
    sub.connect("inproc://pub")
    sub.subscribe(b"")
    io = make(pub)
    for _ in range(1000):  # never raises, never blocks
        io.send(b"m")
    assert 0 < len(drain(make(sub))) <= 1000


def test_send_takes_bytes_only(make: Make, pair: tuple[Any, Any]) -> None:
    a, _ = pair
    with pytest.raises(TypeError):
        make(a).send("text")  # type: ignore[arg-type]


def test_detach_then_every_call_raises(make: Make, pair: tuple[Any, Any]) -> None:
    a, b = pair
    a.send(b"waiting")
    io = make(b)
    io.detach()
    io.detach()  # again: no harm
    for call in (io.recv, lambda: io.send(b"x")):
        with pytest.raises(zmq.ZMQError) as caught:
            call()
        assert caught.value.errno == errno.ENOTSOCK
    assert b.recv() == b"waiting"  # nothing was read


@pytest.mark.skipif(not _zmqutil.DIRECT, reason="the C version is not built")
def test_the_c_socket_needs_a_pyzmq_socket() -> None:
    with pytest.raises(AttributeError):
        _zmqcall.Socket(object())
    with pytest.raises(ValueError):
        _zmqcall.Socket(type("Fake", (), {"underlying": 0})())
    unborn = _zmqcall.Socket.__new__(_zmqcall.Socket)
    with pytest.raises(zmq.ZMQError):
        unborn.recv()
    assert unborn.attached is False and unborn.owner is None


@pytest.mark.skipif(not _zmqutil.DIRECT, reason="the C version is not built")
def test_the_c_socket_keeps_its_owner_and_is_collected_in_a_cycle(
    ctx: zmq.Context[Any],
) -> None:
    import gc
    import weakref

    owner = ctx.socket(zmq.PULL)
    io = _zmqcall.Socket(owner)
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is io.owner  # kept alive by io
    holder = [io]  # io -> owner -> ... -> io, through a list the owner's dict holds
    io.owner.__dict__["holder"] = holder
    io.owner.close()
    del io, holder
    gc.collect()
    assert gone() is None


def test_pyzmq_version_polls_after_a_short_run(
    pair: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run of fewer than POLL_BELOW frames the next run asks zmq_poll before
    each read but the first; after a long run it reads until zmq.Again."""
    a, b = pair
    polls: list[bool] = []
    real_poll = zmq.zmq_poll

    def counting_poll(items: Any, timeout: int = -1) -> Any:
        found = real_poll(items, timeout)
        polls.append(bool(found))
        return found

    monkeypatch.setattr(_zmqutil.zmq, "zmq_poll", counting_poll)
    io = _zmqutil._PyNowait(b)
    a.send(b"1")
    assert recv_soon(io) == b"1"
    assert io.recv() is None and polls == []  # the first run ends on Again
    a.send(b"2")
    time.sleep(0.01)
    assert io.recv() == b"2" and polls == []  # the first read of a run: no poll
    assert io.recv() is None and polls == [False]  # then a poll that found nothing
    for n in range(20):
        a.send(b"%d" % n)
    time.sleep(0.01)
    assert len(drain(io)) == 20
    assert polls[1:19] == [True] * 18  # a poll before each read after the first...
    assert polls[-1] is False
    del polls[:]
    for n in range(20):
        a.send(b"%d" % n)
    time.sleep(0.01)
    assert len(drain(io)) == 20 and polls == []  # ...but not after a long run


def test_a_terminated_context_raises_as_pyzmq_does(make: Make) -> None:
    """ETERM while the context terminates: zmq.ContextTerminated from both versions."""
    import threading

    context: zmq.Context[Any] = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind("inproc://term")
    io = make(sock)
    ending = threading.Thread(target=context.term)
    ending.start()
    deadline = time.monotonic() + 5
    with pytest.raises(zmq.ContextTerminated):
        while time.monotonic() < deadline:  # term() reaches the socket soon after it starts
            io.recv()
            time.sleep(0.005)
    with pytest.raises(zmq.ContextTerminated):
        io.send(b"x")
    io.detach()
    sock.close()
    ending.join(5)
    assert not ending.is_alive()


def test_errno_to_exception_as_pyzmq() -> None:
    assert type(_zmqutil._error_of(errno.EAGAIN)) is zmq.Again
    assert type(_zmqutil._error_of(zmq.ETERM)) is zmq.ContextTerminated
    other = _zmqutil._error_of(errno.ENOTSOCK)
    assert type(other) is zmq.ZMQError and other.errno == errno.ENOTSOCK


def test_libzmq_is_taken_from_where_pyzmq_resolves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A libzmq in the global scope (LD_PRELOAD, RTLD_GLOBAL) is the one pyzmq's backend
    calls, so it wins over the one the backend was linked with."""
    import ctypes

    from zmq.backend.cython import _zmq as backend

    opened: list[str | None] = []

    class Library:
        def __init__(self, name: str | None) -> None:
            opened.append(name)
            self.name = name
            if name is None and with_global:
                self.zmq_msg_recv = "global"

    monkeypatch.setattr(ctypes, "CDLL", Library)
    with_global = True
    assert _zmqutil._libzmq_of_pyzmq().name is None
    with_global = False
    assert _zmqutil._libzmq_of_pyzmq() is None  # the fake backend has no zmq_msg_recv either
    assert opened == [None, backend.__file__] * 2
