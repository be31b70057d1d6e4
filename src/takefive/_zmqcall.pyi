# Types of the optional C extension src/takefive/_zmqcall.c (see takefive/_zmqutil.py).
from collections.abc import Callable
from typing import Any

def bind(
    msg_init: int,
    msg_recv: int,
    msg_data: int,
    msg_size: int,
    msg_close: int,
    send: int,
    errno: int,
    error_of: Callable[[int], BaseException],
) -> None: ...

class Socket:
    def __init__(self, owner: Any) -> None: ...
    @property
    def owner(self) -> Any: ...
    @property
    def attached(self) -> bool: ...
    def recv(self) -> bytes | None: ...
    def send(self, data: bytes) -> None: ...
    def detach(self) -> None: ...
