# Types of the optional C extension (src/takefive/_speedups.c).
from typing import TypeVar

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
