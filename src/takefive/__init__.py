"""takefive: web services as ZeroMQ message handlers, behind Mongrel2 or the built-in gateway."""

from takefive.wire import ProtocolError

__version__ = "0.1.0"

__all__ = [
    "ProtocolError",
    "__version__",
]
