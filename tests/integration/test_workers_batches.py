"""Batches of jobs (REQUESTS / REPLIES, docs/protocol.md) against the Python, C and Ruby workers.

The test is the caller, with its own raw sockets, so each case sends exactly the
frames it means to and accepts every answer grouping the protocol allows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import zmq

from takefive import workproto as wp

from .workerprocs import LANGUAGES, WorkerProcs, worker_procs_fixture  # noqa: F401

pytestmark = pytest.mark.parametrize("language", LANGUAGES)


class Caller:
    """A PUSH for jobs and a PULL for results, bound on free loopback ports."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.push = self.ctx.socket(zmq.PUSH)
        self.pull = self.ctx.socket(zmq.PULL)
        for sock in (self.push, self.pull):
            sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = f"tcp://127.0.0.1:{self.push.bind_to_random_port('tcp://127.0.0.1')}"
        self.reply_to = f"tcp://127.0.0.1:{self.pull.bind_to_random_port('tcp://127.0.0.1')}"

    def answers(self, count: int, timeout: float = 20) -> Iterator[wp.Reply | wp.Error]:
        """The next ``count`` answers, whichever messages carry them."""
        deadline = time.monotonic() + timeout
        got = 0
        while got < count:
            left = deadline - time.monotonic()
            assert left > 0 and self.pull.poll(int(left * 1000)), f"{got} of {count} answers"
            msg = wp.parse(self.pull.recv_multipart())
            batch = msg.answers if isinstance(msg, wp.Replies) else (msg,)
            for answer in batch:
                assert isinstance(answer, wp.Reply | wp.Error), answer
                got += 1
                yield answer

    def connected(self) -> None:
        """Single REQUESTs until one is answered: the worker is connected."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:  # no worker connected yet: nowhere to send
                self.push.send_multipart(
                    wp.encode_request(b"probe", "pid", b"null", "json", self.reply_to), zmq.NOBLOCK
                )
            except zmq.Again:
                pass
            if self.pull.poll(200):
                break
        else:
            raise AssertionError("the worker never answered a probe")
        time.sleep(0.3)  # then drain the answers to the other probes
        while self.pull.poll(100):
            self.pull.recv_multipart()

    def close(self) -> None:
        self.ctx.destroy(0)


@pytest.fixture
def caller() -> Iterator[Caller]:
    c = Caller()
    yield c
    c.close()


def _decoded(answer: wp.Reply | wp.Error) -> object:
    if isinstance(answer, wp.Error):
        return (answer.code, answer.message)
    return wp.decode_payload(answer.payload, answer.encoding)


def test_every_job_of_a_batch_is_answered_once(
    language: str, worker_procs: WorkerProcs, caller: Caller
) -> None:
    worker_procs.start(language, connect=(caller.endpoint,))
    caller.connected()
    jobs = [
        (b"j-json", "echo", {"a": [1, "é", None]}, "json"),
        (b"j-raw", "echo", b"\x00\xff", "raw"),
        (b"j-msgpack", "echo", {"b": b"\x01"}, "msgpack"),
        (b"j-sleep", "sleep", 0.05, "json"),
        (b"j-fail", "fail", 1, "json"),
        (b"j-bad-arg", "sleep", "soon", "json"),
        (b"j-unknown", "nope", 1, "json"),
        (b"j-pid", "pid", None, "json"),
    ]
    records = [wp.encode_job(j, n, wp.encode_payload(v, e), e) for j, n, v, e in jobs]
    caller.push.send_multipart(wp.encode_requests(records, caller.reply_to))
    seen: dict[bytes, object] = {}
    for answer in caller.answers(len(jobs)):
        assert answer.job_id not in seen, f"{answer.job_id!r} answered twice"
        seen[answer.job_id] = _decoded(answer)
    assert seen[b"j-json"] == {"a": [1, "é", None]}
    assert seen[b"j-raw"] == b"\x00\xff"
    assert seen[b"j-msgpack"] == {"b": b"\x01"}
    assert seen[b"j-sleep"] == 0.05
    code, message = seen[b"j-fail"]  # type: ignore[misc]
    assert code == "failed" and "failed on purpose" in message
    code, message = seen[b"j-bad-arg"]  # type: ignore[misc]
    assert code == "failed" and "non-negative number" in message
    code, message = seen[b"j-unknown"]  # type: ignore[misc]
    assert code == "unknown" and "no function 'nope' here" in message
    assert isinstance(seen[b"j-pid"], int)
    assert not caller.pull.poll(300), "an answer too many"


def test_a_large_batch_is_answered_in_full(
    language: str, worker_procs: WorkerProcs, caller: Caller
) -> None:
    worker_procs.start(language, connect=(caller.endpoint,))
    caller.connected()
    payloads = {f"big-{i}".encode(): os.urandom(i % 300) for i in range(500)}
    records = [wp.encode_job(j, "echo", p, "raw") for j, p in payloads.items()]
    for start in range(0, len(records), 100):  # five messages of 100 jobs
        batch = records[start : start + 100]
        caller.push.send_multipart(wp.encode_requests(batch, caller.reply_to))
    seen = {a.job_id: _decoded(a) for a in caller.answers(len(payloads))}
    assert seen == payloads


def test_a_malformed_batch_is_dropped_and_the_worker_goes_on(
    language: str, worker_procs: WorkerProcs, caller: Caller
) -> None:
    worker_procs.start(language, connect=(caller.endpoint,))
    caller.connected()
    good = wp.encode_job(b"lost", "echo", b"1")
    for body in (
        good[:-1],  # truncated: the record runs past the end
        good + b"\x01",  # a stray byte after the last record
        b"\x00" + good[1:],  # an empty job id
        good[:7] + b"j" + b"!" * 4 + good[12:],  # an invalid name
        b"",  # no job at all
    ):
        caller.push.send_multipart([wp.HEADER, wp.REQUESTS, caller.reply_to.encode(), body])
    caller.push.send_multipart(
        wp.encode_requests([wp.encode_job(b"after", "echo", b"2")], caller.reply_to)
    )
    answers = list(caller.answers(1))
    assert [(a.job_id, _decoded(a)) for a in answers] == [(b"after", 2)]
    assert not caller.pull.poll(300), "a malformed batch was answered"
