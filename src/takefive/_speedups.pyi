# Types of the optional C extension (src/takefive/_speedups.c).
from typing import Any, TypeVar

_T = TypeVar("_T", bound=tuple[object, ...])

def parse_common(
    data: bytes,
    senders: dict[bytes, str],
    known_headers: dict[bytes, object],
    message_type: type[_T],
) -> _T | None: ...
def encode_reply(uuid: bytes, conn_id: object, data: bytes) -> bytes | None: ...
def encode_sized_reply(
    senders: dict[str | bytes, bytes], sender: str, conn_id: object, head: bytes, body: bytes
) -> bytes | None: ...
def setup_request(
    cls: type, message_type: type, upper_methods: frozenset[str], missing: object
) -> None: ...
def request_slots() -> tuple[str, ...]: ...
def request_from(message: object) -> Any: ...
def setup_response(
    cls: type,
    prefixes: dict[Any, bytes | None],
    senders: dict[str | bytes, bytes],
    framed_types: set[type],
    fallback: Any,
) -> None: ...
def response_frame(sender: str, conn_id: object, response: object) -> bytes | None: ...
def reply_frame(request: Any, response: Any) -> bytes | None: ...
def setup_parse(
    senders: dict[bytes, str],
    known_headers: dict[bytes, Any],
    message_type: type,
    fallback: Any,
) -> None: ...
def parse_request(data: bytes) -> Any: ...


class ResponseBase:
    """The slots and the common constructor of takefive.response.Response."""

    _ctype: str | None
    _headers: Any
    body: bytes
    status: int
    def __init__(
        self, body: Any = ..., status: int = ..., headers: Any = ..., content_type: Any = ...
    ) -> None: ...

def setup_response_init(
    response_init: Any,
    text_init: Any,
    text_class: type,
    status_lines: dict[int, bytes],
    checked_types: set[str],
    octets: str,
) -> None: ...
