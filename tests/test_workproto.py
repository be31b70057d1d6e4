"""takefive.workproto: the T5W1 frames and payload encodings, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takefive import workproto as wp
from takefive.wire import ProtocolError

names = st.from_regex(r"[A-Za-z0-9_.:/-]{1,40}", fullmatch=True)
job_ids = st.binary(min_size=1, max_size=64).filter(lambda b: all(0x21 <= c <= 0x7E for c in b))


@given(job_ids, names, st.binary(max_size=200), st.sampled_from(wp.ENCODINGS), st.text(max_size=30))
def test_request_round_trips(
    job_id: bytes, name: str, payload: bytes, enc: str, reply_to: str
) -> None:
    frames = wp.encode_request(job_id, name, payload, enc, reply_to)
    assert frames[:2] == [wp.HEADER, wp.REQUEST]
    assert wp.parse(frames) == wp.Request(job_id, name, enc, payload, reply_to)


@given(job_ids, st.binary(max_size=200), st.text(max_size=50))
def test_reply_and_error_round_trip(job_id: bytes, payload: bytes, message: str) -> None:
    assert wp.parse(wp.encode_reply(job_id, payload, "raw")) == wp.Reply(job_id, "raw", payload)
    assert wp.parse(wp.encode_error(job_id, "failed", message)) == wp.Error(
        job_id, "failed", message
    )


def test_ready_heartbeat_disconnect() -> None:
    frames = wp.encode_ready(["echo", "thumbs.make"], 250, "python/1@host")
    assert frames == [b"T5W1", b"READY", b"250", b"python/1@host", b"echo", b"thumbs.make"]
    assert wp.parse(frames) == wp.Ready(250, "python/1@host", ("echo", "thumbs.make"))
    assert wp.parse(wp.encode_heartbeat()) == wp.Heartbeat()
    assert wp.parse(wp.encode_disconnect()) == wp.Disconnect()


def test_event_round_trips() -> None:
    frames = wp.encode_event("chat.room1", b'{"x":1}')
    assert frames[0] == b"chat.room1"
    assert wp.decode_event(frames) == wp.Event("chat.room1", "json", b'{"x":1}')


@pytest.mark.parametrize(
    ("frames", "complaint"),
    [
        ([], "0 frame"),
        ([b"T5W1"], "1 frame"),
        ([b"T5W2", b"HEARTBEAT"], "bad protocol header"),
        ([b"T5W1", b"NOPE"], "unknown message type"),
        ([b"T5W1", b"HEARTBEAT", b"x"], "HEARTBEAT has 3 frames"),
        ([b"T5W1", b"REPLY", b"1", b"json"], "REPLY has 4 frames"),
        ([b"T5W1", b"REPLY", b"", b"json", b"1"], "invalid job id"),
        ([b"T5W1", b"REPLY", b"a b", b"json", b"1"], "invalid job id"),
        ([b"T5W1", b"REPLY", b"1", b"js on", b"1"], "invalid encoding"),
        ([b"T5W1", b"REQUEST", b"1", b"", b"json", b"", b""], "invalid job name"),
        ([b"T5W1", b"REQUEST", b"1", b"x", b"json", b"", b"\xff"], "reply-to is not UTF-8"),
        ([b"T5W1", b"READY", b"100", b"info"], "at least 5"),
        ([b"T5W1", b"READY", b"0", b"info", b"echo"], "not a positive integer"),
        ([b"T5W1", b"READY", b"-1", b"info", b"echo"], "not a positive integer"),
        ([b"T5W1", b"READY", b"10", b"info", b"bad name"], "invalid service name"),
        ([b"T5W1", b"ERROR", b"1", b"failed"], "ERROR has 4 frames"),
    ],
)
def test_bad_frames_raise_protocol_error(frames: list[bytes], complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        wp.parse(frames)


def test_bad_events_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="EVENT has 2 frames"):
        wp.decode_event([b"t", b"T5W1"])
    with pytest.raises(ProtocolError, match="expected an EVENT"):
        wp.decode_event([b"t", b"T5W1", b"REPLY", b"json", b""])
    with pytest.raises(ProtocolError, match="bad protocol header"):
        wp.decode_event([b"t", b"XXXX", b"EVENT", b"json", b""])


def test_encoders_refuse_bad_fields() -> None:
    with pytest.raises(ProtocolError, match="at least one service"):
        wp.encode_ready([], 100)
    with pytest.raises(ProtocolError, match="heartbeat"):
        wp.encode_ready(["x"], 0)
    with pytest.raises(ProtocolError, match="invalid job name"):
        wp.encode_request(b"1", "has space", b"")
    with pytest.raises(ProtocolError, match="invalid job id"):
        wp.encode_reply(b"", b"")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=10,
    ),
    st.sampled_from(["json", "msgpack"]),
)
def test_payload_round_trips(value: object, encoding: str) -> None:
    assert wp.decode_payload(wp.encode_payload(value, encoding), encoding) == value


def test_payload_errors() -> None:
    assert wp.decode_payload(wp.encode_payload(b"\x00\xff", "raw"), "raw") == b"\x00\xff"
    with pytest.raises(wp.EncodingError, match="raw encoding takes bytes"):
        wp.encode_payload("text", "raw")
    with pytest.raises(wp.EncodingError, match="cannot encode object as JSON"):
        wp.encode_payload(object(), "json")
    with pytest.raises(wp.EncodingError, match="not valid JSON"):
        wp.decode_payload(b"{", "json")
    with pytest.raises(wp.EncodingError, match="not valid msgpack"):
        wp.decode_payload(b"\xc1", "msgpack")
    with pytest.raises(wp.EncodingError, match="unknown payload encoding 'xml'"):
        wp.encode_payload(1, "xml")
    with pytest.raises(wp.EncodingError, match="unknown payload encoding 'xml'"):
        wp.decode_payload(b"1", "xml")
