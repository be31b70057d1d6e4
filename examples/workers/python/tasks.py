"""The reference task set every example worker implements (Python, C, Ruby).

Run it with::

    takefive worker examples/workers/python/tasks.py:echo \
        examples/workers/python/tasks.py:pid examples/workers/python/tasks.py:sleep \
        examples/workers/python/tasks.py:fail --connect tcp://127.0.0.1:5555

``echo``  returns its payload unchanged (any encoding).
``pid``   returns the worker's process id (JSON number), whatever the payload.
``sleep`` sleeps for the payload's number of seconds (JSON number) and returns it.
``fail``  always fails with the message "failed on purpose".
"""

from __future__ import annotations

import os
import time
from typing import Any


def echo(payload: Any) -> Any:
    return payload


def pid(payload: Any) -> int:
    return os.getpid()


def sleep(payload: Any) -> Any:
    if not isinstance(payload, int | float) or isinstance(payload, bool) or payload < 0:
        raise ValueError("sleep takes a non-negative number of seconds")
    time.sleep(payload)
    return payload


def fail(payload: Any) -> Any:
    raise RuntimeError("failed on purpose")
