"""takefive: web services as ZeroMQ message handlers, behind Mongrel2 or the built-in gateway."""

from takefive.app import HOLD, App, Outbox
from takefive.handler import Handler
from takefive.request import Request, UploadFile
from takefive.response import (
    HTMLResponse,
    HTTPError,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from takefive.websocket import WebSocketHandler
from takefive.wire import ProtocolError

__version__ = "0.1.0"

__all__ = [
    "HOLD",
    "App",
    "HTMLResponse",
    "HTTPError",
    "Handler",
    "JSONResponse",
    "Outbox",
    "PlainTextResponse",
    "ProtocolError",
    "RedirectResponse",
    "Request",
    "Response",
    "UploadFile",
    "WebSocketHandler",
    "__version__",
]
