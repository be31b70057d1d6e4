"""Small helpers around pyzmq for hot paths.

pyzmq's convenience layer costs more than ZeroMQ itself for small frames:
``send_multipart`` combines ``IntFlag`` members for every frame, and
``recv_multipart`` asks ``getsockopt(RCVMORE)`` after every frame, which converts
the option to a ``SocketOption`` enum member each time (about 1.1 us a call).
These helpers do the same work through the backend socket methods, with plain
ints and ``Frame.more``: 7-frame messages are received in about half the time
(11 -> 5.5 us) and sent in 60% (4.2 -> 2.6 us) on this project's machine.
They are for plain (not asyncio) sockets, or ``Socket.shadow`` twins of them.

:func:`nowait_socket` goes further for one-frame messages: non-blocking reads and
sends straight through libzmq from C (``takefive._zmqcall``), with no ``zmq.Again``.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import zmq
from zmq.backend import Socket as _Backend

__all__ = [
    "CHECK_INTERVAL_MS",
    "DIRECT",
    "ZERO_COPY_SIZE",
    "NowaitSocket",
    "last_endpoint",
    "nowait_socket",
    "recv_frames",
    "send_frames",
    "send_raw",
]

#: RCVTIMEO for asyncio sockets that wait for messages: an asyncio recv on a socket
#: whose context was terminated waits for ever; waking up this often (when idle)
#: lets the next recv see ETERM, so the waiter can close the socket and stop.
CHECK_INTERVAL_MS = 1000

_SNDMORE = int(zmq.SNDMORE)
_NOBLOCK = int(zmq.NOBLOCK)
_send = _Backend.send
_recv = _Backend.recv

#: Messages at least this long are sent zero-copy: below it, copying is cheaper
#: (pyzmq's own advice).
ZERO_COPY_SIZE = 65536

#: ``send_raw(sock, data, flags, copy)``: pyzmq's backend send, for a hot path that
#: has its arguments at hand (the zero-copy send of a large message, say).
send_raw = cast(Callable[["zmq.Socket[Any]", bytes, int, bool], object], _send)


def send_frames(sock: zmq.Socket[Any], frames: Sequence[bytes], flags: int = 0) -> None:
    """``sock.send_multipart(frames, flags)``, faster for small frames.

    A multipart message is atomic in ZeroMQ: if the first frame goes out, so do the
    others, so ``zmq.Again`` (with ``NOBLOCK``) can only come from the first one.
    """
    flags = int(flags)
    more = flags | _SNDMORE
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, more if i < last else flags)


def recv_frames(sock: zmq.Socket[Any], flags: int = 0) -> list[bytes]:
    """``sock.recv_multipart(flags)``, faster for small frames.

    ``flags`` (``zmq.NOBLOCK``) applies to the first frame; the others of a
    multipart message are there as soon as the first one is (atomic delivery).
    """
    frame = _recv(sock, int(flags), False)
    parts = [frame.bytes]
    while frame.more:
        frame = _recv(sock, 0, False)
        parts.append(frame.bytes)
    return parts


class NowaitSocket(Protocol):
    """Non-blocking reads and sends of one-frame messages on one socket (see
    :func:`nowait_socket`)."""

    @property
    def owner(self) -> zmq.Socket[Any]: ...

    @property
    def attached(self) -> bool:
        """False once :meth:`detach` was called."""

    def recv(self) -> bytes | None:
        """The next frame, or None when none is waiting; never raises ``zmq.Again``."""

    def send(self, data: bytes) -> None:
        """``data`` as one frame, copied; ``zmq.Again`` if it cannot go now."""

    def detach(self) -> None:
        """Before the owner is closed: every later call raises ``ZMQError(ENOTSOCK)``."""


class _PyNowait:
    """:class:`NowaitSocket` through pyzmq, when the C version is not there.

    pyzmq says "empty" by raising ``zmq.Again`` (about 25,000 CPU instructions); a
    ``zmq_poll`` with timeout 0 costs about 2,500. A reader that drains a socket ends
    each run of reads on an empty one: after a short run (fewer than
    :data:`POLL_BELOW` frames, as one request at a time), every read but the first of
    the next run asks ``zmq_poll`` first; after a long one it reads until Again.
    """

    __slots__ = ("attached", "owner", "poll", "poll_items", "run")

    def __init__(self, owner: zmq.Socket[Any]) -> None:
        self.owner = owner
        self.attached = True
        self.poll = False  # ask zmq_poll before reading (the last run was short)
        self.run = 0  # frames read since the socket was last found empty
        self.poll_items = [(owner, zmq.POLLIN)]

    def recv(self) -> bytes | None:
        if not self.attached:
            raise zmq.ZMQError(errno.ENOTSOCK)
        if self.poll and self.run and not zmq.zmq_poll(self.poll_items, 0):
            self._empty()
            return None
        try:
            frame: bytes = _recv(self.owner, _NOBLOCK, True)
        except zmq.Again:
            self._empty()
            return None
        self.run += 1
        return frame

    def _empty(self) -> None:
        self.poll = self.run < POLL_BELOW
        self.run = 0

    def send(self, data: bytes) -> None:
        if not self.attached:
            raise zmq.ZMQError(errno.ENOTSOCK)
        _send(self.owner, data, _NOBLOCK, True)

    def detach(self) -> None:
        self.attached = False


#: See :class:`_PyNowait`: behind an HTTP front end at 50 connections a run is about
#: 12 frames, at low load one.
POLL_BELOW = 8


_LIBZMQ_FUNCTIONS = (
    "zmq_msg_init",
    "zmq_msg_recv",
    "zmq_msg_data",
    "zmq_msg_size",
    "zmq_msg_close",
    "zmq_send",
    "zmq_errno",
)


def _error_of(code: int) -> BaseException:
    """The exception pyzmq raises for a libzmq errno."""
    if code == errno.EAGAIN:
        return zmq.Again(code)
    if code == zmq.ETERM:
        return zmq.ContextTerminated(code)
    return zmq.ZMQError(code)


def _libzmq_of_pyzmq() -> Any:
    """The libzmq pyzmq's backend calls, as a ctypes library; None if not found.

    An extension module's undefined symbols resolve in the global scope first (the
    program, then libraries loaded with RTLD_GLOBAL), then in the libraries it was
    linked with; ``dlsym`` on the backend's own handle searches only the latter. So a
    libzmq in the global scope is the one pyzmq uses when there is one.
    """
    from zmq.backend.cython import _zmq as backend

    for lib in (ctypes.CDLL(None), ctypes.CDLL(backend.__file__)):
        if hasattr(lib, "zmq_msg_recv"):
            return lib
    return None


def _bind_direct() -> Callable[[zmq.Socket[Any]], NowaitSocket] | None:
    """``takefive._zmqcall.Socket`` bound to the libzmq pyzmq itself calls, or None.

    Every function is taken from the one library pyzmq resolves its calls to (see
    :func:`_libzmq_of_pyzmq`): a wheel's bundled libzmq and a system one are both
    found, and that library's own ``zmq_version`` must match pyzmq's. None (and
    pyzmq's calls) when the extension is not built, TAKEFIVE_NO_EXTENSIONS is set, the
    backend is not the Cython one (PyPy) or libzmq is older than 4.1.
    """
    if os.environ.get("TAKEFIVE_NO_EXTENSIONS") or zmq.zmq_version_info() < (4, 1):
        return None
    try:
        from takefive import _zmqcall

        lib = _libzmq_of_pyzmq()
        if lib is None:
            return None
        found = [ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in _LIBZMQ_FUNCTIONS]
        version = [ctypes.c_int(), ctypes.c_int(), ctypes.c_int()]
        lib.zmq_version(*(ctypes.byref(v) for v in version))
    except (ImportError, OSError, AttributeError):
        return None
    if tuple(v.value for v in version) != zmq.zmq_version_info() or not all(found):
        return None
    init, recv, data, size, close, send, errno_ = (int(a or 0) for a in found)
    _zmqcall.bind(init, recv, data, size, close, send, errno_, _error_of)
    return cast(Callable[[zmq.Socket[Any]], NowaitSocket], _zmqcall.Socket)


_direct = _bind_direct()

#: True when :func:`nowait_socket` calls libzmq straight from C (``takefive._zmqcall``).
DIRECT = _direct is not None


def nowait_socket(sock: zmq.Socket[Any]) -> NowaitSocket:
    """Non-blocking ``recv()`` (None when empty) and ``send()`` on ``sock``, for hot paths.

    Reading an empty socket with pyzmq raises ``zmq.Again``, which costs about 25,000 CPU
    instructions (an exception built through Cython frames): more than serving a
    request. The C version returns None instead and costs a C call per frame. Call
    ``detach()`` before ``sock`` is closed.
    """
    return (_direct or _PyNowait)(sock)


def last_endpoint(sock: zmq.Socket[Any]) -> str:
    """The endpoint ``sock`` last bound, with the port chosen for ``tcp://host:*``."""
    raw = sock.getsockopt(zmq.LAST_ENDPOINT)
    return raw.decode() if isinstance(raw, bytes) else str(raw)
