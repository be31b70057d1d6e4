"""Client WebSocket frames -> Mongrel2-style (FLAGS, payload) messages."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takefive.gateway.websocket import WebSocketError, WebSocketReader, accept_key, close_frame


def client_frame(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def test_accept_key_rfc6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_text_binary_and_control_frames() -> None:
    reader = WebSocketReader(1 << 20)
    data = (client_frame(0x81, b"hello") + client_frame(0x82, b"\x00\xff")
            + client_frame(0x89, b"ping") + client_frame(0x88, b"\x03\xe8"))
    assert reader.feed(data) == [(0x81, b"hello"), (0x82, b"\x00\xff"), (0x89, b"ping"),
                                 (0x88, b"\x03\xe8")]


@given(st.binary(max_size=3000), st.lists(st.integers(1, 4000), max_size=6))
def test_any_split_and_length(payload: bytes, cuts: list[int]) -> None:
    data = client_frame(0x82, payload, os.urandom(4))
    reader = WebSocketReader(1 << 20)
    out = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(points):
        out += reader.feed(data[a:b])
    assert out == [(0x82, payload)]


def test_large_message_64bit_length() -> None:
    payload = os.urandom(76800)
    assert WebSocketReader(1 << 20).feed(client_frame(0x82, payload)) == [(0x82, payload)]


def test_fragments_reassembled_with_interleaved_ping() -> None:
    reader = WebSocketReader(1 << 20)
    data = (client_frame(0x01, b"hel") + client_frame(0x89, b"p") + client_frame(0x00, b"lo ")
            + client_frame(0x80, b"world"))
    assert reader.feed(data) == [(0x89, b"p"), (0x81, b"hello world")]


def test_violations() -> None:
    with pytest.raises(WebSocketError) as err:
        WebSocketReader(100).feed(b"\x81\x05hello")  # unmasked
    assert err.value.code == 1002
    with pytest.raises(WebSocketError) as err:
        WebSocketReader(100).feed(client_frame(0x82, b"x" * 101))
    assert err.value.code == 1009
    with pytest.raises(WebSocketError):
        WebSocketReader(100).feed(client_frame(0x80, b"x"))  # continuation of nothing
    with pytest.raises(WebSocketError):
        WebSocketReader(100).feed(client_frame(0x09, b"x"))  # fragmented ping


def test_close_frame() -> None:
    assert close_frame(1000) == b"\x88\x02\x03\xe8"
