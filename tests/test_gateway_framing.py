"""Finding where a handler's HTTP response ends, in any split of its bytes."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from takefive.gateway.framing import COMPLETE, MORE, UPGRADE, ResponseFramer

LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")
CHUNKED_NO_TRAILER = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


def feed_in_pieces(data: bytes, cuts: list[int], head_only: bool = False) -> list[int]:
    framer = ResponseFramer()
    framer.start(head_only)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    results = []
    for a, b in itertools.pairwise(points):
        # pass a frame with a prefix, like a ZeroMQ message with the body at an offset
        results.append(framer.feed(b"PREFIX" + data[a:b], 6))
    return results


@given(st.lists(st.integers(min_value=0, max_value=500), max_size=8),
       st.sampled_from([LENGTH, CHUNKED, CHUNKED_NO_TRAILER]))
def test_complete_exactly_at_the_last_byte(cuts: list[int], response: bytes) -> None:
    results = feed_in_pieces(response, cuts)
    assert results[-1] == COMPLETE
    assert all(r == MORE for r in results[:-1])


def test_not_complete_before_the_end() -> None:
    framer = ResponseFramer()
    framer.start()
    assert framer.feed(LENGTH[:-1]) == MORE
    assert framer.started and not framer.done
    assert framer.feed(LENGTH[-1:]) == COMPLETE
    assert framer.status == 200


def test_head_request_and_bodyless_statuses() -> None:
    framer = ResponseFramer()
    framer.start(head_only=True)
    assert framer.feed(LENGTH[: LENGTH.index(b"\r\n\r\n") + 4]) == COMPLETE
    for status in (b"204 No Content", b"304 Not Modified"):
        framer.start()
        assert framer.feed(b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\n\r\n") == COMPLETE


def test_informational_then_final() -> None:
    framer = ResponseFramer()
    framer.start()
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert framer.feed(data) == COMPLETE
    assert framer.status == 200


def test_switching_protocols() -> None:
    framer = ResponseFramer()
    framer.start()
    assert framer.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") == UPGRADE


def test_open_ended_responses_never_complete() -> None:
    framer = ResponseFramer()
    for data in (b"HTTP/1.0 200 OK\r\n\r\nuntil close",
                 b"not http at all\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
                 b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        framer.start()
        assert framer.feed(data) == MORE
        assert framer.feed(b"more\r\n\r\n") == MORE
        assert not framer.done


def test_case_insensitive_headers() -> None:
    framer = ResponseFramer()
    framer.start()
    assert framer.feed(b"HTTP/1.1 200 OK\r\ncontent-LENGTH:  3\r\n\r\nabc") == COMPLETE
