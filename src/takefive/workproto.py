"""The takefive worker protocol ``T5W1``, as pure functions (no I/O).

Every message is a ZeroMQ multipart message whose first two frames are the
protocol header ``b"T5W1"`` and the message type (ASCII). The full
specification, for implementers in any language, is ``docs/protocol.md``;
this module is the reference implementation of it.

====================  =================================================================
type                  frames after ``T5W1``, ``TYPE``
====================  =================================================================
``READY``             heartbeat-ms, worker-info, service-name [, service-name ...]
``HEARTBEAT``         (none)
``DISCONNECT``        (none)
``REQUEST``           job-id, name, encoding, payload, reply-to
``REPLY``             job-id, encoding, payload
``ERROR``             job-id, code, message (UTF-8 text)
``EVENT``             encoding, payload (preceded by the topic frame on PUB/SUB)
====================  =================================================================

Payload encodings are named by a tag frame: ``json`` (UTF-8 JSON, always
available), ``msgpack`` (needs the optional ``msgpack`` package) and ``raw``
(bytes passed through untouched).

Every decoder raises :class:`ProtocolError` with a message saying what is
wrong; nothing here touches a socket.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import orjson

from takefive.wire import ProtocolError

__all__ = [
    "DISCONNECT",
    "ENCODINGS",
    "ERROR",
    "ERROR_CODES",
    "EVENT",
    "HEADER",
    "HEARTBEAT",
    "MAX_NAME_LENGTH",
    "READY",
    "REPLIES",
    "REPLY",
    "REQUEST",
    "REQUESTS",
    "Disconnect",
    "EncodingError",
    "Error",
    "Event",
    "Heartbeat",
    "ProtocolError",
    "Ready",
    "Replies",
    "Reply",
    "Request",
    "Requests",
    "WorkError",
    "WorkMessage",
    "check_name",
    "decode_event",
    "decode_payload",
    "encode_answer",
    "encode_answer_record",
    "encode_answers",
    "encode_disconnect",
    "encode_error",
    "encode_event",
    "encode_heartbeat",
    "encode_job",
    "encode_jobs",
    "encode_payload",
    "encode_payloads",
    "encode_ready",
    "encode_replies",
    "encode_reply",
    "encode_request",
    "encode_requests",
    "parse",
    "reply_value",
    "reply_values",
]

#: First frame of every message; the digit is the protocol version.
HEADER: Final = b"T5W1"

READY: Final = b"READY"
HEARTBEAT: Final = b"HEARTBEAT"
DISCONNECT: Final = b"DISCONNECT"
REQUEST: Final = b"REQUEST"
REPLY: Final = b"REPLY"
ERROR: Final = b"ERROR"
EVENT: Final = b"EVENT"
REQUESTS: Final = b"REQUESTS"
REPLIES: Final = b"REPLIES"

# Record heads in REQUESTS / REPLIES bodies (docs/protocol.md, "Batches"): three
# one-byte lengths (or a kind byte and two lengths) and a 4-byte big-endian length.
_JOB_HEAD = struct.Struct(">BBBI")
_ANSWER_HEAD = struct.Struct(">cBBI")
_MAX_DATA_LENGTH = 2**32 - 1

#: Payload encodings this implementation knows ("msgpack" only if installed).
ENCODINGS: Final = ("json", "msgpack", "raw")

#: Longest service/job name, job id or encoding tag, in bytes.
MAX_NAME_LENGTH: Final = 255
_NAME_RE = re.compile(rb"[A-Za-z0-9_.:/-]+\Z")
_JOB_ID_RE = re.compile(rb"[\x21-\x7e]+\Z")

#: Error codes a worker or dispatcher puts in an ``ERROR`` message.
ERROR_CODES: Final = (
    "failed",  # the function raised; message is the exception text
    "unknown",  # the worker has no function by that name
    "bad-request",  # the request could not be decoded (encoding, payload)
)


class EncodingError(ProtocolError):
    """A payload cannot be encoded or decoded with the encoding named."""


class WorkError(Exception):
    """A job or service call did not produce a result; ``code`` says why.

    ``code`` is an ``ERROR`` code from a worker (``failed``, ``unknown``,
    ``bad-request``) or one of the caller's own: ``timeout``, ``worker-lost``,
    ``closed``, ``broken``, ``bad-reply``.
    """

    def __init__(self, message: str, *, code: str = "failed", job_id: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.job_id = job_id


# --------------------------------------------------------------------------- payloads


def _msgpack() -> Any:
    try:
        import msgpack  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - depends on the environment
        raise EncodingError(
            "the msgpack encoding needs the msgpack package: pip install 'takefive[msgpack]'"
        ) from None
    return msgpack


def encode_payload(value: Any, encoding: str = "json") -> bytes:
    """Encode ``value`` with ``encoding`` (``json``, ``msgpack`` or ``raw``)."""
    if encoding == "json":
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise EncodingError(f"cannot encode {type(value).__name__} as JSON: {exc}") from None
    if encoding == "raw":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise EncodingError(f"the raw encoding takes bytes, not {type(value).__name__}")
        return bytes(value)
    if encoding == "msgpack":
        try:
            data: bytes = _msgpack().packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodingError(f"cannot encode {type(value).__name__} as msgpack: {exc}") from None
        return data
    raise EncodingError(f"unknown payload encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


def encode_payloads(values: Iterable[Any], encoding: str = "json") -> list[bytes]:
    """:func:`encode_payload` for each of ``values`` (the same errors), faster for JSON."""
    values = list(values)
    if encoding == "json":
        dumps = orjson.dumps
        try:
            return [dumps(value) for value in values]
        except TypeError:
            pass  # say which one, below
    return [encode_payload(value, encoding) for value in values]


def decode_payload(data: bytes, encoding: str = "json") -> Any:
    """Decode ``data`` with ``encoding``; :class:`EncodingError` if it is not valid."""
    if encoding == "json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise EncodingError(f"payload is not valid JSON: {exc}") from None
    if encoding == "raw":
        return bytes(data)
    if encoding == "msgpack":
        msgpack = _msgpack()
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated exception types
            raise EncodingError(f"payload is not valid msgpack: {exc}") from None
    raise EncodingError(f"unknown payload encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


# --------------------------------------------------------------------------- messages


@dataclass(slots=True, frozen=True)
class Ready:
    """A worker is ready; it serves ``services`` and heartbeats every ``heartbeat_ms``."""

    heartbeat_ms: int
    info: str
    services: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class Heartbeat:
    """Liveness signal, in either direction."""


@dataclass(slots=True, frozen=True)
class Disconnect:
    """The sender is going away (or, from a dispatcher: "I do not know you, say READY")."""


class Request(NamedTuple):
    """Run ``name`` on ``payload``; answer on ``reply_to`` (jobs) or the same socket."""

    job_id: bytes
    name: str
    encoding: str
    payload: bytes
    reply_to: str = ""


class Reply(NamedTuple):
    """The result of job ``job_id``."""

    job_id: bytes
    encoding: str
    payload: bytes


class Error(NamedTuple):
    """Job ``job_id`` failed; ``code`` is a name, one of :data:`ERROR_CODES` from takefive."""

    job_id: bytes
    code: str
    message: str


class Event(NamedTuple):
    """A published event."""

    topic: str
    encoding: str
    payload: bytes


class Requests(NamedTuple):
    """Several jobs in one message (jobs only); each job's ``reply_to`` is the batch's."""

    reply_to: str
    jobs: tuple[Request, ...]


class Replies(NamedTuple):
    """Several answers (``Reply`` or ``Error``) in one message (jobs only)."""

    answers: tuple[Reply | Error, ...]


WorkMessage = Ready | Heartbeat | Disconnect | Request | Reply | Error | Requests | Replies


# Names checked already (job names, encodings, codes repeat): str -> bytes, and
# bytes -> str. Bounded, so that a peer sending endless new names cannot grow them.
_NAMES_OUT: dict[str, bytes] = {}
_NAMES_IN: dict[bytes, str] = {}
_MAX_REMEMBERED = 1024


def check_name(name: str, what: str = "name") -> bytes:
    """Return ``name`` as bytes; :class:`ProtocolError` if it is not a valid name."""
    raw = _NAMES_OUT.get(name)
    if raw is not None:
        return raw
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or len(raw) > MAX_NAME_LENGTH or not _NAME_RE.match(raw):
        raise ProtocolError(
            f"invalid {what} {name!r}: 1-{MAX_NAME_LENGTH} characters from A-Z a-z 0-9 _ . : / -"
        )
    if len(_NAMES_OUT) < _MAX_REMEMBERED:
        _NAMES_OUT[name] = raw
    return raw


def _check_job_id(job_id: bytes) -> bytes:
    if not job_id or len(job_id) > MAX_NAME_LENGTH or not _JOB_ID_RE.match(job_id):
        raise ProtocolError(
            f"invalid job id {job_id[:40]!r}: 1-{MAX_NAME_LENGTH} printable ASCII bytes"
        )
    return job_id


def _check_job_ids(job_ids: Sequence[bytes]) -> None:
    """:func:`_check_job_id` for many ids, with one regular expression for the lot."""
    lengths = list(map(len, job_ids))
    if lengths and 0 < min(lengths) and max(lengths) <= MAX_NAME_LENGTH:
        if _JOB_ID_RE.match(b"".join(job_ids)):
            return
    for job_id in job_ids:  # say which one
        _check_job_id(job_id)


def _check_parsed_ids(job_ids: list[bytes]) -> None:
    """:func:`_check_job_ids` for the ids of a parsed batch, 1-255 bytes long by
    construction: only the characters are left to check (a hot path)."""
    if not _JOB_ID_RE.match(b"".join(job_ids)):
        for job_id in job_ids:  # say which one
            _check_job_id(job_id)


def encode_ready(services: Sequence[str], heartbeat_ms: int, info: str = "") -> list[bytes]:
    if not services:
        raise ProtocolError("READY must name at least one service")
    if heartbeat_ms <= 0:
        raise ProtocolError(f"heartbeat interval must be positive, not {heartbeat_ms} ms")
    return [
        HEADER,
        READY,
        str(int(heartbeat_ms)).encode(),
        info.encode("utf-8", "replace"),
        *(check_name(s, "service name") for s in services),
    ]


def encode_heartbeat() -> list[bytes]:
    return [HEADER, HEARTBEAT]


def encode_disconnect() -> list[bytes]:
    return [HEADER, DISCONNECT]


def encode_request(
    job_id: bytes, name: str, payload: bytes, encoding: str = "json", reply_to: str = ""
) -> list[bytes]:
    return [
        HEADER,
        REQUEST,
        _check_job_id(job_id),
        check_name(name, "job name"),
        check_name(encoding, "encoding"),
        payload,
        reply_to.encode(),
    ]


def encode_reply(job_id: bytes, payload: bytes, encoding: str = "json") -> list[bytes]:
    return [HEADER, REPLY, _check_job_id(job_id), check_name(encoding, "encoding"), payload]


def encode_error(job_id: bytes, code: str, message: str) -> list[bytes]:
    return [
        HEADER,
        ERROR,
        _check_job_id(job_id),
        check_name(code, "error code"),
        message.encode("utf-8", "replace"),
    ]


def encode_answer(answer: Reply | Error) -> list[bytes]:
    """``answer`` as a ``REPLY`` or ``ERROR`` message."""
    if isinstance(answer, Reply):
        return encode_reply(answer.job_id, answer.payload, answer.encoding)
    return encode_error(answer.job_id, answer.code, answer.message)


def encode_job(job_id: bytes, name: str, payload: bytes, encoding: str = "json") -> bytes:
    """One job record for the body of a ``REQUESTS`` message."""
    jid = _check_job_id(job_id)
    raw_name = check_name(name, "job name")
    raw_encoding = check_name(encoding, "encoding")
    if len(payload) > _MAX_DATA_LENGTH:
        raise ProtocolError(f"a payload in a batch is at most {_MAX_DATA_LENGTH} bytes")
    head = _JOB_HEAD.pack(len(jid), len(raw_name), len(raw_encoding), len(payload))
    return b"".join((head, jid, raw_name, raw_encoding, payload))


def encode_jobs(
    job_ids: Sequence[bytes], name: str, payloads: Sequence[bytes], encoding: str = "json"
) -> list[bytes]:
    """Job records for many jobs of one name: :func:`encode_job` for each, checked at once."""
    _check_job_ids(job_ids)
    raw_name = check_name(name, "job name")
    raw_encoding = check_name(encoding, "encoding")
    pack, name_len, enc_len = _JOB_HEAD.pack, len(raw_name), len(raw_encoding)
    records = []
    for job_id, payload in zip(job_ids, payloads, strict=True):
        if len(payload) > _MAX_DATA_LENGTH:
            raise ProtocolError(f"a payload in a batch is at most {_MAX_DATA_LENGTH} bytes")
        head = pack(len(job_id), name_len, enc_len, len(payload))
        records.append(b"".join((head, job_id, raw_name, raw_encoding, payload)))
    return records


def encode_requests(records: Sequence[bytes], reply_to: str) -> list[bytes]:
    """A ``REQUESTS`` message from records made by :func:`encode_job`."""
    if not records:
        raise ProtocolError("REQUESTS must carry at least one job")
    return [HEADER, REQUESTS, reply_to.encode(), b"".join(records)]


def encode_answer_record(answer: Reply | Error) -> bytes:
    """One answer record for the body of a ``REPLIES`` message."""
    return encode_answers([answer])[2]


def encode_answers(answers: Sequence[Reply | Error]) -> list[bytes]:
    """A ``REPLIES`` message carrying ``answers`` (the one place answer records are
    made; the job ids are checked at once)."""
    if not answers:
        raise ProtocolError("REPLIES must carry at least one answer")
    _check_job_ids([answer.job_id for answer in answers])
    pack, names = _ANSWER_HEAD.pack, _NAMES_OUT
    parts: list[bytes] = []
    for answer in answers:
        job_id, tag = answer[0], answer[1]
        data: bytes
        if type(answer) is Reply:
            kind, data = b"R", answer.payload
            raw_tag = names.get(tag) or check_name(tag, "encoding")
        else:
            kind, data = b"E", str(answer[2]).encode("utf-8", "replace")
            raw_tag = names.get(tag) or check_name(tag, "error code")
        if len(data) > _MAX_DATA_LENGTH:
            raise ProtocolError(f"a payload in a batch is at most {_MAX_DATA_LENGTH} bytes")
        parts += (pack(kind, len(job_id), len(raw_tag), len(data)), job_id, raw_tag, data)
    return [HEADER, REPLIES, b"".join(parts)]


def encode_replies(records: Sequence[bytes]) -> list[bytes]:
    """A ``REPLIES`` message from records made by :func:`encode_answer_record`."""
    if not records:
        raise ProtocolError("REPLIES must carry at least one answer")
    return [HEADER, REPLIES, b"".join(records)]


def encode_event(topic: str, payload: bytes, encoding: str = "json") -> list[bytes]:
    """An event for a PUB socket; the topic frame comes first so SUB filters on it."""
    if "\x00" in topic:
        raise ProtocolError("an event topic cannot contain NUL")
    return [topic.encode("utf-8"), HEADER, EVENT, check_name(encoding, "encoding"), payload]


def _text(frame: bytes, what: str) -> str:
    try:
        return bytes(frame).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8: {bytes(frame)[:40]!r}") from None


def _name(frame: bytes, what: str) -> str:
    raw = bytes(frame)
    name = _NAMES_IN.get(raw)
    if name is not None:
        return name
    if not raw or len(raw) > MAX_NAME_LENGTH or not _NAME_RE.match(raw):
        raise ProtocolError(f"invalid {what} {raw[:40]!r}")
    name = raw.decode("ascii")
    if len(_NAMES_IN) < _MAX_REMEMBERED:
        _NAMES_IN[raw] = name
    return name


def _expect(frames: Sequence[bytes], count: int, kind: str) -> None:
    if len(frames) != count:
        raise ProtocolError(f"{kind} has {len(frames)} frames, expected {count}")


# tuple.__new__ builds a NamedTuple without the Python-level __new__ that calling the
# class runs: about 2,000 fewer instructions per message object in the parsers.
_new = tuple.__new__


def _records(
    body: bytes, head: struct.Struct, skip: int, kind: str, noun: str
) -> list[tuple[tuple[Any, ...], int, int]]:
    """Split the body of a ``kind`` message into its records.

    Each record is ``head``, whose fields after the first ``skip`` are the lengths
    of the fields that follow it (the job id's first). Returns ``(head fields, where
    the fields start, where the record ends)`` for each; a body that is empty, cut
    short or running past its end, or an empty job id, raises :class:`ProtocolError`.
    """
    end = len(body)
    if not end:
        raise ProtocolError(f"{kind} carries no {noun}")
    unpack, size = head.unpack_from, head.size
    records = []
    pos = 0
    while pos < end:
        if end - pos < size:
            raise ProtocolError(f"{kind}: truncated {noun} record at byte {pos}")
        fields = unpack(body, pos)
        lengths = fields[skip:]
        if not lengths[0]:
            raise ProtocolError(f"{kind}: an empty job id at byte {pos}")
        start = pos + size
        stop = start + sum(lengths)
        if stop > end:
            raise ProtocolError(f"{kind}: a {noun} record runs past the end ({stop} > {end})")
        records.append((fields, start, stop))
        pos = stop
    return records


def _parse_jobs(body: bytes, reply_to: str) -> tuple[Request, ...]:
    jobs: list[Request] = []
    names = _NAMES_IN
    for (id_len, name_len, enc_len, _), at_id, stop in _records(
        body, _JOB_HEAD, 0, "REQUESTS", "job"
    ):
        at_name = at_id + id_len
        at_enc = at_name + name_len
        at_data = at_enc + enc_len
        raw = body[at_name:at_enc]
        name = names.get(raw) or _name(raw, "job name")
        raw = body[at_enc:at_data]
        encoding = names.get(raw) or _name(raw, "encoding")
        job = (body[at_id:at_name], name, encoding, body[at_data:stop], reply_to)
        jobs.append(_new(Request, job))
    _check_parsed_ids([job.job_id for job in jobs])
    return tuple(jobs)


def _parse_answers(body: bytes) -> tuple[Reply | Error, ...]:
    answers: list[Reply | Error] = []
    names = _NAMES_IN
    records = _records(body, _ANSWER_HEAD, 1, "REPLIES", "answer")
    for (kind, id_len, tag_len, _), at_id, stop in records:
        at_tag = at_id + id_len
        at_data = at_tag + tag_len
        job_id = body[at_id:at_tag]
        raw = body[at_tag:at_data]
        if kind == b"R":
            encoding = names.get(raw) or _name(raw, "encoding")
            answers.append(_new(Reply, (job_id, encoding, body[at_data:stop])))
        elif kind == b"E":
            code = names.get(raw) or _name(raw, "error code")
            message = body[at_data:stop].decode("utf-8", "replace")
            answers.append(_new(Error, (job_id, code, message)))
        else:
            raise ProtocolError(f"REPLIES: unknown answer kind {kind!r}")
    _check_parsed_ids([answer.job_id for answer in answers])
    return tuple(answers)


def parse(frames: Sequence[bytes]) -> WorkMessage:
    """Decode one worker-protocol message (everything but ``EVENT``).

    ``frames`` starts at the ``T5W1`` header: a ROUTER caller strips the
    identity frame first.
    """
    if len(frames) < 2:
        raise ProtocolError(f"message has {len(frames)} frame(s); expected T5W1 and a type")
    header, kind = bytes(frames[0]), bytes(frames[1])
    if header != HEADER:
        raise ProtocolError(f"bad protocol header {header[:16]!r}, expected {HEADER!r}")
    if kind == REPLY:
        _expect(frames, 5, "REPLY")
        return Reply(
            _check_job_id(bytes(frames[2])), _name(frames[3], "encoding"), bytes(frames[4])
        )
    if kind == REQUEST:
        _expect(frames, 7, "REQUEST")
        return Request(
            _check_job_id(bytes(frames[2])),
            _name(frames[3], "job name"),
            _name(frames[4], "encoding"),
            bytes(frames[5]),
            _text(frames[6], "reply-to"),
        )
    if kind == REPLIES:
        _expect(frames, 3, "REPLIES")
        return Replies(_parse_answers(bytes(frames[2])))
    if kind == REQUESTS:
        _expect(frames, 4, "REQUESTS")
        reply_to = _text(frames[2], "reply-to")
        return Requests(reply_to, _parse_jobs(bytes(frames[3]), reply_to))
    if kind == HEARTBEAT:
        _expect(frames, 2, "HEARTBEAT")
        return Heartbeat()
    if kind == ERROR:
        _expect(frames, 5, "ERROR")
        message = bytes(frames[4]).decode("utf-8", "replace")
        return Error(_check_job_id(bytes(frames[2])), _name(frames[3], "error code"), message)
    if kind == READY:
        if len(frames) < 5:
            raise ProtocolError(f"READY has {len(frames)} frames, expected at least 5")
        raw_ms = bytes(frames[2])
        if not raw_ms.isdigit() or len(raw_ms) > 9 or int(raw_ms) == 0:
            raise ProtocolError(f"READY heartbeat {raw_ms[:20]!r} is not a positive integer")
        services = tuple(_name(f, "service name") for f in frames[4:])
        return Ready(int(raw_ms), bytes(frames[3]).decode("utf-8", "replace"), services)
    if kind == DISCONNECT:
        _expect(frames, 2, "DISCONNECT")
        return Disconnect()
    raise ProtocolError(f"unknown message type {kind[:20]!r}")


def reply_value(
    answer: Reply | Error,
    what: str | Callable[..., str],
    error: type[WorkError],
    *what_args: Any,
) -> Any:
    """What a caller makes of a worker's answer: the decoded ``REPLY`` payload.

    An ``ERROR`` raises ``error`` with the worker's code and message; a ``REPLY``
    whose payload does not decode raises it with code ``bad-reply``. ``what``
    names the call in the message (``"job 3f9a11c2-1a (thumbnail)"``), or is a
    function making that name of ``what_args``, called only for an error.
    """
    if isinstance(answer, Error):
        what = what if isinstance(what, str) else what(*what_args)
        raise error(
            f"{what} failed on the worker [{answer.code}]: {answer.message}",
            code=answer.code,
            job_id=answer.job_id,
        )
    try:
        return decode_payload(answer.payload, answer.encoding)
    except ProtocolError as exc:
        what = what if isinstance(what, str) else what(*what_args)
        raise error(
            f"{what}: the worker's reply cannot be decoded: {exc}",
            code="bad-reply",
            job_id=answer.job_id,
        ) from None


def reply_values(
    answers: Iterable[Reply | Error],
    describe: Callable[[bytes], str],
    error: type[WorkError],
    *,
    return_exceptions: bool = False,
) -> list[Any]:
    """:func:`reply_value` for many answers; ``describe(job_id)`` names a call, for errors.

    The first failed answer raises, or with ``return_exceptions`` stands in its place.
    """
    values: list[Any] = []
    for answer in answers:
        if type(answer) is Reply:
            try:
                values.append(decode_payload(answer.payload, answer.encoding))
                continue
            except ProtocolError:
                pass  # reply_value says it
        try:
            values.append(reply_value(answer, describe, error, answer.job_id))
        except WorkError as exc:
            if not return_exceptions:
                raise
            values.append(exc)
    return values


def decode_event(frames: Sequence[bytes]) -> Event:
    """Decode ``[topic, T5W1, EVENT, encoding, payload]`` from a SUB socket."""
    _expect(frames, 5, "EVENT")
    if bytes(frames[1]) != HEADER:
        raise ProtocolError(f"bad protocol header {bytes(frames[1])[:16]!r}, expected {HEADER!r}")
    if bytes(frames[2]) != EVENT:
        raise ProtocolError(f"expected an EVENT, got {bytes(frames[2])[:20]!r}")
    return Event(_text(frames[0], "topic"), _name(frames[3], "encoding"), bytes(frames[4]))
