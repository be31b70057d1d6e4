"""takefive.workproto: the T5W1 frames and payload encodings, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from takefive import workproto as wp
from takefive.wire import ProtocolError

names = st.from_regex(r"[A-Za-z0-9_.:/-]{1,40}", fullmatch=True)
# Printable ASCII ids, built directly (filtering random bytes rejected most of them and
# could fail hypothesis's filter_too_much health check).
job_ids = st.lists(st.integers(0x21, 0x7E), min_size=1, max_size=64).map(bytes)


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


# --------------------------------------------------------------------------- batches

# Built, not filtered: lists of filtered values would make hypothesis give up.
batch_job_ids = st.lists(st.integers(0x21, 0x7E), min_size=1, max_size=64).map(bytes)
jobs = st.lists(
    st.tuples(batch_job_ids, names, st.binary(max_size=100), st.sampled_from(wp.ENCODINGS)),
    min_size=1,
    max_size=8,
)
answers = st.lists(
    st.one_of(
        st.builds(wp.Reply, batch_job_ids, st.sampled_from(wp.ENCODINGS), st.binary(max_size=100)),
        st.builds(wp.Error, batch_job_ids, st.sampled_from(wp.ERROR_CODES), st.text(max_size=30)),
    ),
    min_size=1,
    max_size=8,
)


@given(jobs, st.text(max_size=30))
def test_requests_round_trip(batch: list[tuple[bytes, str, bytes, str]], reply_to: str) -> None:
    records = [wp.encode_job(job_id, name, payload, enc) for job_id, name, payload, enc in batch]
    frames = wp.encode_requests(records, reply_to)
    assert frames[:3] == [b"T5W1", b"REQUESTS", reply_to.encode()] and len(frames) == 4
    assert wp.parse(frames) == wp.Requests(
        reply_to, tuple(wp.Request(j, n, e, p, reply_to) for j, n, p, e in batch)
    )


@given(answers)
def test_replies_round_trip(batch: list[wp.Reply | wp.Error]) -> None:
    frames = wp.encode_replies([wp.encode_answer_record(a) for a in batch])
    assert frames[:2] == [b"T5W1", b"REPLIES"] and len(frames) == 3
    expected = tuple(
        a
        if isinstance(a, wp.Reply)
        else a._replace(message=a.message.encode("utf-8", "replace").decode())
        for a in batch
    )
    assert wp.parse(frames) == wp.Replies(expected)


def test_batch_layout_is_the_documented_one() -> None:
    """docs/protocol.md, "Batches": lengths first (1, 1, 1 and 4 bytes big-endian)."""
    assert wp.encode_job(b"j1", "echo", b"[1]") == b"\x02\x04\x04\x00\x00\x00\x03j1echojson[1]"
    reply = wp.encode_answer_record(wp.Reply(b"j1", "json", b"[1]"))
    assert reply == b"R\x02\x04\x00\x00\x00\x03j1json[1]"
    error = wp.encode_answer_record(wp.Error(b"j2", "failed", "é"))
    assert error == b"E\x02\x06\x00\x00\x00\x02j2failed\xc3\xa9"
    assert wp.encode_answer([wp.Error(b"j2", "failed", "x")][0]) == wp.encode_error(
        b"j2", "failed", "x"
    )


@given(jobs, st.data())
def test_any_truncated_or_mutated_batch_raises_only_protocol_error(
    batch: list[tuple[bytes, str, bytes, str]], data: st.DataObject
) -> None:
    records = [wp.encode_job(j, n, p, e) for j, n, p, e in batch]
    body = b"".join(records)
    boundaries = {sum(len(r) for r in records[:k]): k for k in range(1, len(records))}
    cut = data.draw(st.integers(0, len(body) - 1))
    if cut in boundaries:  # whole records: a shorter, valid batch
        parsed = wp.parse([b"T5W1", b"REQUESTS", b"tcp://x", body[:cut]])
        assert isinstance(parsed, wp.Requests) and len(parsed.jobs) == boundaries[cut]
    else:
        with pytest.raises(ProtocolError):
            wp.parse([b"T5W1", b"REQUESTS", b"tcp://x", body[:cut]])
    where = data.draw(st.integers(0, len(body) - 1))
    mutated = body[:where] + bytes([data.draw(st.integers(0, 255))]) + body[where + 1 :]
    try:
        wp.parse([b"T5W1", b"REQUESTS", b"tcp://x", mutated])
    except ProtocolError:
        pass
    answer_body = wp.encode_answer_record(wp.Reply(b"j", "json", b"1" * 10))
    for end in range(len(answer_body)):
        with pytest.raises(ProtocolError):
            wp.parse([b"T5W1", b"REPLIES", answer_body[:end]])


@pytest.mark.parametrize(
    ("frames", "complaint"),
    [
        ([b"T5W1", b"REQUESTS", b"tcp://x"], "REQUESTS has 3 frames"),
        ([b"T5W1", b"REQUESTS", b"tcp://x", b""], "carries no job"),
        ([b"T5W1", b"REQUESTS", b"tcp://x", b"\x01\x01\x01\xff\xff\xff\xffjnj"], "past the end"),
        ([b"T5W1", b"REQUESTS", b"tcp://x", b"\x00\x01\x01\x00\x00\x00\x00nj"], "empty job id"),
        ([b"T5W1", b"REQUESTS", b"tcp://x", b"\x01\x01\x01\x00\x00\x00\x00 nj"], "invalid job id"),
        ([b"T5W1", b"REPLIES", b"R\x01\x01\x00\x00\x00\x00\x7fj"], "invalid job id"),
        ([b"T5W1", b"REQUESTS", b"\xff", b"\x01\x01\x01\x00\x00\x00\x00jnj"], "not UTF-8"),
        ([b"T5W1", b"REPLIES", b""], "carries no answer"),
        ([b"T5W1", b"REPLIES", b"X\x01\x01\x00\x00\x00\x00jj"], "unknown answer kind"),
        ([b"T5W1", b"REPLIES", b"R\x01\x01\x00\x00\x00\x00j!"], "invalid encoding"),
    ],
)
def test_bad_batches_raise_protocol_error(frames: list[bytes], complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        wp.parse(frames)


def test_a_huge_declared_length_is_refused_without_allocating() -> None:
    body = b"\x01\x01\x01\xff\xff\xff\xff" + b"jnj"  # says 4 GiB of payload follows
    with pytest.raises(ProtocolError, match="past the end"):
        wp.parse([b"T5W1", b"REQUESTS", b"tcp://x", body])
    with pytest.raises(ProtocolError, match="at least one job"):
        wp.encode_requests([], "tcp://x")
    with pytest.raises(ProtocolError, match="at least one answer"):
        wp.encode_replies([])


def test_encode_jobs_is_encode_job_for_each() -> None:
    ids, payloads = [b"a-1", b"a-2", b"a-3"], [b"1", b"", b"[2]"]
    assert wp.encode_jobs(ids, "echo", payloads) == [
        wp.encode_job(j, "echo", p) for j, p in zip(ids, payloads, strict=True)
    ]
    for bad_ids in ([b"a-1", b""], [b"a 1"], [b"x" * 256]):
        with pytest.raises(ProtocolError, match="invalid job id"):
            wp.encode_jobs(bad_ids, "echo", [b"1"] * len(bad_ids))
    with pytest.raises(ProtocolError, match="invalid job name"):
        wp.encode_jobs([b"a"], "no name", [b"1"])


@given(answers)
def test_encode_answers_is_encode_replies_of_each_record(batch: list[wp.Reply | wp.Error]) -> None:
    assert wp.encode_answers(batch) == wp.encode_replies(
        [wp.encode_answer_record(a) for a in batch]
    )


def test_encode_answers_refuses_what_encode_answer_record_refuses() -> None:
    with pytest.raises(ProtocolError, match="at least one answer"):
        wp.encode_answers([])
    with pytest.raises(ProtocolError, match="invalid job id"):
        wp.encode_answers([wp.Reply(b"ok", "json", b"1"), wp.Reply(b"not ok", "json", b"1")])
    with pytest.raises(ProtocolError, match="invalid encoding"):
        wp.encode_answers([wp.Reply(b"j", "no way", b"1")])
    with pytest.raises(ProtocolError, match="invalid error code"):
        wp.encode_answers([wp.Error(b"j", "no way", "x")])


def test_encode_payloads_is_encode_payload_for_each() -> None:
    values = [{"a": 1}, [1, 2], "x", None]
    for encoding in ("json", "msgpack"):
        assert wp.encode_payloads(values, encoding) == [
            wp.encode_payload(v, encoding) for v in values
        ]
    assert wp.encode_payloads(iter([b"a", b"b"]), "raw") == [b"a", b"b"]
    with pytest.raises(wp.EncodingError, match="cannot encode object as JSON"):
        wp.encode_payloads([1, object()], "json")


def test_reply_values_decodes_and_names_only_failures() -> None:
    named: list[bytes] = []

    def describe(job_id: bytes) -> str:
        named.append(job_id)
        return f"job {job_id.decode()}"

    good = [wp.Reply(b"a", "json", b"1"), wp.Reply(b"b", "raw", b"\x00")]
    assert wp.reply_values(good, describe, wp.WorkError) == [1, b"\x00"]
    assert named == []
    bad = [*good, wp.Reply(b"c", "json", b"{"), wp.Error(b"d", "failed", "no")]
    with pytest.raises(wp.WorkError, match="job c: the worker's reply cannot be decoded") as e:
        wp.reply_values(bad, describe, wp.WorkError)
    assert e.value.code == "bad-reply"
    values = wp.reply_values(bad, describe, wp.WorkError, return_exceptions=True)
    assert values[:2] == [1, b"\x00"]
    assert [(v.code, v.job_id) for v in values[2:]] == [("bad-reply", b"c"), ("failed", b"d")]
