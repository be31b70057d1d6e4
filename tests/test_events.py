"""takefive.events: PUB/SUB events, including the documented losses (late joiners, HWM)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
import zmq
import zmq.asyncio

from takefive import workproto as wp
from takefive.events import BlockingSubscriber, Event, EventProxy, Publisher, Subscriber


def handshake(pub: Publisher, sub: BlockingSubscriber, topic: str = "probe") -> None:
    """Publish probes until the subscriber gets one: its subscription has arrived."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pub.publish(topic, "probe")
        event = sub.recv(timeout=0.05)
        if event is not None:
            while sub.recv(timeout=0.05) is not None:  # drain the other probes
                pass
            return
    raise AssertionError("the subscription never reached the publisher")


def test_topics_filter_by_prefix() -> None:
    with Publisher() as pub, BlockingSubscriber(pub.endpoint, ["chat.", "probe"]) as sub:
        handshake(pub, sub)
        pub.publish("news.today", "skip me")
        pub.publish("chat.room1", {"text": "hi"})
        pub.publish("chat.room2", b"\x00", encoding="raw")
        pub.publish("chat.room3", [1, 2], encoding="msgpack")
        assert sub.recv(timeout=5) == Event("chat.room1", {"text": "hi"})
        assert sub.recv(timeout=5) == Event("chat.room2", b"\x00")
        assert sub.recv(timeout=5) == Event("chat.room3", [1, 2])
        assert sub.recv(timeout=0.1) is None


def test_late_joiner_misses_what_was_published_before_it_subscribed() -> None:
    with Publisher() as pub:
        for i in range(100):
            pub.publish("chat.x", i)  # nobody listens yet: dropped at once
        with BlockingSubscriber(pub.endpoint) as sub:
            handshake(pub, sub)
            pub.publish("chat.x", "after")
            assert sub.recv(timeout=5) == Event("chat.x", "after")
            assert sub.recv(timeout=0.1) is None


def test_slow_subscriber_loses_messages_past_the_high_water_mark() -> None:
    hwm, sent = 50, 20_000
    with Publisher(hwm=hwm) as pub, BlockingSubscriber(pub.endpoint, hwm=hwm) as sub:
        # Small kernel buffers, so that the HWM and not TCP buffering decides.
        pub.socket.setsockopt(zmq.SNDBUF, 4096)
        handshake(pub, sub)
        for i in range(sent):
            pub.publish("n", i, encoding="json")  # never blocks, even when nobody reads
        got: list[int] = []
        while (event := sub.recv(timeout=0.5)) is not None:
            got.append(event.data)
        assert 0 < len(got) < sent  # some arrived, the rest were dropped, no error, no block
        assert all(a < b for a, b in itertools.pairwise(got))  # in order, no dupes
        assert got[0] == 0  # the first one found empty queues


async def test_async_subscriber_and_bad_events_are_dropped() -> None:
    with Publisher() as pub:
        sub = Subscriber(pub.endpoint, ["t"])
        try:
            raw = pub.socket
            got: list[Event] = []

            async def collect() -> None:
                async for event in sub:
                    got.append(event)
                    if event.data == "last":
                        return

            task = asyncio.ensure_future(collect())
            deadline = time.monotonic() + 10
            while not got:
                assert time.monotonic() < deadline
                pub.publish("t", "probe")
                await asyncio.sleep(0.02)
            raw.send_multipart([b"t", b"junk"])
            raw.send_multipart(wp.encode_event("t", b"{bad json"))
            pub.publish("t", "last")
            await asyncio.wait_for(task, 5)
            assert got[-1] == Event("t", "last")
            assert all(e.data in ("probe", "last") for e in got)
        finally:
            sub.close()


def test_many_publishers_many_subscribers_through_the_proxy() -> None:
    """Every handler process publishes and subscribes: the chat broadcast case."""
    proxy = EventProxy()
    thread = threading.Thread(target=proxy.run)
    thread.start()
    pubs = [Publisher(proxy.xsub_endpoint, bind=False) for _ in range(2)]
    subs = [BlockingSubscriber(proxy.xpub_endpoint, ["chat."]) for _ in range(3)]
    try:
        for pub in pubs:
            for sub in subs:
                handshake(pub, sub, "chat.probe")
        pubs[0].publish("chat.all", "from 0")
        pubs[1].publish("chat.all", "from 1")
        for sub in subs:
            got = set()
            while len(got) < 2 and (event := sub.recv(timeout=5)) is not None:
                if event.topic != "chat.probe":  # late probes from the handshakes
                    got.add(event)
            assert got == {Event("chat.all", "from 0"), Event("chat.all", "from 1")}
    finally:
        for p in pubs:
            p.close(0)
        for s in subs:
            s.close()
        proxy.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_bad_topic_is_refused() -> None:
    with Publisher() as pub, pytest.raises(wp.ProtocolError, match="NUL"):
        pub.publish("a\x00b", 1)


def test_bad_events_do_not_stretch_the_timeout() -> None:
    with Publisher() as pub, BlockingSubscriber(pub.endpoint) as sub:
        handshake(pub, sub)
        stop = threading.Event()

        def junk() -> None:  # a bad event every 20 ms, for up to 20 s
            for _ in range(1000):
                if stop.wait(0.02):
                    return
                pub.socket.send_multipart([b"j", b"junk"])

        thread = threading.Thread(target=junk)
        thread.start()
        try:
            started = time.monotonic()
            assert sub.recv(timeout=0.3) is None
            # Bad events dropped, and no poll restarted with the whole timeout after each:
            assert time.monotonic() - started < 10
        finally:
            stop.set()
            thread.join()


def test_proxy_on_a_busy_port_raises_the_zmq_error_and_closes_its_sockets() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    taken = ctx.socket(zmq.PUB)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        with pytest.raises(zmq.ZMQError):
            EventProxy(xpub_endpoint=f"tcp://127.0.0.1:{port}", context=ctx)
    finally:
        taken.close(0)
    ctx.term()  # would block forever on a socket left open


async def test_subscriber_waiting_when_its_context_is_terminated_raises_and_lets_term_end() -> None:
    ctx = zmq.asyncio.Context()
    sub = Subscriber("tcp://127.0.0.1:1", context=ctx)  # nobody there: waits for ever
    waiting = asyncio.ensure_future(sub.recv())
    await asyncio.sleep(0.1)
    term = threading.Thread(target=ctx.term, daemon=True)
    term.start()  # as a shutdown elsewhere in the process would
    with pytest.raises(zmq.ContextTerminated):
        await asyncio.wait_for(waiting, 10)
    # The subscriber closed its socket, which term() was waiting for.
    await asyncio.to_thread(term.join, 10)
    assert not term.is_alive()
    with pytest.raises(zmq.ContextTerminated):  # and says so again, at once
        await asyncio.wait_for(sub.recv(), 1)


def test_blocking_subscriber_when_its_context_is_terminated_raises_and_lets_term_finish() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = BlockingSubscriber("tcp://127.0.0.1:1", context=ctx)
    failed: list[BaseException] = []

    def wait() -> None:
        try:
            sub.recv()
        except BaseException as exc:  # the test inspects it
            failed.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(0.1)
    term = threading.Thread(target=ctx.term, daemon=True)
    term.start()
    waiter.join(10)
    term.join(10)
    assert not waiter.is_alive() and not term.is_alive()
    assert failed and isinstance(failed[0], zmq.ContextTerminated)
